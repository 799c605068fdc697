"""Evaluation of a pruned training run, as pure functions of arrays.

::

    from robustprune import evaluate as ev
    ev.accuracy(probs_test, y_test)                               # share of correct predictions
    ev.relabel_accuracy(train_pred, true_labels, subset)          # did the learner fix the selected labels?
    ev.noise_rate(given, true_labels, subset)                     # share of wrong given labels in the subset
    ev.summarize_history(history)                                 # last epoch, best validation epoch

Predictions may be class indices (N,) or probabilities / logits (N, K) (their argmax is used). ``indices``
select a subset of examples (global indices into the arrays); ``None`` means every example. Nothing here
trains, loads or writes anything.

The *re-labeling accuracy* (Park et al., 2023) is the share of selected examples whose prediction by the
learner trained on the subset equals the *true* label: a robust learner that re-labels a noisy example
correctly counts it as right. It needs true labels, so it is defined for injected (synthetic or human
with clean reference) noise only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from robustprune._validation import as_numpy

__all__ = [
    "predicted_labels",
    "accuracy",
    "relabel_accuracy",
    "noise_rate",
    "class_counts",
    "best_epoch",
    "summarize_history",
    "subset_report",
]


def predicted_labels(predictions: Any) -> np.ndarray:
    """Class indices (N,) from class indices (N,) or per-class scores (N, K) (argmax, first on ties)."""
    p = as_numpy(predictions, "predictions")
    if p.ndim == 2:
        if p.shape[1] < 1:
            raise ValueError("predictions has zero columns")
        return p.argmax(axis=1).astype(np.int64)
    if p.ndim != 1:
        raise ValueError(f"predictions must have shape (N,) or (N, K), got {p.shape}")
    if p.size and not np.issubdtype(p.dtype, np.integer):
        if not np.all(np.equal(np.mod(p, 1), 0)):
            raise ValueError("1-D predictions must be class indices (whole numbers)")
    return p.astype(np.int64)


def _labels(labels: Any, name: str, n: int | None = None) -> np.ndarray:
    y = as_numpy(labels, name)
    if y.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), got {y.shape}")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but the other array has {n}")
    return y.astype(np.int64)


def _subset(indices: Any, n: int) -> np.ndarray | slice:
    if indices is None:
        return slice(None)
    idx = as_numpy(indices, "indices")
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"a boolean indices mask must have shape ({n},), got {idx.shape}")
        return np.flatnonzero(idx)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError("indices must be a 1-D array of integer example indices")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"indices must lie in [0, {n})")
    return idx


def _mean(mask: np.ndarray) -> float:
    if mask.size == 0:
        raise ValueError("cannot evaluate on zero examples")
    return float(np.mean(mask))


def accuracy(predictions: Any, labels: Any, indices: Any = None) -> float:
    """Share of examples (those at ``indices``, default all) whose predicted class equals ``labels``.

    ``predictions`` : (N,) class indices or (N, K) scores; ``labels`` : (N,) int. Returns a float in [0, 1].
    """
    pred = predicted_labels(predictions)
    y = _labels(labels, "labels", pred.shape[0])
    sel = _subset(indices, pred.shape[0])
    return _mean(pred[sel] == y[sel])


def relabel_accuracy(predictions: Any, true_labels: Any, indices: Any = None) -> float:
    """Re-labeling accuracy: share of the examples at ``indices`` (default all) whose prediction (by the
    learner trained on the subset) equals the true label. Higher = more of them effectively re-labeled."""
    return accuracy(predictions, true_labels, indices)


def noise_rate(labels: Any, true_labels: Any, indices: Any = None) -> float:
    """Share of the examples at ``indices`` (default all) whose given label differs from the true label."""
    y = _labels(labels, "labels")
    t = _labels(true_labels, "true_labels", y.shape[0])
    sel = _subset(indices, y.shape[0])
    return _mean(y[sel] != t[sel])


def class_counts(labels: Any, indices: Any = None, num_classes: int | None = None) -> np.ndarray:
    """Number of examples per class of ``labels`` among ``indices`` (default all); int64 (K,)."""
    y = _labels(labels, "labels")
    sel = _subset(indices, y.shape[0])
    if y.size and y.min() < 0:
        raise ValueError("labels must be non-negative class indices")
    k = int(num_classes) if num_classes is not None else (int(y.max()) + 1 if y.size else 0)
    if y.size and y.max() >= k:
        raise ValueError(f"labels contain class {int(y.max())} but num_classes is {k}")
    return np.bincount(y[sel], minlength=k).astype(np.int64)


def best_epoch(history: Sequence[Mapping[str, Any]], key: str = "val_acc") -> int | None:
    """The 1-based epoch with the highest ``key`` (the earliest on ties); None when no epoch logged it.

    ``history`` is a training history: one mapping per epoch with an ``epoch`` entry (1-based; the
    position + 1 when absent) and metric entries such as ``val_acc``.
    """
    best, best_val = None, -np.inf
    for pos, logs in enumerate(history):
        v = logs.get(key)
        if v is None or not np.isfinite(v):
            continue
        if v > best_val:
            best, best_val = int(logs.get("epoch", pos + 1)), float(v)
    return best


def summarize_history(
    history: Sequence[Mapping[str, Any]], *, test_key: str = "test_acc", val_key: str = "val_acc"
) -> dict[str, Any]:
    """Test accuracy at the last epoch, and at the epoch chosen on a held-out validation split.

    The best epoch is chosen on ``val_key`` only, never on the test set (the released Prune4ReL code picks
    its "best" on the test set, which overstates accuracy). Returns ``test_accuracy`` (last epoch that logged
    ``test_key``, or None), ``epochs``, ``best_epoch``, ``val_accuracy`` (at the best epoch) and
    ``test_accuracy_at_best_val`` (None without validation entries).
    """
    last = last_val = None
    for logs in history:
        if logs.get(test_key) is not None:
            last = float(logs[test_key])
        if logs.get(val_key) is not None:
            last_val = float(logs[val_key])
    out: dict[str, Any] = {
        "test_accuracy": last,
        "epochs": len(history),
        "best_epoch": None,
        "val_accuracy": None,
        "val_accuracy_last": last_val,
        "test_accuracy_at_best_val": None,
    }
    be = best_epoch(history, val_key)
    if be is not None:
        row = next(r for pos, r in enumerate(history) if int(r.get("epoch", pos + 1)) == be)
        out["best_epoch"] = be
        out["val_accuracy"] = float(row[val_key])
        out["test_accuracy_at_best_val"] = None if row.get(test_key) is None else float(row[test_key])
    return out


def subset_report(
    indices: Any,
    labels: Any,
    *,
    true_labels: Any = None,
    predictions: Any = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Facts about a selected subset of a training set of N examples.

    Parameters
    ----------
    indices : (budget,) int
        The selected examples (global indices).
    labels : (N,) int
        Given (possibly noisy) labels.
    true_labels : (N,) int, optional
        Clean labels; enables the noise rates and re-labeling accuracies.
    predictions : (N,) int or (N, K), optional
        Predictions on the training inputs by the learner trained on the subset.
    num_classes : int, optional

    Returns
    -------
    dict with ``budget``, ``fraction``, ``class_counts`` (given labels, list), and with ``true_labels``:
    ``noise_rate`` (whole set), ``subset_noise_rate``, ``class_noise_rates`` (the subset's noise rate per
    given class, None for a class with no pick), ``class_counts_true``; with ``predictions`` as well:
    ``relabel_accuracy`` (subset) and ``relabel_accuracy_all`` (whole training set). Missing ones are None.
    """
    y = _labels(labels, "labels")
    n = y.shape[0]
    idx = _subset(indices, n)
    idx = np.arange(n) if isinstance(idx, slice) else idx
    k = num_classes if num_classes is not None else int(y.max()) + 1
    out: dict[str, Any] = {
        "budget": int(idx.shape[0]),
        "fraction": idx.shape[0] / n,
        "class_counts": class_counts(y, idx, k).tolist(),
        "noise_rate": None,
        "subset_noise_rate": None,
        "class_counts_true": None,
        "class_noise_rates": None,
        "relabel_accuracy": None,
        "relabel_accuracy_all": None,
    }
    if true_labels is None:
        return out
    t = _labels(true_labels, "true_labels", n)
    k = max(k, int(t.max()) + 1)
    out.update(noise_rate=noise_rate(y, t), subset_noise_rate=noise_rate(y, t, idx),
               class_counts_true=class_counts(t, idx, k).tolist())  # fmt: skip
    picked = np.bincount(y[idx], minlength=k).astype(np.float64)
    wrong = np.bincount(y[idx], weights=(y[idx] != t[idx]).astype(np.float64), minlength=k)
    out["class_noise_rates"] = [None if m == 0 else float(w / m) for w, m in zip(wrong, picked, strict=True)]
    if predictions is not None:
        pred = predicted_labels(predictions)
        if pred.shape[0] != n:
            raise ValueError(f"predictions has {pred.shape[0]} rows but labels has {n}")
        out.update(relabel_accuracy=relabel_accuracy(pred, t, idx), relabel_accuracy_all=relabel_accuracy(pred, t))
    return out
