"""The one place that turns per-example scores into selected indices.

Score methods never implement top-k or per-class quotas themselves; they return a score and the registry
says which end is kept. Ties are broken by the lowest index, so results are deterministic.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_fraction", "resolve_budget", "class_quotas", "rank_by_score", "select_by_scores"]


def check_fraction(fraction: object) -> float:
    """The kept share as a float in (0, 1]; the one check of a fraction (runs, sweeps and ``select`` use it)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating, np.integer)):
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    f = float(fraction)
    if not math.isfinite(f) or f <= 0 or f > 1:
        raise ValueError(f"fraction must be in (0, 1] (the share of examples kept), got {fraction}")
    return f


def resolve_budget(
    n: int, fraction: float | None = None, budget: int | None = None, candidates: int | None = None
) -> int:
    """Turn ``fraction`` (kept share in (0, 1]) or ``budget`` (a count in [1, N]) into a count.

    Exactly one of the two must be given; ``round(fraction * N)`` is used, and at least one example is kept.
    ``candidates``, when given, is the number of examples that may be chosen: a larger count is an error.
    """
    if (fraction is None) == (budget is None):
        raise ValueError("give exactly one of fraction (kept share, 0 < f <= 1) or budget (a count)")
    if fraction is not None:
        k = max(1, min(n, int(round(check_fraction(fraction) * n))))
        if candidates is not None and k > candidates:
            raise ValueError(
                f"fraction {fraction} of {n} examples is {k} picks, more than the {candidates} candidates; "
                f"ask for at most {candidates} (budget=...)"
            )
        return k
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        if isinstance(budget, float) and budget.is_integer():
            budget = int(budget)
        else:
            raise ValueError(f"budget must be a whole number of examples, got {budget!r}")
    b = int(budget)
    if b < 1:
        raise ValueError(f"budget must be at least 1, got {b}")
    if candidates is not None and b > candidates:
        raise ValueError(
            f"budget ({b}) exceeds the number of candidates ({candidates}): the budget counts only new picks, "
            f"which come from the candidates; use at most {candidates}"
        )
    if b > n:
        raise ValueError(f"budget ({b}) exceeds the number of examples ({n}); use at most {n} or fraction=1")
    return b


def class_quotas(labels: np.ndarray, budget: int, num_classes: int | None = None) -> np.ndarray:
    """Split ``budget`` over classes in proportion to their sizes, summing to exactly ``budget``.

    Each class c gets ``floor(budget * n_c / N)``; the remaining picks go to the classes with the largest
    fractional remainders (ties: larger class, then lower class index). No class gets more than it has;
    any excess is handed on the same way to classes that still have room.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    budget : int, 0 <= budget <= N
    num_classes : int, optional

    Returns
    -------
    ndarray of int64, shape (K,)
    """
    counts = np.bincount(labels, minlength=num_classes or 0).astype(np.int64)
    n = int(counts.sum())
    if not 0 <= budget <= n:
        raise ValueError(f"budget must be in [0, {n}], got {budget}")
    exact = counts * (budget / n) if n else np.zeros_like(counts, dtype=float)
    quota = np.minimum(np.floor(exact).astype(np.int64), counts)
    left = budget - int(quota.sum())
    remainder = exact - quota
    while left > 0:
        room = counts - quota
        cand = np.flatnonzero(room > 0)
        # largest remainder first, then larger class, then lower index (lexsort: last key is primary)
        order = cand[np.lexsort((cand, -counts[cand], -remainder[cand]))]
        take = order[:left]
        quota[take] += 1
        left -= take.size
        remainder[take] = -1.0  # each class gets at most one extra per round
    return quota


def rank_by_score(scores: np.ndarray, keep: str = "high") -> np.ndarray:
    """All indices ordered from most to least wanted; ties keep the lowest index first."""
    if keep == "high":
        key = -scores.astype(np.float64) if scores.dtype != np.float64 else -scores
    elif keep == "low":
        key = scores
    else:
        raise ValueError(f"keep must be 'high' or 'low', got {keep!r}")
    return np.argsort(key, kind="stable")


def select_by_scores(
    scores: np.ndarray,
    budget: int,
    *,
    keep: str = "high",
    labels: np.ndarray | None = None,
    class_balanced: bool = False,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the ``budget`` examples with the highest (``keep="high"``) or lowest scores.

    With ``class_balanced=True`` each class contributes its :func:`class_quotas` share, taken from its own
    best-scored examples. The result is in rank order (best first), across classes.

    ``candidates`` (ascending int indices, optional) restricts the choice to those examples: only their scores
    are ranked (ties: lowest index), and the class quotas are split over the candidates' labels.
    ``budget`` must not exceed their number.

    Returns
    -------
    ndarray of int64, shape (budget,)
    """
    if candidates is not None:
        cand = np.asarray(candidates, dtype=np.int64)
        if budget > cand.shape[0]:
            raise ValueError(f"budget ({budget}) exceeds the number of candidates ({cand.shape[0]})")
        sub = select_by_scores(
            np.asarray(scores)[cand], budget, keep=keep, labels=None if labels is None else np.asarray(labels)[cand],
            class_balanced=class_balanced,
        )  # fmt: skip
        return cand[sub]
    order = rank_by_score(scores, keep)
    if not class_balanced:
        return order[:budget].astype(np.int64)
    if labels is None:
        raise ValueError("class_balanced=True needs labels")
    quotas = class_quotas(labels, budget)
    # position of each example within its class, in rank order
    ranked_labels = labels[order]
    k = quotas.shape[0]
    within = np.empty_like(order)
    # vectorised "rank within class": stable sort the ranked labels, then count
    by_class = np.argsort(ranked_labels, kind="stable")
    starts = np.concatenate(([0], np.cumsum(np.bincount(ranked_labels, minlength=k))[:-1]))
    sizes = np.bincount(ranked_labels, minlength=k)
    within[by_class] = np.arange(order.size) - np.repeat(starts, sizes)
    keep_mask = within < quotas[ranked_labels]
    return order[keep_mask].astype(np.int64)
