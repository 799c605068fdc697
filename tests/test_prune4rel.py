"""Prune4ReL: parity with the released dense rule, the fast engine, the exact-gain greedy, edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import robustprune as rp
from robustprune.selection.core.graph import rescaled_cosine_graph
from robustprune.selection.methods.prune4rel import confidence_scores, prune4rel_objective
from tests.reference_prune4rel import released_prune4rel


def make_data(n=400, d=12, k=4, clusters=6, spread=0.5, seed=0, empty_class=False):
    """Clustered float16 embeddings and float16-rounded probabilities, as the released code stores them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    feats = (centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, d))).astype(np.float16)
    logits = rng.normal(size=(n, k)) * 2
    probs = np.exp(logits)
    probs /= probs.sum(1, keepdims=True)
    probs = probs.astype(np.float16).astype(np.float32)
    labels = rng.integers(0, k - 1 if empty_class else k, n)
    return probs, feats, labels


def run(probs, feats, labels, budget, **kw):
    kw.setdefault("device", "cpu")
    return rp.select("prune4rel", probs=probs, features=feats, labels=labels, budget=budget, **kw)


CASES = list(itertools.product([0, 1, 2], [0.95, 0.9, 0.8], [1.0, 100.0]))


@pytest.mark.parametrize("seed,tau,eta", CASES)
@pytest.mark.parametrize("balanced", [False, True])
def test_parity_with_released_dense_rule(seed, tau, eta, balanced):
    probs, feats, labels = make_data(seed=seed, empty_class=(seed == 2))
    budget = 300
    ref = released_prune4rel(probs, feats, budget, tau=tau, eta=eta, labels=labels if balanced else None)
    sel = run(probs, feats, labels, budget, tau=tau, eta=eta, class_balanced=balanced)
    np.testing.assert_array_equal(sel.indices, ref)  # same examples, same pick order


@pytest.mark.parametrize("balanced", [False, True])
def test_parity_margin_confidence_and_full_budget(balanced):
    probs, feats, labels = make_data(n=250, seed=5)
    ref = released_prune4rel(probs, feats, 250, tau=0.9, confidence="margin", labels=labels if balanced else None)
    sel = run(probs, feats, labels, 250, tau=0.9, confidence="margin", class_balanced=balanced)
    np.testing.assert_array_equal(sel.indices, ref)


def test_random_unclustered_data_parity():
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(500, 4)).astype(np.float16)  # low dimension: many neighbours at tau 0.9
    probs = rng.dirichlet(np.ones(3) * 0.5, size=500).astype(np.float16).astype(np.float32)
    labels = rng.integers(0, 3, 500)
    for balanced in (False, True):
        ref = released_prune4rel(probs, feats, 400, tau=0.9, labels=labels if balanced else None)
        sel = run(probs, feats, labels, 400, tau=0.9, class_balanced=balanced)
        np.testing.assert_array_equal(sel.indices, ref)


@pytest.mark.parametrize("balanced", [False, True])
def test_dense_engine_matches_graph_engine(balanced):
    probs, feats, labels = make_data(seed=7)
    a = run(probs, feats, labels, 200, tau=0.9, class_balanced=balanced, engine="graph")
    b = run(probs, feats, labels, 200, tau=0.9, class_balanced=balanced, engine="dense")
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.gains, b.gains, atol=1e-6)  # similarities differ in the last bit
    assert a.params["engine"] == "graph" and b.params["engine"] == "dense"


@pytest.mark.parametrize("balanced", [False, True])
def test_smaller_budget_is_prefix(balanced):
    probs, feats, labels = make_data(seed=1)
    big = run(probs, feats, labels, 350, class_balanced=balanced)
    for b in (1, 17, 120):
        small = run(probs, feats, labels, b, class_balanced=balanced)
        np.testing.assert_array_equal(small.indices, big.indices[:b])


@pytest.mark.parametrize("tau", [1.0, 0.9999999])
def test_no_neighbours_gives_top_confidence_ranking(tau):
    # tau = 1: no pair passes, NC stays 0; tau just below 1: only the self-pair, which is already picked.
    probs, feats, labels = make_data(seed=4)
    c = probs.max(1)
    sel = run(probs, feats, labels, 150, tau=tau, class_balanced=False)
    np.testing.assert_array_equal(sel.indices, np.argsort(-c, kind="stable")[:150])
    if tau >= 1:
        assert sel.params["n_edges"] == 0
    else:
        assert sel.params["n_edges"] == len(c)


@pytest.mark.parametrize("tau", [1.5, -0.1, float("nan")])
def test_a_threshold_outside_the_similarity_range_is_refused(tau):
    # the similarity 0.5+0.5*cos lies in [0, 1]: tau > 1 is a mistake (it would silently give no graph)
    probs, feats, labels = make_data(seed=4)
    with pytest.raises(ValueError, match=r"tau must be in \[0, 1\]"):
        run(probs, feats, labels, 150, tau=tau, class_balanced=False)


