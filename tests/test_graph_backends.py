"""The similarity graph's backends: faiss exact range search equals the blocked build, the IVF index's
recall, the ``auto`` rule, option checks and the missing-faiss message (faiss is an optional extra: the
tests that need it are skipped without it)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse
import torch

import robustprune as rp
from robustprune.selection.core import faiss_backend
from robustprune.selection.core.graph import choose_backend, normalize_rows, rescaled_cosine_graph


def clustered(n=3000, d=24, clusters=30, spread=0.35, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    return (centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, d))).astype(dtype)


def with_ties(seed=0):
    """Clustered rows plus exact duplicates and pairs whose cosine is exactly known in float32.

    Rows ``e0`` and ``(a, b, 0, ...)``: every product but one is an exact zero, so the inner product is the
    second row's first normalised coordinate in any summation order; the threshold tests put τ exactly on it.
    """
    x = clustered(seed=seed)
    d = x.shape[1]
    dup = x[[5, 17, 17, 400, 1234]]  # duplicates (one row three times)
    axis = np.zeros((1, d), np.float32)
    axis[0, 0] = 3.0
    probes = np.zeros((4, d), np.float32)
    probes[:, 0] = [0.9, 0.9, 0.95, 0.8]
    probes[:, 1] = [0.4358899, 0.43589, 0.3122499, 0.6]
    return np.concatenate([x, dup, axis, probes]).astype(np.float32)


def exact_cos(x: np.ndarray, i: int, j: int) -> float:
    z = normalize_rows(x, "cpu")
    return float(z[i, 0] * z[j, 0])  # both rows are zero past coordinate 1 for one of them: exact


def rescaled(c: float) -> float:
    return float(torch.tensor(c, dtype=torch.float32).mul_(0.5).add_(0.5))


def assert_same_graph(a, b):
    assert a.n == b.n and a.symmetric == b.symmetric
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.weights, b.weights)  # bit for bit


def as_matrix(g):
    return scipy.sparse.csr_matrix((g.weights, g.indices, g.indptr), shape=(g.n, g.n))


# ---------------------------------------------------------------------------------------------- no faiss needed


def test_backend_and_index_options_are_checked():
    x = clustered(n=50)
    with pytest.raises(ValueError, match="backend must be"):
        rescaled_cosine_graph(x, 0.9, device="cpu", backend="hnsw")
    with pytest.raises(ValueError, match="nprobe"):
        rescaled_cosine_graph(x, 0.9, device="cpu", backend="faiss-approx", nprobe=0)
    with pytest.raises(ValueError, match="nlist"):
        rescaled_cosine_graph(x, 0.9, device="cpu", backend="faiss-approx", nlist=0)
    for backend in ("faiss", "faiss-approx"):  # refused before faiss is imported
        with pytest.raises(ValueError, match="max_neighbors needs backend='blocked'"):
            rescaled_cosine_graph(x, 0.9, device="cpu", backend=backend, max_neighbors=3)
    probs = np.full((50, 2), 0.5, np.float32)
    for engine in ("graph", "dense"):  # checked even where no graph is built
        with pytest.raises(ValueError, match="backend must be"):
            rp.select("prune4rel", probs=probs, features=x, budget=5, class_balanced=False, engine=engine,
                      backend="nope", device="cpu")  # fmt: skip


def test_missing_faiss_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    x = clustered(n=60)
    for backend in ("faiss", "faiss-approx"):
        with pytest.raises(ImportError, match=r"pip install robustprune\[faiss\]") as info:
            rescaled_cosine_graph(x, 0.9, device="cpu", backend=backend)
        assert "\n" not in str(info.value)
    assert not faiss_backend.faiss_installed()
    # "auto" is the blocked build, which needs no faiss
    g = rescaled_cosine_graph(x, 0.9, device="cpu", backend="auto")
    assert g.backend == "blocked"
    assert_same_graph(g, rescaled_cosine_graph(x, 0.9, device="cpu"))
    probs = np.full((60, 2), 0.5, np.float32)
    sel = rp.select("prune4rel", probs=probs, features=x, budget=5, class_balanced=False, device="cpu")
    assert sel.params["graph_backend"] == "blocked"


def test_auto_means_blocked_everywhere(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert choose_backend("auto", 10**7, cpu) == "blocked"
    assert choose_backend("auto", 10**7, cuda) == "blocked"
    assert choose_backend("auto", 10**7, cpu, max_neighbors=5) == "blocked"
    for b in ("blocked", "faiss", "faiss-approx"):
        assert choose_backend(b, 10, cuda) == b
    assert rescaled_cosine_graph(clustered(n=40), 0.9, device="cpu").backend == "blocked"  # the default


@pytest.mark.parametrize("group,shuffle", [(1, False), (5, True), (64, True), (4096, False)])
def test_recheck_scores_candidates_as_the_blocked_build(group, shuffle):
    """The approximate backend's re-check (torch products over gathered rows and columns, thin ones padded)
    keeps exactly the blocked build's edges among the candidates, with its weights bit for bit."""
    x = with_ties(seed=2)
    n, tau = x.shape[0], 0.9
    ref = rescaled_cosine_graph(x, tau, device="cpu", block_size=512)
    r = np.repeat(np.arange(n), np.diff(ref.indptr))
    c = ref.indices.astype(np.int64)
    upper = r < c
    rng = np.random.default_rng(group)
    extra = np.sort(rng.choice(n, size=(2000, 2), replace=True), axis=1)  # mostly non-edges
    extra = extra[extra[:, 0] < extra[:, 1]]
    lo = np.concatenate([r[upper], extra[:, 0]])
    hi = np.concatenate([c[upper], extra[:, 1]])
    key = np.unique(lo * n + hi)
    lo, hi = key // n, key % n
    order = rng.permutation(n) if shuffle else None
    tau32 = torch.tensor(tau, dtype=torch.float32)
    threads = torch.get_num_threads()
    kl, kh, kw = faiss_backend.recheck(normalize_rows(x, "cpu"), lo, hi, tau32, order=order, group=group)
    assert torch.get_num_threads() == threads
    got = scipy.sparse.csr_matrix((kw, (kl, kh)), shape=(n, n))
    want = scipy.sparse.triu(as_matrix(ref), k=1).tocsr()
    got.sort_indices()
    want.sort_indices()
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)


