"""The noise models: symmetric, class-conditional pairs, instance-dependent and transition-matrix noise,
and transition counts / estimates. Vectorised; randomness only from the given seed."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from robustprune._validation import as_numpy, check_labels
from robustprune.noise.spec import CIFAR10_ASYM_PAIRS, PRUNE4REL_PAIRS, Seed, normalise_counts
from robustprune.seeding import stream

__all__ = [
    "symmetric_noise", "pair_noise", "instance_noise", "matrix_noise", "asym_map", "pairs_map",
    "load_transition_matrix", "transition_counts", "estimate_transition_matrix", "labels_and_classes",
]  # fmt: skip

# ---------------------------------------------------------------------------------------------------------
# helpers


def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer or a numpy Generator, got {seed!r}")
    return stream(int(seed), "noise")


def _check_rate(rate: float, name: str = "rate") -> float:
    r = float(rate)
    if not math.isfinite(r) or not 0.0 <= r <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {rate}")
    return r


def labels_and_classes(labels: Any, num_classes: int | None) -> tuple[np.ndarray, int]:
    y = check_labels(labels)
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if num_classes is not None and y.max() >= k:
        raise ValueError(f"labels reach {int(y.max())} but num_classes is {k}; pass the right num_classes")
    if k < 2:
        raise ValueError(f"label noise needs at least 2 classes, got num_classes={k}")
    return y, k


def _groups(y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices sorted by class (stable) and the K+1 group boundaries, for per-class loops without N*K work."""
    order = np.argsort(y, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(y, minlength=k))))
    return order, bounds


def transition_counts(clean: Any, noisy: Any, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: entry (i, j) is the number of examples of clean class i labelled j."""
    c = check_labels(clean, num_classes=num_classes)
    n = check_labels(noisy, c.shape[0], num_classes=num_classes)
    k = int(num_classes)
    return np.bincount(c * k + n, minlength=k * k).reshape(k, k).astype(np.int64)


def estimate_transition_matrix(clean: Any, noisy: Any, num_classes: int) -> np.ndarray:
    """Row-stochastic (K, K) matrix ``P(noisy = j | clean = i)`` estimated from paired labels.

    With the CIFAR-N files this gives the human-noise transition matrix; saved with ``np.save`` it drives
    ``matrix:FILE`` noise ("CIFAR-N-like" class-conditional synthetic noise). Empty rows are identity.
    """
    return normalise_counts(transition_counts(clean, noisy, num_classes))


# ---------------------------------------------------------------------------------------------------------
# noise models


def symmetric_noise(labels: Any, rate: float, num_classes: int | None = None, *, seed: Seed = 0) -> np.ndarray:
    """Flip exactly ``round(rate * N)`` uniformly chosen labels, each to a random *different* class."""
    y, k = labels_and_classes(labels, num_classes)
    rate = _check_rate(rate)
    rng = _rng(seed)
    m = int(round(rate * y.shape[0]))
    idx = rng.permutation(y.shape[0])[:m]
    out = y.copy()
    out[idx] = (y[idx] + rng.integers(1, k, size=m)) % k
    return out


def asym_map(dataset: str | None = None, num_classes: int = 10) -> np.ndarray:
    """The ``asym`` target class of each class, shape (K,); a class mapped to itself is left alone.

    CIFAR-10 (``dataset`` "cifar10"/"cifar10n"): Patrini et al. 9->1, 2->0, 4->7, 3<->5. CIFAR-100: the next
    fine class within the same superclass, cyclically. Anything else: ``y -> (y + 1) mod K``.
    """
    key = (dataset or "").lower().replace("-", "").replace("_", "")
    k = int(num_classes)
    if key in ("cifar10", "cifar10n"):
        if k != 10:
            raise ValueError(f"the CIFAR-10 asym map needs num_classes=10, got {k}")
        m = np.arange(10)
        for src, dst in CIFAR10_ASYM_PAIRS.items():
            m[src] = dst
        return m
    if key in ("cifar100", "cifar100n"):
        if k != 100:
            raise ValueError(f"the CIFAR-100 asym map needs num_classes=100, got {k}")
        from robustprune.data.cifar import CIFAR100_COARSE

        m = np.empty(100, dtype=np.int64)
        for coarse in range(20):
            members = np.flatnonzero(CIFAR100_COARSE == coarse)
            m[members] = np.roll(members, -1)
        return m
    if k < 2:
        raise ValueError(f"asym noise needs at least 2 classes, got {k}")
    return (np.arange(k) + 1) % k


def pairs_map(num_classes: int = 10) -> np.ndarray:
    """The Prune4ReL release's bidirectional pairs 0<->2, 4<->7, 1<->9, 3<->5, 6<->8 as a (10,) map."""
    if int(num_classes) != 10:
        raise ValueError(f"asym-pairs is the Prune4ReL release's 10-class map; got num_classes={num_classes}")
    m = np.arange(10)
    for a, b in PRUNE4REL_PAIRS:
        m[a], m[b] = b, a
    return m


def pair_noise(labels: Any, rate: float, mapping: Any, *, seed: Seed = 0) -> np.ndarray:
    """Move each example of class ``c`` to ``mapping[c]`` with probability ``rate``.

    Affected classes are those the map moves; the others keep their labels.
    """
    m = as_numpy(mapping, "mapping").astype(np.int64)
    y, k = labels_and_classes(labels, m.shape[0])
    if m.ndim != 1 or m.min() < 0 or m.max() >= k:
        raise ValueError(f"mapping must be a (K,) array of class indices in [0, {k}), got shape {m.shape}")
    rate = _check_rate(rate)
    flip = (m[y] != y) & (_rng(seed).random(y.shape[0]) < rate)
    out = y.copy()
    out[flip] = m[y[flip]]
    return out


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, n: int) -> np.ndarray:
    """Normal(mean, sd) truncated to [0, 1], by vectorised rejection sampling (acceptance >= ~50 %)."""
    out = rng.normal(mean, sd, n)
    bad = np.flatnonzero((out < 0) | (out > 1))
    while bad.size:
        out[bad] = rng.normal(mean, sd, bad.size)
        bad = bad[(out[bad] < 0) | (out[bad] > 1)]
    return out


