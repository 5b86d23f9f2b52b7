"""Model families. Each supplies networks and a per-batch step; `build_family` picks one by name."""
from __future__ import annotations

import torch

from ..config import Config
from .base import Family
from .began import BEGAN
from .dcgan import DCGAN
from .vae import VAE
from .vaegan import VAEGAN
from .wgan import WGAN

REGISTRY: dict[str, type[Family]] = {"dcgan": DCGAN, "wgan": WGAN, "began": BEGAN, "vae": VAE, "vaegan": VAEGAN}


def build_family(cfg: Config, device: torch.device, precision: torch.dtype | None) -> Family:
    return REGISTRY[cfg.model.family](cfg, device, precision)


__all__ = ["Family", "REGISTRY", "build_family"]
