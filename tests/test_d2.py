"""D2 pruning: forward message passing over a kNN graph, then greedy picks with reverse message passing."""

from __future__ import annotations

import numpy as np
import pytest

import robustprune as rp
from robustprune.selection.methods.d2 import EPSILON, d2_importance, forward_pass, knn_graph, reverse_greedy


def dense_neighbours(x: np.ndarray, k: int, symmetric: bool) -> tuple[list[list[int]], np.ndarray]:
    """Plain kNN lists from the full distance matrix (ties: lower index), optionally symmetrised."""
    n = len(x)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    k = min(k, n - 1)
    sets = [set() for _ in range(n)]
    for i in range(n):
        others = [j for j in np.argsort(d[i], kind="stable") if j != i][:k]
        for j in others:
            sets[i].add(int(j))
            if symmetric:
                sets[int(j)].add(i)
    return [sorted(s) for s in sets], d


def reference_forward(s, nbrs, d, gamma_f):
    h = np.empty(len(s))
    for i in range(len(s)):
        total = 0.0
        for j in nbrs[i]:
            total += np.exp(-gamma_f * d[i, j]) * s[j]
        h[i] = s[i] + total
    return h


def reference_d2(x, s, k, budget, gamma=0.1, gamma_f=1.0, symmetric=True):
    """The whole algorithm as plain loops: forward pass, then argmax / down-weight neighbours."""
    nbrs, d = dense_neighbours(x, k, symmetric)
    h = reference_forward(np.maximum(s, EPSILON), nbrs, d, gamma_f)
    picked = np.zeros(len(s), dtype=bool)
    picks, gains = [], []
    for _ in range(budget):
        u = int(np.argmax(np.where(picked, -np.inf, h)))
        picks.append(u)
        gains.append(h[u])
        picked[u] = True
        for v in nbrs[u]:
            if not picked[v]:
                h[v] = h[v] - np.exp(-gamma * d[u, v]) * h[u]
    return picks, np.array(gains)


@pytest.mark.parametrize("symmetric", [True, False])
def test_forward_pass_matches_a_plain_loop(symmetric):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    s = rng.random(40) * 3
    nbrs, d = dense_neighbours(x, 4, symmetric)
    g = knn_graph(x, 4, symmetric=symmetric)
    assert [g.indices[g.indptr[i] : g.indptr[i + 1]].tolist() for i in range(40)] == nbrs
    np.testing.assert_allclose(g.dist, [d[i, j] for i in range(40) for j in nbrs[i]], rtol=1e-12)
    for gamma_f in (1.0, 0.3):
        np.testing.assert_allclose(forward_pass(s, g, gamma_f), reference_forward(s, nbrs, d, gamma_f), rtol=1e-12)


@pytest.mark.parametrize(("symmetric", "gamma", "gamma_f"), [(True, 0.1, 1.0), (False, 0.1, 1.0), (True, 2.0, 0.5)])
def test_reverse_pass_picks_match_a_plain_loop(symmetric, gamma, gamma_f):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4)).astype(np.float32)  # the API's dtypes: compare on the same values
    margins = rng.normal(size=(3, 120)).astype(np.float32)
    aum = margins.astype(np.float64).mean(0)
    ref, ref_gains = reference_d2(x.astype(np.float64), aum.max() - aum, 5, 50, gamma, gamma_f, symmetric)
    sel = rp.select(
        "d2_pruning", features=x, margins=margins, budget=50, class_balanced=False,
        gamma=gamma, forward_gamma=gamma_f, symmetric=symmetric,
    )  # fmt: skip
    assert sel.indices.tolist() == ref
    np.testing.assert_allclose(sel.gains, ref_gains, rtol=1e-10, atol=1e-12)
    # the reverse pass changes the order: a plain top-k of the forward scores differs
    assert sel.indices.tolist() != np.argsort(-sel.scores, kind="stable")[:50].tolist()


def test_heap_engine_handles_negative_values_and_ties():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, size=(30, 2)).astype(float)  # many duplicate points: ties and zero distances
    s = rng.integers(0, 3, size=30).astype(float)
    nbrs, d = dense_neighbours(x, 3, True)
    g = knn_graph(x, 3)
    h0 = forward_pass(np.maximum(s, EPSILON), g, 1.0)
    picks, gains = reverse_greedy(h0, g, 0.0, 30)  # gamma 0: full down-weighting, values go negative
    ref, ref_gains = reference_d2(x, s, 3, 30, gamma=0.0)
    assert picks.tolist() == ref and (ref_gains < 0).any()
    np.testing.assert_allclose(gains, ref_gains, rtol=1e-12, atol=1e-12)


