"""Method-specific correctness tests for the signal-based baselines: directions, formulas, references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustprune.seeding import stream
from robustprune.selection.api import select
from robustprune.selection.budget import class_quotas
from robustprune.selection.core.scores import (
    aum_scores,
    el2n_scores,
    forgetting_scores,
    grand_scores,
    small_loss_scores,
    uncertainty_scores,
)
from robustprune.selection.methods.ccs import allocate_strata
from robustprune.selection.methods.kcenter import kcenter_greedy_order
from robustprune.selection.methods.moderate import moderate_scores


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n, k, d, e = 120, 4, 6, 5
    labels = rng.integers(0, k, n)
    labels[:k] = np.arange(k)
    probs = _softmax(rng.normal(size=(n, k)) * 2)
    features = rng.normal(size=(n, d))
    correct = rng.random((e, n)) < 0.6
    margins = rng.normal(size=(e, n))
    losses = rng.random((e, n)) * 3
    return dict(labels=labels, probs=probs, features=features, correct=correct, margins=margins, losses=losses)


# ------------------------------------------------------------------------------------ uncertainty

HAND_PROBS = np.array(
    [
        [0.98, 0.01, 0.01],  # confident
        [0.34, 0.33, 0.33],  # most uncertain by every measure
        [0.70, 0.30, 0.00],
        [0.50, 0.45, 0.05],
    ]
)


@pytest.mark.parametrize("kind", ["least_confidence", "entropy", "margin"])
def test_uncertainty_keeps_most_uncertain(kind):
    sel = select("uncertainty", probs=HAND_PROBS, budget=1, kind=kind)
    assert sel.indices.tolist() == [1]
    # and the most confident row is always the last one kept
    full = select("uncertainty", probs=HAND_PROBS, budget=4, kind=kind)
    assert full.indices[-1] == 0


def test_uncertainty_keeps_most_uncertain_when_balanced():
    labels = np.array([0, 0, 1, 1])
    sel = select("uncertainty", probs=HAND_PROBS, labels=labels, budget=2, class_balanced=True, kind="margin")
    # class 0: row 1 beats row 0; class 1: margin of row 3 (0.05) beats row 2 (0.40)
    assert sorted(sel.indices.tolist()) == [1, 3]


def test_uncertainty_values():
    p = HAND_PROBS
    np.testing.assert_allclose(uncertainty_scores(p, "least_confidence"), 1 - p.max(1))
    ent = -np.array([sum(v * np.log(v) for v in row if v > 0) for row in p])
    np.testing.assert_allclose(uncertainty_scores(p, "entropy"), ent)
    s = np.sort(p, axis=1)
    np.testing.assert_allclose(uncertainty_scores(p, "margin"), -(s[:, -1] - s[:, -2]))


def test_uncertainty_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        select("uncertainty", probs=HAND_PROBS, budget=1, kind="bald")


# ------------------------------------------------------------------------------- loss-type scores


def test_small_loss_keeps_lowest_cross_entropy(data):
    s = small_loss_scores(data["probs"], data["labels"])
    np.testing.assert_allclose(s, -np.log(data["probs"][np.arange(120), data["labels"]]))
    sel = select("small_loss", probs=data["probs"], labels=data["labels"], budget=10)
    assert set(sel.indices) == set(np.argsort(s, kind="stable")[:10])


def test_el2n_matches_onehot_norm(data):
    onehot = np.eye(4)[data["labels"]]
    expect = np.linalg.norm(data["probs"] - onehot, axis=1)
    np.testing.assert_allclose(el2n_scores(data["probs"], data["labels"]), expect, rtol=1e-6, atol=1e-7)
    sel = select("el2n", probs=data["probs"], labels=data["labels"], budget=10)
    assert set(sel.indices) == set(np.argsort(-expect, kind="stable")[:10])


def test_grand_equals_autograd_last_layer_gradient_norm():
    torch.manual_seed(0)
    n, d, k = 7, 5, 3
    h = torch.randn(n, d, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 2])
    layer = torch.nn.Linear(d, k).double()
    expect = []
    for i in range(n):  # the real per-sample gradient, one example at a time
        layer.zero_grad()
        torch.nn.functional.cross_entropy(layer(h[i : i + 1]), y[i : i + 1]).backward()
        g = torch.cat([layer.weight.grad.flatten(), layer.bias.grad.flatten()])
        expect.append(float(g.norm()))
    with torch.no_grad():
        probs = torch.softmax(layer(h), dim=1).numpy()
    got = grand_scores(probs, y.numpy(), h.numpy())
    np.testing.assert_allclose(got, expect, rtol=1e-10)
    sel = select("grand", probs=probs, labels=y.numpy(), features=h.numpy(), budget=2)
    assert set(sel.indices) == set(np.argsort(-np.array(expect))[:2])


# ------------------------------------------------------------------------------ training dynamics


def test_forgetting_counts_and_never_learned():
    correct = np.array(
        [
            [0, 1, 1, 0, 1],
            [0, 1, 0, 0, 0],
            [0, 1, 1, 1, 1],
            [0, 1, 0, 1, 0],
        ],
        dtype=bool,
    )
    s = forgetting_scores(correct)
    # ex0 never learned -> inf; ex1 learned, never forgotten; ex2 forgotten twice; ex3 once-learned late;
    # ex4: forgotten at epochs 1 and 3
    assert s[0] == np.inf
    np.testing.assert_array_equal(s[1:], [0, 2, 0, 2])
    sel = select("forgetting", correct=correct, budget=3)
    assert sel.indices[0] == 0  # never learned ranks hardest
    assert sorted(sel.indices.tolist()) == [0, 2, 4]


def test_forgetting_first_epoch_is_not_an_event():
    # starts correct then wrong: one event; starts wrong: no event from the initial state
    s = forgetting_scores(np.array([[1, 0], [0, 1]], dtype=bool))
    np.testing.assert_array_equal(s, [1, 0])


def test_aum_keeps_high_margin():
    margins = np.array([[2.0, -1.0, 0.5, -3.0], [1.0, -2.0, 0.5, 4.0]])
    np.testing.assert_allclose(aum_scores(margins), [1.5, -1.5, 0.5, 0.5])
    sel = select("aum", margins=margins, budget=2)
    assert sel.indices.tolist() == [0, 2]  # likely-mislabeled (lowest AUM) example 1 is dropped first


# ---------------------------------------------------------------------------------- uniform, full


def test_uniform_seeded_and_balanced(data):
    labels = data["labels"]
    a = select("uniform", labels=labels, budget=30, seed=1)
    b = select("uniform", labels=labels, budget=30, seed=1)
    c = select("uniform", labels=labels, budget=30, seed=2)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert set(a.indices) != set(c.indices)
    bal = select("uniform", labels=labels, budget=30, seed=1, class_balanced=True)
    np.testing.assert_array_equal(bal.class_counts(labels, 4), class_quotas(labels, 30, 4))
    # uniform needs no labels: any signal fixes N
    assert len(select("uniform", features=data["features"], budget=5)) == 5


def test_full_keeps_everything_in_order(data):
    sel = select("full", labels=data["labels"], fraction=1.0)
    np.testing.assert_array_equal(sel.indices, np.arange(120))


@pytest.mark.parametrize(
    "method",
    ["uniform", "small_loss", "uncertainty", "el2n", "grand", "forgetting", "aum", "moderate", "kcenter_greedy", "ccs"],
)
def test_class_balanced_counts_equal_quotas(method, data):
    sel = select(method, **data, budget=37, class_balanced=True)
    np.testing.assert_array_equal(sel.class_counts(data["labels"], 4), class_quotas(data["labels"], 37, 4))


# --------------------------------------------------------------------------------------- k-center


def _naive_kcenter(x: np.ndarray, k: int, first: int) -> tuple[list[int], list[float]]:
    chosen, gains = [first], [np.inf]
    while len(chosen) < k:
        d = np.linalg.norm(x[:, None, :] - x[None, chosen, :], axis=2).min(axis=1)
        d[chosen] = -1
        nxt = int(np.argmax(d))
        chosen.append(nxt)
        gains.append(float(d[nxt]))
    return chosen, gains


def test_kcenter_matches_brute_force():
    x = np.random.default_rng(3).normal(size=(80, 5))
    sel = select("kcenter_greedy", features=x, budget=20, seed=7)
    first = int(stream(7, "kcenter_greedy").integers(80))
    ref, gains = _naive_kcenter(x, 20, first)
    assert sel.indices.tolist() == ref
    np.testing.assert_allclose(sel.gains, gains, rtol=1e-9)
    assert np.all(np.diff(sel.gains[1:]) <= 1e-12)


def test_kcenter_float32_and_duplicates():
    x = np.repeat(np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32), 4, axis=0)  # 20 rows
    order, gains = kcenter_greedy_order(x, 20, 0)
    assert sorted(order.tolist()) == list(range(20))  # never re-picks a centre, even at zero distance
    assert np.all(gains[5:] < 1e-3)  # after one copy of each point, everything is covered


def test_kcenter_class_balanced_runs_per_class():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(90, 4))
    labels = np.repeat([0, 1, 2], [50, 30, 10])
    calls = []
    sel = select(
        "kcenter_greedy",
        features=x,
        labels=labels,
        budget=18,
        class_balanced=True,
        seed=3,
        progress=lambda done, total: calls.append((done, total)),
    )
    quotas = class_quotas(labels, 18)
    assert calls[-1] == (18, 18)
    for c in range(3):
        idx = np.flatnonzero(labels == c)
        first = int(stream(3, "kcenter_greedy", int(c)).integers(idx.shape[0]))
        ref, _ = _naive_kcenter(x[idx], int(quotas[c]), first)
        picked = [i for i in sel.indices if labels[i] == c]  # class order is kept in the merge
        assert picked == idx[ref].tolist()
    assert np.all(np.diff(sel.gains[3:]) <= 1e-12)  # merged by non-increasing gain after the 3 starts


# --------------------------------------------------------------------------------------- moderate


def test_moderate_scores_use_class_median():
    features = np.array([[0.0, 0.0], [1.0, 10.0], [2.0, 20.0], [5.0, 5.0], [7.0, 5.0]])
    labels = np.array([0, 0, 0, 1, 1])
    # class 0 median (1, 10); class 1 median (6, 5)
    expect = [np.hypot(1, 10), 0.0, np.hypot(1, 10), 1.0, 1.0]
    np.testing.assert_allclose(moderate_scores(features, labels), expect)


def test_moderate_picks_middle_band(data):
    d = moderate_scores(data["features"], data["labels"])
    ranked = np.argsort(d, kind="stable")
    for k in (1, 10, 59, 60, 120):
        sel = select("moderate", features=data["features"], labels=data["labels"], budget=k)
        s = (120 - k) // 2
        assert set(sel.indices) == set(ranked[s : s + k])
    small = select("moderate", features=data["features"], labels=data["labels"], budget=10)
    big = select("moderate", features=data["features"], labels=data["labels"], budget=40)
    np.testing.assert_array_equal(big.indices[:10], small.indices)  # centre-out order: prefixes
    np.testing.assert_allclose(big.scores, d)


def test_moderate_balanced_band_per_class(data):
    sel = select("moderate", features=data["features"], labels=data["labels"], budget=40, class_balanced=True)
    d = moderate_scores(data["features"], data["labels"])
    quotas = class_quotas(data["labels"], 40)
    for c in range(4):
        idx = np.flatnonzero(data["labels"] == c)
        ranked = idx[np.argsort(d[idx], kind="stable")]
        s = (idx.shape[0] - quotas[c]) // 2
        assert set(sel.indices[data["labels"][sel.indices] == c]) == set(ranked[s : s + quotas[c]])


# -------------------------------------------------------------------------------------------- CCS


def test_allocate_strata_rule():
    np.testing.assert_array_equal(allocate_strata(np.array([100, 0, 10, 2]), 30), [18, 0, 10, 2])
    np.testing.assert_array_equal(allocate_strata(np.array([5, 5]), 9), [4, 5])
    with pytest.raises(ValueError):
        allocate_strata(np.array([1, 2]), 4)


def test_ccs_exact_budget_and_cutoff(data):
    aum = data["margins"].mean(axis=0)
    hardest = set(np.argsort(aum, kind="stable")[:36])  # floor(0.3 * 120) lowest AUM
    for budget in (1, 20, 50, 84):
        sel = select("ccs", margins=data["margins"], budget=budget, beta=0.3, seed=1)
        assert len(sel) == budget and len(set(sel.indices)) == budget
        assert not hardest & set(sel.indices)
        assert sel.params["score"] == "aum" and sel.params["cut"] == 36 and sel.params["topped_up"] == 0


def test_ccs_tops_up_with_least_hard_pruned(data):
    aum = data["margins"].mean(axis=0)
    order = np.argsort(-aum, kind="stable")  # easiest first
    sel = select("ccs", margins=data["margins"], budget=100, beta=0.5, seed=0)
    assert len(sel) == 100 and sel.params["topped_up"] == 40
    assert set(sel.indices) == set(order[:100])
    np.testing.assert_array_equal(sel.indices[60:], order[60:100])  # top-up picks last, least hard first


def test_ccs_stratified_covers_the_score_range():
    # a skewed score: 90 % of examples in a narrow band, a thin tail; top-k would ignore the tail
    rng = np.random.default_rng(5)
    aum = np.concatenate([rng.uniform(0.0, 0.1, 900), rng.uniform(0.1, 1.0, 100)])
    sel = select("ccs", margins=aum[None, :], budget=200, strata=10, seed=0)
    bins = np.minimum(((aum - aum.min()) / (aum.max() - aum.min()) * 10).astype(int), 9)
    sizes = np.bincount(bins, minlength=10)
    counts = np.bincount(bins[sel.indices], minlength=10)
    np.testing.assert_array_equal(counts, allocate_strata(sizes, 200))
    assert counts[1:].sum() >= 100  # the tail gets far more than its 10 % share


def test_ccs_seeding_and_score_choice(data):
    a = select("ccs", **data, budget=30, seed=3)
    b = select("ccs", **data, budget=30, seed=3)
    c = select("ccs", **data, budget=30, seed=4)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert set(a.indices) != set(c.indices)
    assert a.params["score"] == "aum"
    e = select("ccs", probs=data["probs"], labels=data["labels"], budget=30)
    assert e.params["score"] == "el2n"
    f = select("ccs", **data, budget=30, score="forgetting", beta=0.1)
    assert f.params["score"] == "forgetting"
    never = set(np.flatnonzero(~data["correct"].any(axis=0)))
    assert not never & set(f.indices)  # never-learned (+inf) are the hardest, cut first


@pytest.mark.parametrize("opts", [{"beta": 1.0}, {"beta": -0.1}, {"strata": 0}, {"score": "nope"}])
def test_ccs_rejects_bad_options(data, opts):
    with pytest.raises(ValueError):
        select("ccs", **data, budget=10, **opts)


def test_ccs_missing_signal_for_score(data):
    with pytest.raises(ValueError, match="margins"):
        select("ccs", probs=data["probs"], labels=data["labels"], budget=10, score="aum")
