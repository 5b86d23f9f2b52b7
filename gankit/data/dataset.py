"""Prepared datasets: a memory-mapped uint8 array and a deterministic stream of shuffled batches."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import GankitError

BUILTIN = "toyfaces"  # `--data toyfaces` prepares (once) and uses the embedded default


def split_rows(spec: str | Path) -> tuple[str, slice]:
    """`data/celeba64[:9000]` -> ("data/celeba64", slice(None, 9000)); no brackets: every row."""
    m = re.match(r"^(.*)\[(\d*):(\d*)\]$", str(spec))
    if not m:
        return str(spec), slice(None)
    return m[1], slice(int(m[2]) if m[2] else None, int(m[3]) if m[3] else None)


class PreparedDataset:
    """A folder written by `gankit prepare`, optionally a slice of its rows (`path[a:b]`, e.g. to hold
    images out of training). Images stay memory-mapped unless `in_memory`."""

    def __init__(self, path: str | Path, in_memory: bool | None = None):
        path, rows = split_rows(path)
        self.path, self.rows = Path(path), rows
        meta_file, img_file = self.path / "meta.json", self.path / "images.npy"
        if not self.path.is_dir():
            raise GankitError(f"--data {self.path}: not a folder (make one with `gankit prepare`)")
        if not meta_file.exists() or not img_file.exists():
            raise GankitError(f"--data {self.path}: no meta.json/images.npy here; is it a `gankit prepare` output?")
        try:
            self.meta = json.loads(meta_file.read_text())
            self.images = np.load(img_file, mmap_mode="r")
        except (ValueError, OSError) as e:
            raise GankitError(f"--data {self.path}: unreadable prepared dataset ({e})") from None
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[3] != 3:
            raise GankitError(f"{img_file}: expected uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        self.images = self.images[rows]
        if len(self.images) == 0:
            raise GankitError(f"--data {path}: the slice [{rows.start or ''}:{rows.stop or ''}] selects no images")
        if in_memory is None:
            in_memory = self.images.nbytes < 4 << 30
        if in_memory:
            self.images = np.array(self.images)  # a writable in-memory copy
        self.attrs = self._optional("attrs.npy")
        self.labels = self._optional("labels.npy")
        self.partition = self._optional("partition.npy")

    def _optional(self, name: str) -> np.ndarray | None:
        f = self.path / name
        return np.load(f, allow_pickle=False)[self.rows] if f.exists() else None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def res(self) -> int:
        return int(self.images.shape[1])

    @property
    def name(self) -> str:
        return self.path.name

    def attribute(self, name: str) -> np.ndarray:
        """+1/-1/0 column of one attribute (CelebA names)."""
        names = self.meta.get("attributes") or []
        if self.attrs is None or name not in names:
            raise GankitError(f"{self.path}: no attribute {name!r} (has: {', '.join(names) or 'none'})")
        return self.attrs[:, names.index(name)]

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        """uint8 NHWC tensor of the given rows."""
        return torch.from_numpy(np.ascontiguousarray(self.images[indices]))


class BatchStream:
    """Shuffled batches without replacement, `drop_last`; batch k depends only on (seed, k).

    No state to save: resuming at step k reproduces exactly the batches a run that never stopped
    would have seen. `rank`/`world` split each global batch between data-parallel processes.
    """

    def __init__(self, n: int, batch: int, seed: int, rank: int = 0, world: int = 1):
        if n < batch:
            raise GankitError(f"dataset has {n} images, fewer than one batch of {batch}; lower train.batch")
        self.n, self.batch, self.seed, self.rank, self.world = n, batch, seed, rank, world
        self.per_epoch = n // batch
        self._epoch, self._perm = -1, None

    def indices(self, k: int) -> np.ndarray:
        epoch, pos = divmod(k, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.n, generator=g).numpy(), epoch
        idx = self._perm[pos * self.batch:(pos + 1) * self.batch]
        per_rank = self.batch // self.world
        return idx[self.rank * per_rank:(self.rank + 1) * per_rank]


def to_float(u8: torch.Tensor, device: torch.device, channels_last: bool = True) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [-1, 1] on `device` (stored channels-last when asked)."""
    x = u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return x if channels_last else x.contiguous()
