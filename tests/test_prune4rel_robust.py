"""Prune4ReL's extensions: embedding transforms, automatic tau and eta, label-aware confidence, candidate
tiers, balance by predictions, and the registered robust configuration."""

from __future__ import annotations

import numpy as np
import pytest

import robustprune as rp
from robustprune.selection.core.confident_learning import label_issue_mask
from robustprune.selection.core.geometry import auto_tau, support_scale, transform_embedding
from robustprune.selection.core.graph import rescaled_cosine_graph
from robustprune.selection.methods.prune4rel import prune4rel_objective


def clustered(n=600, k=4, d=16, noise=0.3, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    centres = rng.normal(size=(k, d)) * 3
    feats = (centres[true] + rng.normal(size=(n, d)) + offset).astype(np.float32)
    labels = np.where(rng.random(n) < noise, (true + 1) % k, true)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), true] += 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return feats, labels, probs.astype(np.float32), true


# ---------------------------------------------------------------------------------------------- geometry


def test_auto_tau_is_deterministic_and_in_range():
    x, *_ = clustered(n=3000)
    a = auto_tau(x, 20, sample=1000, seed=3)
    assert a == auto_tau(x, 20, sample=1000, seed=3)
    assert 0.0 <= a <= 1.0


@pytest.mark.parametrize("offset", [50.0, 0.0])
def test_auto_tau_valid_on_very_high_and_low_cosines(offset):
    # a large common offset makes every cosine close to 1; centred Gaussian data has cosines near 0
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(800, 32)) + offset).astype(np.float32)
    tau = auto_tau(x, 10)
    assert 0.0 <= tau <= 1.0
    g = rescaled_cosine_graph(x, tau)
    assert g.nnz / 800 == pytest.approx(10, rel=0.05)


@pytest.mark.parametrize("degree", [5, 20, 60])
def test_auto_tau_gives_the_requested_degree_exactly_on_all_pairs(degree):
    x, *_ = clustered(n=900)
    tau = auto_tau(x, degree, sample=4096)  # N <= sample: every pair is read
    g = rescaled_cosine_graph(x, tau)
    assert g.nnz / 900 == pytest.approx(degree, abs=0.05)


def test_auto_tau_sampled_estimate_is_close():
    x, *_ = clustered(n=5000, seed=2)
    tau = auto_tau(x, 30, sample=1500, seed=0)
    g = rescaled_cosine_graph(x, tau)
    assert g.nnz / 5000 == pytest.approx(30, rel=0.15)


def test_auto_tau_degree_one_keeps_only_self_pairs():
    x, *_ = clustered(n=300)
    g = rescaled_cosine_graph(x, auto_tau(x, 1.0))
    assert g.nnz == 300


def test_auto_tau_rejects_bad_targets():
    x, *_ = clustered(n=50)
    with pytest.raises(ValueError, match="target_degree"):
        auto_tau(x, 0)


def test_centring_changes_nothing_on_centred_features():
    x, labels, probs, _ = clustered(n=400)
    x = np.concatenate([x, -x])  # mean exactly zero
    labels, probs = np.concatenate([labels, labels]), np.concatenate([probs, probs])
    np.testing.assert_array_equal(transform_embedding(x, "center"), x)
    a = rp.select("prune4rel", probs=probs, features=x, labels=labels, fraction=0.2, tau=0.9, embedding="raw")
    b = rp.select("prune4rel", probs=probs, features=x, labels=labels, fraction=0.2, tau=0.9, embedding="center")
    np.testing.assert_array_equal(a.indices, b.indices)


def test_whitening_gives_unit_covariance():
    x, *_ = clustered(n=2000, d=8)
    w = transform_embedding(x, "whiten").astype(np.float64)
    np.testing.assert_allclose(np.cov(w.T), np.eye(w.shape[1]), atol=1e-3)
    assert transform_embedding(x, "raw") is x
    with pytest.raises(ValueError, match="embedding"):
        transform_embedding(x, "pca")


def test_support_scale_is_the_mean_nc_of_a_uniform_subset():
    x, _, probs, _ = clustered(n=500)
    g = rescaled_cosine_graph(x, 0.9)
    c = probs.max(1)
    # expectation over uniform subsets: average NC over many random subsets of 20%
    rng = np.random.default_rng(0)
    means = []
    for _ in range(200):
        s = rng.random(500) < 0.2
        nc = np.zeros(500)
        for p in np.flatnonzero(s):
            idx, w = g.row(p)
            nc[idx] += w * c[p]
        means.append(nc.mean() / s.mean() * 0.2)
    assert support_scale(g, c, 0.2) == pytest.approx(np.mean(means), rel=0.02)