# ------------------------------------------------------------------------------------------------- with faiss


@pytest.fixture
def faiss():
    return pytest.importorskip("faiss")


def test_auto_stays_blocked_with_faiss_installed(faiss):
    assert faiss_backend.faiss_installed()
    assert choose_backend("auto", 10**7, torch.device("cpu")) == "blocked"
    assert rescaled_cosine_graph(clustered(n=300), 0.9, device="cpu", backend="auto").backend == "blocked"


@pytest.mark.parametrize("tau", [0.97, 0.93, 0.85, 0.6, 0.0, 1.0])
def test_exact_faiss_equals_blocked_bit_for_bit(faiss, tau):
    x = with_ties()
    ref = rescaled_cosine_graph(x, tau, device="cpu", block_size=700)
    for bs in (4096, 700):
        g = rescaled_cosine_graph(x, tau, device="cpu", backend="faiss", block_size=bs)
        assert g.backend == "faiss"
        assert_same_graph(g, ref)
    if tau >= 1.0:
        assert ref.nnz == 0
    else:
        assert ref.nnz > x.shape[0]


def test_exact_faiss_threshold_is_strict_like_blocked(faiss):
    x = with_ties()
    n = x.shape[0]
    axis, probes = n - 5, range(n - 4, n)
    cos = [exact_cos(x, axis, p) for p in probes]
    for p, c in zip(probes, cos, strict=True):
        s = rescaled(c)
        below = float(np.nextafter(np.float32(s), np.float32(0)))
        for tau, expect in ((s, False), (below, True)):  # s > tau, strictly
            ref = rescaled_cosine_graph(x, tau, device="cpu")
            g = rescaled_cosine_graph(x, tau, device="cpu", backend="faiss")
            assert_same_graph(g, ref)
            idx, w = g.row(axis)
            assert (p in idx) is expect
            if expect:
                assert w[list(idx).index(p)] == np.float32(s)