def test_balanced_no_neighbours_is_per_class_top_confidence_round_robin():
    probs, feats, labels = make_data(seed=4, k=4)
    c = probs.max(1)
    sel = run(probs, feats, labels, 40, tau=1.0, class_balanced=True)
    per_class = {k: list(np.flatnonzero(labels == k)[np.argsort(-c[labels == k], kind="stable")]) for k in range(4)}
    expected = [per_class[t % 4].pop(0) for t in range(40)]
    np.testing.assert_array_equal(sel.indices, expected)


def test_first_pick_is_most_confident():
    probs, feats, labels = make_data(seed=8)
    c = probs.max(1)
    assert run(probs, feats, labels, 5, class_balanced=False).indices[0] == int(np.argmax(c))
    first = run(probs, feats, labels, 5, class_balanced=True).indices[0]
    cls0 = np.flatnonzero(labels == 0)
    assert first == cls0[np.argmax(c[cls0])]


def test_balanced_counts_within_one_until_a_class_runs_out():
    probs, feats, labels = make_data(n=600, seed=9, k=5)
    sizes = np.bincount(labels, minlength=5)
    sel = run(probs, feats, labels, 600, tau=0.9, class_balanced=True)
    counts = np.zeros(5, dtype=int)
    for t, p in enumerate(sel.indices):
        counts[labels[p]] += 1
        if (counts == sizes).any():
            break
        assert counts.max() - counts.min() <= 1, t


def test_small_classes_exhaust_and_break_rule():
    # class 2 has 3 examples; after it runs out the round-robin skips it, then the 1.5x rule stops balance
    rng = np.random.default_rng(0)
    labels = np.array([0] * 60 + [1] * 60 + [2] * 3)
    feats = rng.normal(size=(123, 8))
    probs = rng.dirichlet(np.ones(3), size=123).astype(np.float32)
    ref = released_prune4rel(probs, feats, 100, tau=0.9, labels=labels)
    sel = run(probs, feats, labels, 100, tau=0.9, class_balanced=True)
    np.testing.assert_array_equal(sel.indices, ref)
    assert np.bincount(labels[sel.indices], minlength=3).tolist() == [48, 49, 3]
    # the 1.5x check runs only when an exhausted class is met again: here when class 0 or 1 runs out
    assert sel.params["balance_break_at"] is None
    labels = np.array([0] * 80 + [1] * 40 + [2] * 3)  # class 1 runs out first: then balance stops
    ref = released_prune4rel(probs, feats, 123, tau=0.9, labels=labels)
    sel = run(probs, feats, labels, 123, tau=0.9, class_balanced=True)
    np.testing.assert_array_equal(sel.indices, ref)
    assert sel.params["balance_break_at"] is not None


def test_budget_one_and_budget_n():
    probs, feats, labels = make_data(n=120, seed=2)
    assert len(run(probs, feats, labels, 1)) == 1
    full = run(probs, feats, labels, 120, tau=0.8)
    assert sorted(full.indices.tolist()) == list(range(120))


def test_zero_norm_feature_row_is_a_clear_error():
    probs, feats, labels = make_data(n=50)
    feats = feats.astype(np.float32)
    feats[7] = 0
    with pytest.raises(ValueError, match="features row 7 has zero norm"):
        run(probs, feats, labels, 10)


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"tau": float("nan")}, "tau must be"),
        ({"eta": 0}, "eta must be a positive"),
        ({"gain": "greedy"}, "gain must be"),
        ({"engine": "gpu"}, "engine must be"),
        ({"confidence": "entropyy"}, "confidence must be"),
        ({"engine": "dense", "gain": "exact"}, "graph engine"),
    ],
)
def test_bad_options(bad, match):
    probs, feats, labels = make_data(n=50)
    with pytest.raises(ValueError, match=match):
        run(probs, feats, labels, 10, **bad)


def test_max_edges_falls_back_to_dense_or_errors():
    probs, feats, labels = make_data(n=200, seed=3)
    ref = run(probs, feats, labels, 50, tau=0.8)
    auto = run(probs, feats, labels, 50, tau=0.8, max_edges=10)
    assert auto.params["engine"] == "dense"
    np.testing.assert_array_equal(auto.indices, ref.indices)
    with pytest.raises(ValueError, match="max_edges"):
        run(probs, feats, labels, 50, tau=0.8, max_edges=10, engine="graph")
    with pytest.raises(ValueError, match="max_edges"):
        run(probs, feats, labels, 50, tau=0.8, max_edges=10, gain="exact")


