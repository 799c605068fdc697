"""Rough edges a new user hits, each with the command that showed it: bad files end in one line, piped output
is never wrapped inside a value."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from robustprune.cli import app


@pytest.mark.parametrize(
    "content, expected",
    [
        (bytes(range(256)) * 2, "is not a .npz file"),  # truncated or random bytes
        (b"x,y\n1,2\n", "is not a .npz file"),  # a text file
        (None, "lacks key 'x'"),  # a .npz without x
    ],
)
@pytest.mark.parametrize("how", ["--data-param", "--data-dir"])
def test_a_corrupt_arrays_file_gives_one_line(tmp_path, content, expected, how):
    bad = tmp_path / "bad.npz"
    if content is None:
        np.savez(bad, y=np.arange(4))
    else:
        bad.write_bytes(content)
    where = ["--data-param", f"path={bad}"] if how == "--data-param" else ["--data-dir", str(bad)]
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--dataset", "arrays", *where, "--out", str(out)])
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], r.output
    assert "Traceback" not in r.output and not out.exists()


def test_piped_output_is_never_wrapped_and_has_no_trailing_spaces():
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run([sys.executable, "-m", "robustprune", "methods"], capture_output=True, text=True,
                          env=env, check=True)  # fmt: skip
    lines = done.stdout.splitlines()
    assert not [x for x in lines if x != x.rstrip()]
    # every method's row holds its whole name and its whole description on one line
    import robustprune as rp

    for name in ("contextual_diversity", "prune4rel_auto"):
        row = next(x for x in lines if f" {name} " in x)
        assert " ".join(rp.get_method(name).description.split()) in " ".join(row.split())
    assert max(len(x) for x in lines) > 120  # wider than a terminal's 80 columns: nothing was folded


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustprune", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture()
def signals_file(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    path = tmp_path / "sig.npz"
    np.savez(path, labels=rng.integers(0, 3, n), probs=rng.dirichlet(np.ones(3), n).astype(np.float32),
             features=rng.normal(size=(n, 8)).astype(np.float32))  # fmt: skip
    return path


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--budget", "ten"], "Invalid value for '--budget'"),  # a type error: one line, not a box
        (["--nope"], "No such option: --nope"),
        (["--param", "tau=2", "--method", "prune4rel"], "tau must be in [0, 1]"),  # an empty graph otherwise
        (["--out", "{tmp}"], "is a folder; name the file to write"),  # it would write {tmp}.npz beside it
        (["--out", "/proc/robustprune-x.npz"], "/proc/robustprune-x.npz: cannot write here"),  # not a temp name
    ],
)
def test_select_errors_are_one_line_in_the_users_terms(tmp_path, signals_file, args, expected):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    base = ["select", "--signals", str(signals_file), "--fraction", "0.3"]
    if "--method" not in args:
        base += ["--method", "uniform"]
    if "--out" not in args:
        base += ["--out", str(tmp_path / "sel.npz")]
    done = _cli(*base, *args)
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert expected in lines[0] and "Traceback" not in done.stderr and ".tmp" not in lines[0]
    assert not (tmp_path / "sel.npz").exists() and not tmp_path.with_suffix(".npz").exists()


@pytest.mark.parametrize("content, suffix", [(b"1 2 3\n", ".npz"), (b"1 2 3\n", ".npy"), (bytes(300), ".npz")])
def test_a_selection_file_that_is_not_numpy_gives_one_line(tmp_path, content, suffix):
    bad = tmp_path / f"sel{suffix}"
    bad.write_bytes(content)
    r = CliRunner().invoke(app, ["run", "--selection", str(bad), "--out", str(tmp_path / "run")])
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and f"is not a numpy {suffix} file" in lines[0], r.output
    assert "pickle" not in r.output


@pytest.mark.parametrize(
    "method, param, expected",
    [
        ("prune4rel", "max_neighbors=abc", "option max_neighbors of method 'prune4rel' takes int | None"),
        ("prune4rel_auto", "target_degree=abc", "option target_degree of method 'prune4rel_auto' takes float"),
    ],
)
def test_text_where_a_method_option_takes_a_number_is_named(tmp_path, signals_file, method, param, expected):
    r = CliRunner().invoke(app, ["select", "--signals", str(signals_file), "--method", method, "--param", param,
                                 "--fraction", "0.3", "--out", str(tmp_path / "sel.npz")])  # fmt: skip
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and expected in lines[0], r.output
    assert "not supported between" not in r.output and "could not convert" not in r.output


def test_options_that_take_text_still_take_it(signals_file):
    import robustprune as rp

    sig = rp.Signals.load(signals_file)
    assert rp.select("prune4rel", signals=sig, fraction=0.3, tau="auto").indices.size == 36
    assert rp.select("uncertainty", signals=sig, fraction=0.3, kind="margin").indices.size == 36


@pytest.mark.parametrize(
    "command, mine, theirs",
    [
        (["run", "--subset", "200", "--epochs", "1", "--warmup-epochs", "1"], "bench.json", "robustprune bench sweep"),
        (["al", "--rounds", "1"], "config.json", "robustprune run"),
        (["bench", "--method", "uniform", "--fraction", "0.5", "--subset", "200"], "config.json", "robustprune run"),
        (["run", "--subset", "200", "--force"], "al_config.json", "robustprune al loop"),
    ],
)
def test_a_tool_refuses_a_directory_another_tool_made(tmp_path, command, mine, theirs):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / mine).write_text("{}\n")
    before = sorted(p.name for p in out.iterdir())
    r = CliRunner().invoke(app, [*command, "--out", str(out)])
    lines = [x for x in r.output.splitlines() if x.strip() and not x.startswith(("data ", "noise "))]
    assert r.exit_code == 2 and lines[-1].startswith("error: ") and f"holds a {theirs}" in r.output, r.output
    assert "choose another --out" in lines[-1]
    assert sorted(p.name for p in out.iterdir()) == before  # nothing mixed in


def test_a_full_disk_ends_in_one_line_and_keeps_the_previous_file(tmp_path, signals_file, monkeypatch):
    import errno

    out = tmp_path / "sel.npz"
    args = ["select", "--signals", str(signals_file), "--method", "uniform", "--fraction", "0.3", "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = out.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    r = CliRunner().invoke(app, [*args, "--force", "--seed", "3"])
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0] == f"error: {out}: cannot write (No space left on device)"
    assert out.read_bytes() == before  # the earlier selection is intact
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no half-written file left


TINY_BENCH = ["bench", "--dataset", "digits", "--subset", "200", "--method", "uniform", "--fraction", "0.5",
              "--epochs", "1", "--warmup-epochs", "1", "--no-figures"]  # fmt: skip


def test_two_sweeps_on_one_directory_the_second_is_refused_while_the_first_lives(tmp_path):
    import json
    import socket

    out = tmp_path / "sweep"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "bench.lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        r = CliRunner().invoke(app, [*TINY_BENCH, "--out", str(out)])
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert r.exit_code == 2 and len(lines) == 1, r.output
        assert f"another robustprune bench (PID {holder.pid}) is running on {out}" in lines[0]
        assert sorted(p.name for p in out.iterdir()) == ["bench.lock"]  # nothing computed, its lock kept
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed): its lock is stale and taken over; the sweep runs and releases it
    r = CliRunner().invoke(app, [*TINY_BENCH, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "results.csv").is_file() and not (out / "bench.lock").exists()


def test_debug_may_follow_the_subcommand(tmp_path):
    done = _cli("run", "--dataset", "nope", "--out", str(tmp_path / "r"), "--debug")
    assert done.returncode != 0 and "Traceback" in done.stderr and "unknown dataset 'nope'" in done.stderr
    plain = _cli("run", "--dataset", "nope", "--out", str(tmp_path / "r"))
    assert plain.returncode == 2 and "Traceback" not in plain.stderr


def test_a_library_warning_is_one_line_without_its_source(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "arr.npz", x=rng.normal(size=(200, 5)).astype(np.float32), y=rng.integers(0, 3, 200))
    done = _cli("run", "--dataset", "arrays", "--data-param", f"path={tmp_path / 'arr.npz'}", "--epochs", "1",
                "--warmup-epochs", "1", "--method", "uniform", "--out", str(tmp_path / "r"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    warned = [x for x in done.stderr.splitlines() if "has no test set" in x]
    assert warned == [x for x in warned if x.startswith("warning: ")] and len(warned) == 1, done.stderr
    assert "UserWarning" not in done.stderr and "return load_dataset(" not in done.stderr


# ------------------------------------------------------------------ a resumed run: time left and the run's times


def test_time_left_after_a_resume_counts_only_the_epochs_trained_since(monkeypatch):
    from robustprune.cli import run as cli_run
    from robustprune.cli._common import ProgressBar
    from robustprune.train.engine import ProgressInfo

    clock = [100.0]
    monkeypatch.setattr(cli_run.time, "perf_counter", lambda: clock[0])
    bar = ProgressBar()
    bar.enabled = False  # piped: one plain line per epoch
    lines: list[str] = []
    monkeypatch.setattr(bar, "line", lines.append)
    bars = cli_run._Bars(bar)
    for epoch in range(30, 40):  # resumed after epoch 30 of 40; every epoch takes 2 s
        bars(ProgressInfo("train", epoch, 40, 1, 10))
        clock[0] += 2.0
        bars(ProgressInfo("train", epoch, 40, 10, 10, {"loss": 1.0}))
    assert lines[0].startswith("training    epoch 31/40") and lines[0].endswith("2.0 s, about 18 s left"), lines
    assert lines[4].endswith("10.0 s, about 10 s left") and lines[-1].endswith("20.0 s, about 0 s left"), lines


def _time_row(stdout: str) -> dict[str, float]:
    """The run summary's ``time`` row: {"warm-up": s, "signals": s, "selection": s, "training": s, "all": s}."""
    import re

    row = next(x for x in stdout.splitlines() if x.startswith("time "))
    return {name: float(v) for name, v in re.findall(r"(warm-up|signals|selection|training|all) ([\d.]+) s", row)}


