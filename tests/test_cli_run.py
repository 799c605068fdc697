"""``robustprune run`` through typer's CliRunner: tiny digits runs, artifacts, reuse by select, errors."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from robustprune import Selection, Signals
from robustprune.cli import app
from robustprune.cli import run as cli_run
from robustprune.cli.run import _default_out
from robustprune.runconfig import RunConfig, resolve_config
from robustprune.train import DivergenceError

TINY = ["--subset", "300", "--warmup-epochs", "2", "--epochs", "3"]


def invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "160"})


def assert_one_line_error(result, *fragments, code=2):
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke(["run", *TINY, "--param", "target_degree=10", "--learner-param", "lr_u=1", "--out", out])
    assert result.exit_code == 0, result.output
    return out, result


def test_run_prints_table_and_writes_run_dir(run_dir):
    out, result = run_dir
    for fragment in ("test accuracy", "re-labeling accuracy", "noise in subset", "prune4rel_auto: 150 of 300",
                     "sop on mlp", "metrics.json", "(auto, for mean degree 10), mean degree", "per given class",
                     "the subset covers"):  # fmt: skip
        assert fragment in result.stdout, fragment
    m = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "relabel_accuracy", "subset_noise_rate", "noise_rate", "fraction", "method",
                "learner", "timings"):  # fmt: skip
        assert key in m
    assert m["fraction"] == 0.5 and m["method"] == "prune4rel_auto" and m["learner"] == "sop"
    facts = m["selection"]
    assert facts["target_degree"] == 10 and facts["mean_degree"] == pytest.approx(10, abs=0.5)
    assert 0 <= facts["tau"] <= 1 and facts["eta"] > 0 and 0 < facts["coverage"] <= 1
    assert len(m["class_noise_rates"]) == len(m["class_counts"])
    # not a terminal: one plain progress line per epoch with the time left, and one per finished stage
    err = result.stderr.splitlines()
    assert [ln.split("/3")[0] for ln in err if ln.startswith("training    epoch")] == [
        f"training    epoch {i}" for i in (1, 2, 3)
    ]
    assert all("s left" in ln for ln in err if " epoch " in ln)
    assert any(ln.startswith("selection") and "prune4rel_auto: 150 of 300" in ln for ln in err)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["params"]["target_degree"] == 10
    assert cfg["learner_params"]["lr_u"] == 1 and cfg["learner_params"]["rc"] == 0.9


def test_signals_of_a_run_feed_robustprune_select(run_dir, tmp_path):
    out, _ = run_dir
    result = invoke(["select", "--signals", out / "signals.npz", "-m", "small_loss", "-f", 0.3, "-o", tmp_path / "s"])
    assert result.exit_code == 0, result.output
    assert len(Selection.load(tmp_path / "s.npz")) == 90 and "noise rate" in result.stdout
    # ... and that selection trains in a second run
    again = invoke(["run", *TINY, "--selection", tmp_path / "s.npz", "--learner", "ce", "--out", tmp_path / "r"])
    assert again.exit_code == 0, again.output
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["method"] == "small_loss" and m["budget"] == 90 and not (tmp_path / "r" / "signals.npz").exists()


def test_user_index_file(tmp_path):
    np.savetxt(tmp_path / "mine.txt", np.arange(100), fmt="%d")
    result = invoke(["run", *TINY, "--selection", tmp_path / "mine.txt", "--out", tmp_path / "r"])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["method"] == "file" and m["budget"] == 100 and m["fraction"] == pytest.approx(1 / 3)
    np.testing.assert_array_equal(Selection.load(tmp_path / "r" / "selection.npz").indices, np.arange(100))


def test_rerun_needs_force_or_resume(run_dir):
    out, _ = run_dir
    before = (out / "metrics.json").read_bytes()
    same = ["run", *TINY, "--param", "target_degree=10", "--learner-param", "lr_u=1", "--out", out]
    again = invoke(same)
    assert_one_line_error(again, "finished run", "--force")
    assert "pass --resume to read it back" in again.output  # the README says both are named
    resumed = invoke([*same, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "reused" in resumed.stdout and (out / "metrics.json").read_bytes() == before
    other = invoke(["run", *TINY, "--out", out, "--resume"])
    assert_one_line_error(other, "cannot resume", "learner_params", "params")


def test_default_run_dir_follows_the_rule_of_an_explicit_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(_default_out(resolve_config(RunConfig(subset=300)))) == "runs/digits-sym0.4-sop-prune4rel_auto-f0.5-s0"
    args = ["run", "--subset", "150", "--warmup-epochs", "1", "--epochs", "1", "--method", "uniform"]
    first = invoke(args)
    assert first.exit_code == 0, first.output
    target = tmp_path / "runs" / "digits-sym0.4-sop-uniform-f0.5-s0"
    before = (target / "metrics.json").read_bytes()
    again = invoke(args)  # a finished run is not silently redone elsewhere
    assert_one_line_error(again, "holds a finished run", "--force")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [target.name]
    assert invoke([*args, "--resume"]).exit_code == 0
    assert (target / "metrics.json").read_bytes() == before
    assert invoke([*args, "--force"]).exit_code == 0


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--dataset", "nope"], ["unknown dataset 'nope'"]),
        (["--learner", "nope"], ["unknown learner 'nope'"]),
        (["--model", "nope"], ["unknown model 'nope'"]),
        (["--method", "nope"], ["nope"]),
        (["--fraction", "0"], ["fraction must be in (0, 1]"]),
        (["--noise", "sym:2"], ["noise"]),
        (["--noise", "bogus"], ["unknown noise spec"]),
        (
            ["--dataset", "fashion-mnist", "--data-dir", "/nonexistent/dir"],
            ["/nonexistent/dir", "does not exist"],
        ),
        (["--param", "nokey"], ["bad --param"]),
        (["--param", "bogus=1"], ["no option 'bogus'"]),
        (["--learner-param", "bogus=1"], ["no option 'bogus'"]),
        (["--learner-param", "x"], ["bad --learner-param"]),
        (["--confidence-pass", "weak"], ["confidence_pass"]),
        (["--warmup-epochs", "5", "--epochs", "2"], ["must not exceed epochs"]),
        (["--selection", "x.npy", "--fraction", "0.3"], ["--fraction or --selection"]),
        (["--force", "--resume"], ["at most one"]),
        (["--data-param", "bogus=1"], ["dataset 'digits' has no option 'bogus'"]),
        # the library's advice in the CLI's words: flags, not Python arguments
        (["--dataset", "imagefolder"], ["needs --data-dir pointing at a folder"]),
        (["--dataset", "arrays"], ["needs --data-param path=FILE (or --data-dir)"]),
        (["--dataset", "cifar10", "--data-param", "download=true"], ["--data-param download=true needs --data-dir"]),
    ],
)
def test_bad_input_gives_one_line_error(args, fragments, tmp_path, monkeypatch):
    monkeypatch.delenv("ROBUSTPRUNE_DATA", raising=False)
    result = invoke(["run", "--out", tmp_path / "r", *args])
    assert_one_line_error(result, *fragments)
    assert not any(p in result.stderr for p in ("data_dir=", "download=True", "force=True", "resume=True"))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("exc", "code", "fragment"),
    [(KeyboardInterrupt(), 130, "--resume"), (DivergenceError("training diverged"), 1, "--force")],
)
def test_interrupt_and_divergence_are_one_line(exc, code, fragment, tmp_path, monkeypatch):
    def boom(config, progress=None):
        raise exc

    monkeypatch.setattr(cli_run, "run", boom)
    result = invoke(["run", "--out", tmp_path / "r"])
    assert_one_line_error(result, fragment, code=code)


def test_selection_with_out_of_range_indices(tmp_path):
    np.save(tmp_path / "bad.npy", np.array([0, 5, 300]))
    result = invoke(["run", *TINY, "--selection", tmp_path / "bad.npy", "--out", tmp_path / "r"])
    assert_one_line_error(result, "index 300 outside [0, 300)")
    assert not (tmp_path / "r").exists()  # nothing is written before the inputs check out


def test_help_explains_every_option():
    result = invoke(["run", "--help"])
    assert result.exit_code == 0
    options = (
        "--dataset --data-dir --noise --learner --model --method --param --fraction --selection "
        "--warmup-epochs --epochs --seed --device --out --subset --force --resume --val-fraction "
        "--batch-size --lr --learner-param --confidence-pass"
    )
    for opt in options.split():
        assert opt in result.stdout, opt


def test_signals_roundtrip_matches_run_metadata(run_dir):
    out, _ = run_dir
    sig = Signals.load(out / "signals.npz")
    assert sig.meta["dataset"] == "digits" and sig.meta["confidence_pass"] == "clean"


@pytest.mark.parametrize("force", [False, True])
def test_sigterm_keeps_the_checkpoint_and_names_resume(tmp_path, force):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    code = "import sys; from robustprune.cli import main; sys.argv[0] = 'robustprune'; main()"
    args = [sys.executable, "-c", code, "run", "--subset", "300", "--warmup-epochs", "1", "--epochs", "400",
            "--method", "uniform", "--out", str(out)] + ["--force"] * force  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.time() + 120
    while not (out / "train.ckpt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert (out / "train.ckpt").exists(), "training never checkpointed"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    errors = [ln for ln in err.strip().splitlines() if ln.startswith("error")]  # the rest: progress lines
    assert len(errors) == 1 and errors[0].startswith("error: terminated") and "--resume" in errors[0], err
    # the advice works as written: --resume cannot go with --force, so a --force run is told to swap them
    advice = "--resume in place of --force" if force else "the same command plus --resume"
    assert advice in errors[0], err
    assert err.strip().splitlines()[-1] == errors[0]
    assert (out / "train.ckpt").exists() and not (out / "metrics.json").exists()


def test_help_lists_every_dataset_with_its_aliases():
    from robustprune.data import get_dataset_info, list_datasets

    for command in ("run", "bench"):
        text = " ".join(CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"}).stdout.split())
        for name in list_datasets():
            info = get_dataset_info(name)
            expected = f"{name} (or {', '.join(info.aliases)})" if info.aliases else name
            assert expected in text, (command, expected)


def test_fashion_mnist_on_a_cpu_defaults_to_lenet_and_says_so(tmp_path):
    from robustprune.data import FASHION_MNIST_SYSTEM_DIR

    if not (FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs the Debian package dataset-fashion-mnist")
    args = ["run", "--dataset", "fashion-mnist", "--subset", "200", "--test-subset", "200", "--warmup-epochs", "1",
            "--epochs", "1", "--method", "uniform", "--device", "cpu", "--out", tmp_path / "r"]  # fmt: skip
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "sop on lenet (this dataset's CPU default; small_cnn elsewhere, or pass --model)" in result.stdout
    assert json.loads((tmp_path / "r" / "config.json").read_text())["model"] == "lenet"
    explicit = invoke([*args[:-2], "--model", "mlp", "--out", tmp_path / "m"])
    assert "sop on mlp," in explicit.stdout and "CPU default" not in explicit.stdout


def test_dry_run_prints_every_resolved_value_with_its_origin_and_runs_nothing(tmp_path):
    args = ["run", "--dataset", "fashion-mnist", "--method", "prune4rel", "--param", "gain=exact", "--device", "cpu",
            "--seed", "0", "--out", tmp_path / "r", "--dry-run"]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {
        ln.split()[0]: [p.strip() for p in ln.split(None, 2)[1:]] for ln in result.stdout.splitlines() if ln.strip()
    }
    assert rows["params.tau"] == ["0.975", "dataset protocol"]  # what methods NAME calls a protocol override
    assert rows["params.gain"] == ["'exact'", "given"]
    assert rows["params.embedding"] == ["'raw'", "prune4rel default"]
    assert rows["seed"] == ["0", "given"]  # given on the command line, though equal to the default
    assert rows["noise"] == ["'sym:0.4'", "default"]
    assert rows["model"][0] == "'lenet'" and rows["model"][1].startswith("dataset protocol (CPU default")
    assert rows["learner_params.lr_u"] == ["10.0", "dataset protocol"]
    assert rows["learner_params.eps"] == ["0.0001", "sop default"]
    assert "nothing was run or written" in result.stdout
    assert not (tmp_path / "r").exists()


def test_config_json_records_every_resolved_value(run_dir):
    out, _ = run_dir
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["params.target_degree"] == {"value": 10, "from": "given"}
    assert resolved["params.gain"] == {"value": "exact", "from": "prune4rel_auto default"}
    assert resolved["learner_params.lr_u"] == {"value": 1, "from": "given"}
    assert resolved["learner_params.rc"] == {"value": 0.9, "from": "dataset protocol"}
    assert resolved["model"] == {"value": "mlp", "from": "dataset protocol"}


def test_a_config_field_is_declared_once():
    """A field added with runconfig.opt appears in run --help, is parsed from the command line into the
    config, is a key a bench grid's [run] table may set, and is part of the fingerprint and the warm-up key:
    one declaration, no other edit."""
    from dataclasses import dataclass

    import typer

    from robustprune.cli.run import build_run_command
    from robustprune.runconfig import WARMUP_SECTIONS, Flag, opt, run_options, section_fields

    @dataclass(frozen=True)
    class Extended(RunConfig):
        label_smoothing: float = opt(0.0, "training", "Label smoothing of the loss.", Flag(("--label-smoothing",), "S"))

    cli = typer.Typer()
    cli.command()(build_run_command(Extended))
    runner = CliRunner()
    text = " ".join(runner.invoke(cli, ["--help"], env={"COLUMNS": "200"}).stdout.split())
    assert "--label-smoothing" in text and "Label smoothing of the loss." in text
    dry = runner.invoke(cli, ["--label-smoothing", "0.2", "--dry-run"], env={"COLUMNS": "200"})
    assert dry.exit_code == 0, dry.output
    row = next(ln.split() for ln in dry.stdout.splitlines() if ln.startswith("label_smoothing"))
    assert row == ["label_smoothing", "0.2", "given"]
    assert "label_smoothing" in run_options(Extended)  # what build_spec accepts in [run]
    assert Extended(label_smoothing=0.1).fingerprint()["label_smoothing"] == 0.1
    assert "label_smoothing" in section_fields(Extended, *WARMUP_SECTIONS)
    # and the shipped config's derived sets are what they were before they were derived
    from robustprune.runconfig import RUNTIME_FIELDS, WARMUP_FIELDS

    assert RUNTIME_FIELDS == {"out", "force", "resume", "device", "eval_batch_size"}
    assert set(WARMUP_FIELDS) == {
        "dataset", "dataset_params", "subset", "noise", "noise_seed", "learner", "learner_params", "model",
        "warmup_epochs", "epochs", "batch_size", "lr", "confidence_pass", "signal_source", "val_fraction", "seed",
    }  # fmt: skip


def test_a_run_resolves_its_config_once_and_says_where_the_model_came_from(tmp_path, monkeypatch):
    # the directory name, the run and the summary's note all read one resolution (it used to be made twice)
    import robustprune.cli.run as cli_mod
    import robustprune.pipeline as pipeline_mod

    calls = []
    real = cli_mod.resolve

    def counting(config, given=None):
        calls.append(config)
        return real(config, given)

    monkeypatch.setattr(cli_mod, "resolve", counting)
    monkeypatch.setattr(pipeline_mod, "resolve", counting)
    monkeypatch.chdir(tmp_path)
    result = invoke(["run", "--dataset", "fashion-mnist", "--subset", "200", "--test-subset", "100",
                     "--warmup-epochs", "1", "--epochs", "1", "--device", "cpu", "--method", "uniform"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    assert "sop on lenet (this dataset's CPU default; small_cnn elsewhere, or pass --model)" in result.output
    assert (tmp_path / "runs" / "fashion-mnist-sym0.4-sop-uniform-f0.5-s0" / "metrics.json").exists()
