"""The partitioned (two-round) greedy, row sources and signal shards: selection at web scale."""

from __future__ import annotations

import heapq

import numpy as np
import pytest

import robustprune as rp
from robustprune.selection.core.partition import (
    assign_parts,
    embedding_map,
    merge_rounds,
    quota_lazy_greedy,
    released_quotas,
    round_one_quotas,
    split_quotas,
)
from robustprune.selection.core.rows import ShardedRows, check_rows


def clustered(n: int = 3000, d: int = 16, k: int = 4, clusters: int = 40, seed: int = 0):
    """Embeddings around cluster centres (float16), labels mostly the cluster's class, confident probs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    assign = rng.integers(0, clusters, n)
    x = centres[assign] + rng.uniform(0.2, 0.45, clusters)[assign, None] * rng.normal(size=(n, d)) / np.sqrt(d)
    true = rng.integers(0, k, clusters)[assign]
    labels = np.where(rng.random(n) < 0.3, rng.integers(0, k, n), true)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), true] += rng.uniform(0, 6, n)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return x.astype(np.float16), probs.astype(np.float32), labels


@pytest.fixture(scope="module")
def data():
    return clustered()


def objective(features, probs, labels, indices, tau, eta):
    """Prune4ReL's F of a subset on the whole graph (whitened space, label_prob confidence): the reference."""
    from robustprune.selection.core.geometry import transform_embedding
    from robustprune.selection.core.graph import rescaled_cosine_graph
    from robustprune.selection.methods.prune4rel.objective import prune4rel_objective

    g = rescaled_cosine_graph(transform_embedding(features, "whiten"), tau, device="cpu")
    c = np.take_along_axis(probs, labels[:, None], 1)[:, 0]
    return prune4rel_objective(g, c, indices, eta)


def test_one_part_is_the_one_process_greedy_bit_for_bit(data):
    x, p, y = data
    a = rp.select("prune4rel_auto", features=x, probs=p, labels=y, budget=300, device="cpu")
    b = rp.select("prune4rel_auto", features=x, probs=p, labels=y, budget=300, device="cpu", parts=1)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.gains, b.gains)
    assert "partition" not in a.params or a.params["parts"] == 1


@pytest.mark.parametrize("partition", ["cluster", "random", "class"])
def test_parts_give_the_budget_unique_and_class_balanced(data, partition):
    x, p, y = data
    sel = rp.select("prune4rel_auto", features=x, probs=p, labels=y, budget=301, device="cpu", parts=4,
                    partition=partition)  # fmt: skip
    assert sel.indices.shape == (301,) and np.unique(sel.indices).shape == (301,)
    quotas, rest = released_quotas(np.bincount(y), 301)
    assert rest == 0 and quotas.tolist() == [76, 75, 75, 75]  # the round-robin's counts (no class runs out)
    assert np.array_equal(np.bincount(y[sel.indices], minlength=4), quotas)
    assert sel.params["parts"] == 4 and sel.params["partition"] == partition
    assert np.all(np.diff(np.minimum.accumulate(sel.gains)) <= 0)


def test_unbalanced_parts_keep_the_budget(data):
    x, p, y = data
    sel = rp.select("prune4rel_auto", features=x, probs=p, labels=y, budget=250, device="cpu", parts=3,
                    class_balanced=False)  # fmt: skip
    assert np.unique(sel.indices).shape == (250,)


def test_cluster_parts_reach_the_one_process_objective(data):
    x, p, y = data
    one = rp.select("prune4rel_auto", features=x, probs=p, labels=y, budget=300, device="cpu")
    tau, eta = one.params["tau"], one.params["eta"]
    ref = objective(x, p, y, one.indices, tau, eta)
    for partition, parts in (("cluster", 4), ("cluster", 8), ("random", 2)):
        sel = rp.select("prune4rel_auto", features=x, probs=p, labels=y, budget=300, device="cpu", parts=parts,
                        partition=partition)  # fmt: skip
        assert objective(x, p, y, sel.indices, tau, eta) >= 0.95 * ref, (partition, parts)
    uniform = np.random.default_rng(0).choice(x.shape[0], 300, replace=False)
    assert objective(x, p, y, uniform, tau, eta) < 0.95 * ref  # the bar is one a poor subset misses


