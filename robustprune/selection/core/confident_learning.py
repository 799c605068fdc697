"""Confident learning (Northcutt, Jiang & Chuang, JAIR 2021): thresholds, the confident joint, label issues.

1. Per-class thresholds: ``t_j`` is the mean predicted probability of class j over the examples labelled j.
2. Confident joint ``C[i, j]``: examples with given label i whose *confident true class* is j, the class
   with the largest probability among those whose probability reaches their threshold.
3. Calibration: each row of ``C`` is rescaled to the number of examples with that given label and the
   matrix is divided by N, giving an estimate ``Q`` of the joint distribution of (given, true) labels.
4. Prune by noise rate: for every off-diagonal pair (given i, true j) the ``round(N * Q[i, j])`` examples
   labelled i with the largest margin ``p_j - p_i`` are flagged as likely label errors.

The ``confident_filter`` method (:mod:`robustprune.selection.methods.confident`) and Prune4ReL's
``prefer="confident"`` both read the flags of :func:`label_issue_mask`.
Everything here works on numpy arrays only.

Small differences from cleanlab's ``findlabel_issues(filter_by="prune_by_noise_rate")`` (written from the
paper's definitions; flags agree with cleanlab 2.9 at IoU >= 0.99 on the synthetic settings of
``benchmarks/confident_learning_check.py``):

- When several classes reach their threshold, the confident class is the most probable *of those*;
  cleanlab takes the overall argmax. Thresholds are compared with a 1e-12 tolerance (cleanlab: 1e-6).
- The per-pair counts are ``round(N * Q[i, j])``; cleanlab raises each diagonal count of the confident
  joint to at least 1 before calibrating and rounds the calibrated joint so row totals are preserved, which
  can move single counts by one.
- At least one example per class stays unflagged by unflagging the least suspicious member of a fully
  flagged class afterwards; cleanlab shrinks the counts beforehand and never prunes a one-example class.
- The "argmax equals the given label" un-flagging is exact; cleanlab also un-flags examples whose given
  label is within 1e-6 of the largest probability.
"""

from __future__ import annotations

import numpy as np

__all__ = ["per_class_thresholds", "confident_joint", "estimate_joint", "label_issue_mask", "label_issues"]

# Absorbs the rounding of the threshold mean, so that a class whose examples all have the same probability
# still reaches its own threshold; far below any meaningful probability difference.
_THRESHOLD_TOL = 1e-12


def _num_classes(probs: np.ndarray, num_classes: int | None = None) -> int:
    return max(int(num_classes or 0), int(probs.shape[1]))


