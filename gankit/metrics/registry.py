"""Metrics named with their protocol, image sets to feed them, and cached reference statistics.

Names: `<kind>[-<net>]<n>k[-clean]`.
  kind  fid, kid    Frechet / kernel distance in the FID Inception features (no net part)
        fd, kd      the same in gankit's feature network <net> (e.g. `fd-celeba-attr10k`)
        pr          improved precision and recall, k = 3 (Kynkaanniemi et al. 2019)
        dc          density and coverage, k = 5 (Naeem et al. 2020)
        is          Inception Score, 10 splits (Inception only)
  net   pr and dc take an optional <net>: without one they use the Inception features
  n     thousands of generated images; the reference side uses up to that many images, in order
  clean clean-fid's resize to 299 px (antialiased bicubic on float32) instead of pytorch-fid's bilinear;
        Inception metrics only (gankit's networks see images at their own resolution)
Several metrics evaluated together share one pass of generation and feature extraction.
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

_NAME = re.compile(r"^(?P<kind>fid|kid|fd|kd|pr|dc|is)(?:-(?P<net>[a-z0-9][a-z0-9-]*?))?(?P<n>\d+)k"
                   r"(?:-(?P<resize>clean))?$")
KINDS = {"fid": "frechet", "kid": "kernel", "fd": "frechet", "kd": "kernel", "pr": "pr", "dc": "dc", "is": "is"}
DISTANCES = ("frechet", "kernel")  # the kinds with one value, lower is better (in-training metrics)


@dataclass
class MetricSpec:
    name: str
    kind: str  # frechet | kernel | pr | dc | is
    net: str  # "inception" or a feature-network name
    n: int
    resize: str = "legacy"  # legacy | clean (Inception only)


def parse_metric(name: str) -> MetricSpec:
    m = _NAME.match(name)
    usage = (f"unknown metric {name!r}: use fid10k, kid10k, is10k, pr10k, dc10k (Inception; add -clean for "
             f"clean-fid's resize), or fd-<net>10k, kd-<net>10k, pr-<net>10k, dc-<net>10k for a gankit feature "
             f"network (e.g. fd-celeba-attr10k)")
    if not m:
        raise GankitError(usage)
    kind, net = m["kind"], m["net"]
    if (kind in ("fid", "kid", "is") and net is not None) or (kind in ("fd", "kd") and net is None):
        raise GankitError(usage)
    if net is not None and m["resize"]:
        raise GankitError(f"metric {name!r}: -clean chooses the resize to the Inception network's 299 px; "
                          f"gankit's feature networks see images at their own resolution")
    return MetricSpec(name, KINDS[kind], net or "inception", int(m["n"]) * 1000, m["resize"] or "legacy")


# --- feature networks ----------------------------------------------------------------------------

@dataclass
class Features:
    """A network mapping images in [0, 1] to features, and the id that keys cached statistics."""
    net: torch.nn.Module
    id: str
    name: str
    prepare: Callable[[np.ndarray], np.ndarray] | None = None  # uint8 NHWC batch -> what the net is fed
    logits: Callable[[torch.Tensor], torch.Tensor] | None = None  # features -> class logits (IS)


def load_features(spec: MetricSpec | str, fid_weights: str | None = None, features: str | None = None,
                  ref: str | None = None) -> Features:
    net_name = spec.net if isinstance(spec, MetricSpec) else spec
    if net_name == "inception":
        from .inception import find_fid_weights, load_fid_inception
        path = find_fid_weights(fid_weights)
        return inception_features(load_fid_inception(path), f"inception-{path.stat().st_size}",
                                  spec.resize if isinstance(spec, MetricSpec) else "legacy")
    location = features or (str(Path(split_rows(ref)[0]) / "features") if ref else None)
    if location is None:
        raise GankitError(f"metric needs the feature network {net_name!r}: pass --features DIR")
    feats = feature_net_at(location)
    if net_name is not None and feats.name != net_name:
        raise GankitError(f"--features {location} holds {feats.name!r}, but the metric asks for {net_name!r}")
    return feats


def inception_features(net: torch.nn.Module, id: str, resize: str = "legacy") -> Features:
    """The FID Inception network as a feature space: pool3 features, the resize chosen, and the
    1008-way logits without the bias for the Inception Score."""
    from .resize import clean_resize
    return Features(net, id + ("-clean" if resize == "clean" else ""), "inception",
                    prepare=clean_resize if resize == "clean" else None,
                    logits=lambda f: f @ net.fc.weight.detach().to(f.dtype).T)


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


def features_of(batches, feats: Features, bf16: bool | None = None, device: str | torch.device = "cpu") -> np.ndarray:
    if feats.prepare is not None:
        batches = map(feats.prepare, batches)
    return extract_features(feats.net, batches, device=device, bf16=metric_bf16(bf16))


def reference_features(ref: str | Path, feats: Features, n: int, bf16: bool | None = None,
                       device: str | torch.device = "cpu") -> np.ndarray:
    """Features of up to n reference images, cached beside a prepared dataset (keyed by net, n, precision)."""
    ref, bf16 = Path(ref), metric_bf16(bf16)
    cache = None
    if ref.is_dir() and (ref / "images.npy").exists():  # (a sliced spec is no folder: never cached)
        cache = ref / "stats" / f"{feats.id}-n{n}{'-bf16' if bf16 else ''}.npz"
        if cache.exists():
            return np.load(cache)["features"].astype(np.float64)
    count, batches = image_set(ref, n)
    f = features_of(batches, feats, bf16, device)
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
                 bf16: bool | None = None, device: str | torch.device = "cpu") -> dict:
    """Distance between two image sets in a feature space."""
    bf16 = metric_bf16(bf16)
    fa = reference_features(a, feats, limit, bf16, device) if limit else features_of(image_set(a)[1], feats, bf16, device)
    fb = reference_features(b, feats, limit, bf16, device) if limit else features_of(image_set(b)[1], feats, bf16, device)
    return {**distance(kind, fa, fb), "n_a": len(fa), "n_b": len(fb), "features": feats.id, "bf16": bf16}


def score(spec: MetricSpec, f_gen: np.ndarray, f_ref: np.ndarray, feats: Features,
          device: str | torch.device = "cpu") -> dict:
    """One metric from features already extracted (the first spec.n of each side)."""
    from .manifold import density_coverage, inception_score, precision_recall
    f_gen, f_ref = f_gen[:spec.n], f_ref[:spec.n]
    if spec.kind in DISTANCES:
        return distance(spec.kind, f_gen, f_ref)
    if spec.kind == "pr":
        return precision_recall(f_ref, f_gen, device=device)
    if spec.kind == "dc":
        return density_coverage(f_ref, f_gen, device=device)
    with torch.no_grad():
        return inception_score(feats.logits(torch.from_numpy(f_gen)).numpy())


def evaluate_many(metrics: list[str | MetricSpec], generate: Callable[[int], torch.Tensor], ref: str,
                  fid_weights: str | None = None, features: str | None = None, bf16: bool | None = None,
                  feats: Features | None = None, device: str | torch.device = "cpu", world=None) -> list[dict]:
    """Named metrics of a generator against a reference set. The generator runs once (for the largest n)
    and each feature space extracts once, on `device`; every metric reads the first n of those features.
    Under torchrun (`world` active) each rank generates and extracts its share (its own `generate`, so
    its own codes), the features are gathered, and rank 0 alone scores: the others return []."""
    specs = [m if isinstance(m, MetricSpec) else parse_metric(m) for m in metrics]
    bf16 = metric_bf16(bf16)
    n_max = max(s.n for s in specs)
    spaces: dict[tuple, Features] = {}
    if feats is not None and len({(s.net, s.resize) for s in specs}) > 1:
        raise GankitError(f"metrics {', '.join(s.name for s in specs)}: one loaded feature network (feats=) "
                          f"cannot serve several feature spaces; leave feats out to load each")
    for s in specs:
        spaces.setdefault((s.net, s.resize), feats or load_features(s, fid_weights, features, ref))
    n_here = -(-n_max // world.size) if world is not None and world.active else n_max
    batches = list(generator_batches(generate, n_here)) if len(spaces) > 1 else generator_batches(generate, n_here)
    gen_features, ref_features = {}, {}
    for key, space in spaces.items():
        gen_features[key] = features_of(batches, space, bf16, device)
        if n_here != n_max:
            from ..training.distributed import gather_rows
            gen_features[key] = gather_rows(gen_features[key], world)[:n_max]
    if world is not None and not world.main:
        return []
    for key, space in spaces.items():
        if any(s.kind != "is" for s in specs if (s.net, s.resize) == key):
            ref_features[key] = reference_features(ref, space, max(s.n for s in specs if (s.net, s.resize) == key),
                                                   bf16, device)
    results = []
    for s in specs:
        key, space = (s.net, s.resize), spaces[(s.net, s.resize)]
        f_ref = ref_features.get(key, np.zeros((0, 0)))
        results.append({"metric": s.name, **score(s, gen_features[key], f_ref, space, device),
                        "n_generated": min(s.n, len(gen_features[key])),
                        **({"n_reference": min(s.n, len(f_ref))} if s.kind != "is" else {}),
                        "reference": str(Path(ref).resolve()), "features": space.id, "bf16": bf16})
    return results


def evaluate_generator(metric: str, generate: Callable[[int], torch.Tensor], ref: str, fid_weights: str | None = None,
                       features: str | None = None, bf16: bool | None = None, feats: Features | None = None,
                       device: str | torch.device = "cpu") -> dict:
    """A named metric of a generator against a reference set."""
    return evaluate_many([metric], generate, ref, fid_weights, features, bf16, feats, device)[0]
