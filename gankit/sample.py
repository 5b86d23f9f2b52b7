"""Pictures of a trained run: sample grids (one run or several side by side), reconstructions, the 2-D
code map."""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import GankitError
from .images import grid, save_png, to_uint8
from .run import load_run, real_images, run_dataset


def sample_grid(run_dir: str | Path | list, n: int, out: str | Path, seed: int = 0,
                labels: list[str] | None = None, device: str = "cpu", ema: bool | list[bool] = True) -> Path:
    """Write a grid of n samples of the run's generator (codes drawn with `seed`) to `out`; given
    several runs, their grids side by side, each labelled (`labels`, else the run folder's name).
    `ema`: draw from the moving average of G where the run has one (False: G itself; a list: per run)."""
    import numpy as np
    from PIL import Image, ImageDraw
    if n < 1:
        raise GankitError(f"-n must be >= 1, got {n}")
    runs = run_dir if isinstance(run_dir, (list, tuple)) else [run_dir]
    grids = []
    for run, use_ema in zip(runs, ema if isinstance(ema, (list, tuple)) else [ema] * len(runs), strict=True):
        family, _ = load_run(run, device)
        family.use_ema = use_ema
        z = family.sample_z(n, torch.Generator(family.device).manual_seed(seed))
        grids.append(grid(to_uint8(family.generate(z))))
    if len(grids) == 1 and not labels:
        return save_png(grids[0], out)
    label_h, gap = 18, 12
    height = max(g.shape[0] for g in grids) + label_h
    canvas = Image.new("RGB", (sum(g.shape[1] for g in grids) + gap * (len(grids) - 1), height), "white")
    draw, x = ImageDraw.Draw(canvas), 0
    for run, label, g in zip(runs, labels or [Path(r).name for r in runs], grids):
        canvas.paste(Image.fromarray(g), (x, label_h))
        draw.text((x + 2, 3), label, fill="black")
        x += g.shape[1] + gap
    return save_png(np.asarray(canvas), out)


def reconstruct_grid(run_dir: str | Path, out: str | Path, images: str | Path | None = None,
                     from_data: int | None = None, seed: int = 0, device: str = "cpu") -> Path:
    """Originals and their reconstructions side by side (pairs of columns) for a family with an encoder:
    VAE and VAE-GAN (decoded posterior means) or BEGAN (its autoencoder discriminator)."""
    import numpy as np

    from .data import to_float
    family, record = load_run(run_dir, device)
    if not family.can_reconstruct:
        raise GankitError(f"{run_dir}: the {family.name} family has no encoder to reconstruct with")
    arr, _, _ = real_images(run_dir, family.cfg.model.res, images, from_data, seed)
    x = to_float(torch.from_numpy(np.ascontiguousarray(arr)), family.device)
    recon = to_uint8(family.reconstruct(x))
    pairs = np.stack([arr, recon], 1).reshape(-1, *arr.shape[1:])  # original, reconstruction, ...
    cols = 2 * max(1, int(np.ceil(np.sqrt(len(arr)))))
    return save_png(grid(pairs, nrow=cols), out)


def latent_view(run_dir: str | Path, out: str | Path, attribute: str | None = None, n: int = 2000,
                method: str = "pca", seed: int = 0, device: str = "cpu") -> Path:
    """Scatter of the codes of n real images in 2-D (PCA, or t-SNE with scikit-learn), coloured by an
    attribute (+1 / -1) of the run's dataset when it has one."""
    from .images import pyplot, save_figure
    plt = pyplot()
    import numpy as np

    from .data import to_float
    family, record = load_run(run_dir, device)
    if not family.has_encoder:
        raise GankitError(f"{run_dir}: the {family.name} family has no encoder; latent views need VAE or VAE-GAN")
    ds = run_dataset(run_dir, family.cfg.model.res)
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), min(n, len(ds)), replace=False))
    codes = np.concatenate([family.codes(to_float(ds.batch(idx[i:i + 256]), torch.device("cpu"))).numpy()
                            for i in range(0, len(idx), 256)])
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            raise GankitError("--method tsne needs scikit-learn (pip install scikit-learn); PCA works without") from None
        xy = TSNE(2, random_state=seed, init="pca").fit_transform(codes)
        axes = ("t-SNE 1", "t-SNE 2")
    else:
        centred = codes - codes.mean(0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        share = s[:2] ** 2 / (s ** 2).sum()
        axes = (f"PC 1 ({100 * share[0]:.1f}% of variance)", f"PC 2 ({100 * share[1]:.1f}%)")
    fig, ax = plt.subplots(figsize=(7, 6))
    if attribute:
        labels = ds.attribute(attribute)[idx]
        for value, colour, name in ((-1, "tab:blue", f"not {attribute}"), (1, "tab:orange", attribute)):
            sel = labels == value
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.6, c=colour, label=f"{name} ({sel.sum()})")
        ax.legend()
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(f"{family.cfg.preset} codes of {len(idx)} images, step {record['step']}")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out)
    return out