def test_exact_faiss_bounded_blocks_and_progress(faiss, monkeypatch):
    monkeypatch.setattr(faiss_backend, "RESULTS_PER_CALL", 20_000)  # forces many small query blocks
    x = with_ties(seed=1)
    ref = rescaled_cosine_graph(x, 0.5, device="cpu")
    calls = []
    g = rescaled_cosine_graph(x, 0.5, device="cpu", backend="faiss", block_size=1000,
                              progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert_same_graph(g, ref)
    nb = -(-x.shape[0] // 1000)
    assert {t for _, t in calls} == {nb * (nb + 1) // 2}
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == nb * (nb + 1) // 2
    with pytest.raises(ValueError, match="max_edges"):
        rescaled_cosine_graph(x, 0.5, device="cpu", backend="faiss", max_edges=ref.nnz // 2)


@pytest.mark.parametrize("gain", ["self", "exact"])
def test_prune4rel_picks_identical_with_exact_faiss(faiss, gain):
    rng = np.random.default_rng(3)
    x = clustered(n=2500, d=32, clusters=40, seed=3, dtype=np.float16)
    k = 5
    logits = rng.normal(size=(x.shape[0], k)) * 2
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    labels = rng.integers(0, k, x.shape[0])
    kw = dict(probs=probs, features=x, labels=labels, budget=750, tau=0.9, gain=gain, device="cpu")
    a = rp.select("prune4rel", backend="blocked", **kw)
    b = rp.select("prune4rel", backend="faiss", **kw)
    assert a.params["graph_backend"] == "blocked" and b.params["graph_backend"] == "faiss"
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.gains, b.gains)
    assert a.params["n_edges"] == b.params["n_edges"]


def test_approximate_index_recall_on_clustered_data(faiss):
    x = clustered(n=6000, d=32, clusters=60, spread=0.3, seed=4)
    ref = rescaled_cosine_graph(x, 0.93, device="cpu")
    g = rescaled_cosine_graph(x, 0.93, device="cpu", backend="faiss-approx", nprobe=4, seed=1)
    assert g.backend == "faiss-approx" and g.symmetric
    a, r = as_matrix(g), as_matrix(ref)
    assert (a != a.T).nnz == 0
    assert np.all(a.diagonal() == 1.0)
    hit = r.multiply(a > 0)  # reference edges the index found
    recall = (hit.nnz - g.n) / (r.nnz - g.n)  # self-pairs aside
    assert recall >= 0.98, recall  # 0.997 when written (153 cells, 4 probed)
    assert a.nnz == hit.nnz  # a subset of the exact graph: candidates are re-checked with torch's products
    found = a.multiply(r > 0).tocsr()  # the index's weights on those edges
    found.sort_indices()
    hit = hit.tocsr()
    hit.sort_indices()
    np.testing.assert_array_equal(found.indices, hit.indices)
    np.testing.assert_array_equal(found.data, hit.data)  # the blocked build's weights, bit for bit
    # deterministic for a seed
    assert_same_graph(g, rescaled_cosine_graph(x, 0.93, device="cpu", backend="faiss-approx", nprobe=4, seed=1))
    one = as_matrix(rescaled_cosine_graph(x, 0.93, device="cpu", backend="faiss-approx", nprobe=1, seed=1))
    assert one.nnz < a.nnz  # fewer cells probed, fewer pairs found


def test_approximate_index_with_every_cell_probed_is_complete(faiss):
    x = clustered(n=1500, d=16, clusters=20, seed=5)
    ref = rescaled_cosine_graph(x, 0.9, device="cpu")
    g = rescaled_cosine_graph(x, 0.9, device="cpu", backend="faiss-approx", nlist=8, nprobe=8)
    assert_same_graph(g, ref)  # nothing missed when every cell is probed, nothing added


# --------------------------------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("block_size", [None, 512, 1000])
def test_blocked_build_on_cuda_matches_the_cpu_build(block_size):
    """The fused tile on CUDA (flag words, candidate scan, diagonal filter) finds the CPU build's graph: cuBLAS
    may round a product differently from MKL, so pairs within a few ulps of tau may differ; nothing else."""
    x = clustered(n=5000)
    cpu = rescaled_cosine_graph(x, 0.9, device="cpu", block_size=block_size)
    gpu = rescaled_cosine_graph(x, 0.9, device="cuda", block_size=block_size)
    a, r = as_matrix(gpu), as_matrix(cpu)
    both = a.multiply(r > 0).tocsr()
    assert abs(gpu.nnz - cpu.nnz) <= max(10, cpu.nnz // 100_000)
    assert both.nnz >= cpu.nnz - max(10, cpu.nnz // 100_000)
    ref = r.multiply(a > 0).tocsr()
    both.sort_indices()
    ref.sort_indices()
    np.testing.assert_allclose(both.data, ref.data, rtol=0, atol=1e-6)


def test_chunked_columns_keep_every_batch_across_chunk_boundaries(monkeypatch):
    from robustprune.selection.core.edges import ChunkedColumns

    monkeypatch.setattr(ChunkedColumns, "CHUNK_BYTES", 64)  # 16 int32 entries, 8 int64 entries per chunk
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 1000, m) for m in (0, 5, 16, 1, 40, 3)]
    edges, keys = ChunkedColumns(np.int32, np.int32, np.float32), ChunkedColumns(np.int64)
    assert (edges.chunk, keys.chunk) == (16, 8)
    for b in batches:
        edges.add(b.astype(np.int32), (b + 1).astype(np.int32), (b / 1000).astype(np.float32))
        keys.add(b)
    every = np.concatenate(batches)
    assert edges.count == keys.count == every.size and len(keys.parts) == -(-every.size // 8)
    (k,) = keys.arrays()
    assert k.dtype == np.int64 and np.array_equal(k, every) and keys.parts == [] and keys.count == 0
    r, c, w = edges.mirrored(n_diag=3)
    e = every.size
    assert r.dtype == c.dtype == np.int32 and w.dtype == np.float32 and r.size == 2 * e + 3
    np.testing.assert_array_equal(r, np.concatenate([every, every + 1, np.arange(3)]))
    np.testing.assert_array_equal(c, np.concatenate([every + 1, every, np.arange(3)]))
    np.testing.assert_array_equal(w[:e], (every / 1000).astype(np.float32))
    np.testing.assert_array_equal(w[e:], np.concatenate([w[:e], np.ones(3, np.float32)]))
    empty = ChunkedColumns(np.int32, np.int32, np.float32)
    assert [a.shape for a in empty.arrays()] == [(0,)] * 3


@pytest.mark.parametrize("backend", ["blocked", "faiss", "faiss-approx"])
def test_the_graph_is_the_same_whatever_the_chunk_size(backend, monkeypatch):
    from robustprune.selection.core.edges import ChunkedColumns

    if backend != "blocked" and not faiss_backend.faiss_installed():
        pytest.skip("faiss is not installed")
    x = clustered(n=500)
    ref = rescaled_cosine_graph(x, 0.9, device="cpu", backend=backend, block_size=128)
    monkeypatch.setattr(ChunkedColumns, "CHUNK_BYTES", 1024)  # hundreds of chunks
    small = rescaled_cosine_graph(x, 0.9, device="cpu", backend=backend, block_size=128)
    assert ref.nnz > 10 * 256
    for a in ("indptr", "indices", "weights"):
        np.testing.assert_array_equal(getattr(small, a), getattr(ref, a))
