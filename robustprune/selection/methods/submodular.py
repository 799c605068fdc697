"""Submodular selection (as in DeepCore's ``Submodular``, per its definitions in ``spec/baselines.md`` 2.14):
facility location, graph cut or log-determinant over the similarity ``s = ½ + ½·cos`` of embeddings,
maximised by the shared greedy engines (naive, lazy or stochastic).

- ``facility_location``: f(S) = Σ_i max_{j∈S} s_ij; the gain of x is Σ_i max(0, s_ix − best_i).
- ``graph_cut``: f(S) = λ·Σ_{i∈V} Σ_{j∈S} s_ij − Σ_{i∈S} Σ_{j∈S} s_ij; the gain of x is
  λ·Σ_i s_ix − 2·Σ_{j∈S} s_jx − s_xx (submodular; monotone while λ ≥ 2).
- ``log_determinant``: f(S) = log det(S_S + εI); the gain of x is log(s_xx + ε − s_xS (S_S + εI)⁻¹ s_Sx),
  which rewards points the chosen ones explain *poorly* (DeepCore returns the quadratic form itself and so
  picks the most redundant points). Kept incrementally as a Cholesky factor of the chosen set (fast greedy
  MAP inference, Chen et al. 2018): O(N·|S|) per pick, one similarity row per pick, no N×N matrix.

Similarities live in a sparse graph (:func:`~robustprune.selection.core.graph.rescaled_cosine_graph`): every pair
with ``tau = 0`` (exact, for small sets; the graph's ``max_edges`` guard names the fix for large ones), or the
pairs above a threshold ``tau`` (``"auto"``: the τ giving a mean degree of ``neighbors``), which keeps large
sets affordable and drops only the smallest similarities. The complete ``tau = 0`` graph is written straight
into dense CSR arrays (:func:`_complete_graph`) and facility location then works on its rows as a dense
matrix, like apricot's precomputed facility location (``benchmarks/selection_speed.py greedy`` compares the
two). The stochastic optimiser uses ε = 0.01 (DeepCore's
0.9 makes it close to random).

Active learning (``select(..., start=S0, candidates=...)``): every function starts from S0 (facility
location's best similarities, graph cut's sums over the chosen set, log-determinant's Cholesky factor all hold
S0 before the first pick), so each gain is the marginal gain given S0 and the earlier picks; only candidates
are picked, and the ground set V stays every example (of the class, when balanced).
"""

from __future__ import annotations

import time

import numpy as np

from robustprune.selection.core.geometry import auto_tau
from robustprune.selection.core.graph import SharedBuild, SimilarityGraph, normalize_rows, rescaled_cosine_graph
from robustprune.selection.core.greedy import lazy_greedy, naive_greedy, per_class_greedy, stochastic_greedy
from robustprune.selection.core.partition import EmbeddingMap, assign_parts, check_partition, two_round
from robustprune.selection.registry import register
from robustprune.selection.result import MethodOutput

__all__ = ["submodular", "FUNCTIONS", "OPTIMIZERS", "SetFunction", "LogDeterminant", "gradient_embeddings"]

FUNCTIONS = ("facility_location", "graph_cut", "log_determinant")
OPTIMIZERS = ("naive", "lazy", "stochastic")