def test_max_neighbors_caps_rows_and_is_recorded():
    probs, feats, labels = make_data(n=300, seed=3)
    g = rescaled_cosine_graph(feats, 0.8, device="cpu", max_neighbors=5)
    assert g.degrees().max() <= 5 and not g.symmetric
    full = rescaled_cosine_graph(feats, 0.8, device="cpu")
    # each capped row keeps the most similar neighbours of the full row
    for i in range(0, 300, 37):
        idx, w = full.row(i)
        top = idx[np.lexsort((idx, -w))][:5]
        assert sorted(g.row(i)[0].tolist()) == sorted(top.tolist())
    sel = run(probs, feats, labels, 30, tau=0.8, max_neighbors=5)
    assert sel.params["max_neighbors"] == 5


def test_graph_equals_brute_force_threshold():
    rng = np.random.default_rng(11)
    feats = rng.normal(size=(300, 3))
    g = rescaled_cosine_graph(feats, 0.9, device="cpu", block_size=64)  # several tiles
    z = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    s = 0.5 + 0.5 * (z @ z.T)
    np.fill_diagonal(s, 1.0)
    dense = np.zeros_like(s)
    for i in range(300):
        idx, w = g.row(i)
        assert np.all(np.diff(idx) > 0)  # sorted, no duplicates
        dense[i, idx] = w
    expect = np.where(s > 0.9, s, 0)
    borderline = np.abs(s - 0.9) < 1e-6
    assert np.array_equal(dense[~borderline] > 0, expect[~borderline] > 0)
    np.testing.assert_allclose(dense, expect * ~borderline + dense * borderline, atol=1e-6)
    assert g.symmetric and np.array_equal(dense, dense.T)


def test_torch_and_numpy_inputs_agree():
    probs, feats, labels = make_data(seed=6)
    a = run(probs, feats, labels, 100)
    b = run(torch.from_numpy(probs), torch.from_numpy(feats), torch.from_numpy(labels), 100)
    np.testing.assert_array_equal(a.indices, b.indices)


def brute_force_gain(graph, c, selected, x, eta):
    return prune4rel_objective(graph, c, [*selected, x], eta) - prune4rel_objective(graph, c, list(selected), eta)


@pytest.mark.parametrize("eta", [1.0, 3.0])
def test_exact_gain_is_true_marginal_gain_and_the_maximum(eta):
    probs, feats, labels = make_data(n=60, d=5, seed=12)
    sel = run(probs, feats, labels, 12, tau=0.85, eta=eta, gain="exact", class_balanced=False)
    graph = rescaled_cosine_graph(feats, 0.85, device="cpu")
    c = confidence_scores(probs).astype(np.float64)
    chosen: list[int] = []
    for p, g in zip(sel.indices, sel.gains, strict=True):
        cand = {x: brute_force_gain(graph, c, chosen, x, eta) for x in range(60) if x not in chosen}
        assert g == pytest.approx(cand[int(p)], abs=1e-9)
        assert g >= max(cand.values()) - 1e-9
        chosen.append(int(p))


def test_exact_greedy_beats_self_rule_on_its_objective():
    # the released self rule is not the greedy for F; the exact rule should reach a higher F
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16)) * 3
    feats = (centres[rng.integers(0, 5, 1000)] + rng.normal(size=(1000, 16))).astype(np.float32)
    probs = rng.dirichlet(np.ones(5) * 0.3, size=1000).astype(np.float32)
    labels = rng.integers(0, 5, 1000)
    graph = rescaled_cosine_graph(feats, 0.95, device="cpu")
    c = confidence_scores(probs)
    for budget in (20, 50, 100):
        f_self = prune4rel_objective(graph, c, run(probs, feats, labels, budget, class_balanced=False).indices)
        exact = run(probs, feats, labels, budget, class_balanced=False, gain="exact")
        f_exact = prune4rel_objective(graph, c, exact.indices)
        assert f_exact > f_self
        assert np.all(np.diff(exact.gains) <= 1e-9)  # greedy gains of a submodular function never rise
        np.testing.assert_allclose(exact.gains.sum(), f_exact, rtol=1e-9)


