"""Moderate coreset (Xia et al., ICLR 2023): keep the examples of moderate distance to their class median.

The distance of each example to the coordinate-wise median embedding of its (given) class is ranked, and the
middle band of quantiles [½ − f/2, ½ + f/2] is kept: neither the most typical nor the most atypical
examples. The official code sorts the distances of all classes together (no per-class quota) and writes
out the complement of the band; this module returns the kept band itself.

The band is not a top-k of a score, so the method is registered with ``kind="sampling"`` (it returns its
indices directly) and applies :func:`~robustprune.selection.budget.class_quotas` itself when class-balanced.
"""

from __future__ import annotations

import numpy as np

from robustprune.selection.budget import class_quotas
from robustprune.selection.registry import register
from robustprune.selection.result import MethodOutput

__all__ = ["moderate_scores", "middle_band", "moderate"]


def _class_blocks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Example indices grouped by class (stable) and the start of each class's block, shape (K+1,)."""
    members = np.argsort(labels, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(labels))))
    return members, bounds


def moderate_scores(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Distance to the class median; examples near the MEDIAN of these distances are kept (not a top-k).

    d_i = ‖h_i − m_{y_i}‖₂ where m_c is the coordinate-wise median of the features of the examples whose
    given label is c.

    Parameters
    ----------
    features : ndarray, shape (N, D)
    labels : ndarray of int, shape (N,)

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    h = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    members, bounds = _class_blocks(labels)
    centres = np.zeros((bounds.shape[0] - 1, h.shape[1]), dtype=np.float64)
    for c in range(centres.shape[0]):  # one median per class (K iterations, not N)
        idx = members[bounds[c] : bounds[c + 1]]
        if idx.size:
            centres[c] = np.median(h[idx], axis=0)
    diff = h - centres[labels]
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


def _band_ranks(n: int, k: int) -> np.ndarray:
    """Ranks ``[s, s + k)``, ``s = (n − k) // 2``, ordered by ``|rank − (n − 1)/2|`` (ties: lower rank)."""
    s = (n - k) // 2
    ranks = np.arange(s, s + k)
    return ranks[np.argsort(np.abs(2 * ranks - (n - 1)), kind="stable")]


def middle_band(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` values in the middle of the sorted order, nearest the median rank first.

    Values are ranked ascending (ties by position); the band is ranks ``[s, s + k)`` with
    ``s = (n − k) // 2``, so when ``n − k`` is odd the extra rank is on the low side. The result is ordered
    by ``|rank − (n − 1)/2|`` (ties: lower rank first), which makes a smaller ``k``'s band a prefix.

    Returns
    -------
    ndarray of int64, shape (k,)
    """
    ranked = np.argsort(values, kind="stable")
    return ranked[_band_ranks(values.shape[0], k)].astype(np.int64)


@register(
    "moderate",
    kind="sampling",
    requires=("features", "labels"),
    description="middle quantile band of distances to the class-median embedding (Moderate-DS)",
)
def moderate(
    *,
    features: np.ndarray,
    labels: np.ndarray,
    budget: int,
    class_balanced: bool = False,
) -> MethodOutput:
    """Moderate-DS: keep the ``budget`` examples whose class-median distance is closest to the median rank.

    Unbalanced (the original): the distances of all classes are ranked together and the middle band of
    ``budget`` ranks is kept (quantiles ½ ± f/2, with ``round``-free arithmetic so the count is exact).
    Class-balanced: each class keeps the middle band of its own distances, of its
    :func:`~robustprune.selection.budget.class_quotas` size; the picks are ordered by their normalised
    distance from their class's median rank (ties: lower class index, then within-class order).

    Returns
    -------
    MethodOutput
        ``indices`` (budget,) from the band's centre outwards; ``scores`` (N,) = the distances d_i.
    """
    d = moderate_scores(features, labels)
    k = int(budget)
    if not class_balanced:
        return MethodOutput(indices=middle_band(d, k), scores=d)
    quotas = class_quotas(labels, k)
    members, bounds = _class_blocks(labels)
    parts, keys, classes = [], [], []
    for c in np.flatnonzero(quotas):
        idx = members[bounds[c] : bounds[c + 1]]
        n_c, q = idx.shape[0], int(quotas[c])
        ranks = _band_ranks(n_c, q)
        parts.append(idx[np.argsort(d[idx], kind="stable")[ranks]])
        # normalised distance of each pick's rank from the class's median rank (0 at the centre)
        keys.append(np.abs(2 * ranks - (n_c - 1)) / n_c)
        classes.append(np.full(q, c))
    order = np.lexsort((np.concatenate(classes), np.concatenate(keys)))
    return MethodOutput(indices=np.concatenate(parts)[order].astype(np.int64), scores=d)
