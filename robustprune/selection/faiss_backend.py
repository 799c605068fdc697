"""faiss backends for the rescaled-cosine radius graph (the optional extra ``robustprune[faiss]``).

Two ways to find the pairs with ``s = 0.5 + 0.5·cos > tau`` on L2-normalised float32 rows, both behind
:func:`~robustprune.selection.graph.rescaled_cosine_graph`'s ``backend`` option:

- **exact** (``backend="faiss"``): faiss's exhaustive inner-product range search, block of query rows
  ``[a, b)`` against the rows ``[a, N)`` only (the upper triangle, as the blocked build), at the blocked
  build's cosine pre-filter, then the blocked build's re-check ``0.5 + 0.5·cos > tau`` in float32 on the
  inner products faiss returns. faiss computes them with BLAS ``sgemm`` (its small-batch SIMD path is
  switched off for the call), so where its BLAS rounds a dot product as torch's does, edges and weights are
  identical to the blocked build's, bit for bit (checked on this project's machines: x86-64, torch with MKL,
  faiss-cpu with OpenBLAS). It is faster than the blocked build on the CPU because faiss compacts the
  few pairs above the threshold while scanning each product tile, where the blocked build masks and gathers.
- **approximate** (``backend="faiss-approx"``): an inverted-file index (``IndexIVFFlat``, inner product,
  ``nlist`` spherical k-means cells, ``4·√N`` by default) searched with ``nprobe`` cells per query. Each
  query finds its neighbours in the probed cells; a pair found from either end is kept (the graph is
  symmetrised by union), with the same float32 re-check. Its cost grows like ``N^1.5`` instead of ``N²``;
  it can miss pairs whose two ends fall in cells the other does not probe (recall < 1), and its inner
  products come from faiss's SIMD kernel, so weights may differ from the blocked build's in the last bit.

faiss is imported only when one of these is chosen; without it :func:`import_faiss` names the install.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["import_faiss", "faiss_installed", "default_nlist", "exact_upper_edges", "approx_upper_edges"]

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


class _Chunked:
    """A growing 1-D array kept as large fixed-size chunks (see ``graph._EdgeChunks`` on heap fragmentation)."""

    CHUNK = 1 << 23

    def __init__(self, dtype: type) -> None:
        self.dtype = dtype
        self.parts: list[np.ndarray] = []
        self.fill = self.CHUNK
        self.count = 0

    def add(self, x: np.ndarray) -> None:
        i, m = 0, x.shape[0]
        while i < m:
            if self.fill == self.CHUNK:
                self.parts.append(np.empty(self.CHUNK, self.dtype))
                self.fill = 0
            take = min(self.CHUNK - self.fill, m - i)
            self.parts[-1][self.fill : self.fill + take] = x[i : i + take]
            self.fill += take
            i += take
        self.count += m

    def take_all(self) -> np.ndarray:
        """The filled entries as one array; the chunks are released as they are copied."""
        out = np.empty(self.count, self.dtype)
        pos = 0
        while self.parts:
            part = self.parts.pop(0)
            m = min(part.shape[0], self.count - pos)
            out[pos : pos + m] = part[:m]
            pos += m
        return out


def _keep(cos: np.ndarray, tau32: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mask of pairs with ``0.5 + 0.5·cos > tau``, their weights): the blocked build's float32 re-check."""
    from robustprune.selection.graph import _rescale

    s = _rescale(torch.from_numpy(cos))
    keep = (s > tau32).numpy()
    return keep, s.numpy()


def _results(res, nq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lims, distances, labels) of a ``RangeSearchResult``, copied out of faiss's buffers."""
    import faiss

    lims = faiss.rev_swig_ptr(res.lims, nq + 1).copy().astype(np.int64)
    total = int(lims[-1])
    if total == 0:
        return lims, np.empty(0, np.float32), np.empty(0, np.int64)
    dist = faiss.rev_swig_ptr(res.distances, total).copy()
    lab = faiss.rev_swig_ptr(res.labels, total).copy()
    return lims, dist, lab