def test_parts_are_deterministic_under_the_seed(data):
    x, p, y = data
    kw = dict(features=x, probs=p, labels=y, budget=200, device="cpu", parts=4, partition="random")
    a, b = rp.select("prune4rel_auto", seed=3, **kw), rp.select("prune4rel_auto", seed=3, **kw)
    c = rp.select("prune4rel_auto", seed=4, **kw)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.gains, b.gains)
    assert not np.array_equal(np.sort(a.indices), np.sort(c.indices))


def test_a_memmap_and_shards_of_float16_rows_give_the_same_selection(data, tmp_path):
    x, p, y = data
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    sharded = ShardedRows([mm[:1000], mm[1000:2500], mm[2500:]])
    kw = dict(probs=p, labels=y, budget=200, device="cpu", parts=3)
    ref = rp.select("prune4rel_auto", features=x, **kw)
    for source in (mm, sharded):
        sel = rp.select("prune4rel_auto", features=source, **kw)
        assert np.array_equal(sel.indices, ref.indices) and np.array_equal(sel.gains, ref.gains)


def test_partitioned_options_are_checked(data):
    x, p, y = data
    kw = dict(features=x, probs=p, labels=y, budget=100, device="cpu")
    with pytest.raises(ValueError, match="gain='exact'"):
        rp.select("prune4rel", parts=2, **kw)
    with pytest.raises(ValueError, match="partition must be one of"):
        rp.select("prune4rel_auto", parts=2, partition="stripes", **kw)
    with pytest.raises(ValueError, match="oversample"):
        rp.select("prune4rel_auto", parts=2, oversample=0.5, **kw)
    with pytest.raises(ValueError, match="parts must be"):
        rp.select("prune4rel_auto", parts=0, **kw)
    with pytest.raises(ValueError, match="at least 5 classes"):
        rp.select("prune4rel_auto", parts=5, partition="class", **kw)
    with pytest.raises(ValueError, match="candidates or a starting set"):
        rp.select("prune4rel_auto", parts=2, start=np.arange(10), **kw)


# --- the machinery ------------------------------------------------------------------------------------------


def test_released_quotas_are_the_round_robin_schedule():
    from robustprune.selection.core.greedy import RoundRobin

    assert [q.tolist() for q in released_quotas(np.array([10, 2, 10]), 12)[:1]] == [[5, 2, 5]]
    assert released_quotas(np.array([10, 2, 10]), 13)[0].tolist() == [6, 2, 5]
    assert released_quotas(np.array([3, 3]), 6)[0].tolist() == [3, 3]
    # class 1 (2 members) runs out first: min_balance 2, and class 0 then has 3 picks, not more than 1.5 x 2;
    # when class 2 (4) runs out, class 0 has 6 > 3: the break, on class 0's 7th pick, and 13 picks are global
    assert released_quotas(np.array([20, 2, 20]), 22)[1] == 0
    quotas, rest = released_quotas(np.array([20, 2, 4, 20]), 30)
    assert quotas.tolist() == [7, 2, 4, 4] and rest == 13
    with pytest.raises(ValueError, match="exceeds"):
        released_quotas(np.array([1, 1]), 3)
    rng = np.random.default_rng(0)  # against the released schedule itself, one pick at a time
    for trial in range(600):
        k = int(rng.integers(1, 8))
        counts = rng.integers(0, 30, k) if trial % 2 else (rng.pareto(1.0, k) * 5).astype(int) + 1
        budget = int(rng.integers(1, counts.sum() + 1))
        schedule, taken, t = RoundRobin(np.repeat(np.arange(k), counts), k), np.zeros(k, np.int64), 0
        while t < budget:
            c = schedule.target(t)
            schedule.picked(c)
            taken[c], t = taken[c] + 1, t + 1
            if schedule.broken:
                break
        quotas, rest = released_quotas(counts, budget)
        assert quotas.tolist() == taken.tolist() and rest == budget - t, (counts, budget)


