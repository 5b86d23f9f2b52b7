"""Frechet distance of Gaussian fits (Heusel et al. 2017) and the kernel inception distance (Binkowski et al. 2018).

The Frechet distance follows pytorch-fid exactly: statistics in float64 (mean, np.cov with
rowvar=False), scipy's sqrtm of sigma1 @ sigma2, 1e-6 added to both diagonals when that product
is singular, and the real part kept when the imaginary part of the diagonal is below 1e-3.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from ..errors import GankitError


@dataclass
class Stats:
    """Mean and covariance (float64) of n feature vectors."""
    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def save(self, path) -> None:
        np.savez(path, mu=self.mu, sigma=self.sigma, n=self.n)

    @classmethod
    def load(cls, path) -> "Stats":
        d = np.load(path, allow_pickle=False)
        return cls(d["mu"], d["sigma"], int(d["n"]))


def statistics(features: np.ndarray) -> Stats:
    """Gaussian fit of features (n, d). Warns when n <= d: the covariance is then singular."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise GankitError(f"need at least 2 feature vectors (n, d), got shape {f.shape}")
    if len(f) <= f.shape[1]:
        warnings.warn(f"{len(f)} samples for {f.shape[1]}-d features: the covariance is singular and the "
                      f"Frechet distance is biased; use more samples than dimensions (fid10k: 10,000)", stacklevel=2)
    return Stats(np.mean(f, axis=0), np.cov(f, rowvar=False), len(f))


def _sqrtm(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # newer SciPy deprecates `disp`; pytorch-fid still passes it
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            out = linalg.sqrtm(a, disp=False)
            return out[0] if isinstance(out, tuple) else out
        except TypeError:  # a SciPy that has removed `disp`
            return linalg.sqrtm(a)


def frechet_distance(s1: Stats, s2: Stats, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)), as pytorch-fid computes it."""
    mu1, mu2 = np.atleast_1d(s1.mu), np.atleast_1d(s2.mu)
    sigma1, sigma2 = np.atleast_2d(s1.sigma), np.atleast_2d(s2.sigma)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise GankitError(f"feature statistics differ in size: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"Frechet distance: singular product; adding {eps} to the covariance diagonals", stacklevel=2)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise GankitError(f"Frechet distance: imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrtm")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def kernel_distance(f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID: unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over
    random subsets as in the KID paper; returns (mean, standard deviation over subsets)."""
    f1, f2 = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    if f1.shape[1] != f2.shape[1]:
        raise GankitError(f"KID: feature sizes differ ({f1.shape[1]} vs {f2.shape[1]})")
    d = f1.shape[1]
    m = min(len(f1), len(f2), subset_size)
    if m < 2:
        raise GankitError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
               - 2 * kxy.mean())
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))