def instance_noise(
    labels: Any,
    features: Any,
    rate: float,
    num_classes: int | None = None,
    *,
    seed: Seed = 0,
    rate_std: float = 0.1,
    chunk: int = 8192,
) -> np.ndarray:
    """Instance-dependent noise following Xia et al. (2020), "Part-dependent label noise", Algorithm 2.

    1. Draw per-example flip rates ``q_i`` from Normal(rate, rate_std^2) truncated to [0, 1].
    2. Draw one projection ``W_c`` (D x K, standard normal) per class c.
    3. For example i with label y: scores ``s = x_i W_y``; set ``s_y = -inf``; the label distribution is
       ``q_i * softmax(s)`` on the other classes and ``1 - q_i`` on y; sample the noisy label from it.

    ``features`` (N, ...) are flattened and standardised per column first (Xia et al. use normalised
    images). The expected noise rate is the mean of the truncated normal, which equals ``rate`` for rates
    away from 0 and 1 (within 0.01 for 0.3 <= rate <= 0.7). ``rate = 0`` returns the labels unchanged.
    """
    y, k = labels_and_classes(labels, num_classes)
    rate = _check_rate(rate)
    x = as_numpy(features, "features")
    if x.ndim < 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features must have shape (N, ...) with N = {y.shape[0]}, got {x.shape}")
    x = x.reshape(x.shape[0], -1)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"features must be numeric, got dtype {x.dtype}")
    if rate == 0.0:
        return y.copy()
    rng = _rng(seed)
    n, d = x.shape
    q = _truncated_normal(rng, rate, float(rate_std), n)
    s1 = np.zeros(d)
    s2 = np.zeros(d)
    for i in range(0, n, chunk):
        b = x[i : i + chunk].astype(np.float64)
        s1 += b.sum(0)
        s2 += (b * b).sum(0)
    mu = s1 / n
    sd = np.sqrt(np.maximum(s2 / n - mu * mu, 0.0))
    sd[sd == 0] = 1.0
    mu32, inv32 = mu.astype(np.float32), (1.0 / sd).astype(np.float32)
    out = y.copy()
    order, bounds = _groups(y, k)
    u = rng.random(n)
    for c in range(k):
        w = rng.standard_normal((d, k), dtype=np.float32)  # drawn for every class: seeds stay comparable
        idx = order[bounds[c] : bounds[c + 1]]
        if idx.size == 0:
            continue
        for j in range(0, idx.size, chunk):
            sub = idx[j : j + chunk]
            s = ((x[sub].astype(np.float32) - mu32) * inv32) @ w
            s[:, c] = -np.inf
            s -= s.max(axis=1, keepdims=True)
            p = np.exp(s, dtype=np.float64)
            p *= (q[sub] / p.sum(axis=1))[:, None]
            p[:, c] = 1.0 - q[sub]
            cdf = np.cumsum(p, axis=1)
            pick = (cdf < (u[sub] * cdf[:, -1])[:, None]).sum(axis=1)
            out[sub] = np.minimum(pick, k - 1)
    return out


