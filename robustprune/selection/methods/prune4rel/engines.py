"""Prune4ReL's own greedy engines: the released self-gain rule and the exact marginal gain.

- :func:`greedy_self`: the released self-gain rule with exact incremental gains, an argmax over a two-level
  block-maximum structure (:class:`BlockMax`), ties to the lowest index, float32 as released;
- :func:`greedy_exact`: the true marginal gain ``Σ_v tanh((NC_v + w c)/η) - tanh(NC_v/η)`` through the
  shared :func:`~robustprune.selection.core.greedy.lazy_greedy`, exact because the objective is monotone
  submodular.

Both take an optional per-example ``penalty`` that puts some examples in a second tier, taken only when the
first is exhausted (``prefer="confident"``), a starting set ``start`` (S0's contributions are in every NC
before the first pick) and ``allowed`` (only those examples are picked; the class round-robin counts only
them).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from robustprune.selection.core.graph import SimilarityGraph
from robustprune.selection.core.greedy import RoundRobin, lazy_greedy

__all__ = ["Neighbors", "TIER", "BlockMax", "self_gain", "greedy_self", "exact_gain", "greedy_exact"]

Neighbors = Callable[[int], tuple[np.ndarray, np.ndarray]]


#: Offset that puts every penalised example below every other one in the self rule (its gains lie in [0, 1]).
TIER = 4.0


def _tanh32(x: np.ndarray) -> np.ndarray:
    # torch's float32 tanh, as the released code evaluates it (numpy's differs in the last bit)
    import torch

    return torch.tanh(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def self_gain(nc: np.ndarray, conf: np.ndarray, eta: np.float32) -> np.ndarray:
    """The released self marginal gain ``tanh((NC + c)/eta) - tanh(NC/eta)`` in float32 (elementwise), with
    ``c`` the example's confidence ``conf``.

    Evaluated with torch's CPU float32 ``tanh``, which gives the same value for an element whatever the
    length of the array it sits in; the dense rule and the incremental engine therefore agree bit for bit.
    """
    return _tanh32((nc + conf) / eta) - _tanh32(nc / eta)


class BlockMax:
    """Argmax with lowest-position ties over a float32 array, with cheap point updates.

    Values live in blocks of ``b``; each block's maximum is cached. An update recomputes only the touched
    blocks; an argmax scans the block maxima of a range of blocks, then one block.
    """

    def __init__(self, values: np.ndarray, b: int):
        m = values.shape[0]
        nb = -(-m // b)
        self.b = b
        self.v = np.full(nb * b, -np.inf, dtype=np.float32)
        self.v[:m] = values
        self.v2 = self.v.reshape(nb, b)
        self.bmax = self.v2.max(axis=1)

    def update(self, pos: np.ndarray, vals: np.ndarray) -> None:
        self.v[pos] = vals
        blocks = pos // self.b
        if blocks.shape[0] > 32:  # repeated blocks are harmless, just wasted work when few
            blocks = np.unique(blocks)
        self.bmax[blocks] = self.v2[blocks].max(axis=1)

    def remove(self, pos: int) -> None:
        """Set one position to -inf (a picked example)."""
        self.v[pos] = -np.inf
        j = pos // self.b
        self.bmax[j] = self.v2[j].max()

    def argmax(self, lo_block: int = 0, hi_block: int | None = None) -> int:
        bm = self.bmax[lo_block:hi_block]
        j = lo_block + int(np.argmax(bm))
        return j * self.b + int(np.argmax(self.v2[j]))


def block_size_for(n: int) -> int:
    return int(min(4096, max(32, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))


def _class_major_positions(labels: np.ndarray, counts: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions that lay the examples out class by class, each class padded to whole blocks of ``b`` so
    that a class is a range of blocks: ``pos_of[i]`` (example -> position), ``idx_of[p]`` (position ->
    example, -1 for padding) and ``block_lo[k]`` (class k's first block; ``block_lo[k + 1]`` ends it)."""
    n = labels.shape[0]
    order = np.argsort(labels, kind="stable")
    padded = -(-counts // b) * b
    block_lo = np.concatenate(([0], np.cumsum(padded // b)))
    pos_start = block_lo[:-1] * b
    within = np.arange(n) - np.repeat(np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    pos_of = np.empty(n, dtype=np.int64)
    pos_of[order] = pos_start[labels[order]] + within
    idx_of = np.full(int(padded.sum()), -1, dtype=np.int64)
    idx_of[pos_of] = np.arange(n)
    return pos_of, idx_of, block_lo


def greedy_self(
    conf: np.ndarray,
    neighbors: Neighbors,
    budget: int,
    *,
    eta: np.float32,
    labels: np.ndarray | None = None,
    num_classes: int = 0,
    progress: Callable[[int, int], None] | None = None,
    penalty: np.ndarray | None = None,
    start: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int | None, np.ndarray]:
    """The released self-gain greedy, with exact incremental gains (see module docstring).

    ``conf``: each example's confidence c_x (float32); ``neighbors(p)``: the neighbours of ``p`` and their
    weights; ``eta``: the tanh temperature; ``labels`` and ``num_classes``: the classes of the round-robin
    (None: no class balance). ``penalty`` (float32 per example, 0 or ``TIER``) is subtracted from the tracked
    gains so that penalised examples come after every other one; it is added back to the recorded gains.
    ``start``: a starting set whose support is added to NC first (in its order, float32, as picks add theirs);
    its members are never picked. ``allowed`` (bool per example): only those may be picked, and the round-robin
    counts only them. Returns the picks, their gains, the balance break iteration and the final NC (the starting
    set's and the last pick's support included).
    """
    n = conf.shape[0]
    nc = np.zeros(n, dtype=np.float32)
    selected = np.zeros(n, dtype=bool)  # picked, or never pickable
    if allowed is not None:
        selected |= ~np.asarray(allowed, dtype=bool)
    for s in () if start is None else np.asarray(start, dtype=np.int64):
        idx, w = neighbors(int(s))
        nc[idx] += w * conf[s]
        selected[s] = True
    gains0 = self_gain(nc, conf, eta)
    if penalty is not None:
        gains0 = gains0 - penalty
    blocked = selected.any()
    if blocked:
        gains0[selected] = -np.inf
    picks = np.empty(budget, dtype=np.int64)
    gains = np.empty(budget, dtype=np.float64)
    b = block_size_for(n)
    step = max(1, budget // 100)

    rr = None
    if labels is not None:
        rr = RoundRobin(labels[~selected] if blocked else labels, num_classes)
        counts = np.bincount(labels, minlength=num_classes).astype(np.int64) if blocked else rr.init
        pos_of, idx_of, block_lo = _class_major_positions(labels, counts, b)
        vals = np.full(idx_of.shape[0], -np.inf, dtype=np.float32)
        vals[pos_of] = gains0
        tracker = BlockMax(vals, b)
    else:
        pos_of = None
        tracker = BlockMax(gains0, b)
    break_at = None

    for t in range(budget):
        if rr is not None and not rr.broken:
            cls = rr.target(t)
            pos = tracker.argmax(int(block_lo[cls]), int(block_lo[cls + 1]))
            p = int(idx_of[pos])
            rr.picked(cls)
            if rr.broken:
                break_at = t
        else:
            pos = tracker.argmax()
            p = pos if pos_of is None else int(idx_of[pos])
        picks[t] = p
        gains[t] = float(tracker.v[pos]) + (0.0 if penalty is None else float(penalty[p]))
        selected[p] = True
        if t == budget - 1:
            break
        if rr is not None and rr.broken and pos_of is not None:
            # after the break every pick is global: re-index in original order for lowest-index ties
            g = np.full(n, -np.inf, dtype=np.float32)
            g[~selected] = self_gain(nc[~selected], conf[~selected], eta)
            if penalty is not None:
                g[~selected] -= penalty[~selected]
            tracker, pos_of = BlockMax(g, b), None
        else:
            tracker.remove(pos)
        idx, w = neighbors(p)
        if idx.size:
            nc[idx] += w * conf[p]
            live = idx[~selected[idx]]
            if live.size:
                g = self_gain(nc[live], conf[live], eta)
                if penalty is not None:
                    g = g - penalty[live]
                tracker.update(live if pos_of is None else pos_of[live], g)
        if progress is not None and (t + 1) % step == 0:
            progress(t + 1, budget)
    if progress is not None:
        progress(budget, budget)
    if budget:  # the loop stops before the last pick's update (released); coverage counts it
        idx, w = neighbors(int(picks[-1]))
        nc[idx] += w * conf[picks[-1]]
    return picks, gains, break_at, nc


def exact_gain(
    conf: np.ndarray, graph: SimilarityGraph, eta: float, start: np.ndarray | None = None
) -> tuple[Callable[[int], float], Callable[[int], None], np.ndarray, np.ndarray]:
    """Prune4ReL's true marginal gain over the neighbourhoods of ``graph`` with confidences ``conf`` (float64):
    ``fresh(x)``, the gain of adding x, ``Σ_{v∈N(x)} tanh((NC_v + w c_x)/η) − tanh(NC_v/η)``; ``add(p)``, which
    commits p to NC; the initial gains of every example; and NC itself (updated in place). ``start``: a set
    whose support is in NC first (the initial gains are then marginal to it)."""
    conf64 = conf.astype(np.float64)
    nc = np.zeros(conf.shape[0], dtype=np.float64)
    indptr, indices, weights = graph.indptr, graph.indices, graph.weights.astype(np.float64)
    inv_eta = 1.0 / eta

    def fresh(x: int) -> float:
        a, b = indptr[x], indptr[x + 1]
        if a == b:
            return 0.0
        base = nc[indices[a:b]]
        return float(np.sum(np.tanh((base + weights[a:b] * conf64[x]) * inv_eta) - np.tanh(base * inv_eta)))

    def add(p: int) -> None:
        a, b = indptr[p], indptr[p + 1]
        nc[indices[a:b]] += weights[a:b] * conf64[p]

    for s in () if start is None else np.asarray(start, dtype=np.int64):
        add(int(s))
    # initial gains: sum over neighbours of tanh(w c_x / eta) (or its difference given the start), over all rows
    if start is not None:
        base = nc[indices]
        contrib = np.tanh((base + weights * np.repeat(conf64, np.diff(indptr))) * inv_eta) - np.tanh(base * inv_eta)
    else:
        contrib = np.tanh(weights * np.repeat(conf64, np.diff(indptr)) * inv_eta)
    g0 = np.add.reduceat(contrib, indptr[:-1]) if contrib.size else np.zeros(conf.shape[0])
    g0[np.diff(indptr) == 0] = 0.0
    return fresh, add, g0, nc


def greedy_exact(
    conf: np.ndarray,
    graph: SimilarityGraph,
    budget: int,
    *,
    eta: float,
    labels: np.ndarray | None = None,
    num_classes: int = 0,
    progress: Callable[[int, int], None] | None = None,
    penalty: np.ndarray | None = None,
    start: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int | None, np.ndarray]:
    """Prune4ReL's true marginal gain (float64) maximised by :func:`lazy_greedy`, over the neighbourhoods of
    ``graph`` with confidences ``conf``; ``labels`` and ``num_classes`` as in :func:`greedy_self`; ``penalty``
    > 0 puts an example in the second tier; ``start``: a starting set whose support is in NC before the first
    pick (the gains are marginal to it); ``allowed`` (bool per example): only those may be picked. Returns the picks,
    their gains, the balance break and the final NC."""
    n = conf.shape[0]
    has_start = start is not None and len(start) > 0
    fresh, add, g0, nc = exact_gain(conf, graph, eta, start if has_start else None)
    tier = None if penalty is None else (penalty > 0).astype(np.int64)
    cand = None
    if allowed is not None or has_start:
        ok = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool).copy()
        if has_start:
            ok[np.asarray(start, dtype=np.int64)] = False
        cand = np.flatnonzero(ok)
    picks, gains, break_at = lazy_greedy(
        g0, fresh, add, budget, labels=labels, num_classes=num_classes, tier=tier, progress=progress, candidates=cand
    )
    return picks, gains, break_at, nc
