"""A rank that dies under torchrun: ``torchrun --nproc_per_node=2 -m robustprune run`` with one of its two gloo
processes SIGKILLed mid-epoch or while the ranks build Prune4ReL's τ-graph together. The surviving rank must
end within seconds with one line naming the dead rank (no traceback of its own), and the run must continue
from its last checkpoint with one process or two.

The kill points are deterministic: ``tests/faultpoint/sitecustomize.py`` (first on the workers' PYTHONPATH,
outside the library) makes the chosen rank write its pid and sleep at the chosen point, and the test
SIGKILLs it there while the other rank waits for it in a collective.

What resuming guarantees (``--batch-size`` is per process, so the world size is part of the schedule):

* with 2 processes, the same as before the kill: the result equals an uninterrupted 2-process run bit for bit
  (signals, selection, every epoch's loss, test accuracy);
* with 1 process: the stored signals, the selection (Prune4ReL's graph is the same bit for bit whoever builds
  it) and the finished epochs are kept; the remaining epochs train with a global batch of 16 instead of 32, so
  the result is not the 2-process one (nor a 1-process one) and only its shape is checked.

torchrun itself prints a ``ChildFailedError`` report, with a Python traceback of torchrun's own code, whenever
a worker fails; that report is torchrun's, not robustprune's, and the tests only check that it is there.

Default suite: the timeout (two processes, no torchrun) and one kill (mid-epoch, resumed with one process);
``-m slow`` adds the graph build, a 2-process resume against an uninterrupted run, rank 0 dying, the SIGTERM
of torchrun's agent arriving first, the whole job terminated, and the other two ways a peer goes.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch.multiprocessing as mp

import robustprune.distributed as dist
from robustprune.train.engine import load_checkpoint
from tests import _distributed_workers as W

ROOT = Path(__file__).resolve().parents[1]
FAULTPOINT = Path(__file__).resolve().parent / "faultpoint"

#: digits, SOP+ on the MLP, prune4rel_auto keeping 120 of 300; 4 steps per training epoch on 2 ranks
RUN = ["run", "--subset", "300", "--warmup-epochs", "3", "--epochs", "6", "--method", "prune4rel_auto",
       "--fraction", "0.4", "--seed", "1", "--batch-size", "16", "--device", "cpu"]  # fmt: skip
#: the job ends within this many seconds of the kill (measured: 1.6-4.3 s on a loaded 2-core
#: machine); torchrun's agent would SIGKILL a survivor that ignored its SIGTERM only after 30 s
BOUND = 20.0


#: variables of the test's own environment that must not reach the jobs
_DROP = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "ROBUSTPRUNE_TEST_PAUSE", "ROBUSTPRUNE_DIST_TIMEOUT")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    # the fault point first, then this checkout (sitecustomize imports robustprune before -m sets sys.path[0])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAULTPOINT), str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    return env


def _torchrun(nproc: int, logs: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "--tee", "2", "--log-dir", str(logs), "-m", "robustprune"]  # fmt: skip


def _run(args: list[str], nproc: int, tmp: Path) -> subprocess.CompletedProcess:
    """``robustprune ARGS`` in one process or under torchrun, to the end; stdout and stderr captured."""
    launcher = [sys.executable, "-m", "robustprune"] if nproc == 1 else _torchrun(nproc, tmp / f"logs-{time.time_ns()}")
    return subprocess.run([*launcher, *args], env=_env(), capture_output=True, text=True, timeout=600, cwd=ROOT)


@dataclass
class Stopped:
    """A torchrun job after one of its ranks was SIGKILLed at a fault point."""

    returncode: int
    seconds: float  # from the kill to torchrun's exit
    console: str  # torchrun's stderr: its own lines and the ranks' stderr, prefixed [defaultN]:
    ranks: dict[int, str]  # each rank's own stderr
    pids: dict[int, int]  # the paused ranks' pids


def _kill_at(tmp: Path, out: Path, pause: str, kill: int, *, signal_torchrun: bool = False) -> Stopped:
    """Start ``torchrun --nproc_per_node=2 -m robustprune run ... --out OUT`` with the fault point ``pause``;
    once every paused rank has reported, SIGKILL rank ``kill`` (or, with ``signal_torchrun``, send SIGTERM
    to torchrun itself, as Ctrl-C or a scheduler would) and wait for the job to end."""
    logs, pidfile = tmp / "logs", tmp / "paused"
    paused = [int(item.split(":")[0]) for item in pause.split(",")]
    env = _env(ROBUSTPRUNE_TEST_PAUSE=pause, ROBUSTPRUNE_TEST_PAUSE_FILE=str(pidfile))
    with open(tmp / "console.out", "w") as so, open(tmp / "console.err", "w") as se:
        proc = subprocess.Popen([*_torchrun(2, logs), *RUN, "--out", str(out)], env=env, cwd=ROOT, stdout=so,
                                stderr=se)  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            files = {r: Path(f"{pidfile}.{r}") for r in paused}
            while not all(f.exists() for f in files.values()):
                assert proc.poll() is None, "the job ended before reaching the fault point"
                assert time.monotonic() < deadline, "the job did not reach the fault point"
                time.sleep(0.05)
            pids = {r: int(f.read_text()) for r, f in files.items()}
            time.sleep(0.2)  # the other rank is now waiting in its collective
            t0 = time.monotonic()
            if signal_torchrun:
                proc.send_signal(signal.SIGTERM)
            else:
                os.kill(pids[kill], signal.SIGKILL)
            proc.wait(timeout=120)
            seconds = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    ranks = {}
    for r in range(2):
        found = list(logs.glob(f"*/attempt_0/{r}/stderr.log"))
        ranks[r] = found[0].read_text() if found else ""
    return Stopped(proc.returncode, seconds, (tmp / "console.err").read_text(), ranks, pids)


def _lost_line(dead: int, pid: int, out: Path) -> str:
    return (f"error: rank {dead} of 2 stopped: its process (pid {pid}) ended without leaving a note, so it was "
            f"killed or crashed; continue with the same command plus --resume (run directory {out})")  # fmt: skip


def _check_stopped(s: Stopped, dead: int, out: Path) -> None:
    """The job ended soon after the kill, the survivor said which rank died in one line and no traceback."""
    survivor = 1 - dead
    context = s.console[-3000:]
    assert s.returncode != 0, context
    assert s.seconds < BOUND, (s.seconds, context)
    errors = [line for line in s.ranks[survivor].splitlines() if line.startswith("error:")]
    assert errors == [_lost_line(dead, s.pids[dead], out)], s.ranks[survivor][-3000:]
    assert "Traceback" not in s.ranks[survivor]
    assert "error:" not in s.ranks[dead] and "Traceback" not in s.ranks[dead]  # (rank 0 prints progress)
    # what a user sees on the console: the same line once, among torchrun's own report of the failure
    shown = [line for line in s.console.splitlines() if line.startswith(f"[default{survivor}]:error:")]
    assert shown == [f"[default{survivor}]:{errors[0]}"], context
    assert not any("Traceback" in line for line in s.console.splitlines() if line.startswith("[default"))
    assert "ChildFailedError" in s.console and f"rank      : {dead}" in s.console  # torchrun's report
    assert "exitcode  : -9" in s.console


def _intact(out: Path) -> None:
    """No half-written file: every artifact reads whole, no temporary file is left behind."""
    assert not list(out.glob(".*.tmp")), sorted(p.name for p in out.iterdir())
    for name in ("signals.npz", "selection.npz"):
        if (out / name).exists():
            with np.load(out / name) as z:
                for key in z.files:
                    z[key]
    json.loads((out / "config.json").read_text())


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _same_arrays(a: Path, b: Path, name: str, keys: tuple[str, ...]) -> None:
    with np.load(a / name) as x, np.load(b / name) as y:
        for key in keys:
            assert np.array_equal(x[key], y[key]), (name, key)


# ------------------------------------------------------------------------------------- the timeout itself


def test_the_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(dist.TIMEOUT_ENV, raising=False)
    assert dist.timeout() == 1800.0
    monkeypatch.setenv(dist.TIMEOUT_ENV, " 7.5 ")
    assert dist.timeout() == 7.5
    for bad in ("ten", "0", "-3", "inf", "nan"):
        monkeypatch.setenv(dist.TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=f"{dist.TIMEOUT_ENV}='{bad}' must be a positive number of seconds"):
            dist.timeout()


def test_a_lost_peer_is_no_exception_and_nothing_alone():
    assert issubclass(dist.PeerFailure, BaseException) and not issubclass(dist.PeerFailure, Exception)
    gloo = RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]:46746")
    assert dist.peer_failure(gloo) is None and dist.peer_failure(KeyboardInterrupt()) is None
    with pytest.raises(RuntimeError, match="Connection closed"), dist.peer_errors():
        raise gloo  # one process: passed on unchanged
    assert not dist.lost_peer()


def _peer_loss(tmp_path: Path, case: str) -> tuple[dict, int]:
    mp.spawn(W.peer_loss_worker, args=(2, W.free_port(), str(tmp_path), case), nprocs=2, join=True)
    return json.loads((tmp_path / "rank0.json").read_text()), int((tmp_path / "rank1.pid").read_text())


def test_a_rank_that_does_not_answer_stops_the_other_after_the_timeout(tmp_path):
    """ROBUSTPRUNE_DIST_TIMEOUT=2 and rank 1 asleep: rank 0's collective gives up after 2 s, names rank 1
    (still running), and the next collective fails at once instead of waiting again."""
    res, _ = _peer_loss(tmp_path, "timeout")
    first, again = res["first"], res["again"]
    want = "rank 1 of 2 did not answer within 2 s (ROBUSTPRUNE_DIST_TIMEOUT); its process is still running"
    assert first["message"] == want and first["ranks"] == [1]
    assert 1.9 <= first["seconds"] < 10
    assert again["message"] == want and again["seconds"] < 0.5
    assert res["lost"]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["crash", "error"])
def test_a_rank_that_ends_is_named_with_how_it_ended(tmp_path, case):
    """Rank 1 ends while rank 0 waits for it: without a word (os._exit, as SIGKILL or a crash leaves it) or
    after leaving its note (an error it printed itself); rank 0 says which at once."""
    res, pid = _peer_loss(tmp_path, case)
    want = {
        "crash": f"rank 1 of 2 stopped: its process (pid {pid}) ended without leaving a note, so it was killed or "
        "crashed",
        "error": "rank 1 of 2 stopped on an error (its own message says which)",
    }[case]
    assert res["first"]["message"] == want and res["first"]["ranks"] == [1]
    assert res["first"]["seconds"] < 5 and res["again"]["message"] == want


# ------------------------------------------------------------------------------------- torchrun, killed


def test_rank_killed_mid_epoch_stops_the_job_and_resumes_in_one_process(tmp_path):
    """Rank 1 is SIGKILLed after step 2 of training epoch 4 while rank 0 waits in DDP's gradient all-reduce:
    rank 0 names it and exits; the run then resumes from the checkpoint of epoch 3 in one process."""
    out = tmp_path / "run"
    s = _kill_at(tmp_path, out, "1:train:4:2", kill=1)
    _check_stopped(s, dead=1, out=out)
    _intact(out)
    ckpt = load_checkpoint(out / "train.ckpt")
    assert ckpt["epoch"] == 3  # the last finished epoch; the one killed mid-way is redone
    kept = {name: (out / name).read_bytes() for name in ("signals.npz", "selection.npz")}

    done = _run([*RUN, "--out", str(out), "--resume"], 1, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed after epoch 3" in done.stderr
    assert {name: (out / name).read_bytes() for name in kept} == kept  # reused, not recomputed
    m = _metrics(out)
    history = m["history"]
    assert len(history) == 6 and not (out / "train.ckpt").exists()
    assert [(h["loss"], h["steps"]) for h in history[:3]] == [(h["loss"], h["steps"]) for h in ckpt["history"]]
    subset = m["budget"]  # one process trains the remaining epochs with a global batch of 16, not 32
    assert [h["steps"] for h in history] == [math.ceil(subset / 32)] * 3 + [math.ceil(subset / 16)] * 3
    assert 0.0 < m["test_accuracy"] <= 1.0


# ------------------------------------------------------------------------------------------------- slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same run, uninterrupted, on 2 processes."""
    tmp = tmp_path_factory.mktemp("reference")
    proc = _run([*RUN, "--out", str(tmp / "run")], 2, tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


def _same_as_reference(out: Path, ref: Path) -> None:
    m, r = _metrics(out), _metrics(ref)
    assert [(h["loss"], h["steps"]) for h in m["history"]] == [(h["loss"], h["steps"]) for h in r["history"]]
    assert m["test_accuracy"] == r["test_accuracy"] and m["relabel_accuracy"] == r["relabel_accuracy"]
    _same_arrays(out, ref, "selection.npz", ("indices",))
    _same_arrays(out, ref, "signals.npz", ("probs", "features"))


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [2, 1])
def test_rank_killed_in_the_graph_build_resumes(tmp_path, reference, nproc):
    """Rank 1 is SIGKILLed once it has built its tiles of the τ-graph, while rank 0 waits to gather them; the
    signals are stored, the selection is not. Resumed with 2 processes the run equals the uninterrupted one;
    with 1 process the selection does (the same graph), the training is one process's."""
    out = tmp_path / "run"
    s = _kill_at(tmp_path, out, "1:graph", kill=1)
    _check_stopped(s, dead=1, out=out)
    _intact(out)
    assert (out / "signals.npz").exists() and not (out / "selection.npz").exists()
    done = _run([*RUN, "--out", str(out), "--resume"], nproc, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    if nproc == 2:
        _same_as_reference(out, reference)
    else:
        _same_arrays(out, reference, "selection.npz", ("indices",))
        _same_arrays(out, reference, "signals.npz", ("probs", "features"))
        assert len(_metrics(out)["history"]) == 6


@pytest.mark.slow
def test_rank_killed_mid_epoch_resumes_with_two_processes_like_an_uninterrupted_run(tmp_path, reference):
    out = tmp_path / "run"
    s = _kill_at(tmp_path, out, "1:train:4:2", kill=1)
    _check_stopped(s, dead=1, out=out)
    done = _run([*RUN, "--out", str(out), "--resume"], 2, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed after epoch 3" in done.stderr
    _same_as_reference(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["train:4:2", "graph"])
def test_rank_0_killed_is_named_by_rank_1(tmp_path, point):
    """Rank 0 (which writes the run directory and alone goes on to the greedy) dies mid-epoch or in the graph
    build: rank 1 names it; the store that holds the notes lives in torchrun's agent, not in rank 0."""
    out = tmp_path / "run"
    s = _kill_at(tmp_path, out, f"0:{point}", kill=0)
    _check_stopped(s, dead=0, out=out)
    _intact(out)


@pytest.mark.slow
def test_torchruns_sigterm_arriving_first_still_names_the_dead_rank(tmp_path):
    """Both ranks pause (rank 0 asleep in Python, in no collective); rank 1 is killed. Rank 0 learns of it
    from the SIGTERM torchrun's agent sends the survivors, and still names rank 1 rather than saying it was
    terminated."""
    out = tmp_path / "run"
    s = _kill_at(tmp_path, out, "1:train:4:2,0:train:4:2", kill=1)
    _check_stopped(s, dead=1, out=out)
    assert "closing signal SIGTERM" in s.console


@pytest.mark.slow
def test_terminating_the_whole_job_is_not_a_lost_rank(tmp_path):
    """SIGTERM to torchrun (Ctrl-C, a scheduler's stop): every rank was told to stop, none failed; each says
    "terminated" and how to continue, and no rank is reported lost."""
    out = tmp_path / "run"
    s = _kill_at(tmp_path, out, "1:train:4:2", kill=1, signal_torchrun=True)
    assert s.returncode != 0 and s.seconds < BOUND
    line = f"error: terminated; continue with the same command plus --resume (run directory {out})"
    for r in range(2):
        assert [x for x in s.ranks[r].splitlines() if x.startswith("error:")] == [line], s.ranks[r][-2000:]
        assert "Traceback" not in s.ranks[r]
    assert not re.search(r"rank \d of 2 (stopped|was terminated)", s.console)
    _intact(out)
