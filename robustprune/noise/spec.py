"""Noise specs (:func:`parse_noise`), the record of what noise did (:class:`NoiseRecord`) and shared constants."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "NoiseSpec",
    "NoiseRecord",
    "parse_noise",
    "normalise_counts",
    "CIFAR10_ASYM_PAIRS",
    "PRUNE4REL_PAIRS",
    "Seed",
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
        return normalise_counts(self.transition)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the transition counts as nested lists)."""
        return {
            "spec": self.spec, "kind": self.kind, "rate": self.rate, "seed": self.seed,
            "num_examples": self.num_examples, "num_classes": self.num_classes,
            "num_flipped": self.num_flipped, "realised_rate": self.realised_rate,
            "transition": self.transition.tolist(), "details": self.details,
        }  # fmt: skip


def normalise_counts(counts: np.ndarray) -> np.ndarray:
    counts = counts.astype(np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    out = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    empty = rows[:, 0] == 0
    out[empty, np.flatnonzero(empty)] = 1.0
    return out
