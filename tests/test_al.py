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
        (dict(n_query=20), {"method": "forgetting"}, "training-dynamics signal 'correct'"),
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
