"""Metrics named with their protocol, image sets to feed them, and cached reference statistics.

Names: `fid10k`, `fid50k`, `kid10k` (FID Inception features), `fd-<net>10k`, `kd-<net>10k`
(gankit's feature network named <net>, e.g. `fd-celeba-attr10k`). The number is how many generated
images are drawn; the reference side uses up to that many images of the reference set, in order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from ..data.dataset import PreparedDataset, split_rows
from ..data.prepare import list_images
from ..env import resolve_precision
from ..errors import GankitError
from .extract import extract_features
from .frechet import frechet_distance, kernel_distance, statistics

_NAME = re.compile(r"^(?P<kind>fid|kid|fd|kd)(?:-(?P<net>[a-z0-9][a-z0-9-]*?))?(?P<n>\d+)k$")


@dataclass
class MetricSpec:
    name: str
    distance: str  # "frechet" or "kernel"
    net: str  # "inception" or a feature-network name
    n: int


def parse_metric(name: str) -> MetricSpec:
    m = _NAME.match(name)
    if not m or (m["kind"] in ("fid", "kid")) != (m["net"] is None):
        raise GankitError(f"unknown metric {name!r}: use fid10k, fid50k, kid10k, or fd-<net>10k / kd-<net>10k "
                          f"for a gankit feature network (e.g. fd-celeba-attr10k)")
    return MetricSpec(name, "frechet" if m["kind"] in ("fid", "fd") else "kernel",
                      "inception" if m["kind"] in ("fid", "kid") else m["net"], int(m["n"]) * 1000)


# --- feature networks ----------------------------------------------------------------------------

@dataclass
class Features:
    """A network mapping images in [0, 1] to features, and the id that keys cached statistics."""
    net: torch.nn.Module
    id: str
    name: str


def load_features(spec: MetricSpec | str, fid_weights: str | None = None, features: str | None = None,
                  ref: str | None = None) -> Features:
    net_name = spec.net if isinstance(spec, MetricSpec) else spec
    if net_name == "inception":
        from .inception import find_fid_weights, load_fid_inception
        path = find_fid_weights(fid_weights)
        return Features(load_fid_inception(path), f"inception-{path.stat().st_size}", "inception")
    location = features or (str(Path(split_rows(ref)[0]) / "features") if ref else None)
    if location is None:
        raise GankitError(f"metric needs the feature network {net_name!r}: pass --features DIR")
    feats = feature_net_at(location)
    if net_name is not None and feats.name != net_name:
        raise GankitError(f"--features {location} holds {feats.name!r}, but the metric asks for {net_name!r}")
    return feats


def feature_net_at(location: str | Path) -> Features:
    """A gankit feature network folder as a metric's feature space."""
    from .featnet import feature_net_id, load_feature_net
    net, report = load_feature_net(location)
    return Features(net, feature_net_id(report), report["name"])


# --- image sets ------------------------------------------------------------------------------------

def image_set(spec: str | Path, limit: int | None = None, batch: int = 50) -> tuple[int, Iterator[np.ndarray]]:
    """(count, uint8 NHWC batches) of a prepared dataset, an .npz of uint8 arrays, or a folder of images.

    A trailing slice selects rows: `data/celeba64[:5000]`, `data/celeba64[5000:]`.
    """
    spec, rows = split_rows(spec)
    path = Path(spec)
    if path.is_dir() and (path / "images.npy").exists():
        arr = PreparedDataset(path, in_memory=False).images
    elif path.is_file() and path.suffix == ".npz":
        d = np.load(path, allow_pickle=False)
        keys = [k for k in d.files if d[k].dtype == np.uint8 and d[k].ndim == 4 and d[k].shape[-1] == 3]
        if not keys:
            raise GankitError(f"{path}: no uint8 (N, H, W, 3) array inside")
        arr = d[keys[0]]
    elif path.is_dir():
        files = list_images(path)[rows][:limit]
        if not files:
            raise GankitError(f"{path}: no images")
        return len(files), _decoded_batches(files, batch)
    else:
        raise GankitError(f"{path}: not a prepared dataset, .npz or folder of images")
    arr = arr[rows]
    arr = arr[:limit] if limit else arr
    return len(arr), (np.asarray(arr[i:i + batch]) for i in range(0, len(arr), batch))


