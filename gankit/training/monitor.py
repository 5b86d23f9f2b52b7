"""What a run shows: metrics as JSON lines, TensorBoard scalars and images, and loss plots."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..images import pyplot, save_figure

import numpy as np

log = logging.getLogger(__name__)


class MetricsLog:
    """metrics.jsonl: one JSON object a line, each with its `step`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        return out

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (work lost since the checkpoint a resume starts from)."""
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path)


class TensorBoard:
    """A thin wrapper so a missing or broken tensorboard install only loses the TB view, not the run."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        except Exception as e:  # pragma: no cover - depends on the install
            log.warning("TensorBoard logging off (%s)", e)
            self.writer = None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)

    def image(self, tag: str, step: int, hwc_uint8: np.ndarray) -> None:
        if self.writer:
            self.writer.add_image(tag, hwc_uint8, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def _smooth(y: np.ndarray, frac: float = 0.02) -> np.ndarray:
    alpha = min(1.0, max(frac, 1.0 / max(len(y), 1)) * 5)
    out = np.empty_like(y)
    acc = y[0]
    for i, v in enumerate(y):
        acc = alpha * v + (1 - alpha) * acc
        out[i] = acc
    return out


def plot_metrics(records: list[dict], groups: dict[str, list[str]], out_dir: str | Path, title: str = "") -> list[Path]:
    """One PNG per group of metrics against the step (raw faint, smoothed bold). Returns the files written."""
    plt = pyplot()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_step: dict[int, dict] = {}
    for r in records:  # a later record of the same step (after a resume) replaces the earlier one
        by_step.setdefault(r["step"], {}).update(r)
    steps = sorted(by_step)
    written = []
    for stem, names in groups.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        drawn = False
        for name in names:
            pts = [(s, by_step[s][name]) for s in steps if isinstance(by_step[s].get(name), (int, float))]
            if not pts:
                continue
            x, y = np.array(pts, dtype=float).T
            line, = ax.plot(x, y, alpha=0.25, linewidth=0.8)
            ax.plot(x, _smooth(y), color=line.get_color(), linewidth=1.8, label=name)
            drawn = True
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("step")
        ax.set_title(f"{title} {stem}".strip())
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"{stem}.png"
        save_figure(fig, path)
        written.append(path)
    return written


def plot_convergence(records: list[dict], name: str, samples_dir: str | Path, out: str | Path,
                     title: str = "", thumbnails: int = 5, thumb_images: int = 2) -> Path:
    """The convergence measure over training with sample thumbnails of several stages inset above
    the curve (the figure of the BEGAN paper). Thumbnails are the top-left thumb_images^2 samples of
    the saved grids closest to evenly spaced steps."""
    plt = pyplot()
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    from PIL import Image

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pts = sorted({r["step"]: r[name] for r in records if isinstance(r.get(name), (int, float))}.items())
    fig, ax = plt.subplots(figsize=(10, 6))
    if pts:
        x, y = np.array(pts, dtype=float).T
        ax.plot(x, y, alpha=0.3, linewidth=0.8)
        ax.plot(x, _smooth(y), linewidth=2, label=name)
        ax.set_ylim(0, float(y.max()) * 1.75)  # the top 40% holds the thumbnails
        grids = sorted(Path(samples_dir).glob("step-*.png"))
        stepped = [(int(g.stem.split("-")[1]), g) for g in grids]
        stepped = [(s, g) for s, g in stepped if s > 0]
        if stepped:
            wanted = np.linspace(stepped[0][0], stepped[-1][0], min(thumbnails, len(stepped)))
            chosen = {min(stepped, key=lambda sg: abs(sg[0] - w)) for w in wanted}
            chosen = sorted(chosen)
            y_at = dict(zip(x, _smooth(y)))
            for i, (s, g) in enumerate(chosen):
                arr = np.asarray(Image.open(g).convert("RGB"))
                pad = 2
                cell = _grid_cell(arr, pad)
                crop = arr[:pad + thumb_images * cell, :pad + thumb_images * cell]
                # Boxes sit evenly along the top (they never overlap); a line points at their step.
                near = min(y_at, key=lambda xs: abs(xs - s))
                box = AnnotationBbox(OffsetImage(crop, zoom=min(1.0, 100 / crop.shape[0])),
                                     (s, y_at[near]), xybox=((i + 0.5) / len(chosen), 0.8),
                                     xycoords="data", boxcoords="axes fraction", frameon=True, pad=0.2,
                                     arrowprops=dict(arrowstyle="-", color="grey", alpha=0.6))
                ax.add_artist(box)
        ax.legend(loc="lower left")
    ax.set_xlabel("step")
    ax.set_title(f"{title} {name}".strip())
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out)
    return out


def _grid_cell(grid_png: np.ndarray, pad: int) -> int:
    """Side of one image plus padding in a square grid written by gankit.images.grid."""
    side = grid_png.shape[1]
    for n in range(1, 65):  # grids are n x n of (cell) with `pad` borders: side = n * cell + pad
        if (side - pad) % n == 0 and (side - pad) // n - pad in (32, 64, 128):
            return (side - pad) // n
    return side
