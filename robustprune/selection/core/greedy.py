"""The greedy strategies that greedy selection methods share, and the class balancer.

Objectives live with their methods (Prune4ReL's, with its own engines, in
:mod:`robustprune.selection.methods.prune4rel`; k-center's in :mod:`robustprune.selection.methods.kcenter`);
the strategies that maximise them live here, apart from them (as apricot keeps optimisers apart from set
functions):

- :func:`lazy_greedy` (CELF, exact for monotone submodular functions, with optional class round-robin and
  candidate tiers), :func:`naive_greedy` (every gain every step: the reference), :func:`stochastic_greedy`
  (a sampled candidate set per step), :func:`per_class_greedy` (one greedy per class, proportional quotas)
  and :func:`argmax_greedy` (a score tensor kept current on the device, no host synchronisation: k-center's
  farthest-first traversal);
- :class:`RoundRobin`: the released class-balanced schedule (equal picks per class, the 1.5x break rule).

For active learning the engines also take the candidates (``candidates``: only those examples are picked,
and the class round-robin counts only them). Without them every engine is unchanged.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from robustprune.seeding import stream

if TYPE_CHECKING:
    import torch

__all__ = ["RoundRobin", "lazy_greedy", "naive_greedy", "stochastic_greedy", "argmax_greedy", "per_class_greedy"]


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
    import torch

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