def test_parts_follow_the_released_schedule_on_long_tailed_classes():
    rng = np.random.default_rng(5)
    x, p, _ = clustered(n=3000, k=6, seed=5)
    y = rng.choice(6, 3000, p=[0.45, 0.3, 0.15, 0.06, 0.03, 0.01])  # long-tailed given labels
    counts, budget = np.bincount(y, minlength=6), 900
    quotas, rest = released_quotas(counts, budget)
    assert rest > 0  # the smallest class runs out and the 1.5x rule fires: the rest of the picks are global
    head = int(quotas.sum())
    one = rp.select("prune4rel_auto", features=x, probs=p, labels=y, budget=budget, device="cpu")
    # the one-process greedy takes these class counts before its break: the schedule is the released one
    assert np.bincount(y[one.indices[:head]], minlength=6).tolist() == quotas.tolist()
    for partition in ("cluster", "random"):
        sel = rp.select("prune4rel_auto", features=x, probs=p, labels=y, budget=budget, device="cpu", parts=4,
                        partition=partition)  # fmt: skip
        assert np.unique(sel.indices).shape == (budget,)
        assert np.bincount(y[sel.indices[:head]], minlength=6).tolist() == quotas.tolist(), partition
        # after the break the picks follow the gains, not the classes: the large classes take more
        tail = np.bincount(y[sel.indices[head:]], minlength=6)
        assert tail.sum() == rest and tail[0] > tail[5]


def test_split_quotas_follow_the_parts_shares():
    counts = np.array([[6, 0], [3, 5], [1, 5]])
    shares = split_quotas(np.array([5, 4]), counts)
    assert shares.sum(axis=0).tolist() == [5, 4] and (shares <= counts).all()
    assert shares[:, 0].tolist() == [3, 2, 0] and shares[:, 1].tolist() == [0, 2, 2]
    assert round_one_quotas(shares, counts, 2.0).tolist() == [[6, 0], [3, 4], [0, 4]]


def _brute_greedy(f, n, labels, quotas):
    """Plain greedy under class quotas: every gain every step (ties: lowest index)."""
    chosen: list[int] = []
    left = quotas.copy()
    while left.sum():
        cand = [x for x in range(n) if x not in chosen and left[labels[x]] > 0]
        gains = [f(chosen + [x]) - f(chosen) for x in cand]
        x = cand[int(np.argmax(gains))]
        chosen.append(x)
        left[labels[x]] -= 1
    return chosen


def test_quota_lazy_greedy_is_the_plain_greedy():
    rng = np.random.default_rng(1)
    n, m = 30, 12
    cover = rng.random((n, m)) < 0.3
    w = rng.random(m)
    labels = rng.integers(0, 3, n)
    quotas = np.minimum(np.bincount(labels, minlength=3), [4, 1, 3])

    def f(s):  # weighted coverage: monotone submodular
        return float(w[cover[s].any(axis=0)].sum()) if s else 0.0

    covered = np.zeros(m, dtype=bool)

    def fresh(x):
        return float(w[cover[x] & ~covered].sum())

    def add(x):
        covered[:] |= cover[x]

    g0 = np.array([fresh(x) for x in range(n)])
    picks, gains = quota_lazy_greedy(g0, fresh, add, labels, quotas)
    assert picks.tolist() == _brute_greedy(f, n, labels, quotas)
    assert np.bincount(labels[picks], minlength=3).tolist() == quotas.tolist()
    # then=5: after the quotas, five more picks from any class, as the plain greedy would continue
    covered[:] = False
    more, _ = quota_lazy_greedy(g0, fresh, add, labels, quotas, then=5)
    head = _brute_greedy(f, n, labels, quotas)
    chosen = list(head)
    for _ in range(5):
        cand = [x for x in range(n) if x not in chosen]
        chosen.append(cand[int(np.argmax([f(chosen + [x]) - f(chosen) for x in cand]))])
    assert more.tolist() == chosen


def test_merge_takes_the_best_gains_under_the_quotas():
    part = np.array([0, 0, 0, 1, 1, 1])
    index = np.array([10, 11, 12, 20, 21, 22])
    gain = np.array([5.0, 3.0, 1.0, 4.0, 3.5, 0.5])
    label = np.array([0, 0, 1, 0, 1, 1])
    idx, g = merge_rounds(part, index, gain, label, np.array([2, 1]))
    assert idx.tolist() == [10, 20, 21] and g.tolist() == [5.0, 4.0, 3.5]
    # a part's own order is kept even where its gains rise (rounding): the running minimum is the key
    idx, _ = merge_rounds(np.array([0, 0, 1]), np.array([1, 2, 3]), np.array([2.0, 2.5, 2.2]), np.zeros(3, int),
                          np.array([2]))  # fmt: skip
    assert idx.tolist() == [3, 1]  # by gain alone 2 (2.5) would come first, ahead of its own part's earlier pick
    # rest: after the quotas, the best remaining picks of any class, in merged order
    idx, g = merge_rounds(part, index, gain, label, np.array([1, 1]), rest=2)
    assert idx.tolist() == [10, 21, 20, 11] and g.tolist() == [5.0, 3.5, 4.0, 3.0]


