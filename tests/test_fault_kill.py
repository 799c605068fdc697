"""Kill at any point: SIGKILL ``run``, ``bench`` and ``al`` at moments keyed to what they have written (a
checkpoint, the signals, the selection, a cell, a round), then continue them as the error message says; every
result must equal an uninterrupted one, and no artifact may be left truncated.

The default suite tries 4 kill points (run: at its warm-up checkpoint and at its selection; bench: at a cell's
write; al: after a round); ``-m slow`` adds 32 at random delays (0-0.6 s) after random events (16 for run,
each killed a second time during its resume; 8 for bench; 8 for al). Each is asserted on its own.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

RUN = ["run", "--subset", "300", "--warmup-epochs", "3", "--epochs", "6", "--method", "prune4rel_auto",
       "--fraction", "0.4", "--seed", "1"]  # fmt: skip
BENCH = ["bench", "--dataset", "digits", "--subset", "300", "--method", "uniform,prune4rel_auto", "--fraction",
         "0.3,0.5", "--seed", "0", "--epochs", "4", "--warmup-epochs", "2", "--no-figures"]  # fmt: skip
AL = ["al", "--subset", "300", "--rounds", "3", "--initial", "30", "--n-query", "30", "--epochs", "5"]


def _start(args: list[str], out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "robustprune", *args, "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def _finish(args: list[str], out: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = _start(args, out, *extra)
    _, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


def _kill_when(args: list[str], out: Path, appears: str, delay: float) -> bool:
    """Start the command, SIGKILL it ``delay`` seconds after ``out/appears`` exists (glob); False when it
    finished first."""
    proc = _start(args, out)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(out.glob(appears)):
        time.sleep(0.02)
    time.sleep(delay)
    if proc.poll() is not None:
        proc.communicate()
        return False
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return True


def _intact(out: Path) -> None:
    """Every result file parses whole (atomic writes: a kill leaves the old file or the new one, never half)."""
    for p in out.rglob("*"):
        if p.name.endswith(".tmp") or not p.is_file():
            continue
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                for k in z.files:
                    z[k]
        elif p.suffix == ".csv":
            list(csv.reader(p.open()))


def _kill_points(events: list[str], slow: int) -> list[tuple[str, float]]:
    points = [(e, 0.0) for e in events]
    if slow:
        rng = random.Random(0)
        points += [(rng.choice(events), round(rng.uniform(0.0, 0.6), 2)) for _ in range(slow)]
    return points


# ------------------------------------------------------------------------------------------------------ run

RUN_EVENTS = ["warmup.ckpt", "signals.npz", "selection.npz", "train.ckpt"]


@pytest.fixture(scope="module")
def run_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert _finish(RUN, out).returncode == 0
    return out


def _check_run(out: Path, ref: Path) -> None:
    m, r = (json.loads((d / "metrics.json").read_text()) for d in (out, ref))
    assert m["test_accuracy"] == r["test_accuracy"] and m["subset_noise_rate"] == r["subset_noise_rate"]
    for name, key in (("selection.npz", "indices"), ("signals.npz", "probs"), ("signals.npz", "features")):
        with np.load(out / name) as a, np.load(ref / name) as b:
            assert np.array_equal(a[key], b[key]), (name, key)


@pytest.mark.parametrize("event, delay", [("warmup.ckpt", 0.0), ("selection.npz", 0.0)])
def test_run_killed_at_any_point_resumes_to_the_same_result(tmp_path, run_reference, event, delay):
    out = tmp_path / "run"
    assert _kill_when(RUN, out, event, delay), "the run finished before the kill"
    _intact(out)
    done = _finish(RUN, out, "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    _check_run(out, run_reference)


@pytest.mark.slow
@pytest.mark.parametrize("event, delay", _kill_points(RUN_EVENTS, 16)[len(RUN_EVENTS) :])
def test_run_killed_at_random_moments_resumes_to_the_same_result(tmp_path, run_reference, event, delay):
    out = tmp_path / "run"
    killed = _kill_when(RUN, out, event, delay)
    _intact(out)
    if killed:  # and once more during the resume, at the same moment
        _kill_when([*RUN, "--resume"], out, event, delay)
        _intact(out)
    done = _finish(RUN, out, "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    _check_run(out, run_reference)


# ---------------------------------------------------------------------------------------------------- bench


def _results(out: Path) -> dict[str, tuple[str, str]]:
    with (out / "results.csv").open() as fh:
        return {r["cell"]: (r["test_accuracy"], r["subset_noise_rate"]) for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def bench_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "sweep"
    assert _finish(BENCH, out).returncode == 0
    return _results(out)


BENCH_EVENTS = ["warmup/*/signals.npz", "cells/*/*/selection.npz", "cells/*/*/metrics.json"]


def _bench_case(tmp_path: Path, reference: dict, event: str, delay: float, must_kill: bool) -> None:
    out = tmp_path / "sweep"
    killed = _kill_when(BENCH, out, event, delay)
    assert killed or not must_kill, "the sweep finished before the kill"
    _intact(out)
    done = _finish(BENCH, out)  # the same command continues (finished cells are kept)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _results(out) == reference


def test_bench_killed_at_a_cell_write_continues_to_the_same_table(tmp_path, bench_reference):
    _bench_case(tmp_path, bench_reference, "cells/*/*/metrics.json", 0.0, must_kill=True)


@pytest.mark.slow
@pytest.mark.parametrize("event, delay", _kill_points(BENCH_EVENTS, 8)[len(BENCH_EVENTS) :])
def test_bench_killed_at_random_moments_continues_to_the_same_table(tmp_path, bench_reference, event, delay):
    _bench_case(tmp_path, bench_reference, event, delay, must_kill=False)


# ------------------------------------------------------------------------------------------------------- al


@pytest.fixture(scope="module")
def al_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "loop"
    assert _finish(AL, out).returncode == 0
    return json.loads((out / "rounds.json").read_text())["rounds"]


def _rounds(out: Path) -> list[tuple]:
    rows = json.loads((out / "rounds.json").read_text())["rounds"]
    return [(r["round"], r["labelled"], r["test_accuracy"]) for r in rows]


def _al_case(tmp_path: Path, reference: list, event: str, delay: float, must_kill: bool) -> None:
    out = tmp_path / "loop"
    killed = _kill_when(AL, out, event, delay)
    assert killed or not must_kill, "the loop finished before the kill"
    _intact(out)
    done = _finish(AL, out, "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _rounds(out) == [(r["round"], r["labelled"], r["test_accuracy"]) for r in reference]


def test_al_killed_after_a_round_resumes_to_the_same_rounds(tmp_path, al_reference):
    _al_case(tmp_path, al_reference, "rounds.json", 0.0, must_kill=True)


@pytest.mark.slow
@pytest.mark.parametrize("event, delay", _kill_points(["pool.npz", "rounds.json"], 8)[2:])
def test_al_killed_at_random_moments_resumes_to_the_same_rounds(tmp_path, al_reference, event, delay):
    _al_case(tmp_path, al_reference, event, delay, must_kill=False)


def test_a_leftover_temporary_file_is_not_taken_for_a_result(tmp_path, run_reference):
    # a kill during an atomic write leaves ".NAME.XXXX.tmp" beside the old file; resume must ignore it
    out = tmp_path / "run"
    shutil.copytree(run_reference, out)
    (out / "metrics.json").unlink()
    (out / ".metrics.json.abcd.tmp").write_text('{"test_accuracy": 0.0')  # half a file
    done = _finish(RUN, out, "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    _check_run(out, run_reference)
