"""The greedy engines every greedy selection method shares, and the class balancer.

Objectives live with their methods (Prune4ReL's in :mod:`robustprune.selection.prune4rel`, k-center's in
:mod:`robustprune.selection.kcenter`); the strategies that maximise them live here, apart from them (as
apricot keeps optimisers apart from set functions):

- :func:`greedy_self`: the released self-gain rule with exact incremental gains, an argmax over a two-level
  block-maximum structure (:class:`BlockMax`), ties to the lowest index, float32 as released;
- :func:`greedy_exact`: the true marginal gain ``Σ_v tanh((NC_v + w c)/η) - tanh(NC_v/η)`` through
  :func:`lazy_greedy`, exact because the objective is monotone submodular;
- :func:`lazy_greedy` (CELF, exact for monotone submodular functions, with optional class round-robin and
  candidate tiers), :func:`naive_greedy` (every gain every step: the reference), :func:`stochastic_greedy`
  (a sampled candidate set per step) and :func:`argmax_greedy` (a score tensor kept current on the device,
  no host synchronisation: k-center's farthest-first traversal);
- :class:`RoundRobin`: the released class-balanced schedule (equal picks per class, the 1.5x break rule).

Prune4ReL's two engines take an optional per-example ``penalty`` that puts some examples in a second tier,
taken only when the first is exhausted (``prefer="confident"``).

For active learning the engines also take a starting set and the candidates: ``start`` (Prune4ReL's engines:
S0's contributions are in every NC before the first pick) and ``allowed`` / ``candidates`` (only those
examples are picked, and the class round-robin counts only them). Without them every engine is unchanged.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import numpy as np
import torch

from robustprune.seeding import stream
from robustprune.selection.graph import SimilarityGraph

__all__ = [
    "BlockMax", "RoundRobin", "Neighbors", "TIER", "self_gain", "greedy_self", "greedy_exact", "lazy_greedy",
    "naive_greedy", "stochastic_greedy", "argmax_greedy", "per_class_greedy",
]  # fmt: skip

Neighbors = Callable[[int], tuple[np.ndarray, np.ndarray]]

#: Offset that puts every penalised example below every other one in the self rule (its gains lie in [0, 1]).
TIER = 4.0


def _tanh32(x: np.ndarray) -> np.ndarray:
    # torch's float32 tanh, as the released code evaluates it (numpy's differs in the last bit)
    return torch.tanh(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def self_gain(nc: np.ndarray, c: np.ndarray, eta: np.float32) -> np.ndarray:
    """The released self marginal gain ``tanh((NC + c)/eta) - tanh(NC/eta)`` in float32 (elementwise).

    Evaluated with torch's CPU float32 ``tanh``, which gives the same value for an element whatever the
    length of the array it sits in; the dense rule and the incremental engine therefore agree bit for bit.
    """
    return _tanh32((nc + c) / eta) - _tanh32(nc / eta)


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


class RoundRobin:
    """The released class-balanced schedule: which class each pick comes from, and when it stops."""

    def __init__(self, labels: np.ndarray, num_classes: int):
        self.init = np.bincount(labels, minlength=num_classes).astype(np.int64)
        self.remaining = self.init.copy()
        self.avail = list(range(num_classes))
        self.num_classes = num_classes
        self.min_balance = 0
        self.broken = False

    def target(self, t: int) -> int:
        """Class to pick from at iteration ``t`` (sets ``broken`` when the 1.5x rule fires)."""
        target = self.avail[t % len(self.avail)]
        while self.remaining[target] == 0:
            if len(self.avail) == self.num_classes:
                self.min_balance = int(self.init[target])
            self.avail = [k for k in self.avail if k != target]
            target = self.avail[t % len(self.avail)]
            if self.init[target] - self.remaining[target] > 1.5 * self.min_balance:
                self.broken = True
        return target

    def picked(self, cls: int) -> None:
        self.remaining[cls] -= 1


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
    c: np.ndarray,
    neighbors: Neighbors,
    budget: int,
    labels: np.ndarray | None,
    num_classes: int,
    eta: np.float32,
    progress: Callable[[int, int], None] | None,
    penalty: np.ndarray | None = None,
    start: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int | None, np.ndarray]:
    """The released self-gain greedy, with exact incremental gains (see module docstring).

    ``penalty`` (float32 per example, 0 or ``_TIER``) is subtracted from the tracked gains so that
    penalised examples come after every other one; it is added back to the recorded gains. ``start``: a
    starting set whose support is added to NC first (in its order, float32, as picks add theirs); its members
    are never picked. ``allowed`` (bool per example): only those may be picked, and the round-robin counts
    only them. Returns the picks, their gains, the balance break iteration and the final NC (the starting
    set's and the last pick's support included).
    """
    n = c.shape[0]
    nc = np.zeros(n, dtype=np.float32)
    selected = np.zeros(n, dtype=bool)  # picked, or never pickable
    if allowed is not None:
        selected |= ~np.asarray(allowed, dtype=bool)
    for s in () if start is None else np.asarray(start, dtype=np.int64):
        idx, w = neighbors(int(s))
        nc[idx] += w * c[s]
        selected[s] = True
    gains0 = self_gain(nc, c, eta)
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
            g[~selected] = self_gain(nc[~selected], c[~selected], eta)
            if penalty is not None:
                g[~selected] -= penalty[~selected]
            tracker, pos_of = BlockMax(g, b), None
        else:
            tracker.remove(pos)
        idx, w = neighbors(p)
        if idx.size:
            nc[idx] += w * c[p]
            live = idx[~selected[idx]]
            if live.size:
                g = self_gain(nc[live], c[live], eta)
                if penalty is not None:
                    g = g - penalty[live]
                tracker.update(live if pos_of is None else pos_of[live], g)
        if progress is not None and (t + 1) % step == 0:
            progress(t + 1, budget)
    if progress is not None:
        progress(budget, budget)
    if budget:  # the loop stops before the last pick's update (released); coverage counts it
        idx, w = neighbors(int(picks[-1]))
        nc[idx] += w * c[picks[-1]]
    return picks, gains, break_at, nc


def lazy_greedy(
    gain0: np.ndarray,
    fresh: Callable[[int], float],
    add: Callable[[int], None],
    budget: int,
    *,
    labels: np.ndarray | None = None,
    num_classes: int = 0,
    tier: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Lazy (CELF) greedy maximisation of a monotone submodular function, exact: a stale gain is an upper
    bound, so a candidate whose fresh gain still beats every stale key is the true argmax.

    Parameters
    ----------
    gain0 : (N,) gains of every candidate on the empty set.
    fresh : the current gain of candidate ``x``; add : commit ``x`` to the set.
    budget : number of picks.
    labels, num_classes : optional classes for :class:`RoundRobin` balancing (released Prune4ReL schedule);
        one heap per class until its break rule fires, then one merged heap.
    tier : optional (N,) int; heap keys are ``(tier, -gain, index)``, so a higher tier is taken only when the
        lower ones are exhausted (within a class while balancing). Ties go to the lowest index.
    candidates : optional int indices of the examples that may be picked (default: all); the round-robin
        counts only them.

    Returns
    -------
    picks (budget,), their gains when picked (budget,), and the iteration of the balance break (or None).
    """
    n = gain0.shape[0]
    tiers = np.zeros(n, dtype=np.int64) if tier is None else np.asarray(tier, dtype=np.int64)

    def make_heap(members: np.ndarray) -> list[tuple[int, float, int]]:
        h = list(zip(tiers[members].tolist(), (-gain0[members]).tolist(), members.tolist(), strict=True))
        heapq.heapify(h)
        return h

    ok = None
    if candidates is not None:
        ok = np.zeros(n, dtype=bool)
        ok[np.asarray(candidates, dtype=np.int64)] = True
    if labels is None:
        rr = None
    else:
        rr = RoundRobin(labels if ok is None else labels[ok], num_classes)
    # keys are refreshed in place, so a merged heap after the break stays valid
    if rr:
        in_class = [labels == k if ok is None else (labels == k) & ok for k in range(num_classes)]
        heaps = [make_heap(np.flatnonzero(m)) for m in in_class]
    else:
        heaps = [make_heap(np.arange(n) if ok is None else np.flatnonzero(ok))]
    picks = np.empty(budget, dtype=np.int64)
    gains = np.empty(budget, dtype=np.float64)
    step = max(1, budget // 100)
    break_at = None
    merged = rr is None

    def pop_best(h: list[tuple[int, float, int]]) -> tuple[int, float]:
        while True:
            k, _, x = heapq.heappop(h)
            g = fresh(x)
            if not h or (k, -g, x) <= h[0]:
                return x, g
            heapq.heappush(h, (k, -g, x))

    for t in range(budget):
        if not merged:
            cls = rr.target(t)
            p, g = pop_best(heaps[cls])
            rr.picked(cls)
            if rr.broken:
                break_at = t
                merged_heap = [e for h in heaps for e in h]
                heapq.heapify(merged_heap)
                heaps = [merged_heap]
                merged = True
        else:
            p, g = pop_best(heaps[0])
        picks[t] = p
        gains[t] = g
        add(p)
        if progress is not None and (t + 1) % step == 0:
            progress(t + 1, budget)
    if progress is not None:
        progress(budget, budget)
    return picks, gains, break_at


def naive_greedy(
    gains_of: Callable[[np.ndarray], np.ndarray],
    add: Callable[[int], None],
    n: int,
    budget: int,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain greedy: every step evaluates the gains of all remaining candidates (``gains_of(candidates)``)
    and commits the best (ties: lowest index). The reference the faster engines are checked against, and the
    engine for objectives that are not submodular. ``candidates``: the indices that may be picked (default
    all ``n``)."""
    return _candidate_greedy(gains_of, add, n, budget, candidates=candidates)


def stochastic_greedy(
    gains_of: Callable[[np.ndarray], np.ndarray],
    add: Callable[[int], None],
    n: int,
    budget: int,
    *,
    epsilon: float = 0.01,
    seed: int = 0,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stochastic greedy (Mirzasoleiman et al., AAAI 2015): each step evaluates a uniform sample of
    ``ceil(n / budget · ln(1/epsilon))`` remaining candidates and commits the best of them; in expectation
    (1 − 1/e − epsilon)-optimal for monotone submodular functions at O(n log(1/epsilon)) evaluations in all.
    Randomness from ``stream(seed, "stochastic_greedy")`` only. ``candidates``: the indices that may be
    picked (default all ``n``; the sample size then counts only them)."""
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
    rng = stream(seed, "stochastic_greedy")
    m = n if candidates is None else len(candidates)
    size = max(1, math.ceil(m / max(budget, 1) * math.log(1.0 / epsilon)))

    def sample(cand: np.ndarray) -> np.ndarray:
        return np.sort(rng.choice(cand, size, replace=False)) if cand.size > size else cand

    return _candidate_greedy(gains_of, add, n, budget, sample, candidates)


def _candidate_greedy(
    gains_of: Callable[[np.ndarray], np.ndarray],
    add: Callable[[int], None],
    n: int,
    budget: int,
    sample: Callable[[np.ndarray], np.ndarray] | None = None,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The loop of the naive and stochastic engines: evaluate the remaining candidates (or ``sample`` of
    them), commit the best (ties: lowest index)."""
    if candidates is None:
        remaining = np.ones(n, dtype=bool)
    else:
        remaining = np.zeros(n, dtype=bool)
        remaining[np.asarray(candidates, dtype=np.int64)] = True
    picks = np.empty(budget, dtype=np.int64)
    gains = np.empty(budget, dtype=np.float64)
    for t in range(budget):
        cand = np.flatnonzero(remaining)
        if sample is not None:
            cand = sample(cand)
        g = np.asarray(gains_of(cand), dtype=np.float64)
        j = int(np.argmax(g))
        picks[t], gains[t] = cand[j], g[j]
        remaining[cand[j]] = False
        add(int(cand[j]))
    return picks, gains


def per_class_greedy(
    labels: np.ndarray,
    budget: int,
    run_class: Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray]],
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The proportional class balancer of greedy methods: ``run_class(members, quota, class)`` picks
    ``quota`` of a class's ``members`` (positions into ``members`` and their gains), with quotas from
    :func:`~robustprune.selection.budget.class_quotas`; the per-class sequences are interleaved round by
    round, so each class keeps its own pick order. Returns global indices and gains.

    With ``candidates`` (indices that may be picked) the quotas are split over the candidates' labels;
    ``members`` is still every example of the class, and ``run_class`` must pick only candidates."""
    from robustprune.selection.budget import class_quotas

    if candidates is None:
        quotas = class_quotas(labels, budget)
    else:
        quotas = class_quotas(labels[np.asarray(candidates, dtype=np.int64)], budget, int(labels.max()) + 1)
    parts_idx, parts_gain, parts_rank = [], [], []
    for c in np.flatnonzero(quotas):
        members = np.flatnonzero(labels == c)
        order, gains = run_class(members, int(quotas[c]), int(c))
        parts_idx.append(members[order])
        parts_gain.append(np.asarray(gains, dtype=np.float64))
        parts_rank.append(np.arange(order.shape[0]))
    if not parts_idx:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    idx, gain, rank = np.concatenate(parts_idx), np.concatenate(parts_gain), np.concatenate(parts_rank)
    merge = np.argsort(rank, kind="stable")
    return idx[merge].astype(np.int64), gain[merge]


def argmax_greedy(
    scores: torch.Tensor,
    update: Callable[[torch.Tensor], None],
    budget: int,
    *,
    first: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy over a score tensor kept current by ``update``, entirely on the scores' device (no host
    synchronisation): each step picks the first maximal score, records it, and calls ``update(pick)``,
    which must refresh ``scores`` in place and set picked entries to -inf. ``first`` fixes the first pick
    (its recorded score is +inf). Returns the picks and their scores as device tensors."""
    dev = scores.device
    order = torch.empty(budget, dtype=torch.int64, device=dev)
    values = torch.empty(budget, dtype=scores.dtype, device=dev)
    if budget == 0:
        return order, values
    if first is None:
        cur = torch.argmax(scores).view(1)
        values[0:1] = scores.index_select(0, cur)
    else:
        cur = torch.tensor([int(first)], dtype=torch.int64, device=dev)
        values[0] = float("inf")
    step = max(1, budget // 100)
    for j in range(budget):
        order[j : j + 1] = cur
        update(cur)
        if j + 1 < budget:
            cur = torch.argmax(scores).view(1)  # first maximal index on ties
            values[j + 1 : j + 2] = scores.index_select(0, cur)
        if progress is not None and ((j + 1) % step == 0 or j + 1 == budget):
            progress(j + 1)
    return order, values


def greedy_exact(
    c: np.ndarray,
    graph: SimilarityGraph,
    budget: int,
    labels: np.ndarray | None,
    num_classes: int,
    eta: float,
    progress: Callable[[int, int], None] | None,
    penalty: np.ndarray | None = None,
    start: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int | None, np.ndarray]:
    """Prune4ReL's true marginal gain (float64) maximised by :func:`lazy_greedy`; ``penalty`` > 0 puts an
    example in the second tier; ``start``: a starting set whose support is in NC before the first pick (the
    gains are marginal to it); ``allowed`` (bool per example): only those may be picked. Returns the picks,
    their gains, the balance break and the final NC."""
    n = c.shape[0]
    c64 = c.astype(np.float64)
    nc = np.zeros(n, dtype=np.float64)
    indptr, indices, weights = graph.indptr, graph.indices, graph.weights.astype(np.float64)
    inv_eta = 1.0 / eta

    def fresh(x: int) -> float:
        a, b = indptr[x], indptr[x + 1]
        if a == b:
            return 0.0
        v = indices[a:b]
        base = nc[v]
        return float(np.sum(np.tanh((base + weights[a:b] * c64[x]) * inv_eta) - np.tanh(base * inv_eta)))

    def add(p: int) -> None:
        a, b = indptr[p], indptr[p + 1]
        nc[indices[a:b]] += weights[a:b] * c64[p]

    has_start = start is not None and len(start) > 0
    for s in np.asarray(start, dtype=np.int64) if has_start else ():
        add(int(s))
    # initial gains: sum over neighbours of tanh(w c_x / eta) (or its difference given S0), over all rows
    if has_start:
        base = nc[indices]
        contrib = np.tanh((base + weights * np.repeat(c64, np.diff(indptr))) * inv_eta) - np.tanh(base * inv_eta)
    else:
        contrib = np.tanh(weights * np.repeat(c64, np.diff(indptr)) * inv_eta)
    g0 = np.add.reduceat(contrib, indptr[:-1]) if contrib.size else np.zeros(n)
    g0[np.diff(indptr) == 0] = 0.0
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