# ---------------------------------------------------------------------------------------------- options


def test_defaults_report_tau_eta_degree_and_coverage():
    x, labels, probs, _ = clustered()
    s = rp.select("prune4rel", probs=probs, features=x, labels=labels, fraction=0.2, tau=0.9)
    assert s.params["tau"] == 0.9 and s.params["eta"] == 1.0
    assert s.params["mean_degree"] > 1 and 0 < s.params["coverage"] <= 1


def test_auto_options_resolve_and_are_reported():
    x, labels, probs, _ = clustered()
    s = rp.select(
        "prune4rel", probs=probs, features=x, labels=labels, fraction=0.25, tau="auto", eta="auto",
        embedding="center", gain="exact",
    )  # fmt: skip
    assert s.params["target_degree"] == pytest.approx(16.0)  # 4 N / budget
    assert s.params["mean_degree"] == pytest.approx(16.0, abs=0.1)
    g = rescaled_cosine_graph(transform_embedding(x, "center"), s.params["tau"])
    assert s.params["eta"] == pytest.approx(support_scale(g, probs.max(1), 0.25))
    assert s.budget == 150


def test_coverage_counts_every_pick():
    x, labels, probs, _ = clustered(n=300)
    for gain in ("self", "exact"):
        s = rp.select("prune4rel", probs=probs, features=x, labels=labels, fraction=0.1, tau=0.95, gain=gain)
        g = rescaled_cosine_graph(x, 0.95)
        covered = np.zeros(300, bool)
        for p in s.indices:
            covered[g.row(int(p))[0]] = True
        assert s.params["coverage"] == pytest.approx(covered.mean(), abs=1e-4)


def test_label_prob_confidence_prefers_agreeing_labels():
    x, labels, probs, true = clustered(noise=0.4)
    a = rp.select("prune4rel", probs=probs, features=x, labels=labels, fraction=0.2, tau=0.9, gain="exact")
    b = rp.select(
        "prune4rel", probs=probs, features=x, labels=labels, fraction=0.2, tau=0.9, gain="exact",
        confidence="label_prob",
    )  # fmt: skip
    np.testing.assert_allclose(b.scores, probs[np.arange(len(labels)), labels])
    assert np.mean(labels[b.indices] != true[b.indices]) < np.mean(labels[a.indices] != true[a.indices]) - 0.05


@pytest.mark.parametrize("gain", ["self", "exact"])
@pytest.mark.parametrize("balanced", [True, False])
def test_confident_candidates_come_first_then_top_up(gain, balanced):
    x, labels, probs, _ = clustered(noise=0.4)
    flagged = label_issue_mask(labels, probs)
    kept = int((~flagged).sum())
    assert 0 < flagged.sum() < len(labels)
    small = rp.select(
        "prune4rel", probs=probs, features=x, labels=labels, budget=kept // 2, tau=0.9, gain=gain,
        prefer="confident", class_balanced=balanced,
    )  # fmt: skip
    if not balanced:
        assert not flagged[small.indices].any()
    assert small.params["flagged"] == int(flagged.sum())
    big = rp.select(
        "prune4rel", probs=probs, features=x, labels=labels, budget=kept + 30, tau=0.9, gain=gain,
        prefer="confident", class_balanced=False,
    )  # fmt: skip
    assert not flagged[big.indices[:kept]].any() and flagged[big.indices[kept:]].all()
    assert big.params["topped_up"] == 30
    # recorded gains are the real gains, not the tier offsets
    assert big.gains.max() <= (1.0 if gain == "self" else 600) and big.gains.min() >= 0


def test_confident_candidates_balanced_stay_in_tier_per_class():
    x, labels, probs, _ = clustered(noise=0.4)
    flagged = label_issue_mask(labels, probs)
    s = rp.select(
        "prune4rel", probs=probs, features=x, labels=labels, fraction=0.1, tau=0.9, gain="exact",
        prefer="confident",
    )  # fmt: skip
    for k in range(4):
        picks = s.indices[labels[s.indices] == k]
        room = int(((labels == k) & ~flagged).sum())
        assert flagged[picks].sum() == max(0, len(picks) - room)


