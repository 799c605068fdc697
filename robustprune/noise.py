"""Seeded, recorded label noise.

::

    noisy, rec = apply_noise(y_clean, "sym:0.4", num_classes=10, seed=0)
    rec.realised_rate, rec.transition          # 0.4 exactly, (K, K) counts: rows clean, columns noisy

Noise specs (:func:`parse_noise`):

=================  ======================================================================================
``none``/``clean``  labels unchanged
``sym:R``           exactly ``round(R*N)`` examples, chosen uniformly, each moved to a uniformly random
                    *different* class (so the realised rate is exactly R up to rounding)
``asym:R``          class-conditional pair flips, each example of an affected class flipped with
                    probability R. The map depends on ``dataset``:
                    CIFAR-10: the standard map of Patrini et al. (2017): truck->automobile (9->1),
                    bird->airplane (2->0), deer->horse (4->7), cat<->dog (3<->5);
                    CIFAR-100: the next fine class within the same superclass, cyclically (the five
                    members of a superclass in label order);
                    any other dataset: ``y -> (y + 1) mod K``.
``asym-pairs:R``    the Prune4ReL release's bidirectional CIFAR-10 pairs 0<->2, 4<->7, 1<->9, 3<->5, 6<->8
                    (every class affected; needs K = 10), for reproducing that code
``instance:R``      instance-dependent noise after Xia et al. (2020): per-example flip rates from a normal
                    around R (sd 0.1) truncated to [0, 1]; the wrong class drawn from
                    ``softmax(x W_y)`` with a random Gaussian projection ``W_y`` per class (needs
                    ``features``, e.g. the training images); ``instance:0`` is clean
``matrix:FILE``     each label ``y`` redrawn from row ``y`` of a K x K row-stochastic transition matrix in a
                    ``.npy`` or ``.csv`` file (e.g. one estimated from CIFAR-N with
                    :func:`estimate_transition_matrix`)
``human[:NAME]``    real human labels supplied by the caller (``human_labels=``, e.g. the CIFAR-N sets the
                    CIFAR loaders put in ``ArrayDataset.label_sets``: worst, aggregate, random1..3, noisy)
=================  ======================================================================================

Every function is vectorised (no per-example Python loops; at most a loop over the K classes) and draws its
randomness only from the ``seed`` it is given.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robustprune._validation import as_numpy, check_labels
from robustprune.seeding import stream

__all__ = [
    "NoiseSpec",
    "NoiseRecord",
    "parse_noise",
    "apply_noise",
    "symmetric_noise",
    "pair_noise",
    "instance_noise",
    "matrix_noise",
    "asym_map",
    "pairs_map",
    "load_transition_matrix",
    "transition_counts",
    "estimate_transition_matrix",
    "CIFAR10_ASYM_PAIRS",
    "PRUNE4REL_PAIRS",
]

#: Patrini et al. (2017) CIFAR-10 map: source class -> target class.
CIFAR10_ASYM_PAIRS = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
#: The Prune4ReL release's bidirectional CIFAR-10 pairs (its ``asym`` noise).
PRUNE4REL_PAIRS = ((0, 2), (4, 7), (1, 9), (3, 5), (6, 8))

_EXPECTED = "none, sym:R, asym:R, asym-pairs:R, instance:R, matrix:FILE, human[:NAME]"
_RATE_KINDS = {"sym": "sym", "symmetric": "sym", "asym": "asym", "asymmetric": "asym",
               "asym-pairs": "asym-pairs", "instance": "instance", "idn": "instance"}  # fmt: skip

Seed = int | np.random.Generator


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed noise spec: ``kind`` plus its ``rate``, matrix ``path`` or human label-set name ``which``."""

    kind: str
    rate: float | None = None
    path: str | None = None
    which: str | None = None

    def __str__(self) -> str:
        if self.rate is not None:
            return f"{self.kind}:{self.rate:g}"
        if self.kind == "matrix":
            return f"matrix:{self.path}"
        if self.kind == "human" and self.which:
            return f"human:{self.which}"
        return self.kind


