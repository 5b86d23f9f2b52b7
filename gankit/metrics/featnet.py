"""gankit's own feature network: a small CNN trained on a labelled prepared dataset.

Where the FID Inception weights are absent, Frechet distance and KID are computed in this network's
feature space instead, under names that say so (`fd-celeba-attr10k`, never `fid10k`). Trained on
CelebA's 40 attributes (multi-label) or on class labels (flowers, CIFAR-10); its held-out accuracy
is saved with it. Later tools use its attribute head to label generated images.

    gankit train-features data/celeba64 [--epochs 6] [--out DIR]
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from ..data import PreparedDataset
from ..errors import GankitError
from ..env import resolve_precision

WIDTHS = (32, 64, 128, 256)
INPUT_RES = 64


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class FeatureNet(nn.Module):
    """Images in [0, 1] (any size; resized to 64 px) -> 256-d features; `head` gives attribute/class logits."""

    def __init__(self, n_outputs: int, widths: tuple[int, ...] = WIDTHS, res: int = INPUT_RES):
        super().__init__()
        self.res = res
        layers: list[nn.Module] = [_block(3, widths[0], 1)]
        c = widths[0]
        for w in widths:  # each stage halves the size: 64 -> 32 -> 16 -> 8 -> 4
            layers += [_block(c, w, 2), _block(w, w, 1)]
            c = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, n_outputs)
        self.dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.res or x.shape[-2] != self.res:
            x = F.interpolate(x, size=(self.res, self.res), mode="bilinear", align_corners=False, antialias=True)
        return F.adaptive_avg_pool2d(self.body(x * 2 - 1), 1).flatten(1)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


def _split(ds: PreparedDataset, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Train/held-out indices: the official partition when it has held-out rows, else a seeded split."""
    n = len(ds)
    if ds.partition is not None and (ds.partition > 0).sum() >= max(100, 0.05 * n) and (ds.partition == 0).any():
        return np.flatnonzero(ds.partition == 0), np.flatnonzero(ds.partition > 0), "official partition"
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(holdout * n)))
    return np.sort(perm[k:]), np.sort(perm[:k]), f"seeded {100 * holdout:.0f}% hold-out"


