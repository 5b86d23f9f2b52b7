"""The FID equivalence kit (shared/fid-check): rebuild its recipe weights and compare with pytorch-fid.

    gankit fid-check ../shared/fid-check

The kit holds images, the pool3 features and logits pytorch-fid 0.3.0 computed for them with
weights made by a public recipe (its README), and the FID between its two halves.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ..errors import GankitError
from .extract import extract_features, image_batches
from .frechet import frechet_distance, statistics
from .inception import FIDInceptionV3


def recipe_state_dict(keys: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Weights by the kit's recipe: keys in sorted order, one generator, the first matching rule per key."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(keys):
        shape = tuple(keys[key])
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(shape, dtype=torch.long)
        elif key.endswith("running_var"):
            out[key] = 1.0 + 0.1 * torch.rand(shape, generator=g)
        elif key.endswith("running_mean"):
            out[key] = 0.01 * torch.randn(shape, generator=g)
        elif key.endswith(".bn.weight"):
            out[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("bias"):
            out[key] = 0.01 * torch.randn(shape, generator=g)
        else:
            out[key] = torch.randn(shape, generator=g) * math.sqrt(2 / math.prod(shape[1:]))
    return out


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest elementwise |ours - ref| relative to max(|ref|, 1e-3 * max|ref|)."""
    floor = 1e-3 * np.abs(ref).max()
    return float(np.max(np.abs(ours - ref) / np.maximum(np.abs(ref), floor)))


def check_kit(kit: str | Path, bf16: bool = False, batch: int = 16) -> dict:
    """Features, logits and FID of gankit's network on the kit against pytorch-fid's."""
    kit = Path(kit)
    try:
        spec = json.loads((kit / "keys.json").read_text())
        images = np.load(kit / "images.npz")["images"]
        expected = np.load(kit / "expected.npz")
    except (OSError, KeyError, ValueError) as e:
        raise GankitError(f"{kit}: not an FID check kit ({e})") from None
    net = FIDInceptionV3()
    ours_keys = {k: list(v.shape) for k, v in net.state_dict().items()}
    if ours_keys != spec["keys"]:
        missing = sorted(set(spec["keys"]) ^ set(ours_keys))[:5]
        raise GankitError(f"state-dict keys or shapes differ from the official file (first: {missing})")
    net.load_state_dict(recipe_state_dict(spec["keys"], spec["seed"]))
    net.eval()
    feats = extract_features(net, image_batches(images, batch), bf16=bf16)
    with torch.inference_mode():
        logits = net.logits(torch.from_numpy(feats).float()).double().numpy()
    half = len(images) // 2
    fid = frechet_distance(statistics(feats[:half]), statistics(feats[half:]))
    fid_ref = float(expected["fid_first24_vs_last24"])
    return {"images": len(images), "bf16": bf16,
            "pool3_rel_err": relative_error(feats, expected["pool3"]),
            "logits_rel_err": relative_error(logits, expected["logits"]),
            "fid": fid, "fid_expected": fid_ref, "fid_rel_err": abs(fid - fid_ref) / abs(fid_ref)}