def test_exact_gain_with_tiers_is_the_true_marginal_gain_in_tier_zero():
    x, labels, probs, _ = clustered(n=200, noise=0.4)
    flagged = label_issue_mask(labels, probs)
    c = probs.max(1)
    g = rescaled_cosine_graph(x, 0.9)
    s = rp.select(
        "prune4rel", probs=probs, features=x, labels=labels, budget=30, tau=0.9, gain="exact",
        prefer="confident", class_balanced=False,
    )  # fmt: skip
    chosen: list[int] = []
    for p, gain in zip(s.indices, s.gains, strict=True):
        base = prune4rel_objective(g, c, np.array(chosen, dtype=np.int64))
        best = max(
            prune4rel_objective(g, c, np.array([*chosen, x_], dtype=np.int64)) - base
            for x_ in np.flatnonzero(~flagged)
            if x_ not in chosen
        )
        assert gain == pytest.approx(prune4rel_objective(g, c, np.array([*chosen, p])) - base, abs=1e-9)
        assert gain == pytest.approx(best, abs=1e-9)
        chosen.append(int(p))


def test_balance_by_predicted_labels():
    x, labels, probs, _ = clustered(noise=0.4)
    s = rp.select("prune4rel", probs=probs, features=x, labels=labels, budget=40, tau=0.9, balance_by="predicted")
    counts = np.bincount(probs.argmax(1)[s.indices], minlength=4)
    assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"tau": "often"}, "tau"),
        ({"eta": "auto", "engine": "dense"}, "graph engine"),
        ({"embedding": "pca"}, "embedding"),
        ({"prefer": "clean"}, "prefer"),
        ({"balance_by": "true"}, "balance_by"),
        ({"confidence": "loss"}, "confidence"),
        ({"tau": "auto", "target_degree": 0.5}, "target_degree"),
    ],
)
def test_bad_options_are_clear_errors(kw, match):
    x, labels, probs, _ = clustered(n=100)
    with pytest.raises(ValueError, match=match):
        rp.select("prune4rel", probs=probs, features=x, labels=labels, fraction=0.2, **kw)


def test_label_aware_options_need_labels():
    x, _, probs, _ = clustered(n=100)
    for kw in ({"confidence": "label_prob"}, {"prefer": "confident"}):
        with pytest.raises(ValueError, match="labels"):
            rp.select("prune4rel", probs=probs, features=x, fraction=0.2, class_balanced=False, **kw)


def test_prune4rel_auto_is_prune4rel_with_the_recommended_options():
    from robustprune.selection.methods.prune4rel import RECOMMENDED

    x, labels, probs, _ = clustered(n=500)
    auto = rp.select("prune4rel_auto", probs=probs, features=x, labels=labels, fraction=0.2)
    same = rp.select("prune4rel", probs=probs, features=x, labels=labels, fraction=0.2, **RECOMMENDED)
    np.testing.assert_array_equal(auto.indices, same.indices)
    np.testing.assert_array_equal(auto.gains, same.gains)
    assert auto.method == "prune4rel_auto"
    # the recommended values themselves, as docs/results.md section 6 chose them on validation accuracy: a
    # change of any of them must change this test (and the docs), not pass silently
    pinned = {"tau": "auto", "eta": "auto", "confidence": "label_prob", "gain": "exact", "embedding": "whiten"}
    assert RECOMMENDED == pinned
    for key in ("confidence", "gain", "embedding"):
        assert auto.params[key] == pinned[key], key
    # tau and eta were resolved from the data: the graph has the target mean degree (4 N / budget)
    assert auto.params["target_degree"] == 20.0 and abs(auto.params["mean_degree"] - 20.0) < 1.0
    assert isinstance(auto.params["tau"], float) and isinstance(auto.params["eta"], float)
    # every option of prune4rel is an option of prune4rel_auto, with the recommended defaults laid over
    base, mine = rp.get_method("prune4rel").options, rp.get_method("prune4rel_auto").options
    assert mine == {**base, **RECOMMENDED}
    overridden = rp.select("prune4rel_auto", probs=probs, features=x, labels=labels, fraction=0.2, gain="self")
    assert overridden.params["gain"] == "self"