def parse_noise(spec: str | NoiseSpec | None) -> NoiseSpec:
    """Parse a noise spec string (see the module docstring); one-line ``ValueError`` on anything else."""
    if isinstance(spec, NoiseSpec):
        return spec
    if spec is None:
        return NoiseSpec("none")
    if not isinstance(spec, str):
        raise ValueError(f"noise spec must be a string such as 'sym:0.2', got {spec!r}")
    kind, sep, arg = spec.strip().partition(":")
    kind = kind.strip().lower().replace("_", "-")
    arg = arg.strip()
    if kind in ("none", "clean"):
        if arg:
            raise ValueError(f"noise spec {spec!r}: {kind} takes no argument")
        return NoiseSpec("none")
    if kind in _RATE_KINDS:
        if not arg:
            raise ValueError(f"noise spec {spec!r} needs a rate in [0, 1], e.g. {kind}:0.2")
        try:
            rate = float(arg)
        except ValueError:
            raise ValueError(f"noise rate in {spec!r} must be a number in [0, 1], got {arg!r}") from None
        if not math.isfinite(rate) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"noise rate in {spec!r} must be in [0, 1], got {arg}")
        return NoiseSpec(_RATE_KINDS[kind], rate=rate)
    if kind == "matrix":
        if not arg:
            raise ValueError(f"noise spec {spec!r} needs a file: matrix:PATH.npy or matrix:PATH.csv")
        return NoiseSpec("matrix", path=arg)
    if kind == "human":
        return NoiseSpec("human", which=arg or None)
    raise ValueError(f"unknown noise spec {spec!r}; expected {_EXPECTED}")


