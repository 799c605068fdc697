"""TDDS (Zhang et al., CVPR 2024): scores against a plain loop, its edge cases, the epoch_probs signal and a run."""

from __future__ import annotations

import numpy as np
import pytest

import robustprune as rp
from robustprune.selection.methods.dynamics import tdds_scores


def _probs(rng, e, n, k, dtype=np.float64):
    logits = np.cumsum(rng.normal(size=(e, n, k)), axis=0)
    p = np.exp(logits - logits.max(2, keepdims=True))
    return (p / p.sum(2, keepdims=True)).astype(dtype)


def _reference(p, trajectory, window, decay, eps=1e-12):
    """Spec 3.7 as plain loops over examples, steps, classes and windows."""
    p = np.asarray(p, dtype=np.float64)
    t, j, beta = trajectory, window, decay
    out = np.zeros(p.shape[1])
    for i in range(p.shape[1]):
        delta = []
        for s in range(t - 1):
            total = 0.0
            for c in range(p.shape[2]):
                a, b = p[s + 1, i, c], p[s, i, c]
                total += abs(a * (np.log(a + eps) - np.log(b + eps)))
            delta.append(total)
        for k in range(t - j + 1):
            w = delta[k : k + j - 1]
            mean = sum(w) / len(w)
            v = sum((x - mean) ** 2 for x in w) ** 0.5
            out[i] += beta * (1 - beta) ** (t - j - k) * v
    return out


@pytest.mark.parametrize(("trajectory", "window", "decay"), [(12, 10, 0.9), (12, 4, 0.9), (8, 3, 0.5), (9, 9, 1.0)])
def test_equals_a_plain_loop(trajectory, window, decay):
    p = _probs(np.random.default_rng(0), 12, 30, 4)
    got = tdds_scores(p, trajectory=trajectory, window=window, decay=decay)
    np.testing.assert_allclose(got, _reference(p, trajectory, window, decay), rtol=1e-10, atol=1e-12)


def test_defaults_use_every_epoch_and_a_window_of_ten_at_most():
    rng = np.random.default_rng(1)
    p = _probs(rng, 14, 20, 3)
    np.testing.assert_allclose(tdds_scores(p), _reference(p, 14, 10, 0.9), rtol=1e-10)
    short = p[:6]
    np.testing.assert_allclose(tdds_scores(short), _reference(short, 6, 6, 0.9), rtol=1e-10)


def test_a_constant_trajectory_scores_zero_and_zero_probabilities_stay_finite():
    p = np.tile(np.array([0.7, 0.3, 0.0]), (6, 5, 1))
    assert np.array_equal(tdds_scores(p, window=3), np.zeros(5))
    q = _probs(np.random.default_rng(2), 6, 5, 3)
    q[:, :, 2] = 0.0  # a class never predicted: ε keeps the logarithm finite
    q /= q.sum(2, keepdims=True)
    assert np.isfinite(tdds_scores(q, window=3)).all()


def test_the_decay_weights_the_last_window_most():
    # two examples with the same single jump of their probabilities: example 0 in the first step, example 1 in the
    # last; with J = 3 each jump lies in exactly one window (the first / the last), so only the weights differ
    e, beta = 8, 0.9
    p = np.tile(np.array([0.6, 0.4]), (e, 2, 1))
    p[1:, 0] = [0.2, 0.8]
    p[-1, 1] = [0.2, 0.8]
    s = tdds_scores(p, window=3, decay=beta)
    assert s[1] > s[0] > 0
    np.testing.assert_allclose(s[1] / s[0], (1 - beta) ** -(e - 3))


def test_short_trajectories_and_bad_options_give_clear_errors():
    p = _probs(np.random.default_rng(3), 5, 4, 3)
    with pytest.raises(ValueError, match="at least 3 warm-up epochs, got 2; record more epochs"):
        tdds_scores(p[:2])
    with pytest.raises(ValueError, match="window of 6 epochs is longer than the trajectory of 5 epochs"):
        tdds_scores(p, window=6)
    with pytest.raises(ValueError, match="window of 5 epochs is longer than the trajectory of 4"):
        tdds_scores(p, trajectory=4, window=5)
    with pytest.raises(ValueError, match="window must be at least 3"):
        tdds_scores(p, window=2)
    with pytest.raises(ValueError, match="trajectory must be between 3 and the 5 recorded epochs"):
        tdds_scores(p, trajectory=6)
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\]"):
        tdds_scores(p, decay=0.0)


def test_select_keeps_the_highest_unbalanced_by_default_and_needs_epoch_probs():
    rng = np.random.default_rng(4)
    p = _probs(rng, 6, 40, 3, np.float16)
    labels = rng.integers(0, 3, 40)
    sel = rp.select("tdds", epoch_probs=p, labels=labels, budget=10, window=4)
    scores = tdds_scores(p, window=4)
    assert set(sel.indices) == set(np.argsort(-scores, kind="stable")[:10])
    assert sel.params["class_balanced"] is False and sel.params["decay"] == 0.9
    with pytest.raises(ValueError, match=r"needs the signal 'epoch_probs' \(per-epoch softmax.*extra_signals"):
        rp.select("tdds", labels=labels, budget=10)


