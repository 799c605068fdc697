"""Cal: the mean symmetric KL to the k nearest neighbours, largest kept (the CAL paper's end)."""

from __future__ import annotations

import numpy as np
import pytest

import robustprune as rp
from robustprune.selection.core.knn import knn_indices
from robustprune.selection.methods.cal import cal_scores


def brute(p, x, labels, k):
    out = np.zeros(len(p))
    for i in range(len(p)):
        same = np.flatnonzero(labels == labels[i]) if labels is not None else np.arange(len(p))
        same = same[same != i]
        d = ((x[same] - x[i]) ** 2).sum(1)
        nb = same[np.argsort(d, kind="stable")[:k]]
        out[i] = np.mean([0.5 * ((p[i] - p[j]) * (np.log(p[i]) - np.log(p[j]))).sum() for j in nb])
    return out


@pytest.mark.parametrize("with_labels", [True, False])
def test_scores_match_brute_force(with_labels):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=70)
    x = rng.normal(size=(70, 5))
    labels = rng.integers(0, 3, 70) if with_labels else None
    np.testing.assert_allclose(cal_scores(p, x, labels, neighbors=4, epsilon=1e-12), brute(p, x, labels, 4), rtol=1e-7)


def test_knn_excludes_self_and_keeps_the_closest():
    x = np.array([[0.0], [1.0], [3.0], [10.0]])
    assert knn_indices(x, 2).tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]


def test_keeps_the_most_contrastive_examples():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    p = np.tile([0.9, 0.05, 0.05], (40, 1))
    p[:4] = [0.05, 0.05, 0.9]  # predictions unlike every neighbour's
    sel = rp.select("cal", probs=p, features=x, budget=4, class_balanced=False, within_class=False)
    assert sorted(sel.indices.tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="needs labels"):
        rp.select("cal", probs=p, features=x, budget=4)
