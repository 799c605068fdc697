"""Herding: each pick is the point closest to the running target, so the chosen mean tracks the data mean."""

from __future__ import annotations

import numpy as np
import pytest

import robustprune as rp
from robustprune.selection.methods.herding import herding_order


def brute_force(x: np.ndarray, k: int) -> list[int]:
    mu = x.mean(0)
    chosen: list[int] = []
    for t in range(k):
        target = (t + 1) * mu - x[chosen].sum(0)
        d = ((x - target) ** 2).sum(1)
        d[chosen] = np.inf
        chosen.append(int(np.argmin(d)))
    return chosen


def test_herding_is_the_closest_point_to_the_running_target():
    x = np.random.default_rng(0).normal(size=(200, 6))
    order, dist = herding_order(x, 25)
    assert order.tolist() == brute_force(x, 25)
    mu = x.mean(0)
    target0 = mu
    assert dist[0] == pytest.approx(np.linalg.norm(x[order[0]] - target0))


def test_the_running_mean_approaches_the_data_mean_faster_than_a_random_order():
    x = np.random.default_rng(1).normal(size=(500, 8)) * np.arange(1, 9)
    mu = x.mean(0)
    order, _ = herding_order(x.astype(np.float32), 50)
    rng = np.random.default_rng(2)
    for t in (5, 10, 25, 50):
        herd = np.linalg.norm(x[order[:t]].mean(0) - mu)
        rand = np.mean([np.linalg.norm(x[rng.choice(500, t, replace=False)].mean(0) - mu) for _ in range(50)])
        assert herd < 0.5 * rand, t


def test_balanced_herding_runs_per_class_with_quotas():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1, 2], [90, 60, 30])
    x = rng.normal(size=(180, 4)) + labels[:, None] * 3
    sel = rp.select("herding", features=x, labels=labels, budget=30)
    np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=3), rp.class_quotas(labels, 30))
    members = np.flatnonzero(labels == 1)
    picks_1 = [i for i in sel.indices if labels[i] == 1]
    assert picks_1 == members[brute_force(x[members], len(picks_1))].tolist()