def test_partitions_cover_every_row_once(data):
    x, p, y = data
    fmap = embedding_map(x, "whiten")
    for kind in ("random", "class", "cluster"):
        part, _ = assign_parts(kind, x.shape[0], 3, seed=0, labels=y, source=x, fmap=fmap, device="cpu")
        sizes = np.bincount(part, minlength=3)
        assert part.shape == (x.shape[0],) and sizes.sum() == x.shape[0] and (sizes > 0).all()
        if kind == "random":
            assert sizes.max() - sizes.min() <= 1
        if kind == "class":
            assert all(np.unique(part[y == c]).size == 1 for c in range(4))


def test_embedding_map_is_the_one_array_transform(data):
    from robustprune.selection.core.geometry import transform_embedding

    x, _, _ = data
    for kind in ("raw", "center", "whiten"):
        ref = np.asarray(transform_embedding(x, kind), dtype=np.float32)
        assert np.allclose(embedding_map(x, kind)(x), ref, atol=2e-4), kind


def test_sharded_rows_read_only_what_is_asked(tmp_path):
    a = np.arange(12, dtype=np.float16).reshape(6, 2)
    rows = ShardedRows([a[:2], a[2:5], a[5:]])
    assert rows.shape == (6, 2) and rows.dtype == np.float16
    assert np.array_equal(rows[np.array([5, 0, 3])], a[[5, 0, 3]]) and np.array_equal(rows[1:4], a[1:4])
    assert np.array_equal(np.asarray(rows), a) and np.array_equal(rows[-1], a[-1])
    bad = a.astype(np.float32)
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN .first at row 4"):
        check_rows(ShardedRows([bad[:3], bad[3:]]))
    with pytest.raises(ValueError, match="same dtype"):
        ShardedRows([a, a.astype(np.float32)])


def test_lazy_greedy_heap_ties_go_to_the_lowest_index():
    g0 = np.array([1.0, 2.0, 2.0, 0.5])
    picks, _ = quota_lazy_greedy(g0, lambda x: float(g0[x]), lambda x: None, np.zeros(4, int), np.array([2]))
    assert picks.tolist() == [1, 2]
    assert heapq.nsmallest(1, [(-2.0, 2), (-2.0, 1)])[0][1] == 1


class Recording(ShardedRows):
    """Rows that record every read (``reads``: one array of row indices per read)."""

    def __init__(self, pieces) -> None:
        super().__init__(pieces)
        self.reads: list[np.ndarray] = []

    def __getitem__(self, key):
        rows = np.arange(self.shape[0])[key] if isinstance(key, slice) else np.asarray(key)
        self.reads.append(np.atleast_1d(rows).astype(np.int64))
        return super().__getitem__(key)


def _parts_of(kind: str, parts: int = 4) -> np.ndarray:
    """The part of every row of the test data, as prune4rel_auto's partitioned path assigns it (with the scans
    by the workers' blocks)."""
    import robustprune.selection.core.partition as partition
    from tests import _web_scale_workers as W

    x, _p, y = clustered()
    default, partition.BLOCK = partition.BLOCK, W.BLOCK
    try:
        return assign_parts(kind, x.shape[0], parts, seed=0, labels=y, source=x, fmap=embedding_map(x, "whiten"),
                            device="cpu")[0]  # fmt: skip
    finally:
        partition.BLOCK = default


