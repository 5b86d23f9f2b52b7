"""Paths between codes: linear and spherical interpolation."""
from __future__ import annotations

import torch


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """a + t (b - a), row by row."""
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float, eps: float = 1e-6) -> torch.Tensor:
    """Spherical interpolation (Shoemake; White 2016 for GAN latents): moves along the great circle
    between the directions of a and b while the norm changes linearly, so a Gaussian code keeps a
    typical norm mid-way where lerp would shrink it. Falls back to lerp for (anti)parallel rows."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    if t.dim() == 1:
        t = t[:, None]
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(eps), b / nb.clamp_min(eps)
    omega = torch.arccos((ua * ub).sum(-1, keepdim=True).clamp(-1, 1))
    so = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so.clamp_min(eps)
    spherical = direction * lerp(na, nb, t)
    return torch.where(so > eps, spherical, lerp(a, b, t))


def paths(starts: torch.Tensor, ends: torch.Tensor, steps: int, method: str = "slerp") -> torch.Tensor:
    """(pairs, steps, dim) codes from each start to its end, endpoints included."""
    if method not in ("slerp", "lerp"):
        raise ValueError(f"--method must be slerp or lerp, got {method!r}")
    if steps < 2:
        raise ValueError(f"--steps must be >= 2, got {steps}")
    fn = slerp if method == "slerp" else lerp
    ts = torch.linspace(0, 1, steps, dtype=starts.dtype, device=starts.device)
    return torch.stack([fn(starts, ends, t) for t in ts], 1)
