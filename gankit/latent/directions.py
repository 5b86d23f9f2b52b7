"""Directions in z: the mean code, PCA eigendirections, and attribute directions."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PCA:
    mean: torch.Tensor        # (dim,) the mean code ("eigencentre")
    components: torch.Tensor  # (k, dim) orthonormal rows, largest variance first
    variance: torch.Tensor    # (k,) variance of the codes along each component
    share: torch.Tensor       # (k,) fraction of the total variance along each component


def pca(codes: torch.Tensor, k: int | None = None) -> PCA:
    """Principal directions of a set of codes (N, dim), by SVD of the centred codes in float64."""
    c = codes.detach().double()
    mean = c.mean(0)
    _, s, vt = torch.linalg.svd(c - mean, full_matrices=False)
    var = s ** 2 / max(len(c) - 1, 1)
    k = min(k or len(var), len(var))
    return PCA(mean.float(), vt[:k].float(), var[:k].float(), (var[:k] / var.sum().clamp_min(1e-30)).float())


def _weights(positive: torch.Tensor) -> torch.Tensor:
    w = positive.detach().float()
    if float(w.sum()) < 1 or float((1 - w).sum()) < 1:
        raise ValueError(f"an attribute direction needs codes with and without the attribute "
                         f"(got {float(w.sum()):.1f} of {len(w)} with it)")
    return w


def difference_of_means(codes: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean code of the rows with the attribute minus the mean of those without (White 2016's
    attribute vectors). `positive` is a boolean mask or soft labels in [0, 1] (an attribute network's
    probabilities), which weigh each code into both means."""
    w = _weights(positive)[:, None]
    c = codes.detach().float()
    return (w * c).sum(0) / w.sum() - ((1 - w) * c).sum(0) / (1 - w).sum()


def linear_direction(codes: torch.Tensor, positive: torch.Tensor, steps: int = 200,
                     weight_decay: float = 1e-3) -> torch.Tensor:
    """Normal of a logistic-regression boundary separating codes with the attribute from those
    without (L-BFGS on the standardised codes, mapped back to code space); unit length. `positive`
    is a boolean mask or soft labels in [0, 1]."""
    y = _weights(positive)
    c = codes.detach().float()
    mu, sd = c.mean(0), c.std(0).clamp_min(1e-6)
    xs = (c - mu) / sd
    w = torch.zeros(c.shape[1], device=c.device, requires_grad=True)
    b = torch.zeros((), device=c.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, y) + weight_decay * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    normal = w.detach() / sd  # w . (z - mu) / sd  =  (w / sd) . z + const
    return normal / normal.norm().clamp_min(1e-12)


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm().clamp_min(1e-12)


def spread(codes: torch.Tensor, direction: torch.Tensor) -> float:
    """Standard deviation of the codes along a direction (the step unit of attribute walks)."""
    return float((codes @ unit(direction)).std())


def offsets(z: torch.Tensor, direction: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
    """(rows, len(amounts), dim): each code moved by each amount along `direction`."""
    return z[:, None, :] + amounts[None, :, None] * direction[None, None, :]