def test_probs_as_a_row_source_are_read_one_part_at_a_time(data, monkeypatch):
    import robustprune.selection.core.rows as rows

    x, p, y = data
    monkeypatch.setattr(rows, "CHUNK", 256)  # the scans read blocks of 256 rows
    kw = dict(features=x, labels=y, budget=300, device="cpu", parts=4)
    ref = rp.select("prune4rel_auto", probs=p, **kw)
    probs = Recording([p[:1300], p[1300:]])
    sel = rp.select("prune4rel_auto", probs=probs, **kw)
    assert np.array_equal(sel.indices, ref.indices) and np.array_equal(sel.gains, ref.gains)
    assert np.array_equal(sel.scores, ref.scores)
    part = _parts_of("cluster")
    sizes = np.bincount(part)
    # the check reads blocks of 256 rows, round 1 each part's rows once (in part order), the scores blocks again
    blocks = -(-x.shape[0] // 256)
    check, round1, scores = probs.reads[:blocks], probs.reads[blocks : blocks + 4], probs.reads[blocks + 4 :]
    for scan in (check, scores):
        assert len(scan) == blocks and np.array_equal(np.concatenate(scan), np.arange(x.shape[0]))
    assert [r.size for r in round1] == sizes.tolist()
    assert all(np.array_equal(round1[i], np.flatnonzero(part == i)) for i in range(4))


def test_probs_given_as_a_row_source_are_checked_by_blocks(data):
    x, p, y = data
    bad = p.copy()
    bad[2222] = 0.0
    kw = dict(features=x, labels=y, budget=200, device="cpu", parts=2)
    with pytest.raises(ValueError, match=r"probs rows must sum to 1 \(row 2222 sums to 0.0000\)"):
        rp.select("prune4rel_auto", probs=ShardedRows([bad[:1000], bad[1000:]]), **kw)
    three = np.ascontiguousarray(p[:, :3] / p[:, :3].sum(1, keepdims=True))
    with pytest.raises(ValueError, match=r"labels must be < the number of classes \(3\) given by probs, found 3"):
        rp.select("prune4rel_auto", probs=ShardedRows([three]), **kw)


def test_a_method_that_reads_probs_whole_gets_them_from_shards(data, tmp_path):
    from robustprune.selection.shards import load_shards, save_shards

    x, p, y = data
    save_shards(tmp_path / "s", 1000, labels=y, probs=p, features=x)
    sig = load_shards(tmp_path / "s")
    assert isinstance(sig.probs, ShardedRows)  # on disk, read by blocks
    for method in ("confident_filter", "el2n", "uncertainty"):
        got = rp.select(method, signals=sig, budget=500)
        ref = rp.select(method, labels=y, probs=p, features=x, budget=500)
        assert np.array_equal(got.indices, ref.indices), method
    one = rp.select("prune4rel_auto", signals=sig, budget=200, device="cpu")  # parts=1 reads them whole
    assert np.array_equal(one.indices, rp.select("prune4rel_auto", labels=y, probs=p, features=x, budget=200,
                                                 device="cpu").indices)  # fmt: skip


class _Unreadable(ShardedRows):
    """Rows that may be read by blocks but never whole."""

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("all rows were read at once")


def test_the_partitioned_path_never_reads_all_rows_at_once(data):
    x, p, y = data
    rows = _Unreadable([x[:1500], x[1500:]])
    sel = rp.select("prune4rel_auto", features=rows, probs=p, labels=y, budget=200, device="cpu", parts=2)
    assert np.unique(sel.indices).shape == (200,)
    with pytest.raises(AssertionError, match="all rows"):
        rp.select("prune4rel_auto", features=rows, probs=p, labels=y, budget=200, device="cpu")


# --- shards -------------------------------------------------------------------------------------------------


def test_shards_load_lazily_in_every_layout(data, tmp_path):
    from robustprune.selection.shards import load_shards, save_shards

    x, p, y = data
    save_shards(tmp_path / "plain", 1000, labels=y, probs=p, features=x)
    save_shards(tmp_path / "zipped", 700, compress=True, labels=y, probs=p, features=x)
    save_shards(tmp_path / "npy", 1200, labels=y, probs=p)
    for j, a in enumerate(range(0, x.shape[0], 1200)):
        np.save(tmp_path / "npy" / f"part-{j:05d}.features.npy", x[a : a + 1200])
    for layout in ("plain", "zipped", "npy"):
        sig = load_shards(tmp_path / layout)
        assert isinstance(sig.features, ShardedRows) and sig.features.dtype == np.float16
        assert sig.n == x.shape[0] and sig.num_classes == 4
        assert np.array_equal(sig.labels, y) and np.array_equal(sig.probs, p)
        assert np.array_equal(sig.features[np.array([2999, 0, 1500])], x[[2999, 0, 1500]])
    assert all(isinstance(piece, np.memmap) for piece in load_shards(tmp_path / "plain").features.pieces)


def test_shards_errors_are_one_line(data, tmp_path):
    from robustprune.selection.shards import load_shards, save_shards

    x, p, y = data
    with pytest.raises(ValueError, match="no shards"):
        load_shards(tmp_path)
    save_shards(tmp_path / "a", 1000, labels=y, probs=p, features=x)
    (tmp_path / "a" / "part-00001.npz").unlink()
    np.savez(tmp_path / "a" / "part-00001.npz", labels=y[1000:2000], probs=p[1000:2000])
    with pytest.raises(ValueError, match="part-00001 in .* lacks \\['features'\\]"):
        load_shards(tmp_path / "a")
    bad = x.astype(np.float32)
    bad[2100, 3] = np.inf
    save_shards(tmp_path / "b", 1000, labels=y, probs=p, features=bad)
    with pytest.raises(ValueError, match="features contains infinity .first at row 2100"):
        load_shards(tmp_path / "b")
    # probs stay on disk and are checked block by block, with the row counted over all shards
    for row, scale, message in ((2345, np.nan, "probs contains NaN .first at row 2345"),
                                (1777, 0.5, "probs rows must sum to 1 .row 1777 sums to 0.5000")):  # fmt: skip
        q = p.copy()
        q[row] *= scale
        save_shards(tmp_path / f"p{row}", 1000, labels=y, probs=q, features=x)
        with pytest.raises(ValueError, match=message):
            load_shards(tmp_path / f"p{row}")
    save_shards(tmp_path / "k", 1000, labels=np.where(y == 3, 7, y), probs=p, features=x)
    with pytest.raises(ValueError, match="labels must be < the number of classes .4. given by probs, found 7"):
        load_shards(tmp_path / "k")
    save_shards(tmp_path / "d", 1000, labels=y, probs=p, features=x)
    np.savez(tmp_path / "d" / "part-00001.npz", labels=y[1000:2000], probs=p[1000:2000].astype(np.float64),
             features=x[1000:2000])  # fmt: skip
    with pytest.raises(ValueError, match="do not stack for 'probs': every piece must have the same dtype"):
        load_shards(tmp_path / "d")


def test_select_command_reads_a_directory_of_shards(data, tmp_path):
    from typer.testing import CliRunner

    from robustprune.cli import app
    from robustprune.selection.result import Selection
    from robustprune.selection.shards import save_shards

    x, p, y = data
    save_shards(tmp_path / "shards", 800, labels=y, probs=p, features=x)
    out = tmp_path / "sel.npz"
    args = ["select", "--signals", str(tmp_path / "shards"), "--method", "prune4rel_auto", "--budget", "200"]
    res = CliRunner().invoke(app, [*args, "--param", "parts=2", "--param", "device=cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    ref = rp.select("prune4rel_auto", features=x, probs=p, labels=y, budget=200, parts=2, device="cpu")
    assert np.array_equal(Selection.load(out).indices, ref.indices)
    res = CliRunner().invoke(app, [*args[:2], str(tmp_path), *args[3:], "--out", str(tmp_path / "x.npz")])
    assert res.exit_code == 2 and "error: " in res.output and "holds no shards" in res.output


def test_select_without_signals_under_torchrun_names_the_short_flag(tmp_path):
    from typer.testing import CliRunner

    from robustprune.cli import app

    args = ["select", "--method", "uniform", "--fraction", "0.1", "--out", str(tmp_path / "s.npz")]
    alone = CliRunner().invoke(app, args)
    under = CliRunner().invoke(app, args, env={"TORCHELASTIC_RUN_ID": "job"})
    assert alone.exit_code == under.exit_code == 2
    assert "give exactly one of --signals PATH or --example NAME" in alone.output and "torchrun" not in alone.output
    assert "under torchrun write -s PATH" in under.output and len(under.output.strip().splitlines()) == 1


# --- torchrun -----------------------------------------------------------------------------------------------


def _world_result(world: int, kinds: tuple[str, ...], tmp_path):
    import torch
    import torch.multiprocessing as mp

    from tests import _distributed_workers
    from tests import _web_scale_workers as W

    port = _distributed_workers.free_port()
    mp.spawn(W.parts_worker, args=(world, port, str(tmp_path), kinds), nprocs=world, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]


def _one_process(kinds: tuple[str, ...], block: int | None = 500):
    import torch

    from tests import _web_scale_workers as W

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return W.select_parts(kinds, block=block)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("world, kinds", [(2, ("cluster",)), (4, ("cluster", "random"))])
def test_ranks_run_the_parts_and_equal_one_process_bit_for_bit(world, kinds, tmp_path):
    ranks = _world_result(world, kinds, tmp_path)
    one = _one_process(kinds)
    for kind in kinds:
        idx, gains, w = one[kind]
        got = ranks[0][kind]
        assert w == 1 and got[2] == world
        assert np.array_equal(got[0], idx) and np.array_equal(got[1], gains), kind
        assert all(r[kind] == "handed off" for r in ranks[1:])
        # the probabilities (a row source) are checked by blocks dealt to the ranks (one block here: rank 0's),
        # then read part by part: a rank other than 0 reads exactly the rows of its own parts (part i to rank
        # i mod size), once each; rank 0 also reads every row for the scores
        part = _parts_of(kind)
        for r in range(1, world):
            read = ranks[r]["probs_rows"][kind]
            assert np.array_equal(np.sort(read), np.flatnonzero(part % world == r)), (kind, r)
    # a check by blocks dealt to the ranks: each rank reads its own blocks (block j to rank j mod size), then the
    # first bad block, and every rank raises the same one-line error
    blocks = [(a, a + 500) for a in range(0, 3000, 500)]
    for r, res in enumerate(ranks):
        message, read = res["check"]
        assert message == "features contains NaN (first at row 2345); clean or drop those rows first"
        assert read == [b for j, b in enumerate(blocks) if j % world == r] + [(2000, 2500)], r


def test_torchrun_select_from_shards_writes_the_one_process_selection(data, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from robustprune.selection.result import Selection
    from robustprune.selection.shards import save_shards

    x, p, y = data
    save_shards(tmp_path / "shards", 700, labels=y, probs=p, features=x)
    torchrun = Path(sys.executable).with_name("torchrun")
    # -s, not --signals: torchrun would take that for its own --signals-to-handle
    args = ["-m", "robustprune", "select", "-s", "shards", "--method", "prune4rel_auto", "--budget", "300",
            "--param", "parts=4", "--param", "device=cpu", "--out", "sel.npz"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", *args]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("wrote") == 1  # rank 0 alone writes and prints
    one = _one_process(("cluster",), block=None)["cluster"]  # the same data, budget and parts, one process
    assert np.array_equal(Selection.load(tmp_path / "sel.npz").indices, one[0])


# --- facility location on parts -----------------------------------------------------------------------------


def _facility_location(x, labels, indices):
    """Σ over examples of the best similarity ½ + ½·cos to a chosen example of the same class."""
    z = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    total = 0.0
    for c in np.unique(labels):
        members, chosen = np.flatnonzero(labels == c), indices[labels[indices] == c]
        total += float((0.5 + 0.5 * z[members] @ z[chosen].T).max(axis=1).sum())
    return total


def test_facility_location_on_parts_keeps_the_quotas_and_the_objective(data):
    x, p, y = data
    one = rp.select("submodular", features=x, labels=y, budget=120)
    ref = _facility_location(x, y, one.indices)
    for partition in ("cluster", "random"):
        sel = rp.select("submodular", features=x, labels=y, budget=120, parts=4, partition=partition)
        assert np.unique(sel.indices).shape == (120,)
        assert np.array_equal(np.bincount(y[sel.indices]), np.bincount(y[one.indices]))
        if partition == "cluster":  # random parts cover only their own members: near a uniform subset here
            assert _facility_location(x, y, sel.indices) >= 0.98 * ref
    uniform = np.random.default_rng(0).choice(x.shape[0], 120, replace=False)
    assert _facility_location(x, y, uniform) < 0.98 * ref
    with pytest.raises(ValueError, match="facility_location or graph_cut"):
        rp.select("submodular", features=x, labels=y, budget=120, parts=4, function="log_determinant")