def _given_prob(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return np.asarray(probs[np.arange(labels.shape[0]), labels], dtype=np.float64)


def per_class_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-class confidence thresholds ``t_j = mean(probs[labels == j, j])``.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        Given (possibly noisy) labels in ``[0, K)``.
    probs : ndarray of float, shape (N, K)
        Predicted class probabilities (out-of-sample, ideally).

    Returns
    -------
    ndarray of float64, shape (K,)
        The expected self-confidence of each class. A class with no example gets ``+inf``, so no example
        is ever confidently assigned to it.
    """
    labels = np.asarray(labels)
    k = probs.shape[1]
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.bincount(labels, weights=_given_prob(labels, probs), minlength=k)
    out = np.full(k, np.inf)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def _confident_true_class(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Confident true class of each example, shape (N,); -1 where no class reaches its threshold."""
    p = np.asarray(probs, dtype=np.float64)
    confident = p >= per_class_thresholds(labels, p) - _THRESHOLD_TOL
    masked = np.where(confident, p, -np.inf)
    guess = masked.argmax(axis=1)  # largest probability among the confident classes, lowest class on ties
    return np.where(confident.any(axis=1), guess, -1)


def confident_joint(labels: np.ndarray, probs: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """The (uncalibrated) confident joint: counts of (given label, confident true class).

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        Given labels.
    probs : ndarray of float, shape (N, K)
        Predicted class probabilities.
    num_classes : int, optional
        K, at least ``probs.shape[1]``; defaults to ``probs.shape[1]``.

    Returns
    -------
    ndarray of int64, shape (K, K)
        ``C[i, j]`` = number of examples with given label i whose confident true class is j: among the
        classes j with ``probs[x, j] >= t_j`` (see :func:`per_class_thresholds`), the one with the largest
        ``probs[x, j]`` (lowest class index on ties). Examples with no class at or above its threshold are
        not counted, so ``C.sum() <= N``.
    """
    labels = np.asarray(labels)
    k = _num_classes(probs, num_classes)
    true = _confident_true_class(labels, probs)
    hit = true >= 0
    flat = labels[hit].astype(np.int64) * k + true[hit]
    return np.bincount(flat, minlength=k * k).reshape(k, k).astype(np.int64)


def estimate_joint(labels: np.ndarray, probs: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Calibrated estimate ``Q`` of the joint distribution of (given label, true label).

    Row i of the confident joint is scaled to ``n_i`` (the number of examples with given label i); a row
    with no confident example becomes ``n_i`` on the diagonal (no noise assumed). The result is divided by N.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    probs : ndarray of float, shape (N, K)
    num_classes : int, optional

    Returns
    -------
    ndarray of float64, shape (K, K)
        ``Q[i, j]`` estimates P(given = i, true = j); rows sum to ``n_i / N`` and the matrix to 1.
        ``1 - trace(Q)`` is the estimated share of wrong labels.
    """
    labels = np.asarray(labels)
    k = _num_classes(probs, num_classes)
    c = confident_joint(labels, probs, k).astype(np.float64)
    n_i = np.bincount(labels, minlength=k).astype(np.float64)
    rows = c.sum(axis=1)
    scale = np.divide(n_i, rows, out=np.zeros(k), where=rows > 0)
    cal = c * scale[:, None]
    empty = rows == 0
    cal[empty, empty] = n_i[empty]
    return cal / max(labels.shape[0], 1)


def label_issue_mask(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Confident learning's "prune by noise rate" filter.

    For every pair (given i, true j != i) the ``round(N * Q[i, j])`` examples with given label i and the
    largest margin ``probs[x, j] - probs[x, i]`` are flagged (ties: lower index first), with ``Q`` from
    :func:`estimate_joint`; an example flagged by several pairs counts once. Then, as the reference
    implementation does, no example whose argmax prediction is its given label stays flagged, and every
    class keeps at least one unflagged example (if all of a class were flagged, the one with the highest
    probability of its label is unflagged).

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        Given labels in ``[0, K)``.
    probs : ndarray of float, shape (N, K)
        Predicted class probabilities.

    Returns
    -------
    ndarray of bool, shape (N,)
        True = flagged as a likely label error.
    """
    return label_issues(np.asarray(labels), probs)[0]


def label_issues(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flags, Q): the mask of :func:`label_issue_mask` and the joint of :func:`estimate_joint`."""
    n, k = probs.shape
    p = np.asarray(probs, dtype=np.float64)
    joint = estimate_joint(labels, p, k)
    counts = np.rint(n * joint).astype(np.int64)
    np.fill_diagonal(counts, 0)
    flags = np.zeros(n, dtype=bool)
    by_class = np.argsort(labels, kind="stable")  # members of each class in ascending index order
    bounds = np.concatenate(([0], np.cumsum(np.bincount(labels, minlength=k))))
    for i in np.flatnonzero(counts.any(axis=1)):  # one vectorised step per noisy class, not per example
        members = by_class[bounds[i] : bounds[i + 1]]
        cols = np.flatnonzero(counts[i])
        margin = p[np.ix_(members, cols)] - p[members, i][:, None]  # (n_i, J)
        order = np.argsort(-margin, axis=0, kind="stable")  # largest margin first; ties: lower index
        take = np.arange(members.shape[0])[:, None] < counts[i, cols][None, :]
        flags[members[order[take]]] = True
    flags[p.argmax(axis=1) == labels] = False
    # keep at least one example per class: unflag the least suspicious member of any fully flagged class
    given = _given_prob(labels, p)
    n_i = np.bincount(labels, minlength=k)
    full = np.flatnonzero((np.bincount(labels[flags], minlength=k) == n_i) & (n_i > 0))
    if full.size:
        cand = np.flatnonzero(np.isin(labels, full))
        cand = cand[np.lexsort((cand, -given[cand], labels[cand]))]  # per class: highest given prob first
        first = np.concatenate(([True], labels[cand][1:] != labels[cand][:-1]))
        flags[cand[first]] = False
    return flags, joint
