"""Metrics that keep realism and coverage apart, from the same features as FID, and the Inception Score.

- Improved precision and recall (Kynkaanniemi et al. 2019, k = 3, as stylegan2-ada-pytorch's pr50k3):
  the real manifold is the union of balls around each real feature with the radius of its k-th nearest
  real neighbour; precision is the share of generated features inside it, recall the share of real
  features inside the generated manifold built the same way.
- Density and coverage (Naeem et al. 2020, k = 5): density counts, per generated feature, the real balls
  that hold it (divided by k, mean over generated; 1 on average when the two sets are alike, above 1 where
  generated samples crowd the dense regions); coverage is the share of real balls that hold at least one
  generated feature.
- Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) || p(y)) over 10 splits, from the 1008-way
  logits without the bias (pool3 x the softmax weights, as the original TensorFlow code and torch-fidelity's
  `logits_unbiased`).

Nearest neighbours are computed in float64 in row blocks, so memory stays at block x N distances, on the
device given (the evaluation's).
"""
from __future__ import annotations

import numpy as np
import torch

BLOCK = 1024  # rows of the distance matrix held at once: BLOCK x N float64


def _as_tensor(x: np.ndarray | torch.Tensor, device: str | torch.device) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, dtype=np.float64))
    return t.to(device, torch.float64)


def kth_neighbour_radii(x: torch.Tensor, k: int, block: int = BLOCK) -> torch.Tensor:
    """Distance of each row of x to its k-th nearest other row (the row itself, at 0, is not counted)."""
    if len(x) <= k:
        raise ValueError(f"need more than k={k} points for k-nearest-neighbour radii, got {len(x)}")
    return torch.cat([torch.cdist(x[i:i + block], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), block)])


def balls_holding(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor,
                  block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """(per query: how many balls B(centre, radius) hold it; per centre: whether its ball holds any query)."""
    counts = torch.empty(len(queries), dtype=torch.long, device=queries.device)
    hit = torch.zeros(len(centres), dtype=torch.bool, device=queries.device)
    for i in range(0, len(queries), block):
        inside = torch.cdist(queries[i:i + block], centres) <= radii[None, :]
        counts[i:i + block] = inside.sum(1)
        hit |= inside.any(0)
    return counts, hit


def precision_recall(real, fake, k: int = 3, device: str | torch.device = "cpu") -> dict:
    r, f = _as_tensor(real, device), _as_tensor(fake, device)
    in_real, _ = balls_holding(f, r, kth_neighbour_radii(r, k))
    in_fake, _ = balls_holding(r, f, kth_neighbour_radii(f, k))
    return {"precision": (in_real > 0).double().mean().item(), "recall": (in_fake > 0).double().mean().item(),
            "k": k}


def density_coverage(real, fake, k: int = 5, device: str | torch.device = "cpu") -> dict:
    r, f = _as_tensor(real, device), _as_tensor(fake, device)
    counts, covered = balls_holding(f, r, kth_neighbour_radii(r, k))
    return {"density": counts.double().sum().item() / (k * len(f)), "coverage": covered.double().mean().item(),
            "k": k}


def inception_score(logits, splits: int = 10) -> dict:
    """Mean and standard deviation over `splits` consecutive parts of exp E KL(p(y|x) || p(y))."""
    logp = torch.log_softmax(torch.from_numpy(np.asarray(logits, dtype=np.float64)), dim=1)
    scores = []
    for part in torch.tensor_split(logp, splits):
        log_py = torch.logsumexp(part, 0) - np.log(len(part))  # log of the mean of p(y|x) over the part
        scores.append(torch.exp((part.exp() * (part - log_py)).sum(1).mean()).item())
    return {"value": float(np.mean(scores)), "std": float(np.std(scores)), "splits": splits}