class SetFunction:
    """Facility location or graph cut on a similarity graph, with O(degree) gains and updates.

    On a complete graph (``tau = 0``: every row holds all N columns, in order) facility location views the
    float32 weights in place as a dense N×N matrix (no float64 copy: allocating one cost more than the whole
    greedy) and a gain is ``Σ_i max(s_ix, best_i) − Σ_i best_i`` (equal to ``Σ_i max(0, s_ix − best_i)``):
    one float32 pass over one contiguous row (exact: every ``best_i`` is one of the float32 weights), summed
    in float64, no neighbour gather; the second sum is kept current by :meth:`add`, and the gains of all
    candidates are computed block by block of rows.
    """

    def __init__(self, graph: SimilarityGraph, function: str, cut_weight: float = 1.0) -> None:
        self.g, self.function, self.lam = graph, function, float(cut_weight)
        n = graph.n
        # columns are unique and ascending in each row, so n entries in every row means columns 0..n-1
        complete = n > 0 and graph.nnz == n * n and function == "facility_location"
        self.dense = graph.weights.reshape(n, n) if complete else None
        self.w = graph.weights if complete else graph.weights.astype(np.float64)
        # facility: best similarity to S (float32 on the dense path, where it only ever holds weights);
        # graph cut: Σ_{j∈S} s_ij
        self.state = np.zeros(n, dtype=np.float32 if complete else np.float64)
        self.total = 0.0  # Σ_i state_i in float64 (dense path)
        self._rows: np.ndarray | None = None
        self._buf = np.empty(n, dtype=np.float32)
        if function != "facility_location":
            rows = self.rows
            self.self_sim = np.zeros(n)
            diag = graph.indices == rows
            self.self_sim[rows[diag]] = self.w[diag]
            self.degree = np.bincount(rows, weights=self.w, minlength=n)

    @property
    def rows(self) -> np.ndarray:
        """Row index of every edge (built on first use: the dense path never needs it)."""
        if self._rows is None:
            self._rows = np.repeat(np.arange(self.g.n), self.g.degrees())
        return self._rows

    def gains_of(self, cand: np.ndarray) -> np.ndarray:
        """Current gains of ``cand``: row by row for a small sample, else vectorised (over all edges, or over
        blocks of dense rows)."""
        if cand.shape[0] * 4 < self.g.n:
            return np.array([self.gain(int(x)) for x in cand])
        if self.function != "facility_location":
            return (self.lam * self.degree - 2.0 * self.state - self.self_sim)[cand]
        if self.dense is not None:
            out = np.empty(cand.shape[0])
            step = max(1, (1 << 20) // max(self.g.n, 1))  # about 8 MB of rows at a time
            for a in range(0, cand.shape[0], step):
                block = self.dense[cand[a : a + step]]
                np.maximum(block, self.state, out=block)
                out[a : a + step] = np.add.reduce(block, axis=1, dtype=np.float64)
            return np.maximum(out - self.total, 0.0)  # rounding can leave -1e-13 where the gain is 0
        contrib = np.maximum(self.w - self.state[self.g.indices], 0.0)
        return np.bincount(self.rows, weights=contrib, minlength=self.g.n)[cand]

    def gain(self, x: int) -> float:
        if self.function != "facility_location":
            return float(self.lam * self.degree[x] - 2.0 * self.state[x] - self.self_sim[x])
        if self.dense is not None:
            np.maximum(self.dense[x], self.state, out=self._buf)
            return max(float(np.add.reduce(self._buf, dtype=np.float64)) - self.total, 0.0)
        a, b = self.g.indptr[x], self.g.indptr[x + 1]
        return float(np.maximum(self.w[a:b] - self.state[self.g.indices[a:b]], 0.0).sum())

    def add(self, x: int) -> None:
        if self.dense is not None:
            np.maximum(self.state, self.dense[x], out=self.state)
            self.total = float(np.add.reduce(self.state, dtype=np.float64))
            return
        a, b = self.g.indptr[x], self.g.indptr[x + 1]
        v = self.g.indices[a:b]
        if self.function == "facility_location":
            self.state[v] = np.maximum(self.state[v], self.w[a:b])
        else:
            self.state[v] += self.w[a:b]


class LogDeterminant:
    """log det(S_S + εI) of the chosen set, with the residual variance of every candidate kept current."""

    def __init__(self, features: np.ndarray, budget: int, ridge: float = 1e-6) -> None:
        z = np.asarray(features, dtype=np.float64)
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError("features has an all-zero row; cosine similarity is undefined there")
        self.z = z / norms
        n = z.shape[0]
        if n * budget > 50_000_000:
            raise ValueError(
                f"log_determinant keeps an N x budget factor ({n} x {budget}); use class_balanced=True or a "
                "smaller budget"
            )
        self.c = np.zeros((n, budget))  # budget: the number of adds (a starting set's members included)
        self.d2 = np.full(n, 1.0 + ridge)  # s_ii = 1 on the rescaled cosine
        self.t = 0

    def gains_of(self, cand: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(self.d2[cand], 1e-300))

    def gain(self, x: int) -> float:
        return float(np.log(max(self.d2[x], 1e-300)))

    def add(self, j: int) -> None:
        s_j = 0.5 + 0.5 * (self.z @ self.z[j])
        # a starting set may hold near-duplicates, whose residual can round to <= 0
        e = (s_j - self.c[:, : self.t] @ self.c[j, : self.t]) / np.sqrt(max(self.d2[j], 1e-300))
        self.c[:, self.t] = e
        self.d2 = self.d2 - e * e
        self.t += 1


def gradient_embeddings(probs: np.ndarray, labels: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Per-example last-layer gradients of the cross-entropy, flattened: ``(p − onehot(y)) ⊗ [h, 1]``,
    shape (N, K·(D+1)), float32 (one per example, never averaged over a batch)."""
    p = np.asarray(probs, dtype=np.float64)
    e = p.copy()
    e[np.arange(p.shape[0]), np.asarray(labels)] -= 1.0
    h = np.concatenate([np.asarray(features, dtype=np.float64), np.ones((p.shape[0], 1))], axis=1)
    g = (e[:, :, None] * h[:, None, :]).reshape(p.shape[0], -1)
    # an example the model fits exactly has a zero gradient; give it a tiny constant so cosine is defined
    g[np.linalg.norm(g, axis=1) == 0] = 1e-12
    return g.astype(np.float32)


def _maximise(
    fn: SetFunction | LogDeterminant,
    n: int,
    k: int,
    optimizer: str,
    seed: int,
    start: np.ndarray | None = None,
    cand: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy picks of ``k`` from ``cand`` (default all ``n``) after committing ``start`` to ``fn``."""
    for s in () if start is None else start:
        fn.add(int(s))
    if optimizer == "lazy":
        if cand is None:
            g0 = fn.gains_of(np.arange(n))
        else:
            g0 = np.zeros(n)
            g0[cand] = fn.gains_of(cand)
        picks, gains, _ = lazy_greedy(g0, fn.gain, fn.add, k, candidates=cand)
        return picks, gains
    if optimizer == "naive":
        return naive_greedy(fn.gains_of, fn.add, n, k, candidates=cand)
    return stochastic_greedy(fn.gains_of, fn.add, n, k, epsilon=0.01, seed=seed, candidates=cand)


def _graph(
    features: np.ndarray, tau: float | str, neighbors: int, device: str, seed: int, shared: SharedBuild | None = None
) -> SimilarityGraph:
    t = auto_tau(features, float(neighbors), seed=seed, device=device) if tau == "auto" else float(tau)
    if t == 0.0:
        complete = _complete_graph(features, device)
        if complete is not None:
            return complete
    return rescaled_cosine_graph(features, t, device=device, shared=shared)


#: Largest N for which ``tau = 0`` stores the dense N×N similarity (the graph's default ``max_edges``).
_COMPLETE_MAX_EDGES = 200_000_000


def _complete_graph(features: np.ndarray, device: str, block: int = 4096) -> SimilarityGraph | None:
    """The graph :func:`rescaled_cosine_graph` gives at ``tau = 0`` (every pair with ``s = ½ + ½·cos > 0``,
    self-weight 1, exactly symmetric from the upper triangle) written straight into dense CSR arrays: rows of
    blocked products, no edge lists, no COO→CSR sort (about 7× faster at N = 5,000; the same float32 products
    and rounding as the general builder, which gave bit-identical weights at every N tried). ``None`` when a pair
    has ``s <= 0`` (opposite vectors) or N² is above the graph's ``max_edges``: the caller then takes the
    general builder, which handles the first and names the fix for the second."""
    from robustprune._device import resolve_device

    t0 = time.perf_counter()
    n = int(np.asarray(features).shape[0])
    if n == 0 or n * n > _COMPLETE_MAX_EDGES:
        return None
    z = normalize_rows(features, resolve_device(device))
    s = np.empty((n, n), dtype=np.float32)
    for a in range(0, n, block):
        cos = z[a : a + block] @ z[a:].T  # the upper part of these rows: the lower part is mirrored below
        s[a : a + block, a:] = cos.mul_(0.5).add_(0.5).cpu().numpy()  # float32, rounded as the graph rounds
    s = np.triu(s, 1)
    s += s.T
    if (s <= 0).sum() != n:  # only the zero diagonal may be <= 0
        return None
    np.fill_diagonal(s, 1.0)
    idt = np.int32 if n < 2**31 else np.int64
    return SimilarityGraph(
        indptr=np.arange(n + 1, dtype=np.int64) * n,
        indices=np.tile(np.arange(n, dtype=idt), n),
        weights=s.reshape(-1),
        n=n,
        symmetric=True,
        build_seconds=time.perf_counter() - t0,
    )


def _check_parts(parts: object, partition: object, oversample: object, function: str, start, pool) -> None:
    check_partition(parts, partition, oversample)
    if function == "log_determinant" or partition == "class" or start is not None or pool is not None:
        raise ValueError(
            "parts > 1 takes facility_location or graph_cut, partition 'cluster' or 'random' (classes are "
            "already apart when balanced), and no candidates or starting set"
        )


@register(
    "submodular",
    kind="greedy",
    requires=("features",),
    optional=("labels", "probs"),
    balance="proportional",
    default_class_balanced=True,
    description="submodular facility location, graph cut or log-determinant on embedding similarity",
)
def submodular(
    *,
    features: np.ndarray,
    labels: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    budget: int,
    class_balanced: bool = True,
    function: str = "facility_location",
    space: str = "features",
    optimizer: str = "lazy",
    tau: float | str = 0.0,
    neighbors: int = 50,
    cut_weight: float = 1.0,
    device: str = "auto",
    seed: int = 0,
    start: np.ndarray | None = None,
    pool: np.ndarray | None = None,
    shared_build: SharedBuild | None = None,
    parts: int = 1,
    partition: str = "cluster",
    oversample: float = 2.0,
) -> MethodOutput:
    """Greedy maximisation of a submodular function of the selected set, per class when balanced.

    Parameters
    ----------
    function : {"facility_location", "graph_cut", "log_determinant"}
    optimizer : {"naive", "lazy", "stochastic"}
        Naive and lazy give the same picks (lazy is exact for submodular functions); stochastic evaluates a
        random sample of ``n/k·ln(100)`` candidates per pick.
    tau : float or "auto"
        Similarities at or below τ (on ``½ + ½·cos``) are dropped; 0 keeps every pair (exact). Not used by
        ``log_determinant``, which computes one similarity row per pick.
    neighbors : int
        Mean degree wanted by ``tau="auto"``.
    cut_weight : float
        λ of the graph cut.
    space : {"features", "gradients"}
        Similarity of the embeddings, or of the per-example last-layer gradients
        (:func:`gradient_embeddings`, as DeepCore's Submodular; needs probs and labels).
    start, pool
        Active learning: the function starts from the starting set S0 (each class from S0's members of it
        when balanced; quotas split over the candidates' labels) and only candidates are picked. An empty S0
        and no pool is pruning (identical picks).
    shared_build
        Under torchrun, the ranks build the similarity graph together (see
        :class:`~robustprune.selection.core.graph.SharedBuild`).
    parts, partition, oversample
        ``parts > 1`` (facility location and graph cut): the two-round greedy on partitions
        (:func:`~robustprune.selection.core.partition.two_round`): each class (or all examples) split into
        ``parts`` by ``partition`` ("cluster" or "random"), each part's own graph and greedy picking
        ``oversample`` times its share, then the parts' picks merged by gain; one process. 1: no partition.

    Returns
    -------
    MethodOutput
        Picks in order with their marginal gains; balanced picks interleave the classes round by round.
    """
    if function not in FUNCTIONS:
        raise ValueError(f"function must be one of {FUNCTIONS}, got {function!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if tau != "auto" and not 0.0 <= float(tau) <= 1.0:
        raise ValueError(f"tau must be in [0, 1] or 'auto', got {tau!r}")
    if int(neighbors) < 1:
        raise ValueError(f"neighbors must be at least 1, got {neighbors}")
    if space not in ("features", "gradients"):
        raise ValueError(f"space must be 'features' or 'gradients', got {space!r}")
    if space == "gradients":
        if probs is None or labels is None:
            raise ValueError("space='gradients' needs probs and labels (the last-layer gradient is (p - y) h)")
        features = gradient_embeddings(probs, labels, features)
    x = np.asarray(features)
    n = x.shape[0]
    edges = 0
    in_start = ok = None
    if start is not None and len(start):
        in_start = np.zeros(n, dtype=bool)
        in_start[np.asarray(start, dtype=np.int64)] = True
    if pool is not None or in_start is not None:  # the examples that may be picked
        ok = np.ones(n, dtype=bool)
        if pool is not None:
            ok[:] = False
            ok[np.asarray(pool, dtype=np.int64)] = True
        if in_start is not None:
            ok &= ~in_start

    if parts != 1:
        _check_parts(parts, partition, oversample, function, in_start, pool)

    def run_class(members: np.ndarray, k: int, _c: int = 0) -> tuple[np.ndarray, np.ndarray]:
        nonlocal edges
        if parts != 1 and _c >= 0:  # two rounds over parts of the members (selection/core/partition.py)
            split, _ = assign_parts(partition, members.shape[0], parts, seed=seed, source=x[members],
                                    fmap=EmbeddingMap("raw"), device=device)  # fmt: skip
            return two_round(split, k, float(oversample), lambda rows, q: run_class(members[rows], q, -1))
        s0 = None if in_start is None else np.flatnonzero(in_start[members])  # positions in members
        cand = None if ok is None else np.flatnonzero(ok[members])
        if function == "log_determinant":
            fn: SetFunction | LogDeterminant = LogDeterminant(x[members], k + (0 if s0 is None else s0.shape[0]))
        else:
            graph = _graph(x[members], tau, neighbors, device, seed, shared_build)
            edges += graph.nnz
            fn = SetFunction(graph, function, cut_weight)
        return _maximise(fn, members.shape[0], k, optimizer, seed, s0, cand)

    if not class_balanced:
        idx, gains = run_class(np.arange(n), budget)
    elif labels is None:
        raise ValueError("class_balanced=True needs labels")
    else:
        idx, gains = per_class_greedy(labels, budget, run_class, None if ok is None else np.flatnonzero(ok))
    return MethodOutput(indices=idx.astype(np.int64), gains=gains, info={"n_edges": edges})
