"""Named random streams derived from one user seed.

Every consumer of a seed (label noise, each selection method, the training engine's batch order, ...)
derives its own stream from ``(seed, name, ...)`` instead of calling ``np.random.default_rng(seed)``
directly. Two consumers given the same seed then draw independent numbers: without this, a uniform random
subset drawn with seed 0 from ``default_rng(0).random(N)`` would be exactly the complement of the examples
that asymmetric noise with seed 0 flipped (``default_rng(0).random(N) < rate``), and "random" pruning
would silently keep only clean labels.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["derive_seed", "stream"]


def _words(seed: int, keys: tuple[int | str, ...]) -> list[int]:
    s = int(seed)
    words = [s & 0xFFFFFFFF, (s >> 32) & 0xFFFFFFFF]
    for k in keys:
        words.append(zlib.crc32(k.encode()) if isinstance(k, str) else int(k) & 0xFFFFFFFF)
    return words


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed mixed from ``seed`` and ``keys`` (ints or strings; stable across runs and machines)."""
    a, b = np.random.SeedSequence(_words(seed, keys)).generate_state(2, dtype=np.uint32)
    return (int(a) << 31) ^ int(b)


def stream(seed: int, *keys: int | str) -> np.random.Generator:
    """A numpy Generator for the stream named by ``keys`` under ``seed`` (independent of other names)."""
    return np.random.default_rng(np.random.SeedSequence(_words(seed, keys)))
