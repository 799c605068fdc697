"""Sparse similarity graphs built by blocked matrix products (never a dense N×N matrix).

The graph Prune4ReL needs is a *radius* graph in rescaled cosine similarity: an edge (i, j) with weight
``s(i, j) = 0.5 + 0.5 * cos(z_i, z_j)`` wherever ``s(i, j) > tau`` (strict), the self-pair included with
weight exactly 1 when ``tau < 1``. It is built once from L2-normalised embeddings by tiles of
``block_size × block_size`` products on CPU or GPU, keeping only the upper triangle of tiles (the graph is
symmetric), and stored as CSR arrays that every greedy method can share.

The blocked build is the reference. With the optional extra ``robustprune[faiss]`` the same graph can be
found by faiss (``backend="faiss"``: exact range search, the same graph; ``backend="faiss-approx"``: an
inverted-file index for very large N, a subset of it); see :mod:`robustprune.selection.core.faiss_backend` and
:func:`choose_backend` for what ``backend="auto"`` picks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from robustprune.selection.core.edges import ChunkedColumns
from robustprune.selection.core.edges import rescale as _rescale
from robustprune.selection.core.edges import too_many as _too_many

if TYPE_CHECKING:
    import torch

__all__ = [
    "BuildHandedOff", "SharedBuild", "BACKENDS", "SimilarityGraph", "check_backend", "choose_backend",
    "normalize_rows", "rescaled_cosine_graph",
    "resolve_block_size", "tile_count", "upper_tiles",
]  # fmt: skip

#: Values of ``rescaled_cosine_graph``'s ``backend``.
BACKENDS = ("auto", "blocked", "faiss", "faiss-approx")


class BuildHandedOff(Exception):
    """Raised on a rank other than 0 by a :class:`SharedBuild` build once its part of the graph went to rank 0
    (which alone goes on to select)."""


class SharedBuild:
    """The ranks of a torchrun job building a τ-graph together, handed to :func:`rescaled_cosine_graph` by the
    caller (a run's selection stage; ``select(..., shared_build=...)`` passes it to the methods that accept it).

    Every rank makes its own and runs the same selection on the same signals with it: the first blocked build
    is then a collective. Its tiles are dealt round-robin to the ranks, each builds its own, and the edges are
    gathered; rank 0 assembles the graph and returns it, every other rank raises :class:`BuildHandedOff` (it
    has nothing left to do for the selection), and any later build is rank 0's alone (:attr:`done`). The graph
    equals the one-process build bit for bit: every tile is the same product on the same rows wherever it is
    computed, and the CSR packing sorts the edges. The other backends and capped rows are built by rank 0
    alone. In one process it changes nothing.
    """

    def __init__(self) -> None:
        self.done = False

    @property
    def active(self) -> bool:
        """Whether the next build is shared: several processes, and no shared build yet."""
        import robustprune.distributed as dist

        return not self.done and dist.world().distributed


@dataclass(frozen=True)
class SimilarityGraph:
    """A sparse graph in CSR form: the neighbours of row i are ``indices[indptr[i]:indptr[i+1]]``.

    Attributes
    ----------
    indptr : ndarray of int64, shape (N + 1,)
    indices : ndarray of int32 or int64, shape (E,)
        Column indices, ascending within each row.
    weights : ndarray of float32, shape (E,)
    n : int
    symmetric : bool
        True when every edge (i, j) has its twin (j, i) with the same weight.
    build_seconds : float
    backend : str
        How the edges were found: "blocked", "faiss" (exact) or "faiss-approx".
    """

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    n: int
    symmetric: bool = True
    build_seconds: float = 0.0
    backend: str = "blocked"

    @property
    def nnz(self) -> int:
        """Number of stored edges (each undirected pair counts twice, the self-pair once)."""
        return int(self.indptr[-1])

    def degrees(self) -> np.ndarray:
        """Neighbours per row, shape (N,)."""
        return np.diff(self.indptr)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(neighbour indices, weights) of row ``i``."""
        a, b = self.indptr[i], self.indptr[i + 1]
        return self.indices[a:b], self.weights[a:b]


def normalize_rows(features: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """L2-normalise rows in float32 on ``device``; zero rows are an error (cosine is undefined there)."""
    import torch

    z = torch.as_tensor(features).to(device=device, dtype=torch.float32)
    norms = torch.linalg.vector_norm(z, dim=1, keepdim=True)
    zero = (norms.squeeze(1) == 0).nonzero()
    if zero.numel():
        i = int(zero[0, 0])
        raise ValueError(
            f"features row {i} has zero norm ({zero.shape[0]} such rows); cosine similarity is undefined "
            "there: drop those examples or use embeddings without all-zero rows"
        )
    return z / norms


def check_backend(backend: str) -> None:
    """``ValueError`` unless ``backend`` is one of :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be 'auto', 'blocked' (torch tiles, the reference), 'faiss' (exact range search) or "
            f"'faiss-approx' (IVF index, for very large N), got {backend!r}"
        )


#: Default tile edge of the blocked build: on the CPU a 2048² tile's product and flags stay closer to the
#: caches (about 270 against 220 GFLOP/s-equivalent at 4096 on 2 cores); on a GPU larger tiles keep it busy.
CPU_BLOCK, GPU_BLOCK = 2048, 4096


def resolve_block_size(block_size: int | None, device: torch.device, backend: str = "blocked") -> int:
    """``block_size``, or the default for ``device`` (the faiss backends, which run on the CPU, query in
    blocks of :data:`GPU_BLOCK` rows)."""
    if block_size is not None:
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        return int(block_size)
    return CPU_BLOCK if backend == "blocked" and device.type == "cpu" else GPU_BLOCK


def tile_count(n: int, block_size: int, backend: str, max_neighbors: int | None = None) -> int:
    """The progress units a graph build of ``n`` rows reports in (tiles of ``block_size``; row blocks when
    ``max_neighbors`` caps the rows)."""
    nb = -(-n // block_size)
    return nb if max_neighbors is not None and backend == "blocked" else nb * (nb + 1) // 2


def choose_backend(backend: str, n: int, device: torch.device, max_neighbors: int | None = None) -> str:
    """The backend ``backend`` resolves to for ``n`` rows on ``device``.

    "auto" is the blocked build everywhere: since its tiles were fused it is faster than faiss's exact range
    search on the CPU as well (docs/benchmarks.md), and it is the reference. "auto" never chooses the
    approximate index: that one changes the graph, so it is opt-in. Other values are returned as they are.
    (``n``, ``device`` and ``max_neighbors`` are kept for callers; the rule does not depend on them now.)
    """
    check_backend(backend)
    return "blocked" if backend == "auto" else backend


def rescaled_cosine_graph(
    features: np.ndarray | torch.Tensor,
    tau: float,
    *,
    block_size: int | None = None,
    device: str | torch.device | None = "auto",
    max_neighbors: int | None = None,
    max_edges: int | None = 200_000_000,
    progress: Callable[[int, int], None] | None = None,
    backend: str = "blocked",
    nprobe: int = 16,
    nlist: int | None = None,
    seed: int = 0,
    shared: SharedBuild | None = None,
) -> SimilarityGraph:
    """Radius graph of ``s = 0.5 + 0.5·cos`` with strict threshold ``s > tau`` (self-weight exactly 1).

    Parameters
    ----------
    features : array (N, D)
        Embeddings; rows are L2-normalised in float32 here.
    tau : float
        Threshold on the rescaled similarity (``tau = 0.95`` means ``cos > 0.9``). ``tau >= 1`` gives an
        empty graph (not even self-loops), matching the released rule.
    block_size : int, optional
        Tile edge; peak extra memory is about ``block_size² × 5`` bytes (the product and its flags). Default
        2048 for the blocked build on the CPU, 4096 on a GPU and for the faiss backends' query blocks.
    device : str
        'auto', 'cpu' or 'cuda'. Products run there; edges are gathered on the CPU.
    max_neighbors : int, optional
        Keep only the ``max_neighbors`` most similar neighbours of each row (self included; ties: lower
        index). The graph is then no longer symmetric. Off by default: the exact radius graph.
    max_edges : int, optional
        Raise a ``ValueError`` once more edges than this would be stored (protects memory at low tau).
    progress : callable (done, total), optional
        Called in tile units of the blocked build (the faiss backends report their share of the work in the
        same units).
    backend : {"blocked", "auto", "faiss", "faiss-approx"}
        How the pairs are found. "blocked" (default): the torch tiles above, the reference. "faiss": faiss's
        exact inner-product range search over the upper triangle with the same float32 re-check on faiss's
        sgemm products: the blocked build's graph, bit for bit where faiss's BLAS rounds as torch's (as on
        this project's machines), about twice as fast on the CPU. "faiss-approx": an ``IndexIVFFlat`` (inner
        product, ``nlist`` cells, ``nprobe`` probed) range search from every row, a pair found from either
        end kept and its cosine recomputed by torch's matrix product: much faster for very large N (cost
        ~N^1.5), a subset of the exact graph with the same weights (edge recall < 1). Both run on the CPU
        whatever ``device`` says. "auto": see :func:`choose_backend` (never the approximate one). The faiss
        backends need ``pip install robustprune[faiss]`` and do not support ``max_neighbors``.
    nprobe, nlist : int
        IVF cells probed per query, and cells in all (default ``4·√N``); "faiss-approx" only.
    seed : int
        Seeds the IVF k-means (training sample and initial centroids); "faiss-approx" only.
    shared : SharedBuild, optional
        Under torchrun, the ranks build this graph together (see :class:`SharedBuild`); every rank must then
        call with the same arguments.

    Returns
    -------
    SimilarityGraph
    """
    import torch

    from robustprune._device import resolve_device

    t0 = time.perf_counter()
    check_backend(backend)
    if nprobe < 1:
        raise ValueError(f"nprobe must be at least 1, got {nprobe}")
    if nlist is not None and nlist < 1:
        raise ValueError(f"nlist must be at least 1, got {nlist}")
    dev = resolve_device(device)
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    if max_neighbors is not None and max_neighbors < 1:
        raise ValueError(f"max_neighbors must be at least 1, got {max_neighbors}")
    n = int(features.shape[0])
    chosen = choose_backend(backend, n, dev, max_neighbors)
    block_size = resolve_block_size(block_size, dev, chosen)
    if chosen != "blocked" and max_neighbors is not None:
        raise ValueError(f"max_neighbors needs backend='blocked' (or 'auto'), got backend={backend!r}")
    if chosen != "blocked":
        import robustprune.selection.core.faiss_backend as faiss_backend

        faiss_backend.import_faiss()  # the one-line install hint before any work
        dev = torch.device("cpu")
    import robustprune.distributed as dist

    sharing = shared is not None and shared.active
    if sharing and not (chosen == "blocked" and max_neighbors is None) and not dist.is_main():
        raise BuildHandedOff  # built by rank 0 alone
    z = normalize_rows(features, dev)
    tau32 = torch.tensor(float(tau), dtype=torch.float32)
    self_in = bool(torch.tensor(1.0, dtype=torch.float32) > tau32)

    if sharing and chosen == "blocked" and max_neighbors is None:
        r, c, w = _shared_upper_edges(z, tau32, block_size, max_edges, progress)
        del z
        if not dist.is_main():
            raise BuildHandedOff
        shared.done = True  # the other ranks have left: any later build is rank 0's alone
        graph = _to_csr(*_mirror(r, c, w, n if self_in else 0), n, symmetric=True)
        chosen = f"blocked ({dist.world().size} ranks)"
    elif chosen == "faiss":
        cos_lo = float(_cosine_prefilter(tau32, dev))
        upper = faiss_backend.exact_upper_edges(z.numpy(), tau32, cos_lo, block_size, max_edges, progress)
        del z
        graph = _to_csr(*upper.mirrored(n if self_in else 0), n, symmetric=True)
    elif chosen == "faiss-approx":
        r, c, w, _ = faiss_backend.approx_upper_edges(
            z.numpy(), tau32, nprobe=nprobe, nlist=nlist, seed=seed, block_size=block_size,
            max_edges=max_edges, progress=progress,
        )  # fmt: skip
        del z
        graph = _to_csr(*_mirror(r, c, w, n if self_in else 0), n, symmetric=True)
    elif max_neighbors is None:
        upper = _upper_edges(z, tau32, block_size, max_edges, progress)
        del z
        graph = _to_csr(*upper.mirrored(n if self_in else 0), n, symmetric=True)
    else:
        graph = _capped_edges(z, tau32, self_in, block_size, max_neighbors, max_edges, progress)
    return SimilarityGraph(
        graph.indptr, graph.indices, graph.weights, n, graph.symmetric, time.perf_counter() - t0, chosen
    )


def _mirror(r: np.ndarray, c: np.ndarray, w: np.ndarray, n_diag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (r, c), their twins (c, r) and ``n_diag`` self-pairs of weight 1, as COO arrays."""
    diag = np.arange(n_diag, dtype=r.dtype)
    rows = np.concatenate([r, c, diag])
    cols = np.concatenate([c, r, diag])
    return rows, cols, np.concatenate([w, w, np.ones(n_diag, np.float32)])


