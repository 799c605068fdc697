"""The result type every selection method returns."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robustprune._io import atomic_write_bytes, looks_like_numpy

__all__ = ["Selection", "MethodOutput", "load_indices", "load_weights"]


@dataclass(frozen=True)
class MethodOutput:
    """What a greedy or custom method function returns before the API wraps it in a :class:`Selection`.

    ``indices`` are in pick (or rank) order; ``gains`` has one value per pick for greedy methods;
    ``scores`` has one value per example where the method defines one; ``info`` carries extra facts
    about the run (for example the number of graph edges) that end up in ``Selection.params``; ``weights``
    has one positive per-example loss weight per pick, aligned with ``indices``, for methods that define them.
    """

    indices: np.ndarray
    gains: np.ndarray | None = None
    scores: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    weights: np.ndarray | None = None


@dataclass(frozen=True)
class Selection:
    """A chosen subset.

    Attributes
    ----------
    indices : ndarray of int64, shape (budget,)
        Selected example indices in pick order (greedy methods) or rank order (score methods):
        the first index is the one the method wanted most. ``np.sort(indices)`` gives index order.
    scores : ndarray of shape (N,) or None
        The per-example score the method ranked by (its direction is given by the method's ``keep``).
    gains : ndarray of shape (budget,) or None
        For greedy methods, the gain each pick had when it was chosen.
    method : str
        Registered method name.
    params : dict
        Every resolved option (defaults filled in), plus ``budget``, ``class_balanced`` and ``seed``.
    n : int
        Number of examples the selection was made from.
    elapsed : float
        Wall-clock seconds spent inside the method.
    weights : ndarray of float64, shape (budget,) or None
        Per-example loss weights aligned with ``indices`` (Craig's cluster sizes, GradMatch's non-negative
        least-squares weights), positive, mean 1; None for unweighted methods. Learners honour them as
        per-example loss weights.
    """

    indices: np.ndarray
    scores: np.ndarray | None
    gains: np.ndarray | None
    method: str
    params: dict[str, Any]
    n: int
    elapsed: float = 0.0
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def budget(self) -> int:
        return len(self)

    def mask(self) -> np.ndarray:
        """Boolean mask of shape (N,) marking the selected examples."""
        m = np.zeros(self.n, dtype=bool)
        m[self.indices] = True
        return m

    def class_counts(self, labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
        """Number of selected examples per class of ``labels``."""
        labels = np.asarray(labels)
        k = int(num_classes if num_classes is not None else labels.max() + 1)
        return np.bincount(labels[self.indices], minlength=k)

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description (everything except the arrays)."""
        from robustprune._version import __version__

        return {
            "method": self.method,
            "n": self.n,
            "budget": self.budget,
            "params": _jsonable(self.params),
            "elapsed_seconds": round(self.elapsed, 6),
            "weighted": self.weights is not None,
            "robustprune_version": __version__,
        }

    def save(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``path`` (.npz with indices, gains, scores) and a JSON sidecar ``path`` + ``.json``.

        Both files are written atomically (a temporary file, then a rename).
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        arrays: dict[str, np.ndarray] = {"indices": self.indices.astype(np.int64)}
        if self.gains is not None:
            arrays["gains"] = np.asarray(self.gains)
        if self.scores is not None:
            arrays["scores"] = np.asarray(self.scores)
        if self.weights is not None:
            arrays["weights"] = np.asarray(self.weights, dtype=np.float64)
        meta = self.metadata()
        arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        import io

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        sidecar = path.with_name(path.name + ".json")
        atomic_write_bytes(sidecar, (json.dumps(meta, indent=2) + "\n").encode())
        return path, sidecar

    @classmethod
    def load(cls, path: str | os.PathLike) -> Selection:
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta_json"]).decode()) if "meta_json" in z else {}
            return cls(
                indices=z["indices"].astype(np.int64),
                gains=z["gains"] if "gains" in z else None,
                scores=z["scores"] if "scores" in z else None,
                method=meta.get("method", "unknown"),
                params=meta.get("params", {}),
                n=int(meta.get("n", int(z["indices"].max()) + 1 if z["indices"].size else 0)),
                elapsed=float(meta.get("elapsed_seconds", 0.0)),
                weights=z["weights"] if "weights" in z else None,
            )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def load_indices(path: str | Path, n: int) -> tuple[np.ndarray, str]:
    """Indices from a ``select`` output ``.npz``, a ``.npy`` (indices or a boolean mask of length ``n``) or
    a text file of whitespace/comma-separated integers; checked to be unique and in ``[0, n)``.

    Returns the indices (int64, file order) and the method that chose them ("file" when unknown).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"selection file {p} does not exist")
    method = "file"
    try:
        if p.suffix in (".npz", ".npy") and not looks_like_numpy(p):
            raise ValueError(
                f"selection file {p} is not a numpy {p.suffix} file (truncated, or another format); write it with "
                "robustprune select, numpy.save(path, indices) or as text, one index per line"
            )
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if "indices" not in z:
                    raise ValueError(f"selection file {p} has no 'indices' array (write it with robustprune select)")
                a = z["indices"]
                meta = json.loads(bytes(z["meta_json"]).decode()) if "meta_json" in z else {}
            method = str(meta.get("method", method))
            if meta.get("n") is not None and int(meta["n"]) != n:
                raise ValueError(f"selection file {p} was made from {meta['n']} examples but the training set has {n}")
        elif p.suffix == ".npy":
            a = np.load(p, allow_pickle=False)
        else:
            tokens = [t for t in re.split(r"[,\s]+", p.read_text()) if t]
            try:
                a = np.array([int(t) for t in tokens], dtype=np.int64)
            except ValueError:
                raise ValueError(f"selection file {p} must hold integer indices, one per line") from None
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read selection file {p}: {exc}") from None
    a = np.asarray(a)
    if a.dtype == bool:
        if a.shape != (n,):
            raise ValueError(f"boolean mask in {p} has shape {a.shape}, expected ({n},)")
        a = np.flatnonzero(a)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"selection file {p} must hold a 1-D array of integer indices, got {a.dtype} {a.shape}")
    a = a.astype(np.int64)
    if a.size == 0:
        raise ValueError(f"selection file {p} holds no indices")
    if a.min() < 0 or a.max() >= n:
        bad = int(a[(a < 0) | (a >= n)][0])
        raise ValueError(f"selection file {p} has index {bad} outside [0, {n}) (the run's training set size)")
    if np.unique(a).size != a.size:
        raise ValueError(f"selection file {p} holds duplicate indices")
    return a, method


def load_weights(path: str | Path) -> np.ndarray | None:
    """The per-example weights stored beside the indices of a ``select`` output ``.npz`` (aligned with its
    ``indices``), or None for any other file or an unweighted selection."""
    p = Path(path).expanduser()
    if p.suffix != ".npz":
        return None
    with np.load(p, allow_pickle=False) as z:
        return z["weights"].astype(np.float64) if "weights" in z else None
