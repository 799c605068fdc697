"""Prune4ReL: pick the subset that maximises total reduced neighbourhood confidence.

Objective (Park et al., NeurIPS 2023)::

    F(S) = sum_v tanh(NC_v(S) / eta),   NC_v(S) = sum_{x in S} w(v, x) * c_x

with ``w(v, x) = s(v, x) * [s(v, x) > tau]``, ``s = 0.5 + 0.5 * cos`` of the embeddings, and ``c_x`` the
warm-up model's confidence in x (max softmax probability by default).

Two greedy rules are offered:

* ``gain="self"`` (default) is the released rule, bit for bit given the same confidences and
  embeddings: pick ``argmax_i tanh((NC_i + c_i)/eta) - tanh(NC_i/eta)`` (only the example's own term),
  ties to the lowest index, float32 throughout, with the released class-balanced round-robin and its
  1.5x break rule.
* ``gain="exact"`` is the true marginal gain ``sum_{v in N(x)} tanh((NC_v + w_vx c_x)/eta) - tanh(NC_v/eta)``
  with lazy (CELF) evaluation, which is exact because F is monotone submodular; it carries the
  (1 - 1/e) guarantee (without class balance).

Engine: the similarity-threshold graph is built once by blocked matrix products (see ``graph.py``); each pick
then touches only the picked example's neighbours. The self rule keeps every example's current gain
exactly (recomputed for the neighbours of each pick) in a two-level block-maximum structure, so the argmax
is the dense rule's argmax exactly; a lazy heap is *not* used for it because the float32 gain is not
monotone in NC at the last bit, which would let stale heap keys reorder near-ties. ``engine="dense"`` runs
the released per-pick similarity column instead (no graph; for thresholds so low the graph would not fit).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from robustprune.selection.base import MethodOutput
from robustprune.selection.graph import SimilarityGraph, normalize_rows, rescaled_cosine_graph, resolve_device
from robustprune.selection.registry import register

__all__ = ["prune4rel", "confidence_scores", "self_gain", "prune4rel_objective"]

Neighbors = Callable[[int], tuple[np.ndarray, np.ndarray]]


def confidence_scores(probs: np.ndarray, kind: str = "max_prob") -> np.ndarray:
    """Confidence of the warm-up model in each example; higher = more confident. float32, shape (N,).

    ``kind``: "max_prob" (the released ``LeastConfidence`` option: max softmax probability, the default),
    "margin" (top-1 minus top-2 probability) or "entropy" (the released definition ``-sum p log(p + 1e-6)``,
    kept only for parity: it is *higher* for *less* confident predictions, so it is a poor confidence).
    """
    p = np.asarray(probs, dtype=np.float32)
    if kind in ("max_prob", "least_confidence"):
        return p.max(axis=1)
    if kind == "margin":
        top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        return (top2[:, 1] - top2[:, 0]).astype(np.float32)
    if kind == "entropy":
        return (-(np.log(p + np.float32(1e-6)) * p).sum(axis=1)).astype(np.float32)
    raise ValueError(f"confidence must be 'max_prob', 'margin' or 'entropy', got {kind!r}")


def _tanh32(x: np.ndarray) -> np.ndarray:
    # torch's float32 tanh, as the released code evaluates it (numpy's differs in the last bit)
    return torch.tanh(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def self_gain(nc: np.ndarray, c: np.ndarray, eta: np.float32) -> np.ndarray:
    """The released self marginal gain ``tanh((NC + c)/eta) - tanh(NC/eta)`` in float32 (elementwise).

    Evaluated with torch's CPU float32 ``tanh``, which gives the same value for an element whatever the
    length of the array it sits in; the dense rule and the incremental engine therefore agree bit for bit.
    """
    return _tanh32((nc + c) / eta) - _tanh32(nc / eta)


def prune4rel_objective(
    graph: SimilarityGraph, confidences: np.ndarray, selected: np.ndarray, eta: float = 1.0
) -> float:
    """F(S) = sum_v tanh(NC_v(S)/eta) over all examples, in float64, for a set of selected indices."""
    nc = np.zeros(graph.n, dtype=np.float64)
    c = np.asarray(confidences, dtype=np.float64)
    for p in np.asarray(selected, dtype=np.int64):
        idx, w = graph.row(int(p))
        nc[idx] += w.astype(np.float64) * c[p]
    return float(np.tanh(nc / eta).sum())


@register(
    "prune4rel",
    kind="greedy",
    requires=("probs", "features"),
    optional=("labels",),
    balance="round_robin",
    default_class_balanced=True,
    description="Prune4ReL: greedy max of total neighbourhood confidence (re-labeling aware; NeurIPS'23)",
)
def prune4rel(
    *,
    probs: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray | None = None,
    budget: int,
    class_balanced: bool = True,
    tau: float = 0.95,
    eta: float = 1.0,
    confidence: str = "max_prob",
    gain: str = "self",
    engine: str = "auto",
    max_neighbors: int | None = None,
    max_edges: int | None = 200_000_000,
    block_size: int = 4096,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> MethodOutput:
    """Prune4ReL selection.

    Parameters
    ----------
    probs : (N, K) softmax outputs; features : (N, D) embeddings; labels : (N,) given labels (for balance).
    budget : int
    class_balanced : bool
        Released round-robin over the given-label classes (K = number of probability columns) with the
        1.5x break rule; afterwards picks are global.
    tau : float
        Neighbourhood threshold on ``0.5 + 0.5·cos`` (0.95 means cos > 0.9), strict.
    eta : float
        tanh temperature, > 0.
    confidence : {"max_prob", "margin", "entropy"}
    gain : {"self", "exact"}
        Released self-gain rule, or the true marginal gain (lazy greedy).
    engine : {"auto", "graph", "dense"}
        "graph" builds the sparse threshold graph once; "dense" computes one similarity column per pick as
        released (O(budget·N·D)); "auto" uses the graph and falls back to dense (self gain only) when the
        graph would exceed ``max_edges``.
    max_neighbors : int, optional
        Cap each example's neighbour list to its most similar ones (changes the method; off by default).
    max_edges, block_size, device
        Graph-building limits and placement (see ``rescaled_cosine_graph``).

    Returns
    -------
    MethodOutput
        Indices in pick order, the gain of each pick, ``scores`` = the confidences.
    """
    tau, eta = _check_params(tau, eta, gain, engine)
    n = probs.shape[0]
    c = confidence_scores(probs, confidence)
    if confidence != "entropy" and c.min() < 0:  # pragma: no cover - probs are validated to [0, 1]
        raise ValueError("confidences must be non-negative")
    if class_balanced and labels is None:
        raise ValueError("class_balanced=True needs labels")
    num_classes = probs.shape[1]
    info: dict = {"engine": engine}

    # one progress scale for both phases: graph tiles first, then picks
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    nb = -(-n // block_size)
    tiles = 0 if engine == "dense" else (nb if max_neighbors is not None else nb * (nb + 1) // 2)
    graph_progress = greedy_progress = None
    if progress is not None:

        def graph_progress(done: int, _total: int) -> None:
            progress(done, tiles + budget)

        def greedy_progress(done: int, _total: int) -> None:
            progress(tiles + done, tiles + budget)

    t0 = time.perf_counter()
    graph = None
    if engine in ("auto", "graph"):
        try:
            graph = rescaled_cosine_graph(
                features,
                tau,
                block_size=block_size,
                device=device,
                max_neighbors=max_neighbors,
                max_edges=max_edges,
                progress=graph_progress,
            )
        except ValueError as exc:
            if engine == "graph" or gain == "exact" or "max_edges" not in str(exc):
                raise
        info["engine"] = "graph" if graph is not None else "dense"
    if graph is not None:
        info.update(n_edges=graph.nnz, mean_degree=round(graph.nnz / n, 3), graph_seconds=round(graph.build_seconds, 4))
        neighbors: Neighbors = graph.row
    else:
        if max_neighbors is not None:
            raise ValueError("max_neighbors needs the graph engine (engine='graph')")
        neighbors = _dense_neighbors(features, tau, device)
    t1 = time.perf_counter()

    lab = None if labels is None else np.asarray(labels, dtype=np.int64)
    if gain == "self":
        picks, gains, break_at = _greedy_self(
            c, neighbors, budget, lab if class_balanced else None, num_classes, np.float32(eta), greedy_progress
        )
    else:
        assert graph is not None
        picks, gains, break_at = _greedy_exact(
            c, graph, budget, lab if class_balanced else None, num_classes, eta, greedy_progress
        )
    info.update(
        greedy_seconds=round(time.perf_counter() - t1, 4), balance_break_at=break_at, setup_seconds=round(t1 - t0, 4)
    )
    return MethodOutput(indices=picks, gains=gains, scores=c, info=info)


def _check_params(tau: float, eta: float, gain: str, engine: str) -> tuple[float, float]:
    try:
        tau, eta = float(tau), float(eta)
    except (TypeError, ValueError):
        raise ValueError(f"tau and eta must be numbers, got tau={tau!r}, eta={eta!r}") from None
    if not math.isfinite(tau) or tau < 0:
        raise ValueError(f"tau must be a finite number >= 0 (threshold on 0.5+0.5*cos), got {tau}")
    if not math.isfinite(eta) or eta <= 0:
        raise ValueError(f"eta must be a positive number, got {eta}")
    if gain not in ("self", "exact"):
        raise ValueError(f"gain must be 'self' (released rule) or 'exact' (true marginal gain), got {gain!r}")
    if engine not in ("auto", "graph", "dense"):
        raise ValueError(f"engine must be 'auto', 'graph' or 'dense', got {engine!r}")
    if engine == "dense" and gain == "exact":
        raise ValueError("gain='exact' needs the graph engine (engine='graph' or 'auto')")
    return tau, eta


def _dense_neighbors(features: np.ndarray, tau: float, device: str) -> Neighbors:
    """The released per-pick similarity column: all j with 0.5 + 0.5·cos(z_j, z_p) > tau."""
    dev = resolve_device(device)
    z = normalize_rows(features, dev)
    tau32 = torch.tensor(tau, dtype=torch.float32, device=dev)

    def neighbors(p: int) -> tuple[np.ndarray, np.ndarray]:
        s = z @ z[p]
        s.mul_(0.5).add_(0.5)
        s[p] = 1.0
        idx = (s > tau32).nonzero().squeeze(1)
        return idx.cpu().numpy(), s[idx].cpu().numpy()

    return neighbors


class _BlockMax:
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


def _block_size(n: int) -> int:
    return int(min(4096, max(32, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))


class _RoundRobin:
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


def _greedy_self(
    c: np.ndarray,
    neighbors: Neighbors,
    budget: int,
    labels: np.ndarray | None,
    num_classes: int,
    eta: np.float32,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """The released self-gain greedy, with exact incremental gains (see module docstring)."""
    n = c.shape[0]
    nc = np.zeros(n, dtype=np.float32)
    selected = np.zeros(n, dtype=bool)
    gains0 = self_gain(nc, c, eta)
    picks = np.empty(budget, dtype=np.int64)
    gains = np.empty(budget, dtype=np.float64)
    b = _block_size(n)
    step = max(1, budget // 100)

    rr = None
    if labels is not None:
        rr = _RoundRobin(labels, num_classes)
        # class-major positions, each class padded to whole blocks so a class is a range of blocks
        order = np.argsort(labels, kind="stable")
        counts = rr.init
        padded = -(-counts // b) * b
        block_lo = np.concatenate(([0], np.cumsum(padded // b)))
        pos_start = block_lo[:-1] * b
        within = np.arange(n) - np.repeat(np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
        pos_of = np.empty(n, dtype=np.int64)
        pos_of[order] = pos_start[labels[order]] + within
        idx_of = np.full(int(padded.sum()), -1, dtype=np.int64)
        idx_of[pos_of] = np.arange(n)
        vals = np.full(idx_of.shape[0], -np.inf, dtype=np.float32)
        vals[pos_of] = gains0
        tracker = _BlockMax(vals, b)
    else:
        pos_of = None
        tracker = _BlockMax(gains0, b)
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
        gains[t] = float(tracker.v[pos])
        selected[p] = True
        if t == budget - 1:
            break
        if rr is not None and rr.broken and pos_of is not None:
            # after the break every pick is global: re-index in original order for lowest-index ties
            g = np.full(n, -np.inf, dtype=np.float32)
            g[~selected] = self_gain(nc[~selected], c[~selected], eta)
            tracker, pos_of = _BlockMax(g, b), None
        else:
            tracker.remove(pos)
        idx, w = neighbors(p)
        if idx.size:
            nc[idx] += w * c[p]
            live = idx[~selected[idx]]
            if live.size:
                g = self_gain(nc[live], c[live], eta)
                tracker.update(live if pos_of is None else pos_of[live], g)
        if progress is not None and (t + 1) % step == 0:
            progress(t + 1, budget)
    if progress is not None:
        progress(budget, budget)
    return picks, gains, break_at


def _greedy_exact(
    c: np.ndarray,
    graph: SimilarityGraph,
    budget: int,
    labels: np.ndarray | None,
    num_classes: int,
    eta: float,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Lazy greedy on the true marginal gain of F (float64). Stale heap keys are upper bounds (submodular)."""
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

    # initial gains: sum over neighbours of tanh(w c_x / eta), vectorised over all rows
    contrib = np.tanh(weights * np.repeat(c64, np.diff(indptr)) * inv_eta)
    g0 = np.add.reduceat(contrib, indptr[:-1]) if contrib.size else np.zeros(n)
    g0[np.diff(indptr) == 0] = 0.0

    def make_heap(members: np.ndarray) -> list[tuple[float, int]]:
        h = list(zip((-g0[members]).tolist(), members.tolist(), strict=True))
        heapq.heapify(h)
        return h

    if labels is not None:
        rr = _RoundRobin(labels, num_classes)
        heaps = [make_heap(np.flatnonzero(labels == k)) for k in range(num_classes)]
        # keys are refreshed in place, so a merged heap after the break stays valid
    else:
        rr = None
        heaps = [make_heap(np.arange(n))]
    picks = np.empty(budget, dtype=np.int64)
    gains = np.empty(budget, dtype=np.float64)
    step = max(1, budget // 100)
    break_at = None
    merged = rr is None

    def pop_best(h: list[tuple[float, int]]) -> tuple[int, float]:
        while True:
            _, x = heapq.heappop(h)
            g = fresh(x)
            if not h or (-g, x) <= h[0]:
                return x, g
            heapq.heappush(h, (-g, x))

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
        a, b = indptr[p], indptr[p + 1]
        nc[indices[a:b]] += weights[a:b] * c64[p]
        if progress is not None and (t + 1) % step == 0:
            progress(t + 1, budget)
    if progress is not None:
        progress(budget, budget)
    return picks, gains, break_at
