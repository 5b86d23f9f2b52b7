"""Augmentation of whole batches in torch, on the training device (MISSION 2: flowers)."""
from __future__ import annotations

import torch

from ..config import AugmentConfig


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random flips, 90-degree turns and HSV jitter of a batch x (N, 3, H, W) in [-1, 1]."""
    n = x.shape[0]
    if cfg.flip:
        flip = torch.rand(n, 1, 1, 1, generator=gen, device=x.device) < 0.5
        x = torch.where(flip, x.flip(3), x)
    if cfg.rot90:
        k = torch.randint(0, 4, (n, 1, 1, 1), generator=gen, device=x.device)
        out = x
        for turns in (1, 2, 3):
            out = torch.where(k == turns, torch.rot90(x, turns, (2, 3)), out)
        x = out
    if cfg.hsv:
        h, s, v = rgb_to_hsv((x + 1) / 2).unbind(1)
        u = torch.rand(3, n, 1, 1, generator=gen, device=x.device) * 2 - 1
        h = torch.remainder(h + cfg.hue * u[0], 1.0)
        s = (s * (1 + cfg.saturation * u[1])).clamp(0, 1)
        v = (v * (1 + cfg.value * u[2])).clamp(0, 1)
        x = hsv_to_rgb(torch.stack((h, s, v), 1)) * 2 - 1
    return x


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> HSV with hue in [0, 1)."""
    r, g, b = rgb.unbind(1)
    maxc, argmax = rgb.max(1)
    minc = rgb.min(1).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.stack(((g - b) / safe, 2 + (b - r) / safe, 4 + (r - g) / safe), 1)
    hue = hue.gather(1, argmax.unsqueeze(1)).squeeze(1)
    hue = torch.where(delta > 0, torch.remainder(hue / 6, 1.0), torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack((hue, sat, maxc), 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of rgb_to_hsv."""
    h, s, v = hsv.unbind(1)
    # f(n) = v - v s max(0, min(k, 4 - k, 1)), k = (n + 6h) mod 6, for n = 5, 3, 1 -> R, G, B
    n = torch.tensor([5.0, 3.0, 1.0], device=hsv.device, dtype=hsv.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + 6 * h.unsqueeze(1), 6)
    w = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * w
