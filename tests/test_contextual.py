"""Contextual diversity: farthest-first traversal of predictions in symmetric KL, as a plain loop does it."""

from __future__ import annotations

import numpy as np
import pytest

import robustprune as rp
from robustprune.selection.methods.contextual import symmetric_kl_order


def sym_kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 0.5 * ((a - b) * (np.log(a) - np.log(b))).sum(-1)


def test_traversal_matches_a_plain_loop_with_the_symmetric_kl():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5) * 0.5, size=80)
    order, gains = symmetric_kl_order(p, 12, first=7, epsilon=1e-12)
    q = np.clip(p, 1e-12, None)
    q /= q.sum(1, keepdims=True)
    chosen, expected_gains = [7], [np.inf]
    mind = sym_kl(q, q[7])
    mind[7] = -np.inf
    for _ in range(11):
        j = int(np.argmax(mind))
        expected_gains.append(mind[j])
        chosen.append(j)
        mind = np.minimum(mind, sym_kl(q, q[j]))
        mind[chosen] = -np.inf
    assert order.tolist() == chosen
    np.testing.assert_allclose(gains, expected_gains, rtol=1e-9)


def test_a_zero_probability_gives_finite_divergences():
    p = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.9, 0.1]])
    sel = rp.select("contextual_diversity", probs=p, budget=3, class_balanced=False)
    assert np.isfinite(sel.gains[1:]).all()


def test_balanced_quotas_and_diverse_picks():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], [60, 40])
    p = rng.dirichlet(np.ones(4), size=100)
    sel = rp.select("contextual_diversity", probs=p, labels=labels, budget=10)
    np.testing.assert_array_equal(np.bincount(labels[sel.indices]), rp.class_quotas(labels, 10))
    with pytest.raises(ValueError, match="epsilon"):
        rp.select("contextual_diversity", probs=p, labels=labels, budget=10, epsilon=0)