def test_a_pick_lowers_its_near_duplicate_below_a_distant_point():
    # a hard point and its near-duplicate, a distant slightly easier point, and easy filler
    rng = np.random.default_rng(3)
    filler = rng.normal(size=(30, 2)) * 0.5 + [0.0, 20.0]
    x = np.vstack(([[0.0, 0.0], [0.01, 0.0], [20.0, 0.0]], filler))
    aum = np.concatenate(([-5.0, -5.0, -4.5], np.full(30, 5.0)))
    margins = np.tile(aum, (2, 1))
    sel = rp.select("d2_pruning", features=x, margins=margins, budget=2, class_balanced=False, neighbors=2)
    first, second = sel.indices.tolist()
    assert first in (0, 1) and second == 2  # one of the duplicates, then the distant point
    assert sel.scores[1 - first] > sel.scores[2]  # by the forward scores alone the other duplicate came second
    off = rp.select("d2_pruning", features=x, margins=margins, budget=2, class_balanced=False, neighbors=2, gamma=1e6)
    assert sorted(off.indices.tolist()) == [0, 1]  # without reverse passing both duplicates are taken


def test_exact_budget_and_class_quotas_with_top_up():
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1, 2], [60, 30, 10])
    x = (rng.normal(size=(100, 5)) + labels[:, None] * 4).astype(np.float32)
    correct = rng.random((6, 100)) < 0.6
    for budget in (17, 60, 95):
        sel = rp.select("d2_pruning", features=x, labels=labels, correct=correct, budget=budget, cutoff=0.3, seed=5)
        assert len(sel) == budget and np.unique(sel.indices).size == budget
        np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=3), rp.class_quotas(labels, budget))
        assert sel.params["score"] == "forgetting" and sel.params["cut"] == 18 + 9 + 3
    # 95 of 100 with 30 % cut: each class tops up from its own cut examples, at random, marked by NaN gains
    assert sel.params["topped_up"] == 95 - 70 and np.isnan(sel.gains).sum() == 25
    again = rp.select("d2_pruning", features=x, labels=labels, correct=correct, budget=95, cutoff=0.3, seed=6)
    assert set(again.indices.tolist()) != set(sel.indices.tolist())
    # each class's graph picks follow the plain loop on that class's survivors
    members = np.flatnonzero(labels == 0)
    s = d2_importance("forgetting", {"correct": correct})[1]
    alone = rp.select("d2_pruning", features=x, labels=labels, correct=correct, budget=30)
    picks_0 = [int(i) for i in alone.indices if labels[i] == 0]
    ref, _ = reference_d2(x[members].astype(np.float64), s[members], 5, len(picks_0))
    assert picks_0 == members[ref].tolist()


def test_cutoff_drops_the_lowest_aum_examples():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 3))
    margins = rng.normal(size=(4, 50))
    correct = rng.random((4, 50)) < 0.5
    lowest = set(np.argsort(margins.mean(0))[:10].tolist())
    # rank by forgetting, cut by AUM (cutoff_score="auto" uses AUM when margins are given, as released)
    sel = rp.select(
        "d2_pruning", features=x, margins=margins, correct=correct, budget=40, class_balanced=False,
        score="forgetting", cutoff=0.2,
    )  # fmt: skip
    assert set(sel.indices.tolist()) == set(range(50)) - lowest
    assert sel.params["cut"] == 10 and sel.params["cutoff_score"] == "aum"
    assert np.isnan(sel.scores[sorted(lowest)]).all() and not np.isnan(np.delete(sel.scores, sorted(lowest))).any()
    labels = np.arange(50) % 2  # balanced: the cut share is taken inside each class
    sel = rp.select("d2_pruning", features=x, labels=labels, margins=margins, budget=40, cutoff=0.2)
    aum = margins.mean(0)
    for c in (0, 1):
        m = np.flatnonzero(labels == c)
        assert not set(m[np.argsort(aum[m])[:5]].tolist()) & set(sel.indices.tolist())


def test_scale_distances_makes_gamma_scale_free():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(80, 3))
    margins = rng.normal(size=(2, 80))
    kw = {"margins": margins, "budget": 30, "class_balanced": False, "scale_distances": True}
    a = rp.select("d2_pruning", features=x, **kw)
    b = rp.select("d2_pruning", features=x * 100.0, **kw)
    assert a.indices.tolist() == b.indices.tolist()
    raw = rp.select("d2_pruning", features=x * 100.0, margins=margins, budget=30, class_balanced=False)
    assert raw.indices.tolist() != a.indices.tolist()


def test_missing_score_signal_and_bad_options_are_named():
    x = np.random.default_rng(8).normal(size=(20, 2))
    with pytest.raises(ValueError, match="score='forgetting' needs the signal 'correct'"):
        rp.select("d2_pruning", features=x, budget=5, class_balanced=False, score="forgetting")
    with pytest.raises(ValueError, match="needs a difficulty signal"):
        rp.select("d2_pruning", features=x, budget=5, class_balanced=False)
    correct = np.ones((2, 20), dtype=bool)
    with pytest.raises(ValueError, match="cutoff_score='aum' needs the signal 'margins'"):
        rp.select("d2_pruning", features=x, correct=correct, budget=5, class_balanced=False, cutoff=0.1,
                  cutoff_score="aum")  # fmt: skip
    with pytest.raises(ValueError, match="cutoff must be a number in"):
        rp.select("d2_pruning", features=x, correct=correct, budget=5, class_balanced=False, cutoff=1.0)
    with pytest.raises(ValueError, match="neighbors must be"):
        rp.select("d2_pruning", features=x, correct=correct, budget=5, class_balanced=False, neighbors=0)
