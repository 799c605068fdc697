"""Input checks shared by every public entry point.

Public functions validate once at the boundary and then call private helpers that trust their input.
Every check raises :class:`ValueError` (or :class:`TypeError`) with a one-line message that names the
offending argument and says how to fix it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "as_numpy",
    "check_labels",
    "check_probs",
    "check_features",
    "check_dynamics",
    "check_epoch_probs",
    "check_distances",
    "check_finite",
    "check_same_examples",
]


def check_same_examples(arrays: dict[str, Any], axes: dict[str, tuple[int, int]]) -> None:
    """Raise if the given signals disagree on the number of examples, naming the array(s) that differ from
    the majority (labels win a tie). ``axes[name]`` is (the axis that indexes examples, the array's number of
    dimensions); ``None`` entries are skipped; shapes are read without converting."""
    counts: dict[str, int] = {}
    for name, value in arrays.items():
        if value is None:
            continue
        shape = np.shape(value)
        axis, ndim = axes[name]
        if not shape or (axis > 0 and len(shape) < ndim):
            continue  # a malformed array: its own check names the problem
        counts[name] = int(shape[axis])
    if len(set(counts.values())) <= 1:
        return
    tally: dict[int, int] = {}
    for c in counts.values():
        tally[c] = tally.get(c, 0) + 1
    top = max(tally.values())
    leaders = [c for c, t in tally.items() if t == top]
    n = counts["labels"] if "labels" in counts and counts["labels"] in leaders else max(leaders)
    odd = [k for k, c in counts.items() if c != n]
    agree = [k for k, c in counts.items() if c == n]
    what = ", ".join(f"{k} has {counts[k]}" for k in odd)
    raise ValueError(
        f"{what} examples but {', '.join(agree)} {'has' if len(agree) == 1 else 'have'} {n}: every signal needs "
        "one entry per training example, in the same order"
    )


def as_numpy(x: Any, name: str) -> np.ndarray:
    """Convert a numpy array, torch tensor or nested sequence to a numpy array (no copy where possible)."""
    if x is None:
        raise ValueError(f"{name} is required")
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch here
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - numpy's own message is good enough
        raise TypeError(f"{name} must be array-like: {exc}") from None
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got a ragged or object array")
    return arr


def check_finite(arr: np.ndarray, name: str, first_row: int = 0) -> None:
    """Raise if a floating array holds NaN or infinity, naming the first bad row (``first_row`` + its index)."""
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        what = "NaN" if np.isnan(arr[tuple(bad)]) else "infinity"
        raise ValueError(
            f"{name} contains {what} (first at row {first_row + int(bad[0])}); clean or drop those rows first"
        )


def check_labels(labels: Any, n: int | None = None, num_classes: int | None = None) -> np.ndarray:
    """Return labels as int64 of shape (N,), checking they are non-negative whole numbers."""
    arr = as_numpy(labels, "labels")
    if arr.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {arr.shape}; pass class indices, not one-hot rows")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"labels has {arr.shape[0]} rows but the other signals have {n}")
    if arr.size == 0:
        raise ValueError("labels is empty")
    if np.issubdtype(arr.dtype, np.floating):
        check_finite(arr, "labels")
        if not np.all(arr == np.round(arr)):
            raise ValueError("labels must be whole class indices, got fractional values")
    elif not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ValueError(f"labels must be integer class indices, got dtype {arr.dtype}")
    out = arr.astype(np.int64, copy=False)
    if out.min() < 0:
        raise ValueError(f"labels must be >= 0, found {int(out.min())}")
    if num_classes is not None and out.max() >= num_classes:
        raise ValueError(
            f"labels must be < the number of classes ({num_classes}) given by probs, found {int(out.max())}"
        )
    return out


def check_probs(probs: Any, n: int | None = None, *, tol: float = 1e-2, first_row: int = 0) -> np.ndarray:
    """Return probabilities as float32 (N, K), checking range and that rows sum to one (within ``tol``).
    ``first_row``: the index of the first row in the whole array, for the messages (a block of a larger one)."""
    arr = as_numpy(probs, "probs")
    if arr.ndim != 2:
        raise ValueError(f"probs must have shape (N, K), got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"probs has {arr.shape[0]} rows but the other signals have {n}")
    if arr.shape[1] < 2:
        raise ValueError(f"probs needs at least 2 classes (columns), got {arr.shape[1]}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"probs must be floating point, got dtype {arr.dtype}")
    check_finite(arr, "probs", first_row)
    out = arr.astype(np.float32, copy=False)
    if out.min() < 0 or out.max() > 1 + 1e-3:
        raise ValueError("probs must lie in [0, 1]; pass softmax probabilities, not logits")
    sums = out.sum(axis=1, dtype=np.float64)
    bad = np.abs(sums - 1.0) > tol
    if bad.any():
        at = int(np.argmax(bad))
        row = first_row + at
        raise ValueError(
            f"probs rows must sum to 1 (row {row} sums to {sums[at]:.4f}); apply softmax to the logits first"
        )
    return out


def check_features(features: Any, n: int | None = None) -> np.ndarray:
    """Return features as a floating (N, D) array (float16 is kept; callers upcast as they need)."""
    arr = as_numpy(features, "features")
    if arr.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {arr.shape}; flatten each example's embedding")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"features has {arr.shape[0]} rows but the other signals have {n}")
    if arr.shape[1] < 1:
        raise ValueError("features has zero columns")
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        arr = arr.astype(np.float32)
    elif not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"features must be numeric, got dtype {arr.dtype}")
    check_finite(arr, "features")
    return arr


def check_dynamics(arr: Any, name: str, n: int | None = None, *, boolean: bool = False) -> np.ndarray:
    """Return a per-epoch training-dynamics array of shape (E, N)."""
    a = as_numpy(arr, name)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (epochs, N), got {a.shape}")
    if n is not None and a.shape[1] != n:
        raise ValueError(f"{name} has {a.shape[1]} columns (examples) but the other signals have {n}")
    if a.shape[0] < 1:
        raise ValueError(f"{name} has no epochs")
    if boolean:
        if a.dtype != bool:
            if not np.isin(a, (0, 1)).all():
                raise ValueError(f"{name} must be boolean (1 = predicted the given label correctly)")
            a = a.astype(bool)
        return a
    check_finite(a, name)
    return a.astype(np.float32, copy=False)


def check_epoch_probs(
    arr: Any, n: int | None = None, num_classes: int | None = None, *, tol: float = 2e-2
) -> np.ndarray:
    """Return per-epoch softmax probabilities of shape (E, N, K), checking range, finiteness and that rows sum
    to one (within ``tol``, loose for float16). float16 is kept (it is E·N·K); other dtypes become float32.
    Checked one epoch at a time, so no float64 copy of the whole array is made."""
    a = as_numpy(arr, "epoch_probs")
    if a.ndim != 3:
        raise ValueError(f"epoch_probs must have shape (epochs, N, K), got {a.shape}")
    if n is not None and a.shape[1] != n:
        raise ValueError(f"epoch_probs has {a.shape[1]} examples (axis 1) but the other signals have {n}")
    if a.shape[0] < 1:
        raise ValueError("epoch_probs has no epochs")
    if a.shape[2] < 2:
        raise ValueError(f"epoch_probs needs at least 2 classes (last axis), got {a.shape[2]}")
    if num_classes is not None and a.shape[2] != num_classes:
        raise ValueError(f"epoch_probs has {a.shape[2]} classes but probs has {num_classes}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"epoch_probs must be floating point, got dtype {a.dtype}")
    if a.dtype != np.float16:
        a = a.astype(np.float32, copy=False)
    for e in range(a.shape[0]):
        p = a[e]
        if not np.isfinite(p).all():
            row = int(np.argwhere(~np.isfinite(p))[0, 0])
            raise ValueError(
                f"epoch_probs contains NaN or infinity (epoch {e}, example {row}); record every example every epoch"
            )
        if p.min() < 0 or p.max() > 1 + 1e-2:
            raise ValueError("epoch_probs must lie in [0, 1]; pass softmax probabilities, not logits")
        sums = p.sum(axis=1, dtype=np.float32)
        bad = np.abs(sums - 1.0) > tol
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(
                f"epoch_probs rows must sum to 1 (epoch {e}, example {row} sums to {sums[row]:.4f}); "
                "apply softmax to the logits first"
            )
    return a


def check_distances(arr: Any, name: str, n: int | None = None) -> np.ndarray:
    """Return a per-example non-negative distance (e.g. a DeepFool perturbation norm) as float32 (N,)."""
    a = as_numpy(arr, name)
    if a.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), one value per example, got {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} rows but the other signals have {n}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    check_finite(a, name)
    if a.size and a.min() < 0:
        raise ValueError(f"{name} must be >= 0 (a norm), found {float(a.min())} at row {int(np.argmin(a))}")
    return a
