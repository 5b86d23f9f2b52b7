"""Image grids and PNG output without torchvision."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3), rounded as when saved to PNG."""
    x = x.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def grid(images: np.ndarray, nrow: int | None = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile uint8 (N, H, W, 3) images into one (rows*H, cols*W, 3) array with `pad` pixels between them."""
    n, h, w, c = images.shape
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = images[i]
    return out


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 HxWx3 array as PNG, atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG, atomically, and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=dpi)
    finally:
        pyplot().close(fig)
    os.replace(tmp, path)
    return path
