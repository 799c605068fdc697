"""Cal: contrastive active learning (Margatina et al., EMNLP 2021) as a pruning score.

For each example, its ``neighbors`` nearest examples in the embedding space (Euclidean, itself excluded; within
its given class by default, as DeepCore does when balancing) and the mean symmetric KL divergence between its
prediction and theirs. The CAL paper keeps the *largest* divergence (the examples the model treats most
differently from their neighbours); DeepCore keeps the smallest (``spec/baselines.md`` 2.9). Probabilities
are clipped to ``epsilon`` (DeepCore has none). The kNN search is blocked: no N×N matrix is held.
"""

from __future__ import annotations

import numpy as np
import torch

from robustprune.selection.registry import register

__all__ = ["cal_scores", "knn_indices"]

_BLOCK = 2048


def knn_indices(features: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` nearest other rows of each row (Euclidean; ties: lower index), shape (N, k), blocked."""
    x = torch.as_tensor(np.asarray(features, dtype=np.float64))
    n = x.shape[0]
    sq = (x * x).sum(dim=1)
    out = np.empty((n, k), dtype=np.int64)
    for a in range(0, n, _BLOCK):
        d = sq[a : a + _BLOCK, None] - 2.0 * x[a : a + _BLOCK] @ x.T + sq[None, :]
        rows = torch.arange(d.shape[0])
        d[rows, rows + a] = float("inf")  # not its own neighbour
        # stable ascending sort: equal distances keep the lower index first
        out[a : a + _BLOCK] = torch.sort(d, dim=1, stable=True).indices[:, :k].numpy()
    return out


def cal_scores(
    probs: np.ndarray, features: np.ndarray, labels: np.ndarray | None = None, neighbors: int = 10,
    epsilon: float = 1e-8,
) -> np.ndarray:  # fmt: skip
    """Higher = more contrastive (kept): mean symmetric KL of an example's prediction to its neighbours'.

    With ``labels`` the neighbours are searched within the example's class; a class with a single example
    scores 0.
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), epsilon, None)
    p /= p.sum(axis=1, keepdims=True)
    logp = np.log(p)
    groups = [np.arange(p.shape[0])] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    scores = np.zeros(p.shape[0])
    for members in groups:
        k = min(int(neighbors), members.shape[0] - 1)
        if k < 1:
            continue
        nb = members[knn_indices(np.asarray(features)[members], k)]  # (n_c, k) global indices
        pi, li = p[members][:, None, :], logp[members][:, None, :]
        scores[members] = (0.5 * ((pi - p[nb]) * (li - logp[nb])).sum(-1)).mean(axis=1)
    return scores


@register(
    "cal",
    kind="score",
    requires=("probs", "features"),
    optional=("labels",),
    keep="high",
    description="Cal: largest mean symmetric KL to the k nearest neighbours in embedding space (CAL paper)",
)
def cal(
    *,
    probs: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray | None = None,
    neighbors: int = 10,
    within_class: bool = True,
    epsilon: float = 1e-8,
) -> np.ndarray:
    """Cal scores; ``within_class`` searches neighbours inside each given class (needs labels)."""
    if not 1 <= int(neighbors) <= 99:
        raise ValueError(f"neighbors must be in 1..99, got {neighbors}")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
    if within_class and labels is None:
        raise ValueError("within_class=True needs labels; pass labels=... or within_class=False")
    return cal_scores(probs, features, labels if within_class else None, neighbors, epsilon)
