"""confident_filter: drop the examples confident learning flags as label errors
(:func:`~robustprune.selection.core.confident_learning.label_issue_mask`), then sample the budget uniformly
from the rest, per class."""

from __future__ import annotations

import numpy as np

from robustprune.seeding import stream
from robustprune.selection.budget import class_quotas, rank_by_score
from robustprune.selection.core.confident_learning import label_issues
from robustprune.selection.registry import Fact, register
from robustprune.selection.result import MethodOutput

__all__ = ["confident_filter", "QUOTA_BASES"]


#: Valid values of the ``quotas`` option of :func:`confident_filter`.
QUOTA_BASES = ("given", "kept")


def _capped_quotas(labels: np.ndarray, budget: int, cap: np.ndarray) -> np.ndarray:
    """:func:`class_quotas` over ``labels`` (all examples), each class capped at ``cap``.

    Picks a class cannot fill are handed on to the classes with room, again in proportion to their sizes.
    ``budget`` must be at most ``cap.sum()``.
    """
    k = cap.shape[0]
    quota = np.minimum(class_quotas(labels, budget, k), cap)
    left = budget - int(quota.sum())
    while left > 0:  # each round fills at least one pick; at most K rounds in practice
        room = np.flatnonzero(quota < cap)
        sub = labels[np.isin(labels, room)]
        extra = np.minimum(class_quotas(sub, min(left, sub.shape[0]), k), cap - quota)
        quota += extra
        left -= int(extra.sum())
    return quota


def _take_per_class(ranked: np.ndarray, ranked_labels: np.ndarray, quota: np.ndarray) -> np.ndarray:
    """The first ``quota[c]`` entries of class c from ``ranked`` (already in preference order), in that order."""
    k = quota.shape[0]
    by_class = np.argsort(ranked_labels, kind="stable")
    sizes = np.bincount(ranked_labels, minlength=k)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    within = np.empty(ranked.shape[0], dtype=np.int64)
    within[by_class] = np.arange(ranked.shape[0]) - np.repeat(starts, sizes)
    return ranked[within < quota[ranked_labels]]


@register(
    "confident_filter",
    kind="sampling",
    requires=("labels", "probs"),
    balance="proportional",
    default_class_balanced=True,
    description="confident learning: drop likely label errors (prune by noise rate), then sample the rest uniformly",
    facts=(
        Fact("flagged", "{} examples flagged as likely label errors", row="label filter"),
        Fact("topped_up", ", {} of them picked to fill the budget", row="label filter", skip=(0,)),
        Fact("estimated_noise_rate", "; estimated noise rate {:.1%}", row="label filter"),
    ),
)
def confident_filter(
    *,
    labels: np.ndarray,
    probs: np.ndarray,
    budget: int,
    class_balanced: bool = True,
    seed: int = 0,
    quotas: str = "given",
) -> MethodOutput:
    """Drop the examples :func:`label_issue_mask` flags, then sample ``budget`` of the rest uniformly.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        Given labels.
    probs : ndarray of float, shape (N, K)
        Predicted class probabilities (out-of-sample, e.g. from a warmed-up model).
    budget : int, 0 <= budget <= N
    class_balanced : bool
        Split the budget over the given classes (see ``quotas``), then sample uniformly inside each class
        from its kept examples. False: plain uniform sampling over all kept examples.
    seed : int
        The only randomness is ``stream(seed, "confident_filter")``.
    quotas : {"given", "kept"}
        With ``class_balanced``, what the per-class quotas are proportional to. "given" (default): the
        class sizes of all given labels, i.e. the shared ``class_quotas(labels, budget)`` every
        "proportional" method uses; a class with fewer kept examples than its quota hands the rest on to
        classes with room (in proportion to their sizes). "kept": the class sizes of the kept examples,
        ``class_quotas(labels[kept], budget)``, closer to the true class distribution when noise is
        asymmetric.

    Returns
    -------
    MethodOutput
        ``indices`` (budget,) in pick order: the uniform sample of kept examples in random order, then any
        top-up. No flagged example is picked while ``budget`` <= the number of kept examples. Otherwise all
        kept examples come first (in random order) and flagged ones follow by decreasing probability of
        their given label (least suspicious first; ties lower index). ``scores`` (N,) float64 is the
        probability of the given label (higher = less suspicious). ``info`` holds ``flagged`` (count),
        ``flagged_fraction``, ``estimated_noise_rate`` (``1 - trace(Q)``) and ``topped_up`` (flagged
        examples selected).
    """
    if quotas not in QUOTA_BASES:
        raise ValueError(f"confident_filter quotas must be one of {QUOTA_BASES}, got {quotas!r}")
    labels = np.asarray(labels)
    n, k = probs.shape
    total = int(budget)
    flags, joint = label_issues(labels, probs)
    given = np.asarray(probs[np.arange(labels.shape[0]), labels], dtype=np.float64)
    kept = np.flatnonzero(~flags)
    draw = stream(seed, "confident_filter").random(kept.shape[0])  # i.i.d. keys: the top ones = a uniform sample
    ranked = kept[rank_by_score(draw, "high")]  # kept examples in random order
    extra = np.empty(0, dtype=np.int64)
    if total > kept.shape[0]:
        indices = ranked
        flagged = np.flatnonzero(flags)
        extra = flagged[np.argsort(-given[flagged], kind="stable")][: total - kept.shape[0]]
    elif not class_balanced:
        indices = ranked[:total]
    else:
        cap = np.bincount(labels[kept], minlength=k)
        quota = _capped_quotas(labels, total, cap) if quotas == "given" else class_quotas(labels[kept], total, k)
        indices = _take_per_class(ranked, labels[ranked], quota)
    info = {
        "flagged": int(flags.sum()),
        "flagged_fraction": float(flags.mean()) if n else 0.0,
        "estimated_noise_rate": 1.0 - float(np.trace(joint)),
        "topped_up": int(extra.shape[0]),
    }
    return MethodOutput(indices=np.concatenate((indices, extra)).astype(np.int64), scores=given, info=info)
