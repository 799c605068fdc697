"""Confident learning (confident_filter): thresholds, confident joint, the noise-rate filter and selection."""

from __future__ import annotations

import numpy as np
import pytest

import robustprune as rp
from robustprune.selection.budget import class_quotas
from robustprune.selection.core.confident_learning import (
    confident_joint,
    estimate_joint,
    label_issue_mask,
    per_class_thresholds,
)

# Hand-made fixture, 3 classes, 11 examples. Thresholds:
#   t0 = (0.90 + 0.60 + 0.20 + 0.30) / 4 = 0.5
#   t1 = (0.80 + 0.46 + 0.15 + 0.40) / 4 = 0.4525
#   t2 = (0.90 + 0.70 + 0.40) / 3       = 2/3
# Confident true class (probabilities at or above their threshold, the largest of them):
#   x0, x1 -> 0; x2 -> 1; x3 none; x4 -> 1; x5 -> 0 (0.52 >= t0 and 0.46 >= t1: both, 0 is larger);
#   x6 -> 2; x7 none; x8, x9 -> 2; x10 none.
HAND_LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
HAND_PROBS = np.array(
    [
        [0.90, 0.05, 0.05],
        [0.60, 0.30, 0.10],
        [0.20, 0.70, 0.10],  # labelled 0, looks like 1
        [0.30, 0.30, 0.40],
        [0.10, 0.80, 0.10],
        [0.52, 0.46, 0.02],  # labelled 1, confident in 0 and 1
        [0.10, 0.15, 0.75],  # labelled 1, looks like 2
        [0.30, 0.40, 0.30],
        [0.05, 0.05, 0.90],
        [0.10, 0.20, 0.70],
        [0.25, 0.35, 0.40],
    ]
)


def test_thresholds_by_hand():
    np.testing.assert_allclose(per_class_thresholds(HAND_LABELS, HAND_PROBS), [0.5, 0.4525, 2 / 3])


def test_empty_class_threshold_is_inf():
    labels = np.array([0, 0, 1])
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1]])
    t = per_class_thresholds(labels, probs)
    assert t[2] == np.inf
    assert confident_joint(labels, probs)[:, 2].sum() == 0


def test_confident_joint_by_hand():
    c = confident_joint(HAND_LABELS, HAND_PROBS)
    assert c.dtype == np.int64
    np.testing.assert_array_equal(c, [[2, 1, 0], [1, 1, 1], [0, 0, 2]])


def test_estimate_joint_by_hand():
    q = estimate_joint(HAND_LABELS, HAND_PROBS)
    cal = np.array([[8 / 3, 4 / 3, 0], [4 / 3, 4 / 3, 4 / 3], [0, 0, 3]])  # rows scaled to n_i = 4, 4, 3
    np.testing.assert_allclose(q, cal / 11)
    assert q.sum() == pytest.approx(1.0)
    assert 1 - np.trace(q) == pytest.approx(4 / 11)


def test_estimate_joint_empty_class():
    # A class with examples always has a confident one (its most confident member reaches the mean), so
    # only an empty class has an empty row; it stays zero and Q still sums to one.
    labels = np.array([0, 0, 0, 1])
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.3, 0.6, 0.1]])
    # t = (0.8, 0.6, inf): x0, x1 -> 0, x2 none, x3 -> 1; row 0 [2, 0, 0] scaled to n_0 = 3
    np.testing.assert_allclose(estimate_joint(labels, probs) * 4, [[3, 0, 0], [0, 1, 0], [0, 0, 0]])


def test_label_issue_mask_by_hand():
    # counts round(N * Q): (0 -> 1) = round(4/3) = 1, (1 -> 0) = 1, (1 -> 2) = 1; the largest margins are
    # x2 (p1 - p0 = 0.5), x5 (p0 - p1 = 0.06) and x6 (p2 - p1 = 0.6)
    mask = label_issue_mask(HAND_LABELS, HAND_PROBS)
    assert mask.dtype == bool and mask.shape == (11,)
    np.testing.assert_array_equal(np.flatnonzero(mask), [2, 5, 6])


