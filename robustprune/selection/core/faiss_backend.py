"""faiss backends for the rescaled-cosine radius graph (the optional extra ``robustprune[faiss]``).

Two ways to find the pairs with ``s = 0.5 + 0.5·cos > tau`` on L2-normalised float32 rows, both behind
:func:`~robustprune.selection.core.graph.rescaled_cosine_graph`'s ``backend`` option:

- **exact** (``backend="faiss"``): faiss's exhaustive inner-product range search, block of query rows
  ``[a, b)`` against the rows ``[a, N)`` only (the upper triangle, as the blocked build), at a radius widened
  by a rounding margin (:func:`candidate_radius`); every pair found is then re-scored with torch's matrix
  product and re-checked as the blocked build does (:func:`recheck`). faiss's own inner products round
  differently from torch's in the last bit (faiss-cpu 1.15 with OpenBLAS against torch with MKL: about 1% of
  the weights differed by one float32 ulp), so they only nominate candidates; the graph is the blocked
  build's, bit for bit, whatever BLAS faiss was built with. faiss keeps the few pairs above the radius while
  scanning each product tile, where the blocked build masks and gathers the whole tile.
- **approximate** (``backend="faiss-approx"``): an inverted-file index (``IndexIVFFlat``, inner product,
  ``nlist`` spherical k-means cells, ``4·√N`` by default) searched with ``nprobe`` cells per query at a
  radius widened by a rounding margin; a pair found from either end is a candidate. faiss's IVF scan uses
  SIMD dot products that round differently from a matrix product, so every candidate's cosine is recomputed
  with torch's matrix product (rows of one IVF cell at a time against the union of their candidates, so
  the products are dense) and re-checked as the blocked build does. The graph is then a subset of the exact
  one with the same weights: it can miss pairs whose two ends fall in cells the other does not probe (edge
  recall < 1). Its cost grows like ``N^1.5`` instead of ``N²``.

faiss is imported only when one of these is chosen; without it :func:`import_faiss` names the install.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "import_faiss",
    "faiss_installed",
    "default_nlist",
    "candidate_radius",
    "recheck",
    "exact_upper_edges",
    "approx_upper_edges",
]

#: What to install when faiss is missing.
INSTALL_HINT = "pip install robustprune[faiss] (or faiss-cpu / the faiss GPU build)"

#: Results one range-search call may return before the query block shrinks (about 200 MB of distances + ids).
RESULTS_PER_CALL = 1 << 24

#: k-means training points per IVF cell (faiss warns below 39).
TRAIN_PER_LIST = 64


def import_faiss():
    """The ``faiss`` module, or an ``ImportError`` in one line that names the install."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(f"the faiss graph backend needs faiss, which is not installed: {INSTALL_HINT}") from exc
    return faiss


def faiss_installed() -> bool:
    """Whether ``import faiss`` works (imports it)."""
    try:
        import_faiss()
    except ImportError:
        return False
    return True