def test_a_resumed_run_reports_times_that_add_up(tmp_path):
    import json
    import signal

    out = tmp_path / "run"
    args = [sys.executable, "-m", "robustprune", "run", "--subset", "300", "--warmup-epochs", "1", "--epochs", "100",
            "--method", "uniform", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stderr:  # stopped near the end: most of the training lies before the resume
            if line.startswith("training    epoch") and int(line.split()[2].split("/")[0]) >= 90:
                proc.send_signal(signal.SIGTERM)
                break
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143 and (out / "train.ckpt").exists()
    done = subprocess.run([*args, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    epochs = [x for x in done.stderr.splitlines() if x.startswith("training    epoch")]
    resumed_at = int(epochs[0].split()[2].split("/")[0]) - 1
    assert 80 < resumed_at < 100, epochs
    m = json.loads((out / "metrics.json").read_text())
    t = m["timings"]
    before = sum(h["seconds"] for h in m["history"][:resumed_at])
    assert t["earlier"] >= before + t["warmup"] + t["signals"] - 1e-3  # reused stages and the earlier epochs
    assert t["wall"] + t["earlier"] >= t["total"] - 1e-3  # the whole is at least the sum of its stages
    row = _time_row(done.stdout)
    assert len(row) == 5 and row["all"] >= max(row.values()) and row["all"] > row["training"], done.stdout
    assert "s in this process" in done.stdout and "s before it)" in done.stdout


# ------------------------------------------------------------------ help texts


@pytest.mark.parametrize("command", [[], ["run"], ["bench"], ["al"], ["select"], ["signals"], ["methods"], ["report"]])
def test_help_shows_no_value_type_for_a_flag(command):
    r = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "--help" in r.stdout
    assert "<bool>" not in r.stdout and "bool" not in r.stdout.lower().replace("boolean", ""), r.stdout
    if command == ["run"]:  # the flags themselves are still there, and options with values keep theirs
        flags = [x for x in r.stdout.splitlines() if "--force" in x or "--no-class-balanced" in x or "--dry-run" in x]
        assert len(flags) == 3 and any("NAME" in x for x in r.stdout.splitlines() if "--dataset" in x)


# ------------------------------------------------------------------ al's default acquisition


def test_al_queries_with_runs_method_by_default_and_its_help_says_why():
    from dataclasses import fields

    from robustprune.cli.al import DEFAULT_METHOD
    from robustprune.runconfig import RunConfig

    run_default = next(f.default for f in fields(RunConfig) if f.name == "method")
    assert DEFAULT_METHOD == run_default == "prune4rel_auto"
    text = " ".join(CliRunner().invoke(app, ["al", "--help"], env={"COLUMNS": "400"}).stdout.replace("│", " ").split())
    method = text[text.index("--method -m") : text.index("--param -p")]  # its row in the options panel
    assert "[default: prune4rel_auto]" in method and "noisy oracle" in method and "docs/results.md" in method
    assert "--method uncertainty --param kind=margin" in method  # what to pass with a clean oracle
    assert "runs/al-<dataset>" in text  # al's own directory name, not run's
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert "Without `--method` the loop queries with `prune4rel_auto`" in readme


# ------------------------------------------------------------------ weights written by select


def test_select_says_where_the_weights_of_a_weighted_method_went(tmp_path, signals_file):
    out = tmp_path / "sel.npz"
    r = CliRunner().invoke(app, ["select", "--signals", str(signals_file), "--method", "craig", "--fraction", "0.3",
                                 "--out", str(out)], env={"COLUMNS": "400"})  # fmt: skip
    assert r.exit_code == 0, r.output
    row = next(x for x in r.stdout.splitlines() if x.startswith("weights "))
    w = np.load(out)["weights"]
    for fact in (f"min {w.min():.3g}", f"mean {w.mean():.3g}", f"max {w.max():.3g}", f"in {out};",
                 f"robustprune run --selection {out} trains with them", "--param weighted=false"):  # fmt: skip
        assert fact in row, (fact, row)
    plain = CliRunner().invoke(app, ["select", "--signals", str(signals_file), "--method", "uniform", "--fraction",
                                     "0.3", "--out", str(tmp_path / "u.npz")])  # fmt: skip
    assert plain.exit_code == 0 and "weights" not in plain.stdout


def test_run_with_a_selection_file_keeps_weighted_false(tmp_path):
    from robustprune.runconfig import RunConfig, resolve_config

    sel = str(tmp_path / "sel.npz")
    off = resolve_config(RunConfig(selection=sel, fraction=None, params={"weighted": False}))
    assert off.method == "file" and off.params == {"weighted": False}  # what the training stage reads
    assert resolve_config(RunConfig(selection=sel, fraction=None)).params == {}


# ------------------------------------------------------------------ the flags' names in errors


@pytest.mark.parametrize(
    "args, expected",
    [
        (["select", "--fraction", "0"], "error: --fraction must be in (0, 1]"),
        (["select", "--fraction", "1.5"], "error: --fraction must be in (0, 1]"),
        (
            ["select", "--budget", "500"],
            "error: --budget 500 exceeds the number of examples (120); use at most 120 or --fraction 1",
        ),  # fmt: skip
        (["select", "--budget", "0"], "error: --budget must be at least 1, got 0"),
        (["run", "--fraction", "0"], "error: --fraction must be in (0, 1]"),
        (["run", "--fraction", "1.5"], "error: --fraction must be in (0, 1]"),
        (["bench", "--fraction", "0.5,2"], "error: --fraction 2 is outside (0, 1]"),
    ],
)
def test_a_bad_fraction_or_budget_is_named_by_its_flag(tmp_path, signals_file, args, expected):
    command, *rest = args
    base = {"select": ["--signals", str(signals_file), "--method", "uniform", "--out", str(tmp_path / "s.npz")],
            "run": ["--out", str(tmp_path / "r")], "bench": ["--out", str(tmp_path / "b")]}[command]  # fmt: skip
    r = CliRunner().invoke(app, [command, *rest, *base])
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith(expected), r.output
    assert "fraction=" not in lines[0] and " fraction must" not in lines[0] and not lines[0].startswith("error: budget")
    assert not [p for p in tmp_path.iterdir() if p.name != signals_file.name]  # nothing written


# ------------------------------------------------------------------ a corrupt cell under report


def test_report_names_a_corrupt_cell_file_and_how_to_recompute_it(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    monkeypatch.setattr(sys, "argv", ["robustprune", *TINY_BENCH, "--out", str(out)])  # what bench.json records
    assert CliRunner().invoke(app, [*TINY_BENCH, "--out", str(out)]).exit_code == 0
    cell = next(out.glob("cells/*/*/metrics.json"))
    written = {p: p.read_bytes() for p in out.glob("*") if p.is_file()}
    for content in (b"\xff\xfe{", b"[1, 2]\n", b'{"test_accuracy": 0.'):  # not text, not an object, truncated
        cell.write_bytes(content)
        r = CliRunner().invoke(app, ["report", str(out), "--no-figures"])
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
        assert f"cannot read the cell metrics {cell} (" in lines[0] and "Traceback" not in r.output
        assert (
            f"delete its cell directory {cell.parent} and run the sweep's command (robustprune bench --dataset"
            in (lines[0])
        )
        assert {p: p.read_bytes() for p in out.glob("*") if p.is_file()} == written  # nothing else is lost
    import shutil

    shutil.rmtree(cell.parent)  # as the message says; the sweep recomputes that cell alone
    again = CliRunner().invoke(app, [*TINY_BENCH, "--out", str(out)])
    assert again.exit_code == 0 and "1 cells computed, 0 reused" in again.stdout, again.output
    assert CliRunner().invoke(app, ["report", str(out), "--no-figures"]).exit_code == 0


# ------------------------------------------------------------------ start-up: no torch for the command line itself


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["run", "--help"],
        ["select", "--help"],
        ["al", "--help"],
        ["bench", "--help"],
        ["signals", "--help"],
        ["methods", "--help"],
        ["report", "--help"],
    ],  # fmt: skip
)
def test_the_command_line_starts_without_torch(argv):
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['robustprune', *{argv!r}]\n"
        "try:\n    runpy.run_module('robustprune', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'matplotlib', 'scipy', 'sklearn'})\n"
        "sel = sorted(m for m in sys.modules if m.startswith('robustprune.selection'))\n"
        "print('HEAVY', heavy, sel)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "HEAVY [] []", done.stdout[-500:]


def test_the_package_root_loads_its_public_names_on_first_use():
    code = (
        "import sys, robustprune as rp\n"
        "assert 'torch' not in sys.modules and 'robustprune.selection' not in sys.modules\n"
        "assert rp.__all__ == ['__version__', 'select', 'Selection', 'MethodOutput', 'MethodInfo', 'list_methods',"
        " 'get_method', 'register', 'class_quotas', 'select_by_scores', 'Signals', 'load_signals', 'save_signals',"
        " 'SCHEMA_VERSION', 'signals_from_embeddings', 'cross_fitted_probe']\n"
        "from robustprune import select, Signals, signals_from_embeddings\n"
        "from robustprune.selection.api import select as s2\n"
        "assert select is s2 and callable(rp.get_method) and rp.selection.registry.get_method is rp.get_method\n"
        "ns = {}\nexec('from robustprune import *', ns)\nassert set(rp.__all__) <= set(ns)\n"
        "try:\n    rp.nope\nexcept AttributeError as exc:\n    print('OK', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "OK module 'robustprune' has no attribute 'nope'", (
        done.stdout + done.stderr[-2000:]
    )
