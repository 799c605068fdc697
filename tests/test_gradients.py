"""Craig, GradMatch and Glister: each against a plain reference on explicit gradient vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

import robustprune as rp
from robustprune.selection.budget import class_quotas
from robustprune.selection.methods.gradients import (
    craig_group,
    glister_greedy,
    gradient_distances,
    gradient_factors,
    omp_group,
)
from robustprune.selection.methods.submodular import gradient_embeddings

K, D = 3, 5


def data(n: int = 90, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, n)
    features = (rng.normal(size=(n, D)) + labels[:, None]).astype(np.float32)
    logits = rng.normal(size=(n, K))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs, features


def explicit(probs, labels, features):
    return gradient_embeddings(probs, labels, features).astype(np.float64)


def test_factors_are_the_autograd_gradient_of_a_linear_layer():
    labels, _, features = data(12)
    layer = torch.nn.Linear(D, K).double()
    x = torch.as_tensor(features, dtype=torch.float64)
    with torch.no_grad():
        probs = torch.softmax(layer(x), 1).numpy()
    e, h = gradient_factors(probs, labels, features)
    for i in range(4):
        layer.zero_grad()
        torch.nn.functional.cross_entropy(layer(x[i : i + 1]), torch.tensor([int(labels[i])])).backward()
        np.testing.assert_allclose(np.outer(e[i], h[i, :D]), layer.weight.grad.numpy(), atol=1e-12)
        np.testing.assert_allclose(e[i], layer.bias.grad.numpy(), atol=1e-12)
    g = explicit(probs, labels, features)
    idx = np.arange(12)
    ref = np.linalg.norm(g[:, None] - g[None], axis=2)
    np.testing.assert_allclose(gradient_distances(e, h, idx, idx), ref, atol=1e-5)


def _facility_reference(g: np.ndarray, k: int):
    """Plain greedy facility location on M − distance, every gain recomputed from the full matrix."""
    d = np.linalg.norm(g[:, None] - g[None], axis=2)
    s = 2 * np.linalg.norm(g, axis=1).max() - d
    state = np.zeros(len(g))
    picks, gains = [], []
    for _ in range(k):
        all_gains = np.maximum(s - state[:, None], 0).sum(0)
        all_gains[picks] = -np.inf
        j = int(np.argmax(all_gains))
        picks.append(j)
        gains.append(all_gains[j])
        state = np.maximum(state, s[:, j])
    nearest = np.array(picks)[d[:, picks].argmin(1)]
    return np.array(picks), np.array(gains), np.array([np.sum(nearest == p) for p in picks])


def test_craig_matches_plain_greedy_gains_do_not_increase_and_weights_are_cluster_sizes():
    labels, probs, features = data(80)
    e, h = gradient_factors(probs, labels, features)
    picks, gains, sizes = craig_group(e, h, 12)
    ref_picks, ref_gains, ref_sizes = _facility_reference(explicit(probs, labels, features), 12)
    np.testing.assert_array_equal(picks, ref_picks)
    np.testing.assert_allclose(gains, ref_gains, rtol=1e-6)
    assert np.all(np.diff(gains) <= 1e-9)  # submodular: marginal gains never grow
    np.testing.assert_array_equal(sizes, ref_sizes)
    assert sizes.sum() == 80 and sizes.min() >= 1


def test_craig_on_the_fly_columns_give_the_same_picks(monkeypatch):
    import robustprune.selection.methods.gradients as gr

    labels, probs, features = data(70)
    e, h = gradient_factors(probs, labels, features)
    dense = craig_group(e, h, 9)
    monkeypatch.setattr(gr, "_DENSE_PAIRS", 0)
    monkeypatch.setattr(gr, "_BLOCK", 16)
    streamed = craig_group(e, h, 9)
    np.testing.assert_array_equal(dense[0], streamed[0])
    np.testing.assert_allclose(dense[1], streamed[1], rtol=1e-6)
    np.testing.assert_array_equal(dense[2], streamed[2])


def test_craig_select_weights_follow_cluster_sizes_and_quotas():
    labels, probs, features = data(120)
    sel = rp.select("craig", labels=labels, probs=probs, features=features, fraction=0.2)
    np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=K), class_quotas(labels, 24))
    assert sel.weights is not None and sel.weights.shape == (24,)
    assert sel.weights.mean() == pytest.approx(1.0)
    # one class's weights are its cluster sizes, up to the common scale
    g = explicit(probs, labels, features)
    c = labels[sel.indices[0]]
    members = np.flatnonzero(labels == c)
    picked = sel.indices[labels[sel.indices] == c]
    d = np.linalg.norm(g[members][:, None] - g[picked][None], axis=2)
    sizes = np.bincount(d.argmin(1), minlength=len(picked))
    w = sel.weights[labels[sel.indices] == c]
    np.testing.assert_allclose(w / w.sum(), sizes / sizes.sum())
    unweighted = rp.select("craig", labels=labels, probs=probs, features=features, fraction=0.2, weighted=False)
    assert unweighted.weights is None
    np.testing.assert_array_equal(unweighted.indices, sel.indices)


def _omp_reference(g: np.ndarray, k: int, lam: float):
    """Regularised OMP with explicit vectors and a fresh solve every step, then NNLS on the stacked system."""
    b = g.mean(0)
    ridge = lam * (g * g).sum(1).mean()
    picks: list[int] = []
    r = b.copy()
    for _ in range(k):
        proj = g @ r
        proj[picks] = -np.inf
        picks.append(int(np.argmax(proj)))
        a = g[picks]
        x = np.linalg.solve(a @ a.T + ridge * np.eye(len(picks)), a @ b)
        r = b - a.T @ x
    a = g[picks]
    stacked = np.vstack([a.T, np.sqrt(ridge) * np.eye(k)])
    w, _ = nnls(stacked, np.concatenate([b, np.zeros(k)]))
    return np.array(picks), w


@pytest.mark.parametrize("lam", [0.01, 1.0])
def test_gradmatch_is_omp_with_nnls_weights(lam):
    labels, probs, features = data(60, seed=3)
    e, h = gradient_factors(probs, labels, features)
    pos, _, w, facts = omp_group(e, h, 10, lam=lam)
    ref_picks, ref_w = _omp_reference(explicit(probs, labels, features), 10, lam)
    assert sorted(pos.tolist()) == sorted(ref_picks.tolist())
    positive = ref_w > 1e-9
    assert facts["zero_weights"] == int((~positive).sum())
    by_pick = dict(zip(pos.tolist(), w.tolist(), strict=True))
    np.testing.assert_allclose([by_pick[p] for p in ref_picks[positive]], ref_w[positive], rtol=1e-5, atol=1e-9)
    assert (w > 0).all()  # zero NNLS weights are topped up with the smallest positive weight


def test_gradmatch_returns_exactly_the_budget_with_positive_weights():
    labels, probs, features = data(150, seed=1)
    for balanced in (True, False):
        sel = rp.select("gradmatch", labels=labels, probs=probs, features=features, budget=37, class_balanced=balanced)
        assert len(sel) == 37 and len(np.unique(sel.indices)) == 37
        assert (sel.weights > 0).all() and sel.weights.mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="lam"):
        rp.select("gradmatch", labels=labels, probs=probs, features=features, budget=5, lam=-1.0)


def _glister_reference(probs, labels, features, val, picks_per_turn, eta):
    """Glister with an explicit linear layer: after each pick, move (W, b) by −η·mean of the picked
    gradients and recompute the validation gradient by autograd."""
    x = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(labels)
    g = torch.as_tensor(explicit(probs, labels, features))
    base = torch.log(torch.as_tensor(probs, dtype=torch.float64))
    delta = torch.zeros(K, D + 1, dtype=torch.float64, requires_grad=True)
    xt = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    chosen: list[int] = []
    for members in picks_per_turn:
        delta.grad = None
        z = base[val] + xt[val] @ delta.T
        torch.nn.functional.cross_entropy(z, y[val]).backward()
        gval = delta.grad.reshape(-1)
        gains = g[members] @ gval
        gains[[i for i, m in enumerate(members) if m in chosen]] = -np.inf
        chosen.append(int(members[int(torch.argmax(gains))]))
        with torch.no_grad():
            delta.copy_((-eta * g[chosen].mean(0)).reshape(K, D + 1))
    return np.array(chosen)


def test_glister_updates_the_validation_gradient_after_each_pick_as_a_linear_layer_would():
    labels, probs, features = data(60, seed=2)
    e, h = gradient_factors(probs, labels, features)
    val = np.arange(0, 60, 3)
    trace: list[np.ndarray] = []
    groups = [(np.arange(60), 8)]
    logits = np.log(probs[val])
    picks, gains = glister_greedy(e, h, groups, logits, labels[val], h[val], 0.5, trace)
    assert len(trace) == 8
    assert all(not np.allclose(a, b) for a, b in zip(trace, trace[1:], strict=False))
    ref = _glister_reference(probs, labels, features, val, [np.arange(60)] * 8, 0.5)
    np.testing.assert_array_equal(picks, ref)
    # eta = 0 is the static rule: the top-k alignment with the validation gradient
    static, _ = glister_greedy(e, h, groups, logits, labels[val], h[val], 0.0)
    gval = trace[0].reshape(-1)
    top = np.argsort(-(explicit(probs, labels, features) @ gval), kind="stable")[:8]
    np.testing.assert_array_equal(static, top)
    assert not np.array_equal(static, picks)


def test_glister_balanced_quotas_and_validation_options():
    labels, probs, features = data(150, seed=4)
    sel = rp.select("glister", labels=labels, probs=probs, features=features, fraction=0.2)
    np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=K), class_quotas(labels, 30))
    assert sel.params["validation_size"] == 15 and sel.weights is None
    full = rp.select("glister", labels=labels, probs=probs, features=features, fraction=0.2, validation="train")
    assert full.params["validation_size"] == 150
    with pytest.raises(ValueError, match="validation"):
        rp.select("glister", labels=labels, probs=probs, features=features, fraction=0.2, validation="test")


def test_weights_survive_save_and_load(tmp_path):
    labels, probs, features = data(90)
    sel = rp.select("craig", labels=labels, probs=probs, features=features, fraction=0.3)
    path, _ = sel.save(tmp_path / "sel.npz")
    back = rp.Selection.load(path)
    np.testing.assert_array_equal(back.weights, sel.weights)
    assert back.metadata()["weighted"] is True