def default_nlist(n: int) -> int:
    """IVF cells for N rows: ``round(4·√N)``, at most ``N // 39`` (faiss's minimum training points per cell)."""
    return max(1, min(int(round(4 * math.sqrt(n))), n // 39))


def candidate_radius(tau32: torch.Tensor, d: int) -> float:
    """The widened cosine radius of the approximate search: below ``2·tau - 1`` by a rounding margin.

    A float32 dot product of two unit vectors of dimension D is within about ``D·2⁻²⁴`` of the exact one in
    any summation order, so faiss's SIMD value and torch's differ by less than twice that; the margin is
    twice that again, plus the blocked build's own 1e-6 (``0.5·cos + 0.5`` rounds by 2⁻²⁵).
    """
    return float(2.0 * float(tau32) - 1.0 - 4.0 * d * 2.0**-24 - 1e-6)


#: Rows and columns below which a product is padded (BLAS libraries switch to other kernels, which round
#: differently, for very thin matrices).
MIN_SIDE = 16


def recheck(
    zt: torch.Tensor,
    lo: np.ndarray,
    hi: np.ndarray,
    tau32: torch.Tensor,
    order: np.ndarray | None = None,
    group: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs (lo, hi) re-scored as the blocked build scores them; returns the kept (lo, hi, w).

    Rows are taken in ``order`` (a permutation of the rows; default 0..N-1), ``group`` at a time; for each
    group, one product ``zt[rows] @ zt[U].T`` with ``U`` the union of the columns of its pairs (both sides
    padded to :data:`MIN_SIDE`), then ``0.5 + 0.5·cos > tau`` in float32, the weight the blocked build's tile
    gives the same pair. An order that puts rows with common neighbours together (one IVF cell after
    another) keeps ``U`` small and the products dense.
    """
    from robustprune.selection.core.edges import rescale as _rescale

    m = lo.shape[0]
    if m == 0:
        return lo, hi, np.empty(0, np.float32)
    n = zt.shape[0]
    if order is None:
        order = np.arange(n, dtype=np.int64)
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n, dtype=np.int64)
    gid = pos[lo] // group
    by_group = np.argsort(gid, kind="stable")
    gid_sorted = gid[by_group]
    del gid
    starts = np.flatnonzero(np.r_[True, gid_sorted[1:] != gid_sorted[:-1]])
    ends = np.r_[starts[1:], m]
    keep = np.zeros(m, dtype=bool)
    w = np.empty(m, dtype=np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of small products: waking threads would cost more than they do
    try:
        for p, q in zip(starts, ends, strict=True):
            sel = by_group[p:q]
            g = int(gid_sorted[p])
            rows = order[g * group : (g + 1) * group]
            local = pos[lo[sel]] - g * group
            cols, inv = np.unique(hi[sel], return_inverse=True)
            rows = np.concatenate([rows, np.repeat(rows[:1], max(0, MIN_SIDE - rows.shape[0]))])
            cols = np.concatenate([cols, np.repeat(cols[:1], max(0, MIN_SIDE - cols.shape[0]))])
            cos = zt[torch.from_numpy(rows)] @ zt[torch.from_numpy(cols)].T  # as the blocked build's tiles
            s = _rescale(cos[torch.from_numpy(local), torch.from_numpy(inv.ravel())])
            keep[sel] = (s > tau32).numpy()
            w[sel] = s.numpy()
    finally:
        torch.set_num_threads(threads)
    return lo[keep], hi[keep], w[keep]


def _results(res, nq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lims, distances, labels) of a ``RangeSearchResult``, copied out of faiss's buffers."""
    import faiss

    lims = faiss.rev_swig_ptr(res.lims, nq + 1).copy().astype(np.int64)
    total = int(lims[-1])
    if total == 0:
        return lims, np.empty(0, np.float32), np.empty(0, np.int64)
    return lims, faiss.rev_swig_ptr(res.distances, total).copy(), faiss.rev_swig_ptr(res.labels, total).copy()


def _progress_reporter(progress: Callable[[int, int], None] | None, n: int, block_size: int):
    """A function of the share of work done that calls ``progress`` in the blocked build's tile units."""
    nb = -(-n // block_size)
    units = nb * (nb + 1) // 2
    last = [-1]

    def report(share: float) -> None:
        if progress is None:
            return
        done = units if share >= 1.0 else min(units - 1, int(units * share))
        if done != last[0]:
            progress(done, units)
            last[0] = done

    return report


def exact_upper_edges(
    z: np.ndarray,
    tau32: torch.Tensor,
    cos_lo: float,
    block_size: int,
    max_edges: int | None,
    progress: Callable[[int, int], None] | None,
):
    """Edges (i, j, s) with i < j and s > tau by exact range search, as
    :class:`~robustprune.selection.core.edges.ChunkedColumns`.

    ``z``: C-contiguous float32 rows, L2-normalised; ``cos_lo``: the blocked build's cosine pre-filter.
    Query rows go in blocks of at most ``block_size``; a block shrinks when the density seen so far says it
    would return more than :data:`RESULTS_PER_CALL` pairs (low τ), so memory stays bounded until
    ``max_edges`` stops the build. ``progress`` is called in the blocked build's tile units
    (``nb·(nb+1)/2`` for ``nb = ceil(N / block_size)``), by pairs scanned.
    """
    from robustprune.selection.core.edges import ChunkedColumns
    from robustprune.selection.core.edges import too_many as _too_many

    faiss = import_faiss()
    n, d = z.shape
    idt = np.int32 if n < 2**31 else np.int64
    edges = ChunkedColumns(idt, idt, np.float32)
    report = _progress_reporter(progress, n, block_size)
    total_pairs = n * (n + 1) / 2
    scanned = rect = found = 0
    zt = torch.from_numpy(z)
    radius = min(float(cos_lo), candidate_radius(tau32, d))  # faiss's rounding must not drop a pair
    old = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 0  # always sgemm, never the small-batch SIMD loop
    try:
        a = 0
        rows = min(block_size, n, max(256, RESULTS_PER_CALL // n))
        while a < n:
            b = min(n, a + rows)
            nq, ny = b - a, n - a
            res = faiss.RangeSearchResult(nq)
            faiss.range_search_inner_product(faiss.swig_ptr(z[a:b]), faiss.swig_ptr(z[a:]), d, nq, ny, radius, res)
            lims, _cos, col = _results(res, nq)
            del res, _cos
            row = np.repeat(np.arange(nq, dtype=np.int64), np.diff(lims))
            upper = col > row  # both relative to a: j > i, never the self-pair
            lo, hi, s = recheck(zt, row[upper] + a, col[upper] + a, tau32)
            edges.add(lo.astype(idt), hi.astype(idt), s)
            _too_many(2 * edges.count, max_edges)
            scanned += nq * ny - nq * (nq - 1) / 2
            rect += nq * ny
            found += int(lims[-1])
            a = b
            if a < n:  # next block: as many rows as keep the expected results under RESULTS_PER_CALL
                want = RESULTS_PER_CALL / max(found / rect * (n - a), 1.0)
                rows = int(min(block_size, max(256, want)))
            report(scanned / total_pairs if a < n else 1.0)
    finally:
        faiss.cvar.distance_compute_blas_threshold = old
    return edges


def approx_upper_edges(
    z: np.ndarray,
    tau32: torch.Tensor,
    *,
    nprobe: int,
    nlist: int | None,
    seed: int,
    block_size: int,
    max_edges: int | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Pairs (i < j, s) with s > tau that an IVF range search finds from either end; and index facts.

    Returns ``(rows, cols, weights, info)`` with each pair once (``rows < cols``), and ``info`` = nlist,
    nprobe, train_rows, train_seconds, candidates. The k-means training sample (``TRAIN_PER_LIST · nlist``
    rows) is drawn with ``seed``, and faiss's k-means is seeded with it too, so the graph is deterministic
    for a seed.
    """
    import time

    from robustprune.selection.core.edges import ChunkedColumns
    from robustprune.selection.core.edges import too_many as _too_many

    faiss = import_faiss()
    n, d = z.shape
    nl = default_nlist(n) if nlist is None else max(1, min(int(nlist), n))
    t0 = time.perf_counter()
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nl, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(seed)
    index.cp.niter = 10
    index.cp.spherical = True
    m = min(n, TRAIN_PER_LIST * nl)
    if m < n:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x1F5]))
        sample = z[np.sort(rng.choice(n, m, replace=False))]
    else:
        sample = z
    index.train(sample)
    del sample
    index.add(z)
    index.nprobe = min(int(nprobe), nl)
    info = {"nlist": nl, "nprobe": int(index.nprobe), "train_rows": m, "train_seconds": time.perf_counter() - t0}
    # rows cell by cell: the re-check's order (rows of one cell share most of their neighbours)
    inv = index.invlists
    by_cell = [faiss.rev_swig_ptr(inv.get_ids(c), inv.list_size(c)).copy() for c in range(nl) if inv.list_size(c)]
    order = np.concatenate(by_cell).astype(np.int64)
    del by_cell

    radius = candidate_radius(tau32, d)
    report = _progress_reporter(progress, n, block_size)
    keys = ChunkedColumns(np.int64)  # one key per pair found: min · N + max
    a = 0
    rows = min(block_size, n)
    while a < n:
        b = min(n, a + rows)
        lims, _, col = index.range_search(z[a:b], radius)
        row = np.repeat(np.arange(a, b, dtype=np.int64), np.diff(lims).astype(np.int64))
        col = col.astype(np.int64)
        other = col != row
        r, c = row[other], col[other]
        keys.add(np.minimum(r, c) * n + np.maximum(r, c))
        _too_many(keys.count, max_edges)  # each pair is usually found from both ends: ~ the directed count
        rows = int(min(block_size, max(256, RESULTS_PER_CALL / max(int(lims[-1]) / (b - a), 1.0))))
        a = b
        report(0.8 * a / n)  # the re-check below is the last fifth
    del index, quantizer
    (uniq,) = keys.arrays()
    uniq.sort()
    uniq = uniq[np.r_[True, uniq[1:] != uniq[:-1]]] if uniq.size else uniq
    info["candidates"] = int(uniq.shape[0])
    lo, hi = uniq // n, uniq % n
    del uniq
    lo, hi, w = recheck(torch.from_numpy(z), lo, hi, tau32, order=order)
    report(1.0)
    idt = np.int32 if n < 2**31 else np.int64
    return lo.astype(idt), hi.astype(idt), w, info
