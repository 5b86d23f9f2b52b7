"""Labelled montages: a grid of images with a title, row labels and column labels."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..images import grid, save_png


def montage(rows: np.ndarray, out: str | Path, title: str = "", row_labels: Sequence[str] = (),
            col_labels: Sequence[str] = (), pad: int = 2) -> Path:
    """Write uint8 images (rows, cols, H, W, 3) as one PNG, one montage row per image row."""
    r, c, h, w, _ = rows.shape
    body = grid(rows.reshape(r * c, h, w, 3), nrow=c, pad=pad)
    line = 12
    left = 6 * max((len(s) for s in row_labels), default=0) + (6 if row_labels else 0)
    top = (line + 4 if title else 0) + (line if col_labels else 0)
    canvas = Image.new("RGB", (body.shape[1] + left, body.shape[0] + top), "white")
    canvas.paste(Image.fromarray(body), (left, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((2, 2), title, fill="black")
    for j, label in enumerate(col_labels):
        draw.text((left + pad + j * (w + pad) + 1, top - line), str(label)[: max(1, w // 6)], fill="black")
    for i, label in enumerate(row_labels):
        draw.text((2, top + pad + i * (h + pad) + h // 2 - 5), str(label), fill="black")
    return save_png(np.asarray(canvas), out)