@dataclass(frozen=True, eq=False)
class NoiseRecord:
    """What a noise injection did.

    Attributes
    ----------
    spec : str
        Canonical spec string ("sym:0.4").
    kind, rate, seed
        Parsed kind, requested rate (None where it does not apply) and the seed used.
    num_examples, num_classes : int
        N and K.
    num_flipped : int
        Examples whose noisy label differs from the clean one.
    realised_rate : float
        ``num_flipped / num_examples``.
    transition : numpy.ndarray
        (K, K) int64 counts; ``transition[i, j]`` examples of clean class i now carry label j.
    details : dict
        Kind-specific facts (the pair map used, the matrix file, the human label set).
    """

    spec: str
    kind: str
    rate: float | None
    seed: int | None
    num_examples: int
    num_classes: int
    num_flipped: int
    realised_rate: float
    transition: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)

    def transition_matrix(self) -> np.ndarray:
        """The realised transition counts normalised per row (clean class); empty rows are identity."""
        return _normalise_counts(self.transition)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the transition counts as nested lists)."""
        return {
            "spec": self.spec, "kind": self.kind, "rate": self.rate, "seed": self.seed,
            "num_examples": self.num_examples, "num_classes": self.num_classes,
            "num_flipped": self.num_flipped, "realised_rate": self.realised_rate,
            "transition": self.transition.tolist(), "details": self.details,
        }  # fmt: skip


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


def _labels_k(labels: Any, num_classes: int | None) -> tuple[np.ndarray, int]:
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


def _normalise_counts(counts: np.ndarray) -> np.ndarray:
    counts = counts.astype(np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    out = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    empty = rows[:, 0] == 0
    out[empty, np.flatnonzero(empty)] = 1.0
    return out


def estimate_transition_matrix(clean: Any, noisy: Any, num_classes: int) -> np.ndarray:
    """Row-stochastic (K, K) matrix ``P(noisy = j | clean = i)`` estimated from paired labels.

    With the CIFAR-N files this gives the human-noise transition matrix; saved with ``np.save`` it drives
    ``matrix:FILE`` noise ("CIFAR-N-like" class-conditional synthetic noise). Empty rows are identity.
    """
    return _normalise_counts(transition_counts(clean, noisy, num_classes))


# ---------------------------------------------------------------------------------------------------------
# noise models


def symmetric_noise(labels: Any, rate: float, num_classes: int | None = None, *, seed: Seed = 0) -> np.ndarray:
    """Flip exactly ``round(rate * N)`` uniformly chosen labels, each to a random *different* class."""
    y, k = _labels_k(labels, num_classes)
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
    y, k = _labels_k(labels, m.shape[0])
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
    y, k = _labels_k(labels, num_classes)
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
    y, k = _labels_k(labels, t.shape[0])
    u = _rng(seed).random(y.shape[0])
    cdf = np.cumsum(t, axis=1)
    out = y.copy()
    order, bounds = _groups(y, k)
    for c in range(k):
        idx = order[bounds[c] : bounds[c + 1]]
        if idx.size:
            out[idx] = np.searchsorted(cdf[c], u[idx] * cdf[c, -1], side="right")
    return np.minimum(out, k - 1)


# ---------------------------------------------------------------------------------------------------------
# the one entry point


def _human(y: np.ndarray, spec: NoiseSpec, human_labels: Any) -> tuple[np.ndarray, str | None]:
    if human_labels is None:
        raise ValueError(
            "human noise needs human_labels= (e.g. the label_sets of load_dataset('cifar10', cifar_n=PATH))"
        )
    which = spec.which
    if isinstance(human_labels, Mapping):
        noisy_sets = [key for key in human_labels if key != "clean"]
        if which is None:
            if len(noisy_sets) != 1:
                raise ValueError(f"name the human label set: human:NAME with NAME one of {', '.join(noisy_sets)}")
            which = noisy_sets[0]
        if which not in human_labels:
            raise ValueError(f"unknown human label set {which!r}; available: {', '.join(noisy_sets)}")
        human_labels = human_labels[which]
    h = check_labels(human_labels)
    if h.shape[0] != y.shape[0]:
        raise ValueError(f"human labels have {h.shape[0]} entries but there are {y.shape[0]} training labels")
    return h, which


def apply_noise(
    labels: Any,
    spec: str | NoiseSpec | None,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    dataset: str | None = None,
    features: Any = None,
    human_labels: Any = None,
) -> tuple[Any, NoiseRecord]:
    """Apply a noise spec to clean labels; return ``(noisy_labels, record)``.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Clean labels (numpy or torch; the noisy labels come back as the same kind, int64).
    spec : str or NoiseSpec
        See the module docstring and :func:`parse_noise`.
    num_classes : int, optional
        K; defaults to one more than the largest label (the matrix size for ``matrix:``).
    seed : int
        The only source of randomness.
    dataset : str, optional
        Chooses the ``asym`` map ("cifar10", "cifar100", otherwise cyclic).
    features : array-like, shape (N, ...), optional
        Inputs for ``instance`` noise (e.g. ``dataset.x_train``).
    human_labels : array-like or mapping of name to array, optional
        For ``human`` noise: one label array, or ``ArrayDataset.label_sets`` with ``human:NAME``.
    """
    parsed = parse_noise(spec)
    is_torch = hasattr(labels, "detach") and hasattr(labels, "cpu")
    details: dict[str, Any] = {}
    if parsed.kind == "matrix":
        t = load_transition_matrix(parsed.path, num_classes)
        num_classes = t.shape[0]
        details["matrix_file"] = parsed.path
    y, k = _labels_k(labels, num_classes)
    if parsed.kind == "none":
        noisy = y.copy()
    elif parsed.kind == "sym":
        noisy = symmetric_noise(y, parsed.rate, k, seed=seed)
    elif parsed.kind in ("asym", "asym-pairs"):
        m = pairs_map(k) if parsed.kind == "asym-pairs" else asym_map(dataset, k)
        details["map"] = {int(a): int(b) for a, b in enumerate(m) if a != b}
        if parsed.kind == "asym":
            details["map_name"] = {"cifar10": "patrini", "cifar100": "superclass"}.get(
                (dataset or "").lower().replace("-", "").replace("_", "").removesuffix("n"), "cyclic"
            )
        noisy = pair_noise(y, parsed.rate, m, seed=seed)
    elif parsed.kind == "instance":
        if features is None:
            raise ValueError("instance noise needs features= (the training inputs, e.g. dataset.x_train)")
        noisy = instance_noise(y, features, parsed.rate, k, seed=seed)
    elif parsed.kind == "matrix":
        noisy = matrix_noise(y, t, seed=seed)
    elif parsed.kind == "human":
        noisy, which = _human(y, parsed, human_labels)
        k = max(k, int(noisy.max()) + 1)
        details["label_set"] = which
        parsed = NoiseSpec("human", which=which)
    else:  # pragma: no cover - parse_noise only yields the kinds above
        raise ValueError(f"unknown noise kind {parsed.kind!r}")
    flipped = int((noisy != y).sum())
    record = NoiseRecord(
        spec=str(parsed), kind=parsed.kind, rate=parsed.rate,
        seed=None if parsed.kind in ("human", "none") else int(seed),
        num_examples=int(y.shape[0]), num_classes=k, num_flipped=flipped,
        realised_rate=flipped / y.shape[0], transition=transition_counts(y, noisy, k), details=details,
    )  # fmt: skip
    if is_torch:
        import torch

        return torch.from_numpy(noisy), record
    return noisy, record
