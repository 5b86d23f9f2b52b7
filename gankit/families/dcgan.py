"""DCGAN (Radford, Metz, Chintala 2016): the networks of MISSION 1.1 and the non-saturating GAN step.

Two designs, both all-convolutional with no pooling, ReLU in G, LeakyReLU(0.2) in D, tanh output
and N(0, 0.02) weights:

conv3 (preset dcgan-64), D on 64x64x3:           G from z:
    conv 3x3 s2, norm, LReLU   32x32x128            linear, BN, ReLU          4x4x1024
    conv 3x3 s2, norm, LReLU   16x16x256            tconv 3x3 s2, BN, ReLU    8x8x512
    conv 3x3 s2, norm, LReLU    8x8x512             tconv 3x3 s2, BN, ReLU   16x16x256
    conv 3x3 s2, norm, LReLU    4x4x1024            tconv 3x3 s2, BN, ReLU   32x32x128
    linear                      1                   tconv 3x3 s2, tanh       64x64x3

k4 (DCGAN paper, pytorch examples), 64 px:       G from z (1x1):
    conv 4x4 s2, LReLU         32x32x64             tconv 4x4 s1, BN, ReLU    4x4x512
    conv 4x4 s2, norm, LReLU   16x16x128            tconv 4x4 s2, BN, ReLU    8x8x256
    conv 4x4 s2, norm, LReLU    8x8x256             tconv 4x4 s2, BN, ReLU   16x16x128
    conv 4x4 s2, norm, LReLU    4x4x512             tconv 4x4 s2, BN, ReLU   32x32x64
    conv 4x4 s1 (valid)         1x1x1               tconv 4x4 s2, tanh       64x64x3

At 32 px each design drops its widest stage. `width` is D's first width (128 conv3, 64 k4) and, mirrored,
G's last (model.g_width sets G's apart).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from .base import Family
from .layers import Conv2d, ConvTranspose2d


def norm_layer(kind: str, channels: int) -> nn.Module:
    """BatchNorm for DCGAN; LayerNorm (over C, H, W with per-channel affine) or InstanceNorm for WGAN critics."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def _stages(res: int) -> int:
    if res not in (32, 64):
        raise ValueError(f"DCGAN networks are built for 32 or 64 px, not {res}")
    return int(math.log2(res)) - 2  # halvings from res down to 4x4


class Discriminator(nn.Sequential):
    """D(x) -> one unbounded score per image (a logit for DCGAN, a critic value for WGAN); with
    out_dim > 1 the same network is the VAE's encoder. Stage k's output is `features(x, k)`."""

    def __init__(self, res: int = 64, width: int = 128, norm: str = "batch", arch: str = "conv3", out_dim: int = 1,
                 input_norm: bool = True):
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(_stages(res)):
            c_out = width * 2 ** i
            k = 3 if arch == "conv3" else 4
            # D's input layer without a norm: always for BatchNorm in the k4 design, and for any norm
            # with input_norm=False (model.d_input_norm; the DCGAN paper, the WGAN and WGAN-GP reference
            # critics). A norm right after the first (linear) conv makes D(a x) = D(x) for every a > 0,
            # per image (LayerNorm, InstanceNorm) or per batch (BatchNorm): D cannot see contrast
            skip_norm = i == 0 and norm != "none" and (not input_norm or (arch == "k4" and norm == "batch"))
            layers.append(nn.Sequential(
                Conv2d(c_in, c_out, k, stride=2, padding=1, bias=norm == "none" or skip_norm),
                nn.Identity() if skip_norm else norm_layer(norm, c_out),
                nn.LeakyReLU(0.2, inplace=True)))
            c_in = c_out
        if arch == "conv3":
            layers.append(nn.Sequential(nn.Flatten(), nn.Linear(c_in * 4 * 4, out_dim)))
        else:
            layers.append(nn.Sequential(Conv2d(c_in, out_dim, 4, stride=1, padding=0), nn.Flatten()))
        super().__init__(*layers)

    def features(self, x: torch.Tensor, stages: int) -> torch.Tensor:
        """Output of the first `stages` conv stages (VAE-GAN's learned similarity layer)."""
        for block in list(self)[:stages]:
            x = block(x)
        return x


class Generator(nn.Sequential):
    """G(z) -> image in [-1, 1], (N, 3, res, res)."""

    def __init__(self, z_dim: int = 100, res: int = 64, width: int = 128, norm: str = "batch", arch: str = "conv3"):
        n = _stages(res)
        top = width * 2 ** (n - 1)
        bn = (lambda c: nn.BatchNorm2d(c)) if norm == "batch" else (lambda c: nn.Identity())
        if arch == "conv3":
            layers: list[nn.Module] = [nn.Sequential(
                nn.Linear(z_dim, top * 4 * 4, bias=norm != "batch"), nn.Unflatten(1, (top, 4, 4)),
                bn(top), nn.ReLU(inplace=True))]
            up = lambda ci, co, b: ConvTranspose2d(ci, co, 3, stride=2, padding=1, output_padding=1, bias=b)
        else:
            layers = [nn.Sequential(
                nn.Unflatten(1, (z_dim, 1, 1)), ConvTranspose2d(z_dim, top, 4, 1, 0, bias=norm != "batch"),
                bn(top), nn.ReLU(inplace=True))]
            up = lambda ci, co, b: ConvTranspose2d(ci, co, 4, stride=2, padding=1, bias=b)
        c = top
        for _ in range(n - 1):
            layers.append(nn.Sequential(up(c, c // 2, norm != "batch"), bn(c // 2), nn.ReLU(inplace=True)))
            c //= 2
        layers.append(nn.Sequential(up(c, 3, True), nn.Tanh()))
        super().__init__(*layers)


def build_networks(cfg: Config) -> dict[str, nn.Module]:
    m = cfg.model
    return {"G": Generator(m.z_dim, m.res, m.gen_width, m.g_norm, m.arch),
            "D": Discriminator(m.res, m.width, m.d_norm, m.arch, input_norm=m.d_input_norm)}


class DCGAN(Family):
    """Non-saturating GAN loss (binary cross-entropy on logits); one D then one G update a batch."""

    name = "dcgan"
    plots = {"losses": ["loss_D", "loss_G"], "discriminator": ["D_real", "D_fake"]}

    def __init__(self, cfg: Config, device: torch.device, precision: torch.dtype | None):
        super().__init__(cfg, device, precision)
        self.nets = build_networks(cfg)
        self.finish_setup()

    def step(self, real: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        G, D = self.fast["G"], self.fast["D"]
        z = self.sample_z(real.shape[0], gen)
        with self.amp():
            fake = G(z)
            d_real, d_fake = D(self.d_view(real, gen)), D(self.d_view(fake.detach(), gen))
            loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                      + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        self.apply({"D": loss_d})
        self.ada.observe(torch.sign(d_real.detach()))

        with self.amp(), self.frozen(self.nets["D"]):
            d_gen = D(self.d_view(fake, gen))
            loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
        self.apply({"G": loss_g})
        return {"loss_D": loss_d.detach(), "loss_G": loss_g.detach(),
                "D_real": torch.sigmoid(d_real.detach().float()).mean(),
                "D_fake": torch.sigmoid(d_fake.detach().float()).mean()}
