"""Active learning on digits: pool growth, no repeated queries, resume, outputs and bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from robustprune.al import ALConfig, area_under_curve, run_al
from robustprune.cli import app
from robustprune.runconfig import RunConfig

BASE = dict(dataset="digits", subset=400, learner="ce", model="mlp", epochs=2, noise="sym:0.4")
AL = ALConfig(initial=30, n_query=20, rounds=3)


class Stop(Exception):
    pass


def _pool(out):
    with np.load(out / "pool.npz") as z:
        return z["indices"], z["round"]


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    out = tmp_path_factory.mktemp("al") / "kc"
    res = run_al(RunConfig(out=str(out), method="kcenter_greedy", **BASE), AL)
    return res, out


def test_pool_grows_by_n_query_without_repeats(loop):
    res, out = loop
    sizes = [r["labelled"] for r in res.rows]
    assert sizes == [30, 50, 70, 90]
    assert [r["round"] for r in res.rows] == [0, 1, 2, 3]
    assert np.unique(res.pool).size == res.pool.size == 90
    pool, added = _pool(out)
    np.testing.assert_array_equal(pool, res.pool)
    assert np.bincount(added).tolist() == [30, 20, 20, 20]
    for r in range(1, 4):  # each round's query is new: disjoint from everything labelled before it
        assert not np.intersect1d(pool[added == r], pool[added < r]).size
    for row in res.rows:
        assert 0.0 <= row["test_accuracy"] <= 1.0 and 0.0 <= row["pool_noise_rate"] <= 1.0
        assert sum(row["class_counts"]) == row["labelled"]
    assert all(r["queried"] == 20 and r["start_used"] for r in res.rows[:-1])
    assert "queried" not in res.rows[-1]


def test_outputs_are_written_and_agree(loop):
    res, out = loop
    stored = json.loads((out / "rounds.json").read_text())
    assert stored["rounds"] == json.loads(json.dumps(res.rows))
    with open(out / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["labelled"]) for r in rows] == [30, 50, 70, 90]
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc = [r["test_accuracy"] for r in res.rows]
    assert stored["summary"]["auc"] == pytest.approx(area_under_curve([30, 50, 70, 90], acc))
    assert stored["summary"]["final_test_accuracy"] == acc[-1]


def test_area_under_curve_is_the_mean_accuracy_over_the_range():
    assert area_under_curve([10, 20, 30], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert area_under_curve([0, 10], [0.0, 1.0]) == pytest.approx(0.5)
    assert area_under_curve([0, 10, 30], [0.0, 1.0, 1.0]) == pytest.approx((5 + 20) / 30)


def test_resume_continues_at_the_next_round_with_the_same_queries(loop, tmp_path):
    res, _ = loop
    out = tmp_path / "kc"
    cfg = RunConfig(out=str(out), method="kcenter_greedy", **BASE)

    def stop_after_round_one(row):
        if row["round"] == 1:
            raise Stop

    with pytest.raises(Stop):
        run_al(cfg, AL, progress=stop_after_round_one)
    assert len(json.loads((out / "rounds.json").read_text())["rounds"]) == 2
    with pytest.raises(ValueError, match="--resume"):
        run_al(cfg, AL)
    seen = []
    again = run_al(RunConfig(out=str(out), method="kcenter_greedy", resume=True, **BASE), AL, progress=seen.append)
    assert [r["round"] for r in seen] == [2, 3]  # rounds 0 and 1 were not trained again
    np.testing.assert_array_equal(again.pool, res.pool)
    assert [r["test_accuracy"] for r in again.rows] == [r["test_accuracy"] for r in res.rows]
    with pytest.raises(ValueError, match="other settings.*method"):
        run_al(RunConfig(out=str(out), method="uniform", resume=True, **BASE), AL)


@pytest.mark.parametrize(
    ("al", "cfg", "match"),
    [
        (dict(n_query=200, rounds=3), {}, "exceeds the 400 training examples"),
        (dict(n_query=20, rounds=0), {}, "rounds must be a positive integer"),
        (dict(n_query=0), {}, "n-query must be a positive integer"),
        (dict(n_query=20), {"method": "bogus"}, "bogus"),
        (dict(n_query=20, dynamics_epochs=0), {"method": "forgetting"}, "dynamics-epochs must be a positive"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, al, cfg, match):
    with pytest.raises(ValueError, match=match):
        run_al(RunConfig(out=str(tmp_path / "x"), **{**BASE, **cfg}), ALConfig(**al))
    assert not (tmp_path / "x" / "rounds.json").exists()


def test_cli_runs_a_loop_and_refuses_bad_input_in_one_line(tmp_path):
    runner = CliRunner()
    args = ["al", "--subset", "300", "--learner", "ce", "--model", "mlp", "--epochs", "1", "--n-query", "15",
            "--rounds", "2", "--method", "uncertainty", "--param", "kind=margin",
            "--out", str(tmp_path / "a")]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "final test accuracy" in res.output
    rows = json.loads((tmp_path / "a" / "rounds.json").read_text())["rounds"]
    assert [r["labelled"] for r in rows] == [15, 30, 45]
    bad = runner.invoke(app, [*args[:-1], str(tmp_path / "b"), "--n-query", "500"])
    assert bad.exit_code != 0
    assert "exceeds" in bad.output and len(bad.output.strip().splitlines()) == 1


def _manual_round_signals(tmp_path, method, al, epochs=3):
    """Round 0 of a loop re-done by hand: the same learner trained on the same pool with an
    EpochPredictions callback, its per-epoch log-probabilities and the loop's labels."""
    from robustprune.al import _initial_pool
    from robustprune.stages import RunState, load_run_data
    from robustprune.train import predict
    from robustprune.train.recorders import EpochPredictions

    c = RunConfig(method=method, **{**BASE, "epochs": epochs})
    from robustprune.runconfig import resolve_config

    c = resolve_config(c)
    ds, noisy, _rec, xv, yv = load_run_data(c)
    state = RunState.create(c, ds, noisy, x_val=xv, y_val=yv, out=None, resuming=False, log=None)
    data, tc = state.data, state.train_config
    pool = _initial_pool(noisy, al.initial_size, c.seed)
    rec = EpochPredictions(count=al.dynamics_epochs)
    learner = state.new_learner()
    learner.fit(data, pool, epochs=c.epochs, callbacks=[rec])
    probs, _ = predict(learner.scoring_model, data.x, tc.eval_batch_size, transform=data.clean)
    labels = probs.numpy().argmax(1)
    labels[pool] = noisy[pool]
    return rec, probs.numpy(), labels, pool


