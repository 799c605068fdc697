"""Herding (Welling, ICML 2009), as iCaRL uses it for exemplars: pick the points whose running mean tracks the
mean embedding.

At step t, with the chosen set S (|S| = t), the target is ``(t + 1)·μ − Σ_{j∈S} h_j`` and the unchosen point
*closest* to it (Euclidean) is added, so that the mean of the chosen points stays as close to μ as one more
point allows. (DeepCore's Herding takes the *farthest* point, an argmax that selects outliers; see
``spec/baselines.md`` 2.8.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from robustprune.selection.core.greedy import argmax_greedy, per_class_greedy
from robustprune.selection.registry import register
from robustprune.selection.result import MethodOutput

if TYPE_CHECKING:
    import torch

__all__ = ["herding", "herding_order"]


def herding_order(features: np.ndarray, k: int, device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` herding picks of ``features`` (N, D) and each pick's distance to its target.

    Runs as :func:`~robustprune.selection.core.greedy.argmax_greedy` over the negated squared distance to the
    target, updated in O(N·D) per pick (no host synchronisation on a GPU). Ties go to the lowest index.
    """
    import torch

    n = features.shape[0]
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    dtype = torch.float64 if features.dtype == np.float64 else torch.float32
    x = torch.as_tensor(np.asarray(features)).to(device=device, dtype=dtype)
    mu = x.mean(dim=0)
    sq = (x * x).sum(dim=1)
    chosen_sum = torch.zeros_like(mu)
    count = torch.zeros((), dtype=dtype, device=x.device)
    picked = torch.zeros(n, dtype=torch.bool, device=x.device)
    # score = -||target - x_i||², target = (t + 1)·μ − Σ_S h_j; picked points are -inf
    score = torch.empty(n, dtype=dtype, device=x.device)

    def refresh() -> None:
        target = (count + 1) * mu - chosen_sum
        torch.addmv(sq, x, target, alpha=-2.0, out=score)  # ||x||² − 2 x·target
        score.add_((target * target).sum()).neg_()
        score.masked_fill_(picked, float("-inf"))

    def update(cur: torch.Tensor) -> None:
        nonlocal chosen_sum, count
        picked.index_fill_(0, cur, True)
        chosen_sum = chosen_sum + x.index_select(0, cur)[0]
        count = count + 1
        refresh()

    refresh()
    order, values = argmax_greedy(score, update, k)
    return order.cpu().numpy(), (-values).clamp_min(0.0).sqrt().cpu().numpy().astype(np.float64)


@register(
    "herding",
    kind="greedy",
    requires=("features",),
    optional=("labels",),
    balance="proportional",
    default_class_balanced=True,
    description="herding: the points whose running mean tracks the mean embedding (closest to the target)",
)
def herding(
    *,
    features: np.ndarray,
    labels: np.ndarray | None = None,
    budget: int,
    class_balanced: bool = True,
    device: str = "cpu",
) -> MethodOutput:
    """Herding selection on ``features``; per class (quotas from :func:`class_quotas`) when balanced.

    ``gains`` holds each pick's Euclidean distance to its herding target (smaller = the running mean stays
    closer to μ). Balanced picks are interleaved class by class in pick order.
    """
    from robustprune._device import resolve_device

    dev = resolve_device(device)
    if not class_balanced:
        order, dist = herding_order(features, budget, dev)
        return MethodOutput(indices=order, gains=dist)
    if labels is None:
        raise ValueError("class_balanced=True needs labels")
    idx, gains = per_class_greedy(labels, budget, lambda members, k, _c: herding_order(features[members], k, dev))
    return MethodOutput(indices=idx, gains=gains)