def _cosine_prefilter(tau32: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A cosine below which ``0.5 + 0.5*cos`` cannot round above ``tau`` (candidates are re-checked exactly).

    ``0.5 * cos`` is exact and the addition rounds by at most 2**-25, so a margin of 1e-6 is safe.
    """
    import torch

    return torch.tensor(2.0 * float(tau32) - 1.0 - 1e-6, dtype=torch.float32, device=device)


def upper_tiles(n: int, bs: int) -> list[tuple[int, int]]:
    """The tiles (row start, column start) of the upper triangle, row block by row block."""
    starts = range(0, n, bs)
    return [(a, c) for a in starts for c in starts if c >= a]


def _shared_upper_edges(
    z: torch.Tensor,
    tau32: torch.Tensor,
    bs: int,
    max_edges: int | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This rank's tiles (every ``size``-th, from its rank on), then every rank's edges gathered in rank
    order. A failure on any rank fails the build on every rank: the edge budget as the same ``ValueError``
    everywhere (so that ``engine="auto"`` falls back alike), anything else as this rank's own error or a
    ``RuntimeError`` naming the rank that failed."""
    import torch

    import robustprune.distributed as dist

    w = dist.world()
    tiles = upper_tiles(z.shape[0], bs)
    mine = tiles[w.rank :: w.size]
    report = None if progress is None else (lambda done, _t: progress(min(done * w.size, len(tiles)), len(tiles)))
    code, error = 0, None
    try:
        edges = _upper_edges(z, tau32, bs, max_edges, report, tiles=mine)
        parts = edges.arrays()
    except ValueError as exc:
        code, error = (1 if "max_edges" in str(exc) else 2), exc
    except Exception as exc:  # noqa: BLE001 - re-raised below, after the other ranks learn of it
        code, error = 2, exc
    codes = dist.all_gather_cat(torch.tensor([code], dtype=torch.int64)).tolist()
    if any(codes):
        if error is not None and code == max(codes):
            raise error
        if max(codes) == 1:
            _too_many(max_edges + 1, max_edges)  # the same message as the rank that ran over
        raise RuntimeError(f"rank {codes.index(2)} failed while building the similarity graph")
    gathered = [dist.all_gather_cat(torch.from_numpy(a)).numpy() for a in parts]
    _too_many(2 * gathered[0].shape[0], max_edges)
    return gathered[0], gathered[1], gathered[2]


def _upper_edges(
    z: torch.Tensor,
    tau32: torch.Tensor,
    bs: int,
    max_edges: int | None,
    progress: Callable[[int, int], None] | None,
    tiles: list[tuple[int, int]] | None = None,
) -> ChunkedColumns:
    """Edges (i, j, s) with i < j and s > tau from the upper triangle of tiles (or the ``tiles`` given).

    Each tile is one fused pass: the product goes into a reused buffer, the cosine prefilter into a reused
    flag buffer, and the candidates are found word by word (eight flags per 64-bit word, so the scan reads an
    eighth of the elements; at the densities a radius graph has, few words are non-zero); only candidates
    are re-checked in the rescaled similarity. Buffers are reused because a fresh 64 MB tile per product
    costs page faults comparable to the product itself.
    """
    import torch

    n = z.shape[0]
    tiles = upper_tiles(n, bs) if tiles is None else tiles
    index_dtype = np.int32 if n < 2**31 else np.int64
    edges = ChunkedColumns(index_dtype, index_dtype, np.float32)
    tau_d = tau32.to(z.device)
    cos_lo = _cosine_prefilter(tau32, z.device)
    idt = torch.int32 if n < 2**31 else torch.int64
    zt = z.T.contiguous()  # column blocks as contiguous (D, b) panels
    size = min(bs, n)
    cos_buf = torch.empty(size * size, dtype=z.dtype, device=z.device)
    flag_buf = torch.zeros(size * size + 8, dtype=torch.bool, device=z.device)
    for done, (a, c) in enumerate(tiles, 1):
        m, k = min(bs, n - a), min(bs, n - c)
        cos = cos_buf[: m * k].view(m, k)
        torch.matmul(z[a : a + m], zt[:, c : c + k], out=cos)
        words = -(-(m * k) // 8)
        flags = flag_buf[: 8 * words]
        flags[m * k :] = False  # the last word's padding
        torch.gt(cos, cos_lo, out=flags[: m * k].view(m, k))
        hot = flags.view(torch.int64).nonzero().squeeze(1)
        if hot.numel():
            sub = flags.view(-1, 8)[hot].nonzero()
            flat = hot[sub[:, 0]] * 8 + sub[:, 1]
            r, col = flat // k, flat % k
            if c == a:  # the diagonal tile: pairs above the diagonal only
                above = col > r
                flat, r, col = flat[above], r[above], col[above]
            s = _rescale(cos.view(-1)[flat])
            keep = s > tau_d
            edges.add((r[keep] + a).to(idt).cpu().numpy(), (col[keep] + c).to(idt).cpu().numpy(), s[keep].cpu().numpy())
            _too_many(2 * edges.count, max_edges)
        if progress is not None:
            progress(done, len(tiles))
    return edges


def _capped_edges(
    z: torch.Tensor,
    tau32: torch.Tensor,
    self_in: bool,
    bs: int,
    k: int,
    max_edges: int | None,
    progress: Callable[[int, int], None] | None,
) -> SimilarityGraph:
    """Row blocks against all columns, keeping each row's ``k`` best neighbours above tau."""
    import torch

    n = z.shape[0]
    rows_l, cols_l, vals_l = [], [], []
    count = 0
    tau_d = tau32.to(z.device)
    starts = list(range(0, n, bs))
    for t, a in enumerate(starts):
        s = _rescale(z[a : a + bs] @ z.T)
        m = s.shape[0]
        ar = torch.arange(m, device=s.device)
        s[ar, ar + a] = 1.0 if self_in else -1.0
        s = torch.where(s > tau_d, s, torch.full_like(s, -1.0))
        kk = min(k, n)
        # stable top-k with ties to the lower column: sort descending, stable
        vals, cols = torch.sort(s, dim=1, descending=True, stable=True)
        vals, cols = vals[:, :kk], cols[:, :kk]
        keep = vals > tau_d
        r = (ar[:, None] + a).expand(-1, kk)[keep]
        rows_l.append(r.cpu().numpy())
        cols_l.append(cols[keep].cpu().numpy())
        vals_l.append(vals[keep].cpu().numpy())
        count += int(keep.sum())
        _too_many(count, max_edges)
        if progress is not None:
            progress(t + 1, len(starts))
    r = np.concatenate(rows_l).astype(np.int64) if rows_l else np.empty(0, np.int64)
    c = np.concatenate(cols_l).astype(np.int64) if cols_l else np.empty(0, np.int64)
    w = np.concatenate(vals_l).astype(np.float32) if vals_l else np.empty(0, np.float32)
    return _to_csr(r, c, w, n, symmetric=False)


def _to_csr(r: np.ndarray, c: np.ndarray, w: np.ndarray, n: int, symmetric: bool) -> SimilarityGraph:
    """Pack edges as CSR with columns ascending in each row (a counting sort in C, O(E + N) memory)."""
    import scipy.sparse

    index_dtype = np.int32 if n < 2**31 else np.int64
    if r.size == 0:
        return SimilarityGraph(
            np.zeros(n + 1, np.int64), np.empty(0, index_dtype), np.empty(0, np.float32), n, symmetric
        )
    m = scipy.sparse.csr_matrix((w, (r, c)), shape=(n, n))  # edges are unique: nothing is summed
    m.sort_indices()
    return SimilarityGraph(
        m.indptr.astype(np.int64),
        m.indices.astype(index_dtype, copy=False),
        m.data.astype(np.float32, copy=False),
        n,
        symmetric,
    )
