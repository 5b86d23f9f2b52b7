"""Sampling from a trained run."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import Config
from .errors import GankitError
from .families import Family, build_family
from .images import grid, save_png, to_uint8
from .train.checkpoint import load_latest


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[Family, dict]:
    """The family of a run with its newest intact checkpoint loaded, and that checkpoint's record."""
    run_dir = Path(run_dir)
    loaded = load_latest(run_dir / "checkpoints") if run_dir.is_dir() else None
    if loaded is None:
        raise GankitError(f"{run_dir}: no run folder with an intact checkpoint")
    state, record = loaded
    cfg = Config.from_dict(record["config"])
    cfg.train.compile = False
    family = build_family(cfg, torch.device(device), None)
    family.load_state_dict(state["family"])
    return family, record


def sample_grid(run_dir: str | Path, n: int, out: str | Path, seed: int = 0) -> Path:
    """Write a grid of n samples of the run's generator (codes drawn with `seed`) to `out`."""
    if n < 1:
        raise GankitError(f"-n must be >= 1, got {n}")
    family, _ = load_run(run_dir)
    z = family.sample_z(n, torch.Generator().manual_seed(seed))
    return save_png(grid(to_uint8(family.generate(z))), out)
