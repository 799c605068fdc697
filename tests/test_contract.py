"""The contract every registered selection method meets, checked for all of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robustprune as rp
from robustprune.selection.registry import SIGNAL_NAMES

N, K, D, E = 240, 4, 8, 5


def rich_signals(seed: int = 0) -> rp.Signals:
    """Every signal a method may ask for, on clustered data with some noisy labels."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, K, N)
    true[:3] = 3  # a skewed class distribution: class 3 is larger
    labels = np.where(rng.random(N) < 0.3, rng.integers(0, K, N), true)
    centres = rng.normal(size=(K, D)) * 2
    features = (centres[true] + rng.normal(size=(N, D))).astype(np.float32)
    logits = rng.normal(size=(N, K))
    logits[np.arange(N), true] += 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    correct = rng.random((E, N)) < np.linspace(0.3, 0.9, E)[:, None]
    losses = rng.exponential(size=(E, N)).astype(np.float32)
    margins = rng.normal(size=(E, N)).astype(np.float32)
    epoch_logits = logits[None] * np.linspace(0.2, 1.0, E)[:, None, None] + rng.normal(size=(E, N, K))
    epoch_probs = (np.exp(epoch_logits) / np.exp(epoch_logits).sum(2, keepdims=True)).astype(np.float16)
    deepfool = rng.exponential(size=N).astype(np.float32)
    return rp.Signals(
        labels=labels, probs=probs, features=features, correct=correct, losses=losses, margins=margins,
        epoch_probs=epoch_probs, deepfool=deepfool, true_labels=true,
    )  # fmt: skip


SIG = rich_signals()
METHODS = rp.list_methods()


def test_every_expected_method_is_registered():
    expected = {
        "prune4rel",
        "uniform",
        "full",
        "small_loss",
        "uncertainty",
        "el2n",
        "grand",
        "forgetting",
        "aum",
        "moderate",
        "kcenter_greedy",
        "ccs",
        "confident_filter",
        "prune4rel_auto",
        "herding",
        "submodular",
        "dynamic_uncertainty",
        "contextual_diversity",
        "cal",
        "craig",
        "gradmatch",
        "glister",
        "tdds",
        "deepfool",
        "d2_pruning",
    }
    assert expected <= set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_metadata_is_complete(method):
    info = rp.get_method(method)
    assert info.description and len(info.description) < 120
    assert set(info.requires) <= set(SIGNAL_NAMES)
    if info.kind == "score":
        assert info.keep in ("high", "low")
        import sys

        scores_fn = getattr(sys.modules[info.func.__module__], f"{method}_scores")
        doc = (scores_fn.__doc__ or "").strip().splitlines()[0].lower()
        assert "higher" in doc or "lower" in doc, "*_scores docstrings state their direction on line one"
    for name, default in info.options.items():
        assert not isinstance(default, (list, dict, set)), f"{name}: defaults must be immutable"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("budget", [1, 37, N])
def test_exact_budget_unique_in_range(method, budget):
    sel = rp.select(method, signals=SIG, budget=budget, seed=3)
    assert sel.indices.dtype == np.int64 and sel.indices.shape == (budget,)
    assert np.unique(sel.indices).size == budget
    assert sel.indices.min() >= 0 and sel.indices.max() < N
    assert sel.method == method and sel.n == N
    assert sel.params["budget"] == budget and sel.params["seed"] == 3
    if sel.scores is not None:
        assert sel.scores.shape == (N,)
    if sel.gains is not None:
        assert sel.gains.shape == (budget,)


@pytest.mark.parametrize("method", METHODS)
def test_fraction_rounds(method):
    sel = rp.select(method, signals=SIG, fraction=0.3)
    assert len(sel) == round(0.3 * N)


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_under_seed(method):
    a = rp.select(method, signals=SIG, budget=50, seed=7)
    b = rp.select(method, signals=SIG, budget=50, seed=7)
    np.testing.assert_array_equal(a.indices, b.indices)
    state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    rp.select(method, signals=SIG, budget=50, seed=11)
    assert np.array_equal(np.random.get_state()[1], state[1]), "global numpy RNG must not be touched"
    assert torch.equal(torch.random.get_rng_state(), torch_state), "global torch RNG must not be touched"


