"""Named random streams: consumers given the same seed draw independent numbers."""

import numpy as np
import pytest

import robustprune as rp
from robustprune.data.base import stratified_indices
from robustprune.noise import apply_noise
from robustprune.seeding import derive_seed, stream


def test_streams_are_stable_and_separated_by_name():
    a = stream(0, "uniform").random(5)
    np.testing.assert_array_equal(a, stream(0, "uniform").random(5))
    assert not np.allclose(a, stream(0, "noise").random(5))
    assert not np.allclose(a, stream(1, "uniform").random(5))
    assert not np.allclose(a, np.random.default_rng(0).random(5))
    assert derive_seed(3, "x", 1) == derive_seed(3, "x", 1) != derive_seed(3, "x", 2)
    assert 0 <= derive_seed(2**40 + 5, "y") < 2**63


@pytest.mark.parametrize("spec", ["sym:0.4", "asym:0.4"])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_pruning_is_independent_of_the_noise_drawn_with_the_same_seed(spec, seed):
    # With one shared stream, asymmetric noise (u < rate flips) and uniform pruning (keep the largest u)
    # picked complementary sets: a "random" subset held no noisy label at all.
    n = 6000
    y = np.arange(n) % 10
    noisy, _ = apply_noise(y, spec, num_classes=10, seed=seed)
    wrong = noisy != y
    for method in ("uniform", "ccs"):
        if method == "ccs":  # stratified sampling on a difficulty score that knows nothing of the noise
            losses = stream(99, "test-losses").random((2, n))
            sel = rp.select("ccs", losses=losses, fraction=0.2, seed=seed, score="loss", strata=5)
        else:
            sel = rp.select(method, labels=noisy, fraction=0.2, seed=seed)
        rate = wrong[sel.indices].mean()
        # 1200 draws from a 40% population: 5 standard deviations is about 0.07
        assert abs(rate - wrong.mean()) < 0.07, (method, rate)


def test_subset_draw_is_independent_of_the_noise_draw():
    y = np.arange(20000) % 10
    idx = stratified_indices(y, 2000, 0)
    u_noise = stream(0, "noise").random(20000)
    u_subset = stream(0, "subset").random(20000)
    assert abs(np.corrcoef(u_noise, u_subset)[0, 1]) < 0.05
    assert idx.size == 2000
