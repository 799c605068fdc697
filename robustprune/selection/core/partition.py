"""The partitioned (two-round) greedy: the machinery for selecting from millions of examples without ever
holding the whole similarity graph in one process.

The algorithm is the two-round distributed greedy for monotone submodular functions (GreeDi: Mirzasoleiman,
Karbasi, Sarkar and Krause, NeurIPS 2013; with a random partition, RandGreeDi: Barbosa, Ene, Nguyen and Ward,
ICML 2015), for objectives that are a sum over examples of a function of their neighbourhood (Prune4ReL's
``Σ_v tanh(NC_v/η)``):

1. **Partition** the examples into P parts (:func:`assign_parts`): ``"random"`` (seeded, equal sizes),
   ``"class"`` (whole classes, dealt largest first to the smallest part) or ``"cluster"`` (whole clusters of a
   spherical k-means on a sample of the embeddings, 8 per part, dealt the same way).
2. **Round 1**, on each part alone: the part's own graph (its rows only) and the method's exact greedy on the
   part's objective (every sum over examples restricted to the part), picking ``ceil(oversample · q_ic)``
   examples of each class c, where ``q_ic`` is the part's share of the class quota (:func:`split_quotas` of
   :func:`released_quotas`: the class counts of Prune4ReL's released round-robin up to its 1.5× break), then,
   when the break leaves picks to take from any class, ``ceil(oversample ·`` the part's share of them ``)``
   more; :func:`quota_lazy_greedy` is that greedy.
3. **Round 2**, over the union of the parts' picks: the greedy of the *partition-restricted* objective
   ``F̃(S) = Σ_i F_i(S ∩ V_i)`` with the final class quotas, then the picks after the break from any class
   (:func:`merge_rounds`). F̃ is a sum of functions of
   disjoint ground sets, so a part's marginal gains depend on that part's picks alone: the greedy over the
   union takes, at each step, the largest next gain among the parts' round-1 sequences, which is a merge of
   those sequences by gain. Nothing but (index, gain, class) of each round-1 pick leaves a part.

What it keeps. ``F ≥ F̃`` for every S (dropping the edges between parts only lowers NC, and tanh is increasing),
and ``F(S) − F̃(S) ≤ cut(S)/η``, the weight of the edges from S to other parts times the confidences, over η
(tanh is 1-Lipschitz). Round 2 is the greedy of F̃ over the union with the class quotas (a partition matroid),
exact while no class quota fills; after that, a part that skipped a pick of a full class has its later gains
recorded given that skipped pick, which under-states them (submodularity), so the merge stays conservative.
The greedy has F̃'s usual factor (1 − 1/e without class quotas, 1/2 with them), so the subset reaches that share
of F̃'s optimum, which is within ``cut(OPT)/η`` of F's optimum. A partition that cuts few edges (``"cluster"``)
loses little; ``"random"`` cuts (P−1)/P of every neighbourhood. ``docs/benchmarks.md`` (Web scale) has the
measured ratios.

Every step is deterministic for a seed and the same wherever a part runs: under torchrun the parts are dealt
to the ranks (part i to rank i mod size), each rank runs round 1 on its own, and only the picks are gathered
(:func:`gather_sequences`); the result equals the one-process run bit for bit. The scans over all rows
(the embedding's moments, the cluster assignment) go by fixed blocks dealt the same way, and their partial
results are combined in block order.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import numpy as np

from robustprune.selection.core.geometry import whitening
from robustprune.selection.core.rows import chunks, map_blocks, read_rows

__all__ = [
    "PARTITIONS",
    "check_partition",
    "EmbeddingMap",
    "embedding_map",
    "sampled_tau",
    "assign_parts",
    "released_quotas",
    "split_quotas",
    "round_one_quotas",
    "quota_lazy_greedy",
    "merge_rounds",
    "owned_parts",
    "gather_sequences",
    "map_blocks",
    "two_round",
]

#: Values of ``partition``.
PARTITIONS = ("random", "class", "cluster")

#: Rows per block of the scans dealt to ranks (moments, cluster assignment).
BLOCK = 1 << 20

#: Clusters per part of ``partition="cluster"``, k-means sample rows per cluster (at most :data:`KMEANS_ROWS`
#: in all: every rank fits the same k-means) and Lloyd steps.
CLUSTERS_PER_PART, SAMPLE_PER_CLUSTER, KMEANS_ROWS, KMEANS_ITERS = 8, 256, 1 << 18, 20


def check_partition(parts: object, partition: object, oversample: object) -> tuple[int, str, float]:
    """``parts`` (a whole number >= 1), ``partition`` (one of :data:`PARTITIONS`) and ``oversample``
    (a number >= 1), checked."""
    if isinstance(parts, bool) or not isinstance(parts, (int, np.integer)) or int(parts) < 1:
        raise ValueError(f"parts must be a whole number >= 1 (1: one process's greedy, no partition), got {parts!r}")
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}, got {partition!r}")
    try:
        a = float(oversample)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"oversample must be a number >= 1, got {oversample!r}") from None
    if not math.isfinite(a) or a < 1:
        raise ValueError(f"oversample must be a number >= 1 (round 1 picks oversample × its share), got {oversample!r}")
    return int(parts), str(partition), a


# --- scans over all rows, dealt to the ranks by blocks ------------------------------------------------------


class EmbeddingMap:
    """The space the cosine is taken in, as a map of rows: the partitioned counterpart of
    :func:`~robustprune.selection.core.geometry.transform_embedding` (the same transforms, their moments
    gathered by blocks of rows instead of from one array). Call it on rows of the source: float32 out."""

    def __init__(self, kind: str, mean: np.ndarray | None = None, proj: np.ndarray | None = None) -> None:
        self.kind, self.mean, self.proj = kind, mean, proj

    @property
    def dim(self) -> int | None:
        return None if self.proj is None else int(self.proj.shape[1])

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.kind == "raw":
            return np.asarray(rows, dtype=np.float32)
        x = np.asarray(rows, dtype=np.float64) - self.mean
        if self.proj is not None:
            x = x @ self.proj
        return x.astype(np.float32)


def embedding_map(source: object, kind: str) -> EmbeddingMap:
    """The :class:`EmbeddingMap` of ``kind`` ("raw", "center", "whiten") for the rows of ``source``: the mean
    from one scan, the covariance of the centred rows from a second (float64, block partial sums added in
    block order); whitening keeps the principal directions with variance above 1e-6 of the largest, signs
    fixed as :func:`~robustprune.selection.core.geometry.transform_embedding` fixes them."""
    if kind not in ("raw", "center", "whiten"):
        raise ValueError(f"embedding must be one of ('raw', 'center', 'whiten'), got {kind!r}")
    if kind == "raw":
        return EmbeddingMap("raw")
    n, d = (int(s) for s in source.shape)  # type: ignore[attr-defined]

    def block_sum(a: int, b: int) -> np.ndarray:
        s = np.zeros(d)
        for p, q in chunks(b - a):
            s += np.asarray(read_rows(source, slice(a + p, a + q)), dtype=np.float64).sum(axis=0)
        return s

    mean = np.add.reduce(np.stack(map_blocks(n, block_sum, np.float64, BLOCK)), axis=0) / n
    if kind == "center":
        return EmbeddingMap("center", mean)

    def block_cov(a: int, b: int) -> np.ndarray:
        c = np.zeros((d, d))
        for p, q in chunks(b - a):
            x = np.asarray(read_rows(source, slice(a + p, a + q)), dtype=np.float64) - mean
            c += x.T @ x
        return c

    cov = np.add.reduce(np.stack(map_blocks(n, block_cov, np.float64, BLOCK)), axis=0).reshape(d, d) / max(1, n - 1)
    return EmbeddingMap("whiten", mean, whitening(cov))


def sampled_tau(
    source: object, fmap: EmbeddingMap, target_degree: float, *, seed: int, sample: int = 4096, device: str = "cpu"
) -> float:
    """:func:`~robustprune.selection.core.geometry.auto_tau` read from a row source: the τ at which the graph
    of all N rows has mean degree ``target_degree`` (self included), from a ``sample × sample`` block of the
    similarity (rows and columns drawn as ``auto_tau`` draws them), reading and mapping only those rows."""
    from robustprune.selection.core.geometry import auto_tau

    return auto_tau(
        source, target_degree, sample=sample, seed=seed, device=device, read=lambda idx: fmap(read_rows(source, idx))
    )


# --- the partition -----------------------------------------------------------------------------------------


def _deal(sizes: np.ndarray, parts: int) -> np.ndarray:
    """Groups of the given sizes dealt to ``parts`` parts, largest first into the part with fewest rows so far
    (ties: lower group, lower part). Returns the part of each group."""
    part_of = np.zeros(sizes.shape[0], dtype=np.int64)
    load = np.zeros(parts, dtype=np.int64)
    for g in np.argsort(-sizes, kind="stable"):
        p = int(np.argmin(load))
        part_of[g] = p
        load[p] += int(sizes[g])
    return part_of


def assign_parts(
    kind: str,
    n: int,
    parts: int,
    *,
    seed: int = 0,
    labels: np.ndarray | None = None,
    source: object = None,
    fmap: EmbeddingMap | None = None,
    device: str = "cpu",
) -> tuple[np.ndarray, dict]:
    """The part of every example (int32, shape (N,)) and facts about the partition.

    "random": a seeded permutation cut into ``parts`` equal ranges. "class": whole classes of ``labels``
    dealt to the parts (needs ``parts`` <= the number of classes present). "cluster": a spherical k-means with
    ``8·parts`` centroids, fitted on a seeded sample of ``256`` rows per centroid (at most 262,144 rows) of
    ``fmap(source)`` (:data:`KMEANS_ITERS` Lloyd steps), every row assigned to its most similar centroid by
    blocks, and the clusters dealt to the parts so that their sizes are close.
    """
    from robustprune.seeding import stream

    if kind == "random":
        perm = stream(seed, "partition", "random").permutation(n)
        part = np.empty(n, dtype=np.int32)
        part[perm] = (np.arange(n, dtype=np.int64) * parts // n).astype(np.int32)
        return part, {}
    if kind == "class":
        if labels is None:
            raise ValueError("partition='class' needs labels")
        sizes = np.bincount(labels)
        present = int((sizes > 0).sum())
        if parts > present:
            raise ValueError(
                f"partition='class' deals whole classes to parts: {parts} parts need at least {parts} classes, "
                f"the labels have {present}; use fewer parts or partition='cluster'"
            )
        return _deal(sizes, parts)[labels].astype(np.int32), {}
    if kind != "cluster":
        raise ValueError(f"partition must be one of {PARTITIONS}, got {kind!r}")
    import torch

    from robustprune._device import resolve_device
    from robustprune.selection.core.graph import normalize_rows

    dev = resolve_device(device)
    k = max(1, min(CLUSTERS_PER_PART * parts, n))
    m = min(n, max(k, min(SAMPLE_PER_CLUSTER * k, KMEANS_ROWS)))
    rng = stream(seed, "partition", "cluster")
    sample = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
    zs = normalize_rows(fmap(read_rows(source, sample)), dev)
    cen = zs[torch.from_numpy(np.sort(rng.choice(m, k, replace=False))).to(dev)].clone()
    for _ in range(KMEANS_ITERS):
        a = torch.argmax(zs @ cen.T, dim=1)
        sums = torch.zeros_like(cen).index_add_(0, a, zs)
        norms = torch.linalg.vector_norm(sums, dim=1, keepdim=True)
        moved = norms.squeeze(1) > 0  # an empty cluster keeps its centroid
        cen[moved] = sums[moved] / norms[moved]

    def assign(a: int, b: int) -> np.ndarray:
        out = np.empty(b - a, dtype=np.int32)
        for p, q in chunks(b - a):
            z = normalize_rows(fmap(read_rows(source, slice(a + p, a + q))), dev)
            out[p:q] = torch.argmax(z @ cen.T, dim=1).cpu().numpy()
        return out

    cluster = np.concatenate(map_blocks(n, assign, np.int32, BLOCK)) if n else np.empty(0, np.int32)
    sizes = np.bincount(cluster, minlength=k)
    part_of = _deal(sizes, parts)
    return part_of[cluster].astype(np.int32), {"clusters": k, "kmeans_rows": m}


# --- quotas ------------------------------------------------------------------------------------------------


def released_quotas(counts: np.ndarray, budget: int) -> tuple[np.ndarray, int]:
    """The class counts of Prune4ReL's released round-robin (:class:`~robustprune.selection.core.greedy.RoundRobin`)
    over classes of ``counts`` members: the picks of each class up to and including the iteration at which its
    1.5× break rule fires (or all ``budget`` picks when it never fires), and the number of picks left after the
    break, which the released greedy takes globally, from any class. The schedule depends on the class sizes
    only; full rounds between two exhausted classes are taken at once. Returns ``(quotas (K,) int64, rest)``."""
    from robustprune.selection.core.greedy import RoundRobin

    counts = np.asarray(counts, dtype=np.int64)
    if budget > int(counts.sum()):
        raise ValueError(f"budget {budget} exceeds the {int(counts.sum())} examples")
    rr = RoundRobin(np.repeat(np.arange(counts.shape[0]), counts), counts.shape[0])
    taken = np.zeros(counts.shape[0], dtype=np.int64)
    t = 0
    while t < budget:
        live = [c for c in rr.avail if rr.remaining[c] > 0]
        rounds = min((int(rr.remaining[live].min()) - 1) if live else 0, (budget - t) // len(rr.avail))
        if rounds > 0 and len(live) == len(rr.avail):  # every class of the schedule takes `rounds` more picks
            rr.remaining[rr.avail] -= rounds
            taken[rr.avail] += rounds
            t += rounds * len(rr.avail)
            continue
        c = rr.target(t)
        rr.picked(c)
        taken[c] += 1
        t += 1
        if rr.broken:
            break
    return taken, budget - t


def split_quotas(quotas: np.ndarray, part_counts: np.ndarray) -> np.ndarray:
    """Each class's quota split over the parts in proportion to the part's members of the class (largest
    remainder; ties to the lower part). ``part_counts``: (P, K). Returns (P, K) int64, never above the
    counts, each column summing to its quota."""
    p, k = part_counts.shape
    out = np.zeros((p, k), dtype=np.int64)
    for c in range(k):
        total = int(part_counts[:, c].sum())
        if total == 0 or quotas[c] == 0:
            continue
        exact = quotas[c] * part_counts[:, c] / total
        base = np.floor(exact).astype(np.int64)
        rest = int(quotas[c] - base.sum())
        order = np.argsort(-(exact - base), kind="stable")
        base[order[:rest]] += 1
        out[:, c] = base
    return out


def round_one_quotas(shares: np.ndarray, part_counts: np.ndarray, oversample: float) -> np.ndarray:
    """Round 1's picks per part and class: ``ceil(oversample · share)``, at most the part's members."""
    return np.minimum(part_counts, np.ceil(oversample * shares - 1e-9).astype(np.int64))


# --- the greedy of a part, and round 2 ---------------------------------------------------------------------


def quota_lazy_greedy(
    gain0: np.ndarray,
    fresh: Callable[[int], float],
    add: Callable[[int], None],
    labels: np.ndarray,
    quotas: np.ndarray,
    progress: Callable[[int, int], None] | None = None,
    then: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Lazy (CELF) greedy of a monotone submodular function under per-class quotas (a partition matroid):
    each step takes the example with the largest gain among the classes not yet full (ties: lowest index);
    exact, as :func:`~robustprune.selection.core.greedy.lazy_greedy`. ``quotas[c]`` must not exceed the
    members of class c. ``then``: once every quota is filled, that many more picks from any class (at most the
    examples left), as the released schedule does after its break. Returns the picks (in order) and their
    gains."""
    labels = np.asarray(labels, dtype=np.int64)
    left = np.asarray(quotas, dtype=np.int64).copy()
    first = int(left.sum())
    total = first + max(0, min(int(then), labels.shape[0] - first))
    key = -np.asarray(gain0, dtype=np.float64)  # the latest (stale) key of every example: an upper bound
    live = np.flatnonzero(left[labels] > 0)
    heap = list(zip(key[live].tolist(), live.tolist(), strict=True))
    heapq.heapify(heap)
    picks = np.empty(total, dtype=np.int64)
    gains = np.empty(total, dtype=np.float64)
    step = max(1, total // 100)
    t = 0
    while t < total:
        if t == first:  # the quotas are filled: one heap of every example not picked, any class
            left[:] = np.iinfo(np.int64).max
            chosen = np.zeros(labels.shape[0], dtype=bool)
            chosen[picks[:t]] = True
            rest = np.flatnonzero(~chosen)
            heap = list(zip(key[rest].tolist(), rest.tolist(), strict=True))
            heapq.heapify(heap)
        _, x = heapq.heappop(heap)
        if left[labels[x]] == 0:
            continue
        g = fresh(x)
        while heap and left[labels[heap[0][1]]] == 0:
            heapq.heappop(heap)
        if heap and (-g, x) > heap[0]:
            key[x] = -g
            heapq.heappush(heap, (-g, x))
            continue
        picks[t], gains[t] = x, g
        left[labels[x]] -= 1
        add(x)
        t += 1
        if progress is not None and t % step == 0:
            progress(t, total)
    return picks, gains


def merge_rounds(
    part: np.ndarray, index: np.ndarray, gain: np.ndarray, label: np.ndarray, quotas: np.ndarray, rest: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Round 2: the greedy of the partition-restricted objective over the union of the parts' round-1 picks.

    The arrays hold every round-1 pick, part by part and in each part's pick order (``part`` ascending):
    its part, global index, gain and class. A part's sequence is taken in its own order, keyed by its running
    minimum gain (the greedy's gains do not increase; the minimum removes rounding noise); the parts are
    merged by key (ties: lower part, earlier pick), and each class keeps its first ``quotas[c]`` picks; then
    ``rest`` more of the remaining picks are taken in merged order, from any class (the released schedule's
    picks after its break). Returns the indices (the quotas' picks in merged order, then the rest's: exactly
    ``quotas.sum() + rest``) and their gains.
    """
    part = np.asarray(part, dtype=np.int64)
    key = np.asarray(gain, dtype=np.float64).copy()
    pos = np.zeros(part.shape[0], dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, part[1:] != part[:-1]]) if part.size else np.empty(0, np.int64)
    for a, b in zip(starts, np.r_[starts[1:], part.shape[0]], strict=True):
        key[a:b] = np.minimum.accumulate(key[a:b])
        pos[a:b] = np.arange(b - a)
    order = np.lexsort((pos, part, -key))
    lab = np.asarray(label, dtype=np.int64)[order]
    by_class = np.argsort(lab, kind="stable")
    rank = np.empty(lab.shape[0], dtype=np.int64)
    counts = np.bincount(lab, minlength=quotas.shape[0])
    rank[by_class] = np.arange(lab.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
    within = rank < np.asarray(quotas, dtype=np.int64)[lab]
    take = np.concatenate([order[within], order[~within][: max(0, int(rest))]])
    if take.shape[0] != int(np.sum(quotas)) + int(rest):
        raise RuntimeError(
            f"round 2 found {take.shape[0]} picks for quotas summing to {int(np.sum(quotas))} and {int(rest)} more"
        )
    return np.asarray(index, dtype=np.int64)[take], np.asarray(gain, dtype=np.float64)[take]


# --- torchrun: parts dealt to ranks ------------------------------------------------------------------------


def owned_parts(parts: int, distributed: bool = True) -> list[int]:
    """The parts this rank runs round 1 on: part i on rank ``i mod size`` (every part in one process, or when
    ``distributed`` is False)."""
    if not distributed:
        return list(range(parts))
    import robustprune.distributed as dist

    w = dist.world()
    return [i for i in range(parts) if i % w.size == w.rank]


def gather_sequences(
    seqs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], distributed: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every part's round-1 sequence (``seqs[i] = (indices, gains, classes)`` for this rank's parts), part by
    part: ``(part, index, gain, class)`` arrays. Under torchrun a gather of the picks only, to rank 0 (the one
    that merges them); the other ranks get empty arrays."""
    mine = sorted(seqs)
    part = np.concatenate([np.full(seqs[i][0].shape[0], i, np.int64) for i in mine] or [np.empty(0, np.int64)])
    cols = [
        np.concatenate([np.asarray(seqs[i][k], dtype=dt) for i in mine] or [np.empty(0, dt)])
        for k, dt in ((0, np.int64), (1, np.float64), (2, np.int64))
    ]
    import robustprune.distributed as dist

    if distributed and dist.world().distributed:
        import torch

        part = dist.gather_cat(torch.from_numpy(part)).numpy()
        cols = [dist.gather_cat(torch.from_numpy(c)).numpy() for c in cols]
    order = np.argsort(part, kind="stable")  # rank order → part order; each part's picks stay in order
    return part[order], cols[0][order], cols[1][order], cols[2][order]


def two_round(
    part: np.ndarray,
    budget: int,
    oversample: float,
    run_part: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """The two rounds in one process, without classes: ``run_part(rows, quota)`` is round 1 on the rows of one
    part (ascending positions), returning the positions it picked (into ``rows``) and their gains; each part
    picks ``ceil(oversample · its share of budget)``; round 2 is :func:`merge_rounds`. Returns the positions
    picked (into the rows ``part`` describes) in merged order, and their gains."""
    parts = int(part.max()) + 1 if part.size else 0
    counts = np.bincount(part, minlength=parts).reshape(parts, 1).astype(np.int64)
    quota = np.array([budget], dtype=np.int64)
    first = round_one_quotas(split_quotas(quota, counts), counts, oversample)
    seqs = {}
    for i in range(parts):
        rows = np.flatnonzero(part == i)
        if rows.size and first[i, 0]:
            pos, gains = run_part(rows, int(first[i, 0]))
            seqs[i] = (rows[pos], gains, np.zeros(pos.shape[0], dtype=np.int64))
    return merge_rounds(*gather_sequences(seqs, distributed=False), quota)