@pytest.mark.parametrize(
    ("method", "params", "epochs", "count", "recorded"),
    [
        ("forgetting", {}, 3, None, [0, 1, 2]),
        ("aum", {}, 3, None, [0, 1, 2]),
        ("dynamic_uncertainty", {"window": 2}, 3, None, [0, 1, 2]),
        ("tdds", {"window": 3}, 4, 3, [0, 2, 3]),
    ],
)
def test_training_dynamics_methods_query_from_per_epoch_predictions(tmp_path, method, params, epochs, count, recorded):
    """A method over training dynamics gets per-epoch signals for unlabelled examples from prediction
    passes, measured against the pseudo-labels; its first query equals select() on those signals."""
    from robustprune.seeding import derive_seed
    from robustprune.selection.api import select
    from robustprune.signals import Signals
    from robustprune.train.recorders import dynamics_from_log_probs

    al = ALConfig(initial=30, n_query=20, rounds=2, dynamics_epochs=count)
    out = tmp_path / method
    res = run_al(RunConfig(out=str(out), method=method, params=params, **{**BASE, "epochs": epochs}), al)
    assert [r["labelled"] for r in res.rows] == [30, 50, 70]
    assert all(r["dynamics_epochs"] == len(recorded) for r in res.rows[:-1])
    rec, probs, labels, pool = _manual_round_signals(tmp_path, method, al, epochs=epochs)
    assert rec.epochs == recorded and rec.log_probs.shape == (len(recorded), 400, 10)
    # the last snapshot is the trained model's prediction
    np.testing.assert_allclose(np.exp(rec.log_probs[-1].astype(np.float32)), probs, atol=2e-3)
    pool0 = res.pool[:30]
    np.testing.assert_array_equal(np.sort(pool0), np.sort(pool))
    dyn = dynamics_from_log_probs(rec.log_probs, labels)
    sig = Signals(labels=labels, probs=probs, **dyn)
    free = np.setdiff1d(np.arange(400), pool)
    want = select(method, signals=sig, budget=20, candidates=free, start=pool, class_balanced=res.config.class_balanced,
                  seed=derive_seed(0, "al", 0), **params)  # fmt: skip
    np.testing.assert_array_equal(np.sort(res.pool[30:50]), np.sort(want.indices))


def test_dynamics_from_log_probs_matches_the_logit_definitions():
    import torch

    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(4, 50, 6)).astype(np.float32)
    y = rng.integers(0, 6, 50)
    lp = torch.log_softmax(torch.from_numpy(logits), 2).numpy()
    from robustprune.train.recorders import dynamics_from_log_probs, snapshot_epochs

    d = dynamics_from_log_probs(lp, y)
    other = logits.copy()
    other[:, np.arange(50), y] = -np.inf
    np.testing.assert_allclose(d["margins"], logits[:, np.arange(50), y] - other.max(2), atol=1e-4)
    np.testing.assert_array_equal(d["correct"], logits.argmax(2) == y)
    ce = torch.nn.functional.cross_entropy(torch.from_numpy(logits).reshape(-1, 6), torch.from_numpy(np.tile(y, 4)),
                                           reduction="none").numpy().reshape(4, 50)  # fmt: skip
    np.testing.assert_allclose(d["losses"], ce, atol=1e-4)
    np.testing.assert_allclose(d["epoch_probs"].astype(np.float32), np.exp(lp), atol=1e-3)
    assert snapshot_epochs(10, None) == list(range(10))
    assert snapshot_epochs(10, 3) == [2, 6, 9]
    assert snapshot_epochs(200, 10)[-1] == 199 and len(snapshot_epochs(200, 10)) == 10
    with pytest.raises(ValueError, match="at least 1"):
        snapshot_epochs(5, 0)


def test_deepfool_acquisition_runs_in_the_loop(tmp_path):
    """A method over the on-demand DeepFool signal queries in the loop (the signal is computed each round by
    the same helper as a run's signals stage)."""
    res = run_al(
        RunConfig(out=str(tmp_path / "df"), method="deepfool", **BASE), ALConfig(initial=30, n_query=20, rounds=1)
    )
    assert [r["labelled"] for r in res.rows] == [30, 50]
    assert np.unique(res.pool).size == 50 and res.rows[0]["queried"] == 20