def test_epoch_probs_signal_is_validated_and_round_trips_as_float16(tmp_path):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 10)
    p = _probs(rng, 4, 10, 3, np.float16)
    sig = rp.Signals(labels=labels, epoch_probs=p)
    assert sig.epoch_probs.dtype == np.float16 and sig.num_classes == 3
    back = rp.Signals.load(sig.save(tmp_path / "s.npz"))
    np.testing.assert_array_equal(back.epoch_probs, p)
    assert back.subset([1, 4]).epoch_probs.shape == (4, 2, 3)
    with pytest.raises(ValueError, match="epoch_probs must have shape"):
        rp.Signals(labels=labels, epoch_probs=p[0])
    with pytest.raises(ValueError, match=r"epoch_probs rows must sum to 1 \(epoch 0, example 0"):
        rp.Signals(labels=labels, epoch_probs=p.astype(np.float32) * 0.5)
    bad = p.copy()
    bad[2, 7, 1] = np.nan
    with pytest.raises(ValueError, match=r"epoch_probs contains NaN or infinity \(epoch 2, example 7\)"):
        rp.Signals(labels=labels, epoch_probs=bad)
    with pytest.raises(ValueError, match="epoch_probs has 9 examples but labels has 10"):
        rp.Signals(labels=labels, epoch_probs=p[:, :9])
    with pytest.raises(ValueError, match="epoch_probs has 3 classes but probs has 2"):
        rp.Signals(labels=labels % 2, probs=np.full((10, 2), 0.5), epoch_probs=p)


def test_the_recorder_hands_epoch_probs_to_signals_only_when_asked():
    import torch

    from robustprune.train import DynamicsRecorder
    from robustprune.train.engine import RunInfo

    class _Data:
        num_samples, num_classes, x = 4, 3, torch.zeros(4, 2)

    for probs in (False, True):
        rec = DynamicsRecorder(probs=probs)
        rec.on_train_start(RunInfo(None, _Data(), torch.arange(4), "warmup", 2))
        for epoch in range(2):
            rec.on_epoch_start(epoch)
            rec.on_batch_end(torch.arange(4), torch.randn(4, 3), None, torch.tensor([0, 1, 2, 0]))
        kw = rec.signals_kwargs()
        assert ("epoch_probs" in kw) == probs
        if probs:
            assert kw["epoch_probs"].shape == (2, 4, 3) and kw["epoch_probs"].dtype == np.float16


def test_a_tdds_run_records_epoch_probs_and_a_shared_warmup_asks_for_both(tmp_path):
    from robustprune.pipeline import make_signals, run
    from robustprune.runconfig import RunConfig, resolve_config
    from robustprune.stages import on_demand_signals

    rng = np.random.default_rng(0)
    rows = tmp_path / "rows.npz"
    y = np.repeat(np.arange(3), 40)
    x = (rng.normal(size=(120, 6)) + y[:, None]).astype(np.float32)
    np.savez(rows, x=x, y=y, x_test=x[:30], y_test=y[:30])
    base = dict(dataset="arrays", dataset_params={"path": str(rows)}, learner="ce", warmup_epochs=3, epochs=3,
                device="cpu", noise="sym:0.2")  # fmt: skip
    res = run(RunConfig(method="tdds", fraction=0.5, **base))
    assert res.signals.epoch_probs.shape == (3, 120, 3) and res.signals.epoch_probs.dtype == np.float16
    assert res.metrics["budget"] == 60 and res.signals.meta["on_demand_signals"] == ["epoch_probs"]
    # a shared warm-up asks for on-demand signals by name; other methods get none
    both = make_signals(RunConfig(method="uniform", extra_signals=["deepfool", "epoch_probs"], **base))
    assert both.deepfool.shape == (120,) and both.epoch_probs.shape == (3, 120, 3)
    assert on_demand_signals(resolve_config(RunConfig(method="el2n", **base))) == ()
    assert on_demand_signals(resolve_config(RunConfig(method="deepfool", **base))) == ("deepfool",)
    with pytest.raises(ValueError, match="extra_signals has 'bogus'"):
        RunConfig(extra_signals=["bogus"])


def test_a_bench_group_warms_up_once_for_every_on_demand_signal_its_methods_need():
    from robustprune.bench import build_spec, expand

    spec = build_spec(
        {"datasets": ["digits"], "noises": ["sym:0.2"], "learners": ["ce"], "seeds": [0],
         "methods": ["uniform", "tdds", "deepfool"], "fractions": [0.5],
         "run": {"subset": 100, "warmup_epochs": 3, "epochs": 3}}
    )  # fmt: skip
    groups, cells = expand(spec)
    assert all(g.config.extra_signals == ("epoch_probs", "deepfool") for g in groups)
    plain = build_spec({"datasets": ["digits"], "noises": ["sym:0.2"], "learners": ["ce"], "seeds": [0],
                        "methods": ["uniform"], "fractions": [0.5]})  # fmt: skip
    assert all(g.config.extra_signals == () for g in expand(plain)[0])
