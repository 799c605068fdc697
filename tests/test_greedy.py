"""The shared greedy engines of selection/core/greedy.py, checked against each other on a facility-location
objective (monotone submodular) and against plain loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustprune.selection.core.greedy import argmax_greedy, lazy_greedy, naive_greedy, stochastic_greedy


class FacilityLocation:
    """f(S) = sum_i max_{j in S} sim(i, j) with non-negative similarities: monotone submodular."""

    def __init__(self, n: int = 120, seed: int = 0):
        x = np.random.default_rng(seed).normal(size=(n, 5))
        d = ((x[:, None] - x[None]) ** 2).sum(-1)
        self.sim = np.exp(-d / 4)
        self.best = np.zeros(n)

    def gain(self, x: int) -> float:
        return float(np.maximum(self.sim[:, x] - self.best, 0).sum())

    def gains_of(self, cand: np.ndarray) -> np.ndarray:
        return np.maximum(self.sim[:, cand] - self.best[:, None], 0).sum(0)

    def add(self, x: int) -> None:
        self.best = np.maximum(self.best, self.sim[:, x])

    def value(self) -> float:
        return float(self.best.sum())


def test_lazy_greedy_equals_naive_greedy():
    a, b = FacilityLocation(), FacilityLocation()
    g0 = a.gains_of(np.arange(120))
    lazy_picks, lazy_gains, brk = lazy_greedy(g0, a.gain, a.add, 25)
    naive_picks, naive_gains = naive_greedy(b.gains_of, b.add, 120, 25)
    np.testing.assert_array_equal(lazy_picks, naive_picks)
    np.testing.assert_allclose(lazy_gains, naive_gains)
    assert brk is None and np.all(np.diff(lazy_gains) <= 1e-12)  # diminishing returns


def test_lazy_greedy_takes_a_higher_tier_only_when_the_lower_is_exhausted():
    f = FacilityLocation(n=40)
    tier = np.zeros(40, dtype=np.int64)
    tier[::2] = 1
    picks, _, _ = lazy_greedy(f.gains_of(np.arange(40)), f.gain, f.add, 30, tier=tier)
    assert (tier[picks[:20]] == 0).all() and (tier[picks[20:]] == 1).all()


def test_lazy_greedy_round_robin_over_classes():
    f = FacilityLocation(n=60)
    labels = np.arange(60) % 3
    picks, _, _ = lazy_greedy(f.gains_of(np.arange(60)), f.gain, f.add, 12, labels=labels, num_classes=3)
    assert np.bincount(labels[picks], minlength=3).tolist() == [4, 4, 4]
    assert labels[picks].tolist() == [0, 1, 2] * 4


def test_stochastic_greedy():
    naive = FacilityLocation()
    naive_greedy(naive.gains_of, naive.add, 120, 20)
    # a sample as large as the pool is the plain greedy
    full = FacilityLocation()
    picks, _ = stochastic_greedy(full.gains_of, full.add, 120, 20, epsilon=1e-9, seed=0)
    ref = FacilityLocation()
    np.testing.assert_array_equal(picks, naive_greedy(ref.gains_of, ref.add, 120, 20)[0])
    runs = []
    for seed in (0, 0, 1):
        f = FacilityLocation()
        p, _ = stochastic_greedy(f.gains_of, f.add, 120, 20, epsilon=0.3, seed=seed)
        assert np.unique(p).size == 20
        assert f.value() >= 0.9 * naive.value()
        runs.append(p)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    with pytest.raises(ValueError, match="epsilon"):
        stochastic_greedy(full.gains_of, full.add, 120, 5, epsilon=1.0)


@pytest.mark.parametrize("first", [None, 3])
def test_argmax_greedy_matches_a_plain_loop(first):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3))
    dist = torch.as_tensor(((x[:, None] - x[None]) ** 2).sum(-1))
    scores = torch.full((50,), float("inf"), dtype=torch.float64)

    def update(cur: torch.Tensor) -> None:
        torch.minimum(scores, dist[cur[0]], out=scores)
        scores.index_fill_(0, cur, float("-inf"))

    order, values = argmax_greedy(scores, update, 10, first=first)
    # the same farthest-first traversal, one step at a time in numpy
    d = dist.numpy()
    mind = np.full(50, np.inf)
    cur = int(np.argmax(mind)) if first is None else first
    expected = []
    for _ in range(10):
        expected.append(cur)
        mind = np.minimum(mind, d[cur])
        mind[expected] = -np.inf
        cur = int(np.argmax(mind))
    assert order.tolist() == expected
    assert values[0] == float("inf") and np.all(np.diff(values[1:].numpy()) <= 0)
