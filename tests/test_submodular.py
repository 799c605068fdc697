"""The submodular method: its functions' gains are the true marginal gains, naive and lazy agree, and the
balanced mode keeps the class quotas."""

from __future__ import annotations

import numpy as np
import pytest

import robustprune as rp
from robustprune.selection.core.graph import rescaled_cosine_graph


def data(n=150, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 6)) + labels[:, None]
    return x.astype(np.float32), labels


def dense_sim(x):
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    return 0.5 + 0.5 * (z @ z.T)


def value(function, s, chosen, lam=1.0):
    chosen = list(chosen)
    if not chosen:
        return 0.0
    if function == "facility_location":
        return float(s[:, chosen].max(1).sum())
    return float(lam * s[:, chosen].sum() - s[np.ix_(chosen, chosen)].sum())


@pytest.mark.parametrize("function", ["facility_location", "graph_cut"])
def test_recorded_gains_are_the_true_marginal_gains_and_the_best(function):
    x, labels = data()
    s = dense_sim(x.astype(np.float64)).astype(np.float32).astype(np.float64)
    sel = rp.select("submodular", features=x, budget=12, class_balanced=False, function=function, cut_weight=3.0)
    lam = 3.0
    chosen: list[int] = []
    for p, g in zip(sel.indices, sel.gains, strict=True):
        base = value(function, s, chosen, lam)
        best = max(value(function, s, [*chosen, c], lam) - base for c in range(len(x)) if c not in chosen)
        assert g == pytest.approx(value(function, s, [*chosen, p], lam) - base, abs=1e-3)
        assert g == pytest.approx(best, abs=1e-3)
        chosen.append(int(p))
    if function == "facility_location":
        assert np.all(np.diff(sel.gains) <= 1e-9)  # marginal gains do not increase


@pytest.mark.parametrize("function", ["facility_location", "graph_cut"])
def test_naive_and_lazy_give_the_same_picks(function):
    x, labels = data(seed=1)
    a = rp.select("submodular", features=x, labels=labels, budget=20, function=function, optimizer="naive")
    b = rp.select("submodular", features=x, labels=labels, budget=20, function=function, optimizer="lazy")
    np.testing.assert_array_equal(a.indices, b.indices)


def test_stochastic_and_thresholded_graphs():
    x, _ = data(n=400, seed=2)
    lazy = rp.select("submodular", features=x, budget=20, class_balanced=False)
    sto = rp.select("submodular", features=x, budget=20, class_balanced=False, optimizer="stochastic", seed=1)
    s = dense_sim(x.astype(np.float64))
    assert value("facility_location", s, sto.indices) >= 0.95 * value("facility_location", s, lazy.indices)
    sparse = rp.select("submodular", features=x, budget=20, class_balanced=False, tau="auto", neighbors=30)
    assert sparse.params["n_edges"] < lazy.params["n_edges"] / 5
    assert rescaled_cosine_graph(x, 0.0).nnz == lazy.params["n_edges"] == 400 * 400


def test_balanced_quotas_and_bad_options():
    x, labels = data()
    sel = rp.select("submodular", features=x, labels=labels, budget=30)
    np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=3), rp.class_quotas(labels, 30))
    for kw, match in (({"function": "log"}, "function"), ({"optimizer": "fast"}, "optimizer"), ({"tau": 2}, "tau")):
        with pytest.raises(ValueError, match=match):
            rp.select("submodular", features=x, labels=labels, budget=5, **kw)


def test_log_determinant_gains_match_slogdet_differences_and_avoid_redundancy():
    x, _ = data(n=60, seed=4)
    x = np.concatenate([x, x[:5]])  # exact duplicates: the log-determinant never takes a point twice over
    s = dense_sim(x.astype(np.float64)) + 1e-6 * np.eye(len(x))
    sel = rp.select("submodular", features=x, budget=10, class_balanced=False, function="log_determinant")
    chosen: list[int] = []
    prev = 0.0
    for p, g in zip(sel.indices, sel.gains, strict=True):
        chosen.append(int(p))
        now = np.linalg.slogdet(s[np.ix_(chosen, chosen)])[1]
        assert g == pytest.approx(now - prev, abs=1e-6)
        prev = now
    firsts = [i if i < 60 else i - 60 for i in sel.indices]
    assert len(set(firsts)) == 10  # never a point and its duplicate
    lazy = rp.select("submodular", features=x, budget=10, class_balanced=False, function="log_determinant")
    naive = rp.select(
        "submodular", features=x, budget=10, class_balanced=False, function="log_determinant", optimizer="naive"
    )
    np.testing.assert_array_equal(lazy.indices, naive.indices)


def test_gradient_space_uses_last_layer_gradients():
    from robustprune.selection.methods.submodular import gradient_embeddings

    x, labels = data(n=40)
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(3), size=40)
    g = gradient_embeddings(probs, labels, x)
    e = probs.copy()
    e[np.arange(40), labels] -= 1
    h = np.concatenate([x, np.ones((40, 1))], axis=1)
    # the inner products factorise: <g_i, g_j> = <e_i, e_j> (<h_i, h_j> + 1)
    np.testing.assert_allclose(g.astype(np.float64) @ g.T.astype(np.float64), (e @ e.T) * (h @ h.T), rtol=1e-4)
    a = rp.select("submodular", features=x, probs=probs, labels=labels, budget=9, space="gradients")
    b = rp.select("submodular", features=g, labels=labels, budget=9)
    np.testing.assert_array_equal(a.indices, b.indices)
    with pytest.raises(ValueError, match="needs probs and labels"):
        rp.select("submodular", features=x, labels=labels, budget=9, space="gradients")


@pytest.mark.parametrize("n", [1, 7, 130])
def test_complete_graph_shortcut_equals_the_general_builder(n):
    from robustprune.selection.methods.submodular import _complete_graph

    x = np.random.default_rng(n).normal(size=(n, 6)).astype(np.float32) + 2.0  # no opposite pairs
    fast, ref = _complete_graph(x, "cpu", block=16), rescaled_cosine_graph(x, 0.0)
    assert fast is not None
    np.testing.assert_array_equal(fast.indptr, ref.indptr)
    np.testing.assert_array_equal(fast.indices, ref.indices)
    np.testing.assert_allclose(fast.weights, ref.weights, rtol=0, atol=1e-7)
    opposite = np.concatenate([x[:3], -x[:3]])
    assert _complete_graph(opposite, "cpu") is None  # s = 0 pairs: the general builder decides
