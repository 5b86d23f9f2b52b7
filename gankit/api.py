"""gankit from Python (a notebook, a script): load a trained generator and use it, train, evaluate.

    import gankit
    model = gankit.load("runs/00000-dcgan-64-cpu-celeba64")   # a run folder, or a folder from `gankit export`
    images = model.sample(16, seed=0)                           # uint8 (16, 64, 64, 3)
    run = gankit.train("dcgan-32-cpu", "toyfaces", steps=200)   # the run folder
    gankit.evaluate(run, ["fd-toyfaces-attr1k", "pr-toyfaces-attr1k"], ref="data/toy32")

Every function here is what a `gankit` subcommand calls; messages go through the `gankit` logger.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .errors import GankitError
from .families import Family


class Model:
    """A trained generator (with its encoder where the family has one), in eval mode, fp32."""

    def __init__(self, family: Family, info: dict):
        self.family = family
        self.info = info  # step, source folder, which weights (the moving average or G)

    @property
    def config(self):
        return self.family.cfg

    @property
    def res(self) -> int:
        return self.family.cfg.model.res

    @property
    def device(self) -> torch.device:
        return self.family.device

    def codes(self, n: int, seed: int = 0) -> torch.Tensor:
        """n codes drawn from the prior with `seed` (the same seed gives the same codes as `sample`)."""
        return self.family.sample_z(n, torch.Generator(self.device).manual_seed(seed))

    def generate(self, z: torch.Tensor) -> np.ndarray:
        """uint8 images (N, H, W, 3) for codes z."""
        from .images import to_uint8
        return to_uint8(self.family.generate(z.to(self.device)))

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """n images, uint8 (N, H, W, 3), from codes drawn with `seed`."""
        return self.generate(self.codes(n, seed))

    def _as_input(self, images) -> torch.Tensor:
        from .data import to_float
        arr = np.stack([np.asarray(im.convert("RGB")) for im in images]) if isinstance(images, (list, tuple)) \
            else np.asarray(images)
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (self.res, self.res, 3):
            raise GankitError(f"images must be uint8 (N, {self.res}, {self.res}, 3) or a list of PIL images of that "
                              f"size; got {arr.dtype} {arr.shape}")
        return to_float(torch.from_numpy(np.ascontiguousarray(arr)), self.device)

    def encode(self, images) -> torch.Tensor:
        """The encoder's codes (posterior means) of real images: VAE and VAE-GAN."""
        if not self.family.has_encoder:
            raise GankitError(f"the {self.family.name} family has no encoder; use project()")
        return self.family.codes(self._as_input(images))

    def project(self, images, steps: int = 300, restarts: int = 4, seed: int = 0) -> torch.Tensor:
        """Codes whose images are closest (L1) to real images, found by optimisation (any family;
        started from the encoder where there is one)."""
        from .latent.project import project
        x = self._as_input(images)
        init = self.family.codes(x) if self.family.has_encoder else None
        return project(self.family, x, steps, restarts, init=init,
                       gen=torch.Generator(self.device).manual_seed(seed)).z

    def export(self, out: str | Path, **kw) -> Path:
        from .exported import export
        return export(self.info["source"], out, **kw)


def load(path: str | Path, device: str = "cpu") -> Model:
    """A run folder (its newest intact checkpoint; the moving average of G when there is one) or a
    folder written by `gankit export`."""
    from .exported import is_exported, load_exported
    from .run import load_run
    path = Path(path)
    if is_exported(path):
        return load_exported(path, device)
    family, record = load_run(path, device)
    return Model(family, {"source": str(path), "step": record["step"],
                          "weights": "ema" if family.ema is not None else "G"})


def train(preset: str, data: str, runs: str | Path = "runs", progress: bool = False,
          overrides: dict[str, Any] | Sequence[str] | None = None, **options: Any) -> Path:
    """Train a preset on a prepared dataset (or "toyfaces"); returns the run folder. Options are config
    keys: bare where the name is unique (steps=200, ema=0.999) or dotted in `overrides`
    ({"train.steps": 200} or ["train.steps=200"])."""
    from .config import apply_overrides, load_preset
    from .training import Trainer
    items = list(overrides.items()) if isinstance(overrides, dict) else [tuple(o.split("=", 1)) for o in overrides or []]
    items += list(options.items())
    cfg = apply_overrides(load_preset(preset), [f"{k}={_text(v)}" for k, v in items])
    trainer = Trainer.new(cfg, data, runs_root=runs, progress=progress)
    trainer.run()
    return trainer.run_dir


def _text(value: Any) -> str:
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def evaluate(run: str | Path, metrics: str | Sequence[str], ref: str, seed: int = 0, ema: bool = True,
             features: str | None = None, fid_weights: str | None = None, device: str = "cpu") -> dict | list[dict]:
    """Named metrics (fd-celeba-attr10k, pr10k, ...) of a run's generator against a reference set, from
    one pass of generation and feature extraction; a dict for one metric, a list for several."""
    from .metrics.registry import evaluate_many
    model = load(run, device)
    model.family.use_ema = ema
    gen = torch.Generator(model.device).manual_seed(seed)
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    results = evaluate_many(names, lambda n: model.family.generate(model.family.sample_z(n, gen)), ref,
                            fid_weights, features, device=model.device)
    return results[0] if isinstance(metrics, str) else results


def fid(a: str | Path, b: str | Path, features: str | None = None, kid: bool = False, limit: int | None = None,
        resize: str = "legacy", fid_weights: str | None = None) -> float:
    """FID (or KID with kid=True) between two image sets (folders, prepared datasets, .npz): in the FID
    Inception features, or in a gankit feature network (`features` = its folder)."""
    from .metrics.registry import compare_sets, feature_net_at, load_features, parse_metric
    feats = feature_net_at(features) if features else \
        load_features(parse_metric("fid1k" + ("-clean" if resize == "clean" else "")), fid_weights)
    return compare_sets(str(a), str(b), feats, "kernel" if kid else "frechet", limit=limit)["value"]


def info(path: str | Path) -> dict:
    """What a run or exported folder holds, without building networks, in one shape for both:
    {"kind": "run" | "exported", "family", "preset", "step" (newest checkpoint; None before the
    first), "data", "config" (the training config as a dict)}."""
    from .exported import is_exported
    from .training.checkpoint import newest_step
    path = Path(path)
    try:
        if is_exported(path):
            e = json.loads((path / "config.json").read_text())
            return {"kind": "exported", "family": e["family"], "preset": e["config"].get("preset"),
                    "step": e["step"], "data": e.get("data"), "config": e["config"]}
        config = json.loads((path / "config.json").read_text())
        run = json.loads((path / "run.json").read_text()) if (path / "run.json").exists() else {}
    except (OSError, ValueError, KeyError) as e:
        raise GankitError(f"{path}: not a gankit run or exported folder ({e})") from None
    return {"kind": "run", "family": config["model"]["family"], "preset": config.get("preset"),
            "step": newest_step(path / "checkpoints"),
            "data": run.get("data"), "config": config}