def exact_upper_edges(
    z: np.ndarray,
    tau32: torch.Tensor,
    cos_lo: float,
    block_size: int,
    max_edges: int | None,
    progress: Callable[[int, int], None] | None,
):
    """Edges (i, j, s) with i < j and s > tau by exact range search; returns ``graph._EdgeChunks``.

    ``z``: C-contiguous float32 rows, L2-normalised. Query rows go in blocks of at most ``block_size``;
    a block shrinks when the density seen so far says it would return more than :data:`RESULTS_PER_CALL`
    pairs (low τ), so memory stays bounded until ``max_edges`` stops the build. ``progress`` is called in
    the blocked build's tile units (``nb·(nb+1)/2`` for ``nb = ceil(N / block_size)``), by pairs scanned.
    """
    from robustprune.selection.graph import _EdgeChunks, _too_many

    faiss = import_faiss()
    n, d = z.shape
    idt = np.int32 if n < 2**31 else np.int64
    edges = _EdgeChunks(idt)
    nb = -(-n // block_size)
    units = nb * (nb + 1) // 2
    total_pairs = n * (n + 1) / 2
    scanned = rect = found = 0
    reported = -1
    old = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 0  # always sgemm: the blocked build's rounding
    try:
        a = 0
        rows = min(block_size, n, max(256, RESULTS_PER_CALL // n))
        while a < n:
            b = min(n, a + rows)
            nq, ny = b - a, n - a
            res = faiss.RangeSearchResult(nq)
            faiss.range_search_inner_product(
                faiss.swig_ptr(z[a:b]), faiss.swig_ptr(z[a:]), d, nq, ny, float(cos_lo), res
            )
            lims, cos, col = _results(res, nq)
            del res
            row = np.repeat(np.arange(nq, dtype=np.int64), np.diff(lims))
            upper = col > row  # both relative to a: j > i, never the self-pair
            keep, s = _keep(cos, tau32)
            keep &= upper
            edges.add((row[keep] + a).astype(idt), (col[keep] + a).astype(idt), s[keep])
            _too_many(2 * edges.count, max_edges)
            scanned += nq * ny - nq * (nq - 1) / 2
            rect += nq * ny
            found += int(lims[-1])
            a = b
            if a < n:  # next block: as many rows as keep the expected results under RESULTS_PER_CALL
                density = found / rect
                want = RESULTS_PER_CALL / max(density * (n - a), 1.0)
                rows = int(min(block_size, max(256, want)))
            if progress is not None:
                done = units if a >= n else min(units - 1, int(units * scanned / total_pairs))
                if done != reported:
                    progress(done, units)
                    reported = done
    finally:
        faiss.cvar.distance_compute_blas_threshold = old
    return edges


def approx_upper_edges(
    z: np.ndarray,
    tau32: torch.Tensor,
    cos_lo: float,
    *,
    nprobe: int,
    nlist: int | None,
    seed: int,
    block_size: int,
    max_edges: int | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Pairs (i < j, s) with s > tau found by an IVF range search from either end; and index facts.

    Returns ``(rows, cols, weights, info)`` with each pair once (``rows < cols``), and ``info`` = nlist,
    nprobe, train_rows, train_seconds. The k-means training sample (``TRAIN_PER_LIST · nlist`` rows) is drawn
    with ``seed``; faiss's k-means is seeded with it too, so the graph is deterministic for a seed.
    """
    import time

    from robustprune.selection.graph import _too_many

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

    nb = -(-n // block_size)
    units = nb * (nb + 1) // 2
    keys, weights = _Chunked(np.int64), _Chunked(np.float32)
    reported = -1
    a = 0
    rows = min(block_size, n)
    while a < n:
        b = min(n, a + rows)
        nq = b - a
        lims, cos, col = index.range_search(z[a:b], float(cos_lo))
        row = np.repeat(np.arange(a, b, dtype=np.int64), np.diff(lims).astype(np.int64))
        keep, s = _keep(cos, tau32)
        keep &= col != row
        r, c = row[keep], col[keep].astype(np.int64)
        keys.add(np.minimum(r, c) * n + np.maximum(r, c))
        weights.add(s[keep])
        _too_many(keys.count, max_edges)  # each pair is usually found from both ends: ~ the directed count
        found = int(lims[-1])
        a = b
        if a < n:
            rows = int(min(block_size, max(256, RESULTS_PER_CALL / max(found / nq, 1.0))))
        if progress is not None:
            done = units if a >= n else min(units - 1, int(units * a / n))
            if done != reported:
                progress(done, units)
                reported = done
    del index, quantizer
    k = keys.take_all()
    w = weights.take_all()
    uniq, first = np.unique(k, return_index=True)
    del k
    w = w[first]
    del first
    idt = np.int32 if n < 2**31 else np.int64
    lo = (uniq // n).astype(idt)
    hi = (uniq % n).astype(idt)
    return lo, hi, w, info
