"""D2 pruning (Maharana, Yadav & Bansal, ICLR 2024): message passing over a kNN graph of the embeddings.

Each example carries an importance ``s_i`` (a difficulty score: harder = more important). Within each class
(``class_balanced=True``, the default) or over the whole set:

1. **Hard cutoff**, as in CCS: the ``floor(cutoff · n)`` hardest examples by the cutoff key (AUM by default
   when ``margins`` are given: the lowest AUM, likely mislabelled) are set aside.
2. **Graph**: each survivor's ``neighbors`` nearest survivors in Euclidean distance ``d`` (blocked exact kNN
   from :func:`~robustprune.selection.core.knn.knn_indices`; no N×N matrix), made symmetric by default.
3. **Forward message passing**: ``h_i = s_i + Σ_{j∈N(i)} exp(−forward_gamma · d_ij) · s_j``.
4. **Reverse message passing** during greedy selection: pick ``u = argmax h`` among the unpicked (ties: lowest
   index), then ``h_v ← h_v − exp(−gamma · d_uv) · h_u`` for every unpicked graph neighbour ``v`` of ``u``.
   A max-heap with lazy invalidation gives O((n + b·deg) log n) instead of the released O(b·n) min per step.
5. **Top-up**: if the cutoff leaves fewer survivors than the budget, the rest is drawn at random (seeded)
   from the examples the cutoff set aside, so exactly the budget is returned.

Choices that differ from, or pin down, the released code (adymaharana/d2pruning, ``spec/baselines.md`` 3.6)
are documented on :func:`d2_pruning`.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import numpy as np

from robustprune.seeding import stream
from robustprune.selection.core.greedy import per_class_greedy
from robustprune.selection.core.knn import knn_indices
from robustprune.selection.core.scores import ccs_difficulty
from robustprune.selection.registry import register
from robustprune.selection.result import MethodOutput

__all__ = [
    "D2_SCORES",
    "EPSILON",
    "KnnGraph",
    "d2_importance",
    "knn_graph",
    "forward_pass",
    "reverse_greedy",
    "d2_pruning",
]

#: Valid values of the ``score`` option of :func:`d2_pruning`.
D2_SCORES = ("auto", "aum", "forgetting", "el2n")

#: Importance scores are clamped at this value before message passing, as in the released code.
EPSILON = 1e-7

_NEEDS = {"aum": ("margins",), "forgetting": ("correct",), "el2n": ("probs", "labels")}
_AUTO_ORDER = ("aum", "forgetting", "el2n")
_EDGE_CHUNK = 1 << 24  # floats per chunk when measuring edge lengths


def d2_importance(score: str, signals: dict[str, Any], option: str = "score") -> tuple[str, np.ndarray]:
    """Higher = harder = more important; a non-negative difficulty per example (D2's importance ``s``).

    - ``"aum"``: ``max(AUM) − AUM`` from ``margins``. Low AUM means hard or likely mislabelled, so the
      lowest-AUM example gets the largest importance and the highest-AUM example 0 (then ``EPSILON``). The
      released code shifts AUM by its minimum instead, with the sign differing between its modes.
    - ``"forgetting"``: forgetting events from ``correct``; never-learned examples (+inf) get the largest
      finite count plus one.
    - ``"el2n"``: ``‖p − onehot(y)‖₂`` from ``probs`` and ``labels``.
    - ``"auto"``: the first of aum, forgetting, el2n whose signals are present (AUM is the released key for
      ImageNet, forgetting for CIFAR).

    The difficulty itself comes from :func:`~robustprune.selection.core.scores.ccs_difficulty` (one definition per
    score); only the shift to non-negative values is added here.

    Parameters
    ----------
    score : str
        One of :data:`D2_SCORES`.
    signals : dict of str to ndarray
        Available signals (``None`` values count as absent).
    option : str
        The option name used in error messages.

    Returns
    -------
    name : str
        The score used ("auto" resolved).
    importance : ndarray of float64, shape (N,), finite and >= 0
    """
    if score not in D2_SCORES:
        raise ValueError(f"d2_pruning {option} must be one of {D2_SCORES}, got {score!r}")
    have = {k for k, v in signals.items() if v is not None}
    if score == "auto":
        found = [s for s in _AUTO_ORDER if set(_NEEDS[s]) <= have]
        if not found:
            raise ValueError(
                f"d2_pruning {option}='auto' needs a difficulty signal: pass margins (AUM), correct (forgetting), "
                "or probs and labels (EL2N)"
            )
        score = found[0]
    missing = [s for s in _NEEDS[score] if s not in have]
    if missing:
        raise ValueError(
            f"d2_pruning {option}={score!r} needs the signal {missing[0]!r}; pass it or choose another {option}"
        )
    _, diff = ccs_difficulty(score, signals)
    diff = np.asarray(diff, dtype=np.float64).copy()
    if score == "aum":
        diff -= diff.min()  # -AUM shifted: max(AUM) - AUM >= 0
    fin = np.isfinite(diff)
    if not fin.all():  # never-learned examples (forgetting = +inf): one above the largest finite count
        diff[~fin] = (diff[fin].max() + 1.0) if fin.any() else 1.0
    return score, diff


@dataclass(frozen=True)
class KnnGraph:
    """Neighbour lists in CSR form: the neighbours of node i are ``indices[indptr[i]:indptr[i+1]]``
    (ascending), at Euclidean distances ``dist`` (same layout)."""

    indptr: np.ndarray
    indices: np.ndarray
    dist: np.ndarray

    @property
    def n(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def nnz(self) -> int:
        """Stored neighbour entries (an undirected edge of a symmetric graph counts twice)."""
        return int(self.indptr[-1])

    def rows(self) -> np.ndarray:
        """The source node of every stored entry, shape (nnz,)."""
        return np.repeat(np.arange(self.n), np.diff(self.indptr))


def knn_graph(features: np.ndarray, k: int, symmetric: bool = True) -> KnnGraph:
    """Euclidean kNN graph of the rows of ``features``: each row's ``min(k, n − 1)`` nearest other rows
    (ties: lower index), blocked (no n×n matrix). With ``symmetric`` an edge is kept whenever either end is
    among the other's k nearest (the union, as the released dense path builds it); otherwise node i's
    neighbours are exactly its own k nearest (the released precomputed path). Distances are measured exactly
    as ``‖x_i − x_j‖₂`` in float64, in chunks."""
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    k = min(int(k), n - 1)
    if k < 1:
        return KnnGraph(np.zeros(n + 1, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    nb = knn_indices(x, k)
    rows, cols = np.repeat(np.arange(n, dtype=np.int64), k), nb.ravel().astype(np.int64)
    if symmetric:
        rows, cols = np.concatenate((rows, cols)), np.concatenate((cols, rows))
    key = np.unique(rows * n + cols)  # drops twins of mutual pairs; sorted by row, then column
    rows, cols = key // n, key % n
    dist = np.empty(key.shape[0], dtype=np.float64)
    step = max(1, _EDGE_CHUNK // max(1, x.shape[1]))
    for a in range(0, key.shape[0], step):
        diff = x[rows[a : a + step]] - x[cols[a : a + step]]
        dist[a : a + step] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=n)))).astype(np.int64)
    return KnnGraph(indptr, cols, dist)


def forward_pass(s: np.ndarray, graph: KnnGraph, gamma: float = 1.0) -> np.ndarray:
    """``h_i = s_i + Σ_{j∈N(i)} exp(−gamma · d_ij) · s_j`` over the graph's neighbour lists (float64).

    ``s`` should already be clamped at :data:`EPSILON`. ``gamma = 1`` is the released kernel ``exp(−d)``.
    """
    s = np.asarray(s, dtype=np.float64)
    msg = np.exp(-gamma * graph.dist) * s[graph.indices]
    return s + np.bincount(graph.rows(), weights=msg, minlength=graph.n)


def reverse_greedy(h0: np.ndarray, graph: KnnGraph, gamma: float, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy with reverse message passing: ``budget`` times, pick the unpicked ``u`` of largest ``h`` (ties:
    lowest index) and set ``h_v ← h_v − exp(−gamma · d_uv) · h_u`` for its unpicked graph neighbours ``v``.

    A max-heap keyed ``(−h, index)`` with lazy invalidation: every change pushes a fresh entry, and a popped
    entry counts only if its node is unpicked and its value is still current. Returns the picks (positions,
    in pick order) and ``h`` of each pick at the time it was picked.
    """
    h = np.array(h0, dtype=np.float64)
    n = h.shape[0]
    if not 0 <= budget <= n:
        raise ValueError(f"budget must be in [0, {n}], got {budget}")
    alive = np.ones(n, dtype=bool)
    decay = np.exp(-gamma * graph.dist)
    heap = list(zip((-h).tolist(), range(n), strict=True))
    heapq.heapify(heap)
    picks = np.empty(budget, dtype=np.int64)
    gains = np.empty(budget, dtype=np.float64)
    for t in range(budget):
        while True:
            neg, u = heapq.heappop(heap)
            if alive[u] and -neg == h[u]:
                break
        alive[u] = False
        picks[t], gains[t] = u, h[u]
        a, b = graph.indptr[u], graph.indptr[u + 1]
        nb = graph.indices[a:b]
        live = alive[nb]
        nb = nb[live]
        if nb.size:
            h[nb] -= decay[a:b][live] * h[u]
            for v, val in zip(nb.tolist(), h[nb].tolist(), strict=True):
                heapq.heappush(heap, (-val, v))
    return picks, gains


def _check_options(score, cutoff, cutoff_score, neighbors, gamma, forward_gamma, symmetric, scale_distances) -> None:
    def number(v: object) -> bool:
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

    if score not in D2_SCORES:
        raise ValueError(f"d2_pruning score must be one of {D2_SCORES}, got {score!r}")
    if cutoff_score not in D2_SCORES:
        raise ValueError(f"d2_pruning cutoff_score must be one of {D2_SCORES}, got {cutoff_score!r}")
    if not number(cutoff) or not 0 <= cutoff < 1:
        raise ValueError(f"d2_pruning cutoff must be a number in [0, 1), got {cutoff!r}")
    if isinstance(neighbors, bool) or not isinstance(neighbors, (int, np.integer)) or neighbors < 1:
        raise ValueError(f"d2_pruning neighbors must be a whole number >= 1, got {neighbors!r}")
    for name, v in (("gamma", gamma), ("forward_gamma", forward_gamma)):
        if not number(v) or not np.isfinite(v) or v < 0:
            raise ValueError(f"d2_pruning {name} must be a finite number >= 0, got {v!r}")
    for name, v in (("symmetric", symmetric), ("scale_distances", scale_distances)):
        if not isinstance(v, (bool, np.bool_)):
            raise ValueError(f"d2_pruning {name} must be True or False, got {v!r}")


@register(
    "d2_pruning",
    kind="greedy",
    requires=("features",),
    optional=("labels", "probs", "correct", "margins"),
    balance="proportional",
    default_class_balanced=True,
    description="D2 pruning: difficulty passed forward over a kNN graph, then greedy with reverse passing",
)
def d2_pruning(
    *,
    features: np.ndarray,
    labels: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    correct: np.ndarray | None = None,
    margins: np.ndarray | None = None,
    budget: int,
    class_balanced: bool = True,
    seed: int = 0,
    score: str = "auto",
    cutoff: float = 0.0,
    cutoff_score: str = "auto",
    neighbors: int = 5,
    gamma: float = 0.1,
    forward_gamma: float = 1.0,
    symmetric: bool = True,
    scale_distances: bool = False,
) -> MethodOutput:
    """D2 pruning with an exact budget.

    Parameters
    ----------
    score : str
        The importance ``s`` (higher = harder = more important; see :func:`d2_importance`): "aum"
        (``max AUM − AUM``: low AUM = hard or mislabelled), "forgetting", "el2n", or "auto" (AUM when
        ``margins`` are given, else forgetting from ``correct``, else EL2N from ``probs`` and ``labels``).
        Scores are clamped at :data:`EPSILON` (1e-7) before message passing, as released.
    cutoff : float in [0, 1)
        Hard cutoff as in CCS (the released ``--mis-ratio``): the ``floor(cutoff · n)`` hardest examples by
        ``cutoff_score`` are set aside first, ``n`` being the class size when balanced (as the ``ccs``
        method does) or N otherwise. Default 0.0 (off), as in ``ccs``: the right share depends on the noise
        rate and the pruning rate, and the README's 0.4 is a setting for heavily pruned noisy CIFAR, not a
        neutral default. Under label noise set it near the expected noise rate.
    cutoff_score : str
        Key of the cutoff, one of the values of ``score``. "auto" uses AUM when ``margins`` are given (the
        released key whatever the importance score, so ``score="forgetting"`` with margins reproduces the
        README's CIFAR setup), else the importance score. Resolved only when ``cutoff > 0``.
    neighbors : int >= 1
        k of the kNN graph (README 5; the released code default is 10). Capped at n − 1 inside small groups.
    gamma : float >= 0
        Reverse (down-weighting) kernel ``exp(−gamma · d)`` (README 0.1). A very large value switches reverse
        passing off (plain greedy on the forward scores).
    forward_gamma : float >= 0
        Forward kernel ``exp(−forward_gamma · d)``. The default 1.0 is the released kernel ``exp(−d)``, which
        has no gamma.
    symmetric : bool
        Symmetrise the kNN graph (an edge whenever either end is among the other's k nearest), as the
        released dense path does for both passes; False uses each node's own k nearest only, as its
        precomputed-neighbour path does.
    scale_distances : bool
        Divide every edge length in a group by the median edge length of that group's graph (when it is
        positive) so that ``gamma`` and ``forward_gamma`` do not depend on the embedding scale. Off by
        default (the released distances are raw).

    Notes
    -----
    - Groups: with ``class_balanced`` each class gets its :func:`~robustprune.selection.budget.class_quotas`
      share and its own graph (the released "class" mode with label balance, whose budgets came from the CCS
      bin rule); picks are interleaved class by class in pick order (:func:`per_class_greedy`). Otherwise
      one graph over all examples; labels are then not needed.
    - Exact budget: the greedy picks ``min(quota, survivors)``; any shortfall (only when the cutoff left
      fewer survivors than the quota) is drawn uniformly at random from that group's cut examples with
      ``stream(seed, "d2_pruning")``; these top-up picks come last in their group and have NaN gains. The
      released code fills a shortfall at random from all unselected examples (and picks at random in pools
      of at most k examples; here the graph is used whatever the pool size).
    - ``scores`` holds the forward-passed ``h`` (before any reverse passing); NaN for examples set aside by
      the cutoff and for classes with a zero quota. ``gains`` holds ``h`` of each pick when it was picked.
    - ``info``: the resolved ``score`` and ``cutoff_score``, ``cut`` (examples set aside), ``topped_up``,
      ``edges`` (stored neighbour entries over all graphs; an undirected edge counts twice).
    """
    _check_options(score, cutoff, cutoff_score, neighbors, gamma, forward_gamma, symmetric, scale_distances)
    signals: dict[str, Any] = {"labels": labels, "probs": probs, "correct": correct, "margins": margins}
    name, importance = d2_importance(score, signals)
    s = np.maximum(importance, EPSILON)
    cut_name, cut_key = None, importance
    if cutoff > 0:
        cut_name = "aum" if cutoff_score == "auto" and margins is not None else cutoff_score
        if cut_name == "auto":
            cut_name = name
        if cut_name != name:
            cut_name, cut_key = d2_importance(cut_name, signals, option="cutoff_score")
    x = np.asarray(features)
    n, k = x.shape[0], int(budget)
    rng = stream(seed, "d2_pruning")
    h_all = np.full(n, np.nan)
    totals = {"cut": 0, "topped_up": 0, "edges": 0}

    def run_group(members: np.ndarray, quota: int) -> tuple[np.ndarray, np.ndarray]:
        """Picks (global indices, pick order) and their gains inside one group."""
        m = members.shape[0]
        n_cut = int(np.floor(cutoff * m + 1e-9))
        hardest_first = np.argsort(-cut_key[members], kind="stable")
        cut = members[hardest_first[:n_cut]]
        keep = np.sort(members[hardest_first[n_cut:]])
        graph = knn_graph(x[keep], neighbors, symmetric=symmetric)
        if scale_distances and graph.nnz:
            med = float(np.median(graph.dist))
            if med > 0:
                graph = KnnGraph(graph.indptr, graph.indices, graph.dist / med)
        h = forward_pass(s[keep], graph, forward_gamma)
        h_all[keep] = h
        pos, gains = reverse_greedy(h, graph, gamma, min(quota, keep.shape[0]))
        picks = keep[pos]
        short = quota - picks.shape[0]
        if short > 0:
            extra = np.sort(cut)[rng.permutation(cut.shape[0])[:short]]
            picks = np.concatenate((picks, extra))
            gains = np.concatenate((gains, np.full(short, np.nan)))
        totals["cut"] += n_cut
        totals["topped_up"] += max(short, 0)
        totals["edges"] += graph.nnz
        return picks, gains

    if class_balanced:
        if labels is None:
            raise ValueError("class_balanced=True needs labels")
        lab = np.asarray(labels)

        def run_class(members: np.ndarray, quota: int, _c: int) -> tuple[np.ndarray, np.ndarray]:
            picks, gains = run_group(members, quota)
            return np.searchsorted(members, picks), gains  # members are ascending

        indices, gains = per_class_greedy(lab, k, run_class)
    else:
        indices, gains = run_group(np.arange(n), k)
    info = {"score": name, "cutoff_score": cut_name, **totals}
    return MethodOutput(indices=indices.astype(np.int64), gains=gains, scores=h_all, info=info)
