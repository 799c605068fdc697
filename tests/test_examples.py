"""Tests of the bundled examples (robustprune.examples)."""

import json

import numpy as np
import pytest

from robustprune import Signals
from robustprune.examples import EXAMPLES, _symmetric_noise, digits_signals

N_DIGITS = 1797


@pytest.fixture(scope="module")
def digits() -> Signals:
    return digits_signals(noise_rate=0.4, seed=0)


def test_digits_shapes_and_dtypes(digits):
    assert isinstance(digits, Signals)
    assert digits.n == N_DIGITS
    assert digits.labels.shape == (N_DIGITS,)
    assert digits.true_labels.shape == (N_DIGITS,)
    assert digits.probs.shape == (N_DIGITS, 10)
    assert digits.features.ndim == 2 and digits.features.shape[0] == N_DIGITS
    assert 8 <= digits.features.shape[1] <= 64
    assert digits.features.dtype == np.float32 and digits.probs.dtype == np.float32
    assert np.isfinite(digits.features).all()
    assert set(np.unique(digits.true_labels)) == set(range(10))


def test_digits_noise_rate_is_exact(digits):
    flipped = int(np.sum(digits.labels != digits.true_labels))
    assert flipped == round(0.4 * N_DIGITS)
    assert digits.noise_rate() == pytest.approx(round(0.4 * N_DIGITS) / N_DIGITS)
    assert digits.meta["noise_rate"] == pytest.approx(digits.noise_rate())


@pytest.mark.parametrize("rate", [0.0, 0.2])
def test_digits_other_noise_rates(rate):
    sig = digits_signals(noise_rate=rate, seed=3)
    assert int(np.sum(sig.labels != sig.true_labels)) == round(rate * N_DIGITS)


def test_digits_probs_are_distributions(digits):
    assert (digits.probs >= 0).all()
    np.testing.assert_allclose(digits.probs.sum(axis=1), 1.0, atol=1e-5)


def test_digits_probs_are_informative(digits):
    # Out-of-fold predictions of a model trained on noisy labels still recover most clean labels, and
    # give the given label less probability where it is wrong: the signal the selection methods rely on.
    assert np.mean(digits.probs.argmax(1) == digits.true_labels) > 0.8
    p_given = digits.probs[np.arange(digits.n), digits.labels]
    noisy = digits.labels != digits.true_labels
    assert p_given[noisy].mean() < p_given[~noisy].mean()


def test_digits_deterministic_under_seed(digits):
    again = digits_signals(noise_rate=0.4, seed=0)
    for name in ("labels", "probs", "features", "true_labels"):
        np.testing.assert_array_equal(getattr(again, name), getattr(digits, name))
    other = digits_signals(noise_rate=0.4, seed=1)
    assert not np.array_equal(other.labels, digits.labels)


def test_digits_meta_is_json_and_round_trips(digits, tmp_path):
    json.dumps(digits.meta)
    path = digits.save(tmp_path / "digits.npz")
    back = Signals.load(path)
    np.testing.assert_array_equal(back.labels, digits.labels)
    np.testing.assert_array_equal(back.features, digits.features)
    assert back.meta == digits.meta


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), "0.4", True])
def test_digits_rejects_bad_noise_rate(rate):
    with pytest.raises(ValueError, match="noise_rate"):
        digits_signals(noise_rate=rate)


def test_examples_registry():
    assert EXAMPLES["digits"] is digits_signals


def test_symmetric_noise_flips_to_uniform_other_class():
    k, n = 5, 50_000
    clean = np.arange(n) % k
    noisy = _symmetric_noise(clean, 1.0, k, seed=0)
    assert np.all(noisy != clean)
    offsets = (noisy - clean) % k
    counts = np.bincount(offsets, minlength=k)
    assert counts[0] == 0
    np.testing.assert_allclose(counts[1:] / n, 1 / (k - 1), atol=0.01)


def test_symmetric_noise_exact_count_and_no_mutation():
    clean = np.arange(101) % 3
    before = clean.copy()
    noisy = _symmetric_noise(clean, 0.25, 3, seed=7)
    assert int(np.sum(noisy != clean)) == round(0.25 * 101)
    np.testing.assert_array_equal(clean, before)
    np.testing.assert_array_equal(_symmetric_noise(clean, 0.0, 3), clean)
