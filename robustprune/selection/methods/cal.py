"""Cal: contrastive active learning (Margatina et al., EMNLP 2021) as a pruning score.

For each example, its ``neighbors`` nearest examples in the embedding space (Euclidean, itself excluded; within
its given class by default, as DeepCore does when balancing) and the mean symmetric KL divergence between its
prediction and theirs. The CAL paper keeps the *largest* divergence (the examples the model treats most
differently from their neighbours); DeepCore keeps the smallest (``spec/baselines.md`` 2.9). Probabilities
are clipped to ``epsilon`` (DeepCore has none). The kNN search is blocked: no N×N matrix is held.

Active learning (``select(..., start=S0)``): in the CAL paper's own form the neighbours of a candidate are
its k nearest *labelled* examples, so with a non-empty starting set S0 they are searched among S0 only
(within the candidate's given class by default; a candidate whose class has no member in S0 scores 0). An
empty S0 is pruning (neighbours among all examples).
"""

from __future__ import annotations

import numpy as np

from robustprune.selection.core.knn import knn_among, knn_indices
from robustprune.selection.registry import register

__all__ = ["cal_scores"]


def cal_scores_labelled(
    probs: np.ndarray, features: np.ndarray, start: np.ndarray, labels: np.ndarray | None = None,
    neighbors: int = 10, epsilon: float = 1e-8,
) -> np.ndarray:  # fmt: skip
    """The CAL paper's active-learning score: mean symmetric KL of each example's prediction to those of its
    ``neighbors`` nearest members of ``start`` (the labelled set; itself excluded), searched within its given
    class when ``labels`` are given. An example with no such member scores 0."""
    p = np.clip(np.asarray(probs, dtype=np.float64), epsilon, None)
    p /= p.sum(axis=1, keepdims=True)
    logp = np.log(p)
    n = p.shape[0]
    in_start = np.zeros(n, dtype=bool)
    in_start[np.asarray(start, dtype=np.int64)] = True
    groups = [np.ones(n, dtype=bool)] if labels is None else [labels == c for c in np.unique(labels)]
    scores = np.zeros(n)
    for g in groups:
        refs = np.flatnonzero(g & in_start)
        # members of S0 have one reference fewer (themselves), so they are searched apart
        for queries, avail in ((np.flatnonzero(g & ~in_start), refs.size), (refs, refs.size - 1)):
            k = min(int(neighbors), avail)
            if k < 1 or not queries.size:
                continue
            nb = knn_among(features, queries, refs, k)
            pi, li = p[queries][:, None, :], logp[queries][:, None, :]
            scores[queries] = (0.5 * ((pi - p[nb]) * (li - logp[nb])).sum(-1)).mean(axis=1)
    return scores


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
    start: np.ndarray | None = None,
) -> np.ndarray:
    """Cal scores; ``within_class`` searches neighbours inside each given class (needs labels). With a
    non-empty ``start`` (the labelled set S0) the neighbours are searched among S0 only (CAL's active-learning
    form, :func:`cal_scores_labelled`)."""
    if not 1 <= int(neighbors) <= 99:
        raise ValueError(f"neighbors must be in 1..99, got {neighbors}")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
    if within_class and labels is None:
        raise ValueError("within_class=True needs labels; pass labels=... or within_class=False")
    groups = labels if within_class else None
    if start is not None and len(start):
        return cal_scores_labelled(probs, features, start, groups, neighbors, epsilon)
    return cal_scores(probs, features, groups, neighbors, epsilon)