def _decoded_batches(files: list[str], batch: int) -> Iterator[np.ndarray]:
    """Decode to RGB at native size; consecutive images of one size share a batch."""
    group: list[np.ndarray] = []
    for f in files:
        try:
            with Image.open(f) as im:
                a = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except Exception as e:
            raise GankitError(f"{f}: cannot decode ({type(e).__name__}: {e})") from None
        if group and (a.shape != group[0].shape or len(group) == batch):
            yield np.stack(group)
            group = []
        group.append(a)
    if group:
        yield np.stack(group)


def generator_batches(generate: Callable[[int], torch.Tensor], n: int, batch: int = 250) -> Iterator[np.ndarray]:
    """uint8 batches of a generator's images, quantised as if saved to PNG."""
    from ..images import to_uint8
    for i in range(0, n, batch):
        yield to_uint8(generate(min(batch, n - i)))


# --- computing ---------------------------------------------------------------------------------------

def metric_bf16(bf16: bool | None) -> bool:
    """bf16 feature extraction: as asked, else (None) only where GANKIT_PRECISION=bf16: metrics are fp32
    by default so they equal the reference implementations."""
    return bool(bf16) if bf16 is not None else resolve_precision("cpu", "auto", auto="fp32") is not None


def features_of(batches, feats: Features, bf16: bool | None = None) -> np.ndarray:
    return extract_features(feats.net, batches, bf16=metric_bf16(bf16))


def reference_features(ref: str | Path, feats: Features, n: int, bf16: bool | None = None) -> np.ndarray:
    """Features of up to n reference images, cached beside a prepared dataset (keyed by net, n, precision)."""
    ref, bf16 = Path(ref), metric_bf16(bf16)
    cache = None
    if ref.is_dir() and (ref / "images.npy").exists():  # (a sliced spec is no folder: never cached)
        cache = ref / "stats" / f"{feats.id}-n{n}{'-bf16' if bf16 else ''}.npz"
        if cache.exists():
            return np.load(cache)["features"].astype(np.float64)
    count, batches = image_set(ref, n)
    f = features_of(batches, feats, bf16)
    if cache is not None:
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        np.savez(tmp, features=f.astype(np.float32))
        tmp.replace(cache)
    return f


def distance(spec_distance: str, a: np.ndarray, b: np.ndarray) -> dict:
    if spec_distance == "frechet":
        return {"value": frechet_distance(statistics(a), statistics(b))}
    mean, std = kernel_distance(a, b)
    return {"value": mean, "std": std}


def compare_sets(a: str, b: str, feats: Features, kind: str = "frechet", limit: int | None = None,
                 bf16: bool | None = None) -> dict:
    """Distance between two image sets in a feature space."""
    bf16 = metric_bf16(bf16)
    fa = reference_features(a, feats, limit, bf16) if limit else features_of(image_set(a)[1], feats, bf16)
    fb = reference_features(b, feats, limit, bf16) if limit else features_of(image_set(b)[1], feats, bf16)
    return {**distance(kind, fa, fb), "n_a": len(fa), "n_b": len(fb), "features": feats.id, "bf16": bf16}


def evaluate_generator(metric: str, generate: Callable[[int], torch.Tensor], ref: str, fid_weights: str | None = None,
                       features: str | None = None, bf16: bool | None = None, feats: Features | None = None) -> dict:
    """A named metric of a generator against a reference set."""
    spec, bf16 = parse_metric(metric), metric_bf16(bf16)
    feats = feats or load_features(spec, fid_weights, features, ref)
    f_ref = reference_features(ref, feats, spec.n, bf16)
    f_gen = features_of(generator_batches(generate, spec.n), feats, bf16)
    return {"metric": metric, **distance(spec.distance, f_gen, f_ref), "n_generated": len(f_gen),
            "n_reference": len(f_ref), "reference": str(Path(ref).resolve()), "features": feats.id,
            "bf16": bf16}
