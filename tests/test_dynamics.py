"""Dynamic uncertainty: the windowed std of the label's probability, as a plain loop computes it."""

from __future__ import annotations

import numpy as np
import pytest

import robustprune as rp
from robustprune.selection.methods.dynamics import dynamic_uncertainty_scores


def loop(losses: np.ndarray, window: int) -> np.ndarray:
    p = np.exp(-losses[:-1])
    j = min(window, p.shape[0])
    return np.mean([p[k : k + j].std(axis=0, ddof=1) for k in range(p.shape[0] - j + 1)], axis=0)


@pytest.mark.parametrize(("epochs", "window"), [(12, 10), (6, 10), (20, 3)])
def test_scores_match_a_plain_loop(epochs, window):
    losses = np.random.default_rng(0).exponential(size=(epochs, 40))
    np.testing.assert_allclose(dynamic_uncertainty_scores(losses, window), loop(losses, window), atol=1e-12)


def test_keeps_the_examples_whose_probability_fluctuates():
    e, n = 8, 30
    steady = np.full((e, n), 0.3)
    steady[:, :5] = np.where(np.arange(e)[:, None] % 2 == 0, 0.05, 3.0)  # flips between sure and unsure
    sel = rp.select("dynamic_uncertainty", losses=steady, budget=5)
    assert sorted(sel.indices.tolist()) == [0, 1, 2, 3, 4]


def test_needs_enough_epochs():
    with pytest.raises(ValueError, match="at least 3 warm-up epochs"):
        rp.select("dynamic_uncertainty", losses=np.ones((2, 10)), budget=3)
