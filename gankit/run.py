"""Run folders: creating them, loading a run's newest checkpoint, its dataset and real images, and the
device a run uses."""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path

import torch

from .config import Config
from .data import BUILTIN, PreparedDataset, prepare
from .env import resolve_precision
from .errors import GankitError
from .families import Family, build_family

log = logging.getLogger(__name__)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` is CUDA when present; under torchrun each process takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GankitError(f"train.device: unknown device {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GankitError("train.device=cuda but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def open_dataset(data: str, res: int) -> PreparedDataset:
    """A prepared dataset folder, or `toyfaces`: the embedded default, prepared once into the cache."""
    if data == BUILTIN:
        from .env import cache_dir
        path = cache_dir() / f"toyfaces-{res}"
        if not (path / "meta.json").exists():
            log.info("drawing the built-in toyfaces dataset into %s (once)", path)
            prepare("toyfaces", [], res, path, overwrite=True, progress=sys.stderr.isatty())
        return PreparedDataset(path)
    return PreparedDataset(data)


def new_run_dir(root: Path, preset: str, data_name: str) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GankitError(f"--runs {root}: cannot create the runs folder ({e.strerror or e})") from None
    numbers = [int(m[1]) for p in root.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    n = max(numbers, default=-1) + 1
    while True:
        path = root / f"{n:05d}-{preset}-{data_name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
        except OSError as e:
            raise GankitError(f"--runs {root}: cannot create a run folder there ({e.strerror or e})") from None


def check_writable(run_dir: Path, need_bytes: int) -> None:
    """Before training: the run folder takes a file, and its disk has room for the checkpoints kept
    plus one being written, so a full disk is a clear error now rather than a failed write later."""
    import shutil
    probe = run_dir / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"gankit")
        probe.unlink()
    except OSError as e:
        raise GankitError(f"run folder {run_dir} is not writable ({e.strerror or e})") from None
    free = shutil.disk_usage(run_dir).free
    if free < need_bytes:
        raise GankitError(f"run folder {run_dir}: {free / 2**20:.0f} MiB free on its disk, but checkpoints and "
                          f"samples need about {need_bytes / 2**20:.0f} MiB (train.keep_ckpts, or free some space)")


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[Family, dict]:
    """The family of a run with its newest intact checkpoint loaded, and that checkpoint's record.
    It runs in fp32 unless GANKIT_PRECISION says bf16 (the tools' numbers should be exact)."""
    from .training.checkpoint import load_latest
    run_dir = Path(run_dir)
    loaded = load_latest(run_dir / "checkpoints") if run_dir.is_dir() else None
    if loaded is None:
        raise GankitError(f"{run_dir}: no run folder with an intact checkpoint")
    state, record = loaded
    cfg = Config.from_dict(record["config"])
    cfg.train.compile = False
    family = build_family(cfg, torch.device(device), resolve_precision(device, "auto", auto="fp32"))
    family.load_state_dict(state["family"])
    return family, record


def run_dataset(run_dir: str | Path, res: int):
    """The prepared dataset a run trained on (as recorded in its run.json)."""
    try:
        data = json.loads((Path(run_dir) / "run.json").read_text())["data"]
    except (OSError, ValueError, KeyError) as e:
        raise GankitError(f"{run_dir}: no readable run.json ({e})") from None
    return open_dataset(data, res)


def real_images(run_dir: str | Path, res: int, images: str | Path | None = None, from_data: int | None = None,
                seed: int = 0, limit: int = 64, dataset=None) -> tuple:
    """Up to `limit` real images as uint8 (N, res, res, 3), their names and their rows in the prepared
    dataset (None for files): the files under `images` (centre-cropped and resized; unreadable files
    are skipped and reported), or `from_data` random images of the run's prepared dataset (`dataset`
    when it is already open)."""
    import numpy as np

    from .data.prepare import list_images, load_image
    if images:
        files = list_images(Path(images))[:limit]
        arrs, names, bad = [], [], []
        for f in files:
            try:
                arrs.append(load_image(f, res, None))
                names.append(Path(f).name)
            except (OSError, ValueError, SyntaxError):
                bad.append(Path(f).name)
        if bad:
            log.warning("skipped %d unreadable image(s) under %s: %s", len(bad), images, ", ".join(bad[:5]))
        if not arrs:
            raise GankitError(f"--images {images}: no readable images found")
        return np.stack(arrs), names, None
    ds = dataset if dataset is not None else run_dataset(run_dir, res)
    n = min(from_data or 16, len(ds), limit)
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), n, replace=False))
    return ds.images[idx], [f"{ds.name}[{i}]" for i in idx], idx