@pytest.mark.parametrize("method", METHODS)
def test_numpy_and_torch_inputs_agree(method):
    info = rp.get_method(method)
    arrays = {k: v for k, v in SIG.arrays().items() if k in (*info.requires, *info.optional, "labels")}
    arrays.pop("true_labels", None)
    a = rp.select(method, **arrays, budget=60, seed=1)
    b = rp.select(
        method, **{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, budget=60, seed=1
    )
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize("method", METHODS)
def test_class_balanced_quotas(method):
    info = rp.get_method(method)
    if info.balance == "none":
        with pytest.raises(ValueError, match="class_balanced"):
            rp.select(method, signals=SIG, budget=60, class_balanced=True)
        return
    sel = rp.select(method, signals=SIG, budget=60, class_balanced=True)
    counts = np.bincount(SIG.labels[sel.indices], minlength=K)
    if info.balance == "proportional":
        np.testing.assert_array_equal(counts, rp.class_quotas(SIG.labels, 60, K))
    else:  # round robin: equal counts while no class has run out
        assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("method", METHODS)
def test_missing_required_signal_is_named(method):
    info = rp.get_method(method)
    for missing in info.requires:
        arrays = {k: v for k, v in SIG.arrays().items() if k != missing and k != "true_labels"}
        with pytest.raises(ValueError, match=f"needs the signal '{missing}'"):
            rp.select(method, **arrays, budget=10)


@pytest.mark.parametrize("method", METHODS)
def test_unknown_option_lists_the_options(method):
    with pytest.raises(ValueError, match="has no option 'bogus_option'"):
        rp.select(method, signals=SIG, budget=10, bogus_option=1)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"fraction": 0.0}, r"fraction must be in \(0, 1\]"),
        ({"fraction": 1.5}, r"fraction must be in \(0, 1\]"),
        ({"budget": N + 1}, "exceeds the number of examples"),
        ({"budget": 0}, "at least 1"),
        ({"fraction": 0.5, "budget": 3}, "exactly one of"),
        ({}, "exactly one of"),
    ],
)
def test_budget_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        rp.select("uniform", signals=SIG, **kw)


def test_unknown_method_lists_known():
    with pytest.raises(ValueError, match="known methods: .*prune4rel"):
        rp.select("prune4real", signals=SIG, budget=3)


def test_nan_in_features_is_rejected():
    f = SIG.features.copy()
    f[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"features contains NaN \(first at row 5\)"):
        rp.select("kcenter_greedy", features=f, budget=3)


def test_labels_out_of_range_of_probs():
    with pytest.raises(ValueError, match="labels must be < the number of classes"):
        rp.select("el2n", probs=SIG.probs, labels=SIG.labels + K, budget=3)


def test_class_quotas_exact_and_capped():
    labels = np.array([0] * 7 + [1] * 2 + [2] * 1)
    for b in range(0, 11):
        q = rp.class_quotas(labels, b)
        assert q.sum() == b and np.all(q <= [7, 2, 1])
    np.testing.assert_array_equal(rp.class_quotas(labels, 5), [4, 1, 0])


def test_selection_save_load_roundtrip(tmp_path):
    sel = rp.select("prune4rel", signals=SIG, budget=30, device="cpu")
    npz, sidecar = sel.save(tmp_path / "sel.npz")
    back = rp.Selection.load(npz)
    np.testing.assert_array_equal(back.indices, sel.indices)
    np.testing.assert_array_equal(back.gains, sel.gains)
    assert back.method == "prune4rel" and back.n == N and back.params["tau"] == 0.95
    assert sidecar.exists()


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"labels": 1193, "probs": 1198, "features": 1198}, "labels has 1193 examples but probs, features have 1198"),
        ({"labels": 1198, "probs": 1193, "features": 1198}, "probs has 1193 examples but labels, features have 1198"),
        ({"labels": 50, "probs": 60}, "probs has 60 examples but labels has 50"),  # a tie: labels decide
        ({"labels": 60, "correct": 59}, "correct has 59 examples but labels has 60"),
    ],
)
def test_a_signal_of_another_length_is_named(arrays, message):
    made = {}
    for name, n in arrays.items():
        if name == "labels":
            made[name] = np.zeros(n, dtype=np.int64)
        elif name == "probs":
            made[name] = np.full((n, 2), 0.5)
        elif name == "features":
            made[name] = np.ones((n, 3), dtype=np.float32)
        else:
            made[name] = np.zeros((4, n), dtype=bool)
    with pytest.raises(ValueError, match=message):
        rp.Signals(**made)
    if "correct" not in made:
        with pytest.raises(ValueError, match=message.split(" examples")[0]):
            rp.select("el2n" if "features" not in made else "grand", fraction=0.5, **made)