def train_feature_net(data: str | Path, out: str | Path | None = None, epochs: int = 6, batch: int = 128,
                      lr: float = 2e-3, holdout: float = 0.1, seed: int = 0, progress: bool = True,
                      precision: str = "auto") -> dict:
    """Train on the attributes (or classes) of a prepared dataset; save the network and its report.
    `precision` auto follows GANKIT_PRECISION, else bf16 where the CPU has it natively."""
    ds = PreparedDataset(data)
    if ds.attrs is not None and ds.meta.get("attributes"):
        kind, names = "attributes", list(ds.meta["attributes"])
        known = (ds.attrs != 0).all(1)
        targets = (ds.attrs > 0).astype(np.float32)
    elif ds.labels is not None:
        kind = "classes"
        names = list(ds.meta.get("classes") or [str(i) for i in range(int(ds.labels.max()) + 1)])
        known = ds.labels >= 0
        targets = ds.labels.astype(np.int64)
    else:
        raise GankitError(f"{data}: no attributes or class labels to train a feature network on")
    train_idx, test_idx, split_how = _split(ds, holdout, seed)
    train_idx, test_idx = train_idx[known[train_idx]], test_idx[known[test_idx]]
    if len(train_idx) < batch or len(test_idx) == 0:
        raise GankitError(f"{data}: too few labelled images ({len(train_idx)} train, {len(test_idx)} held out)")

    torch.manual_seed(seed)
    net = FeatureNet(len(names)).to(memory_format=torch.channels_last)
    steps = epochs * (len(train_idx) // batch)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    bf16 = resolve_precision("cpu", precision) is not None
    images = torch.from_numpy(np.ascontiguousarray(ds.images))
    y_all = torch.from_numpy(targets)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    bar = tqdm(total=steps, desc="train-features", disable=not progress, mininterval=1.0)
    net.train()
    for epoch in range(epochs):
        order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=gen)]
        for i in range(len(train_idx) // batch):
            idx = order[i * batch:(i + 1) * batch]
            x = images[idx].permute(0, 3, 1, 2).float().div_(255)
            flip = torch.rand(len(idx), 1, 1, 1, generator=gen) < 0.5
            x = torch.where(flip, x.flip(3), x)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = net.logits(net(x)).float()
            y = y_all[idx]
            loss = (F.binary_cross_entropy_with_logits(logits, y) if kind == "attributes"
                    else F.cross_entropy(logits, y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
    bar.close()
    net.eval()
    acc, per_name, baseline = evaluate(net, images[torch.from_numpy(test_idx)], targets[test_idx], kind)
    name = f"{ds.meta.get('source', 'data')}-{'attr' if kind == 'attributes' else 'class'}"
    report = {"format": "gankit-featnet-1", "name": name, "kind": kind, "outputs": names, "res": INPUT_RES,
              "widths": list(WIDTHS), "dim": net.dim, "trained_on": str(Path(data).resolve()),
              "train_images": int(len(train_idx)), "heldout_images": int(len(test_idx)), "split": split_how,
              "epochs": epochs, "batch": batch, "lr": lr, "precision": "bf16" if bf16 else "fp32",
              "seconds": round(time.time() - t0, 1),
              "heldout_accuracy": acc, "majority_baseline": baseline, "per_output_accuracy": per_name}
    out = Path(out) if out else Path(data) / "features"
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "featnet.safetensors"))
    report["sha256"] = hashlib.sha256((out / "featnet.safetensors").read_bytes()).hexdigest()
    (out / "featnet.json").write_text(json.dumps(report, indent=2))
    return report


@torch.inference_mode()
def evaluate(net: FeatureNet, images_u8: torch.Tensor, targets: np.ndarray, kind: str, batch: int = 256):
    """(mean held-out accuracy, accuracy per output, majority-class baseline)."""
    preds = []
    for i in range(0, len(images_u8), batch):
        x = images_u8[i:i + batch].permute(0, 3, 1, 2).float().div_(255)
        preds.append(net.logits(net(x)).float())
    logits = torch.cat(preds).numpy()
    if kind == "attributes":
        correct = (logits > 0) == (targets > 0.5)
        per = correct.mean(0)
        base = np.maximum(targets.mean(0), 1 - targets.mean(0))
        return float(per.mean()), [round(float(a), 4) for a in per], float(base.mean())
    pred = logits.argmax(1)
    counts = np.bincount(targets, minlength=logits.shape[1])
    per = [float((pred[targets == c] == c).mean()) if counts[c] else float("nan") for c in range(logits.shape[1])]
    return float((pred == targets).mean()), [round(a, 4) for a in per], float(counts.max() / counts.sum())


def load_feature_net(path: str | Path) -> tuple[FeatureNet, dict]:
    """A trained feature network (folder or its featnet.json), in eval mode, and its report."""
    path = Path(path)
    meta_file = path / "featnet.json" if path.is_dir() else path
    try:
        report = json.loads(meta_file.read_text())
        state = load_file(str(meta_file.with_name("featnet.safetensors")))
    except (OSError, ValueError) as e:
        raise GankitError(f"--features {path}: no trained feature network here ({e}); "
                          f"make one with `gankit train-features PREPARED_DIR`") from None
    net = FeatureNet(len(report["outputs"]), tuple(report["widths"]), report["res"])
    net.load_state_dict(state)
    return net.eval().requires_grad_(False), report


def feature_net_id(report: dict) -> str:
    return f"{report['name']}-{report['sha256'][:8]}"


__all__ = ["FeatureNet", "train_feature_net", "load_feature_net", "feature_net_id"]