def load_transition_matrix(source: str | os.PathLike | Any, num_classes: int | None = None) -> np.ndarray:
    """A validated (K, K) row-stochastic float64 matrix from a ``.npy``/``.csv`` file or an array.

    Rows must be non-negative and sum to 1 within 1e-4 (they are then renormalised exactly).
    """
    name = "transition matrix"
    if isinstance(source, (str, os.PathLike)):
        p = Path(source).expanduser()
        name = f"transition matrix {str(p)!r}"
        if not p.is_file():
            raise ValueError(f"{name} does not exist; pass matrix:PATH to a .npy or .csv file")
        try:
            if p.suffix.lower() == ".npy":
                t = np.load(p, allow_pickle=False)
            else:
                text = p.read_text()
                t = np.loadtxt(p, delimiter="," if "," in text else None, ndmin=2)
        except Exception as exc:
            raise ValueError(f"could not read {name}: {type(exc).__name__}: {exc}") from None
    else:
        t = as_numpy(source, "transition matrix")
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"{name} must be square (K, K), got shape {t.shape}")
    if num_classes is not None and t.shape[0] != int(num_classes):
        raise ValueError(f"{name} is {t.shape[0]}x{t.shape[0]} but the dataset has {num_classes} classes")
    if not np.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinity")
    if (t < 0).any():
        r = int(np.argwhere(t < 0)[0, 0])
        raise ValueError(f"{name} has a negative entry in row {r}; entries are probabilities")
    sums = t.sum(axis=1)
    bad = np.abs(sums - 1.0) > 1e-4
    if bad.any():
        r = int(np.argmax(bad))
        raise ValueError(f"{name} row {r} sums to {sums[r]:.6g}, expected 1 (rows are P(noisy | clean))")
    return t / sums[:, None]


def matrix_noise(labels: Any, matrix: Any, *, seed: Seed = 0) -> np.ndarray:
    """Redraw each label ``y`` from row ``y`` of a row-stochastic (K, K) transition ``matrix``."""
    t = load_transition_matrix(matrix)
    y, k = labels_and_classes(labels, t.shape[0])
    u = _rng(seed).random(y.shape[0])
    cdf = np.cumsum(t, axis=1)
    out = y.copy()
    order, bounds = _groups(y, k)
    for c in range(k):
        idx = order[bounds[c] : bounds[c + 1]]
        if idx.size:
            out[idx] = np.searchsorted(cdf[c], u[idx] * cdf[c, -1], side="right")
    return np.minimum(out, k - 1)
