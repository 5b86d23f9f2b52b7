"""A generator and an attribute labeller whose behaviour is known by construction, not learned.

The planted generator is x = tanh(s * A z) with A's columns orthonormal, so every image gives its
code back exactly (z = A^T atanh(x) / s). The planted labeller reads that code from the image and
says p(attribute) = sigmoid(k * (u . z - b)) with a fixed unit direction u per attribute. So the
direction the latent tools should find is u, the share labelled with an attribute rises
monotonically along it, and an image the generator made projects back to its code: on any CPU, at
any thread count, in fp32 or bf16.

`plant(monkeypatch)` makes every run the studio and the explorer load use them (the run folder,
checkpoint and dataset are still the real ones).
"""
from __future__ import annotations

import torch
from torch import nn

ATTRIBUTES = {"Smiling": 0.0, "Eyeglasses": 1.0, "Male": -0.5}  # name: bias b (Eyeglasses: ~16% have it)
SHARPNESS = 4.0


class PlantedG(nn.Module):
    """x = tanh(s * A z) as a (3, res, res) image; `codes` inverts it."""

    def __init__(self, z_dim: int, res: int, scale: float = 2.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        a, _ = torch.linalg.qr(torch.randn(3 * res * res, z_dim, generator=g, dtype=torch.float64))
        self.register_buffer("A", a.float())
        self.res, self.scale = res, scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.scale * (z.float() @ self.A.T)).view(-1, 3, self.res, self.res)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """The code of images in [-1, 1] (exact up to rounding)."""
        return torch.atanh(x.float().flatten(1).clamp(-0.99999, 0.99999)) @ self.A / self.scale


def planted_directions(z_dim: int, seed: int = 1) -> torch.Tensor:
    """One orthonormal direction per attribute, rows in ATTRIBUTES order."""
    q, _ = torch.linalg.qr(torch.randn(z_dim, len(ATTRIBUTES), generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return q.T.float().contiguous()


class PlantedLabeller(nn.Module):
    """The attribute network's interface (features = net(x in [0, 1]), logits = net.logits(features))."""

    def __init__(self, g: PlantedG, z_dim: int):
        super().__init__()
        self.g = g
        self.register_buffer("U", planted_directions(z_dim))
        self.register_buffer("b", torch.tensor(list(ATTRIBUTES.values())))

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.g.codes(x01.float() * 2 - 1)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return SHARPNESS * (z.float() @ self.U.T - self.b)


def direction_of(name: str, z_dim: int) -> torch.Tensor:
    return planted_directions(z_dim)[list(ATTRIBUTES).index(name)]


def plant_family(family) -> PlantedG:
    """Swap a loaded family's generator for the planted one (no moving average)."""
    cfg = family.cfg.model
    g = PlantedG(cfg.z_dim, cfg.res).to(family.device)
    family.nets["G"] = family.fast["G"] = g
    family.ema = None
    family.planted_labeller = PlantedLabeller(g, cfg.z_dim)
    return g


def plant(monkeypatch) -> None:
    """Every run the latent studio (and so the explorer) loads gets the planted generator and labeller."""
    from gankit.latent import studio

    real_load_run = studio.load_run

    def load_run(run_dir, *args, **kwargs):
        family, record = real_load_run(run_dir, *args, **kwargs)
        plant_family(family)
        return family, record

    monkeypatch.setattr(studio, "load_run", load_run)
    monkeypatch.setattr(studio.Studio, "labeller",
                        lambda self, features=None: (self.family.planted_labeller, list(ATTRIBUTES)))
