"""Projection of real images into z: argmin_z |x - G(z)|_1, by Adam over a batch of codes."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import torch

from ..families import Family


@dataclass
class Projection:
    z: torch.Tensor              # (N, dim) the best code found for each image
    error: torch.Tensor          # (N,) mean absolute error |x - G(z)| per pixel, images in [-1, 1]
    restart: torch.Tensor        # (N,) which restart gave the best code (0 = the encoder's, where used)
    history: list[float] = field(default_factory=list)  # mean error over all codes, every step


def project(family: Family, x: torch.Tensor, steps: int = 300, restarts: int = 4, lr: float = 0.05,
            init: torch.Tensor | None = None, gen: torch.Generator | None = None,
            guard: Callable[[], ContextManager] = contextlib.nullcontext) -> Projection:
    """Codes whose images are closest in L1 to the real images x (N, 3, H, W in [-1, 1]).

    All restarts of all images are optimised together as one batch. Restart 0 starts from `init`
    (the encoder's code for VAE and VAE-GAN) when given, the others from prior samples. After each
    Adam step, codes are moved back into the prior's support (clamped to [-1, 1] for BEGAN's uniform
    prior). The best code seen for each image is kept, so an encoder's start can only improve.
    The generator runs in eval mode with frozen weights. Each step runs inside `guard()` (the explorer
    passes its model lock, so other requests are served between steps).
    """
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
    gen = gen or torch.Generator(device=family.device).manual_seed(0)
    n = x.shape[0]
    x = x.to(family.device)
    z0 = family.sample_z(n * restarts, gen).view(restarts, n, -1)
    if init is not None:
        z0[0] = init.to(z0)
    z = family.to_support(z0.reshape(n * restarts, -1)).clone().requires_grad_(True)
    target = x.repeat(restarts, 1, 1, 1)
    opt = torch.optim.Adam([z], lr=lr)
    best_err = torch.full((n * restarts,), float("inf"), device=z.device)
    best_z = z.detach().clone()
    history = []

    def keep_best(err: torch.Tensor) -> None:  # the best code seen so far for every image and restart
        better = err < best_err
        best_err[better] = err[better]
        best_z[better] = z.detach()[better]

    for _ in range(steps):
        with guard(), family.frozen(family.nets["G"]):
            per_image = (family.decode(z) - target).abs().flatten(1).mean(1)
            keep_best(per_image.detach())
            opt.zero_grad(set_to_none=True)
            per_image.sum().backward()
            opt.step()
            with torch.no_grad():
                z.copy_(family.to_support(z))
            history.append(float(per_image.detach().mean()))
    with guard(), torch.no_grad():
        keep_best((family.decode(z) - target).abs().flatten(1).mean(1))
    final = best_err.view(restarts, n)
    best = final.argmin(0)
    rows = torch.arange(n, device=z.device)
    z_best = best_z.view(restarts, n, -1)[best, rows]
    return Projection(z=z_best, error=final[best, rows], restart=best, history=history)