def test_margin_ties_flag_the_lower_index():
    # dyadic probabilities, so the margins are exact. t = (0.5, 0.46875, 0.8125).
    # given 0: x0, x3 -> 0; x1 -> 1 (0.5 >= t1); x2 none; row [2, 1, 0] -> [8/3, 4/3, 0]: flag one for (0 -> 1)
    #   margins p1 - p0: x1 = x2 = 0.25 (a tie), the lower index is flagged
    # given 1: x4 -> 1, x5 -> 0 (0.5625 >= t0, 0.4375 < t1); row [1, 1, 0]: flag one for (1 -> 0): x5
    # given 2: x6 -> 2, x7 none
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    probs = np.array(
        [
            [0.75, 0.125, 0.125],
            [0.25, 0.5, 0.25],
            [0.125, 0.375, 0.5],
            [0.875, 0.0625, 0.0625],
            [0.25, 0.5, 0.25],
            [0.5625, 0.4375, 0.0],
            [0.0625, 0.0625, 0.875],
            [0.125, 0.125, 0.75],
        ]
    )
    np.testing.assert_array_equal(confident_joint(labels, probs), [[2, 1, 0], [1, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(np.flatnonzero(label_issue_mask(labels, probs)), [1, 5])
    swapped = probs[[0, 2, 1, 3, 4, 5, 6, 7]]  # the tie now goes to the other example, still at index 1
    np.testing.assert_array_equal(np.flatnonzero(label_issue_mask(labels, swapped)), [1, 5])


def _synthetic(kind: str, n: int = 3000, k: int = 10, rate: float = 0.3, seed: int = 0):
    """A model right on the true label with high probability; ``rate`` of the given labels flipped."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), true] += 3.0
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    flip = rng.random(n) < rate
    other = (true + rng.integers(1, k, n)) % k if kind == "sym" else (true + 1) % k
    return np.where(flip, other, true), probs, flip


@pytest.mark.parametrize("kind", ["sym", "pair"])
def test_recovers_known_flips(kind):
    labels, probs, flip = _synthetic(kind)
    mask = label_issue_mask(labels, probs)
    hits = int((mask & flip).sum())
    assert hits / mask.sum() > 0.8, "precision"
    assert hits / flip.sum() > 0.8, "recall"
    q = estimate_joint(labels, probs)
    assert abs((1 - np.trace(q)) - flip.mean()) < 0.05
    if kind == "pair":  # the noise mass sits on (given i+1, true i)
        k = q.shape[0]
        pair_mass = q[(np.arange(k) + 1) % k, np.arange(k)].sum()
        assert pair_mass > 0.9 * (1 - np.trace(q))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_argmax_equal_to_label_is_never_flagged(seed):
    rng = np.random.default_rng(seed)
    n, k = 500, 5
    probs = rng.dirichlet(np.full(k, 0.7), size=n)
    labels = np.where(rng.random(n) < 0.5, probs.argmax(axis=1), rng.integers(0, k, n))
    mask = label_issue_mask(labels, probs)
    assert mask.any()
    assert not (mask & (probs.argmax(axis=1) == labels)).any()


def test_every_class_keeps_an_example():
    # class 2's only example looks like class 0: it would be flagged, but one per class is kept
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.85, 0.1, 0.05], [0.1, 0.8, 0.1], [0.1, 0.9, 0.0], [0.2, 0.7, 0.1]]
        + [[0.88, 0.02, 0.1]]
    )
    # t = (0.85, 0.8, 0.1): x6 is confident in 0 and in 2, 0 is larger; its argmax is 0, not its label
    q = estimate_joint(labels, probs)
    assert round(7 * q[2, 0]) == 1  # the noise-rate rule asks for it
    assert not label_issue_mask(labels, probs)[6]


# ---------------------------------------------------------------- selection


@pytest.fixture(scope="module")
def noisy():
    labels, probs, flip = _synthetic("sym", n=1000, k=5, seed=3)
    return labels, probs, label_issue_mask(labels, probs)


def test_select_exact_unique_deterministic(noisy):
    labels, probs, flags = noisy
    a = rp.select("confident_filter", labels=labels, probs=probs, fraction=0.3, seed=5)
    b = rp.select("confident_filter", labels=labels, probs=probs, fraction=0.3, seed=5)
    c = rp.select("confident_filter", labels=labels, probs=probs, fraction=0.3, seed=6)
    assert len(a) == 300 and np.unique(a.indices).size == 300
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(np.sort(a.indices), np.sort(c.indices))
    assert not flags[a.indices].any()
    np.testing.assert_allclose(a.scores, probs[np.arange(1000), labels])
    assert a.params["flagged"] == int(flags.sum()) and a.params["topped_up"] == 0
    assert a.params["flagged_fraction"] == pytest.approx(flags.mean())
    assert a.params["estimated_noise_rate"] == pytest.approx(1 - np.trace(estimate_joint(labels, probs)))


@pytest.mark.parametrize("class_balanced", [True, False])
def test_budget_within_kept_never_picks_flagged(noisy, class_balanced):
    labels, probs, flags = noisy
    n_kept = int((~flags).sum())
    for budget in (1, n_kept // 2, n_kept):
        sel = rp.select(
            "confident_filter", labels=labels, probs=probs, budget=budget, class_balanced=class_balanced, seed=1
        )
        assert len(sel) == budget and not flags[sel.indices].any()


def test_class_quotas_follow_given_labels_by_default(noisy):
    labels, probs, _ = noisy
    sel = rp.select("confident_filter", labels=labels, probs=probs, budget=200)
    np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=5), class_quotas(labels, 200, 5))


def test_class_quotas_over_kept_labels(noisy):
    labels, probs, flags = noisy
    sel = rp.select("confident_filter", labels=labels, probs=probs, budget=200, quotas="kept")
    np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=5), class_quotas(labels[~flags], 200, 5))


def test_given_quotas_hand_on_what_a_class_cannot_fill():
    # class 1 has 10 given labels, most of which look like class 0: it cannot fill its given-label quota
    # from its kept examples, and the rest of its share moves to the other classes
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [40, 10, 40])
    probs = np.full((90, 3), 0.05)
    probs[np.arange(90), labels] = 0.9
    probs[42:50] = [0.9, 0.05, 0.05]  # eight of class 1 look like class 0
    probs += rng.random(probs.shape) * 0.01
    probs /= probs.sum(axis=1, keepdims=True)
    flags = label_issue_mask(labels, probs)
    kept_1 = int((~flags[labels == 1]).sum())
    assert kept_1 < class_quotas(labels, 60)[1]
    sel = rp.select("confident_filter", labels=labels, probs=probs, budget=60)
    counts = np.bincount(labels[sel.indices], minlength=3)
    assert counts.sum() == 60 and counts[1] == kept_1 and not flags[sel.indices].any()
    assert abs(int(counts[0]) - int(counts[2])) <= 1


def test_unbalanced_is_plain_uniform_over_kept(noisy):
    labels, probs, flags = noisy
    from scipy import stats

    kept = np.flatnonzero(~flags)
    draws, budget = 300, 100
    hits = np.zeros(1000)
    for seed in range(draws):
        sel = rp.select("confident_filter", labels=labels, probs=probs, budget=budget, class_balanced=False,
                        seed=seed)  # fmt: skip
        hits[sel.indices] += 1
    assert hits[flags].sum() == 0
    # each kept example is in a uniform sample with probability p = budget / n_kept, independently across
    # seeds: its count over the draws is Binomial(draws, p). A sampler that favours some examples (or one too
    # regular to be random) moves the chi-square statistic far out of its distribution.
    p = budget / kept.size
    expected = draws * p
    chi2 = float((((hits[kept] - expected) ** 2) / (expected * (1 - p))).sum())
    pvalue = float(stats.chi2.sf(chi2, df=kept.size - 1))
    assert 1e-3 < pvalue < 1 - 1e-3, (chi2, kept.size)
    # and the sampler's first picks are as uniform as its later ones (pick order is random too)
    first = np.zeros(1000)
    for seed in range(draws):
        first[rp.select("confident_filter", labels=labels, probs=probs, budget=budget, class_balanced=False,
                        seed=seed).indices[:10]] += 1  # fmt: skip
    assert first[kept].max() <= stats.binom.ppf(1 - 1e-4 / kept.size, draws, 10 / kept.size)


@pytest.mark.parametrize("class_balanced", [True, False])
def test_top_up_with_least_suspicious_flagged(noisy, class_balanced):
    labels, probs, flags = noisy
    kept, flagged = np.flatnonzero(~flags), np.flatnonzero(flags)
    extra = 25
    budget = kept.size + extra
    sel = rp.select(
        "confident_filter", labels=labels, probs=probs, budget=budget, class_balanced=class_balanced, seed=2
    )
    assert len(sel) == budget and np.unique(sel.indices).size == budget
    np.testing.assert_array_equal(np.sort(sel.indices[: kept.size]), kept)
    given = probs[np.arange(1000), labels]
    expected = flagged[np.argsort(-given[flagged], kind="stable")][:extra]
    np.testing.assert_array_equal(sel.indices[kept.size :], expected)
    assert sel.params["topped_up"] == extra


def test_full_budget_keeps_everything(noisy):
    labels, probs, _ = noisy
    sel = rp.select("confident_filter", labels=labels, probs=probs, budget=1000)
    np.testing.assert_array_equal(np.sort(sel.indices), np.arange(1000))


def test_bad_quotas_option(noisy):
    labels, probs, _ = noisy
    with pytest.raises(ValueError, match="quotas must be one of"):
        rp.select("confident_filter", labels=labels, probs=probs, budget=10, quotas="true")


def test_registered_metadata():
    info = rp.get_method("confident_filter")
    assert info.kind == "sampling" and info.requires == ("labels", "probs")
    assert info.balance == "proportional" and info.default_class_balanced
    assert "confident_filter" in rp.list_methods()