@pytest.mark.parametrize(("seed", "sizes"), [(13, None), (14, [70, 14, 8, 68])])
def test_exact_gain_balanced_equals_a_naive_per_class_loop(seed, sizes):
    """Picks and gains of the balanced exact-gain greedy against a naive loop (the released transcription with
    every candidate's true marginal gain recomputed densely each pick), including a class that runs out (then
    the round-robin skips it, and the 1.5x rule ends the balance)."""
    probs, feats, labels = make_data(n=160, d=8, seed=seed)
    if sizes is not None:
        labels = np.repeat(np.arange(4), sizes)
    for tau, eta, budget in ((0.9, 1.0, 40), (0.8, 2.0, 70), (0.95, 0.5, 100)):
        sel = run(probs, feats, labels, budget, gain="exact", class_balanced=True, tau=tau, eta=eta)
        order, gains = released_prune4rel(probs, feats, budget, tau=tau, eta=eta, labels=labels, gain="exact",
                                          return_gains=True)  # fmt: skip
        np.testing.assert_array_equal(sel.indices, order)
        np.testing.assert_allclose(sel.gains, gains, rtol=1e-5, atol=1e-7)
    counts = np.bincount(labels[sel.indices], minlength=4)
    if sizes is None:
        assert counts.max() - counts.min() <= 1
    else:  # the small class ran out and the balance broke: the case the naive loop must also get right
        assert counts[2] == 8 and sel.params["balance_break_at"] is not None


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(5, 80),
    budget_frac=st.floats(0.05, 1.0),
    tau=st.sampled_from([0.6, 0.9, 0.97]),
    balanced=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_property_parity_and_contract(n, budget_frac, tau, balanced, seed):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, 3)).astype(np.float16)
    feats[np.all(feats == 0, axis=1)] = 1
    probs = rng.dirichlet(np.ones(3), size=n).astype(np.float16).astype(np.float32)
    probs /= probs.sum(1, keepdims=True)
    labels = rng.integers(0, 3, n)
    budget = max(1, int(budget_frac * n))
    sel = run(probs, feats, labels, budget, tau=tau, class_balanced=balanced)
    assert len(np.unique(sel.indices)) == budget
    ref = released_prune4rel(probs, feats, budget, tau=tau, labels=labels if balanced else None)
    np.testing.assert_array_equal(sel.indices, ref)


def test_progress_covers_graph_and_greedy_on_one_scale():
    probs, feats, labels = make_data(n=300, seed=2)
    calls: list[tuple[int, int]] = []
    run(probs, feats, labels, 100, block_size=64, progress=lambda d, t: calls.append((d, t)))
    totals = {t for _, t in calls}
    assert totals == {15 + 100}  # 5 row blocks -> 15 upper tiles, then 100 picks
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == 115


#: The keys of a Prune4ReL run's ``info``, in order: run reports, metrics.json and the tests above read them.
_GRAPH_FACTS = ["n_edges", "mean_degree", "graph_seconds", "graph_backend"]
_RUN_FACTS = ["coverage", "greedy_seconds", "balance_break_at", "setup_seconds"]
INFO_KEYS = {
    "prune4rel": ["engine", "tau", *_GRAPH_FACTS, "eta", *_RUN_FACTS],
    "prune4rel_auto": ["engine", "embedding_seconds", "target_degree", "auto_tau_seconds", "tau", *_GRAPH_FACTS,
                       "eta", *_RUN_FACTS],
    "dense": ["engine", "tau", "eta", *_RUN_FACTS],
    "confident": ["engine", "tau", *_GRAPH_FACTS, "eta", "flagged", "topped_up", *_RUN_FACTS],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(INFO_KEYS))
def test_info_keys_and_types_are_pinned(case):
    from robustprune.selection.core.confident_learning import label_issue_mask

    probs, feats, labels = make_data(n=300, seed=4)
    name = "prune4rel_auto" if case == "prune4rel_auto" else "prune4rel"
    options = {"dense": {"engine": "dense"}, "confident": {"prefer": "confident"}}.get(case, {})
    out = rp.get_method(name).func(probs=probs, features=feats, labels=labels, budget=90, device="cpu", **options)
    info = out.info
    assert list(info) == INFO_KEYS[case]
    floats = {"tau", "eta", "coverage", "mean_degree", "target_degree", *(k for k in info if k.endswith("_seconds"))}
    for key, value in info.items():
        expected = float if key in floats else str if key in ("engine", "graph_backend") else int
        assert type(value) is expected or key == "balance_break_at" and value is None, (key, value)
    assert info["engine"] == ("dense" if case == "dense" else "graph")
    assert 0 < info["coverage"] <= 1 and info["balance_break_at"] is None
    if case == "prune4rel":
        assert info["tau"] == 0.95 and info["eta"] == 1.0
    if "n_edges" in info:
        assert info["graph_backend"] == "blocked" and info["mean_degree"] == round(info["n_edges"] / 300, 3)
    if case == "prune4rel_auto":
        assert info["target_degree"] == round(4 * 300 / 90, 3) and abs(info["mean_degree"] - 13.3) < 1.0
    if case == "confident":
        flagged = label_issue_mask(labels, probs)
        assert info["flagged"] == int(flagged.sum()) and info["topped_up"] == int(flagged[out.indices].sum())
