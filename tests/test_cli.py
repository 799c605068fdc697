"""In-process tests of the ``robustprune`` command line (typer's CliRunner), plus one real process."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

import robustprune
from robustprune import Selection, Signals
from robustprune.cli import app
from robustprune.cli._common import ProgressBar, parse_value
from robustprune.selection import registry

TEST_METHOD = "_cli_test_method"
NEEDS_PROBS = "_cli_test_needs_probs"
N = 60
SIDE_KEYS = {"method", "n", "budget", "params", "elapsed_seconds", "robustprune_version"}


@pytest.fixture(scope="module", autouse=True)
def test_methods():
    """Register two tiny methods for the CLI tests and remove them afterwards."""

    @registry.register(
        TEST_METHOD,
        kind="score",
        requires=("labels",),
        optional=("features",),
        keep="high",
        description="test-only: seeded random scores",
    )
    def _random_scores(labels, features=None, seed=0, progress=None, scale=1.0, mode="rand"):
        if progress is not None:
            for i in range(3):
                progress(i + 1, 3)
        return np.random.default_rng(seed).random(labels.shape[0]) * scale

    @registry.register(NEEDS_PROBS, kind="score", requires=("probs",), keep="low", description="test-only")
    def _needs_probs(probs):
        return probs.max(axis=1)

    yield
    for name in (TEST_METHOD, NEEDS_PROBS):
        registry.unregister(name)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def signals_file(tmp_path):
    rng = np.random.default_rng(0)
    true = np.arange(N) % 3
    labels = true.copy()
    labels[:12] = (labels[:12] + 1) % 3
    sig = Signals(labels=labels, features=rng.normal(size=(N, 4)).astype(np.float32), true_labels=true)
    return sig.save(tmp_path / "signals.npz")


def invoke(runner, args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments, code=2):
    assert result.exit_code == code, (result.exit_code, result.output)
    assert not isinstance(result.exception, (ValueError, TypeError, OSError))
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for frag in fragments:
        assert frag in lines[0], lines[0]


# --------------------------------------------------------------------------- version and methods


def test_version(runner):
    result = invoke(runner, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"robustprune {robustprune.__version__}"


def test_methods_table(runner):
    result = runner.invoke(app, ["methods"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert TEST_METHOD in out
    assert "labels, [features]" in out  # optional signals in brackets, printed literally
    for header in ("name", "kind", "signals", "keeps", "description"):
        assert header in out


def test_methods_detail_lists_options(runner):
    result = runner.invoke(app, ["methods", TEST_METHOD], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "scale=1.0" in out and "mode='rand'" in out
    assert "class balance" in out and "options" in out


def test_methods_detail_names_the_dataset_protocols_that_override_defaults(runner):
    out = runner.invoke(app, ["methods", "prune4rel"], env={"COLUMNS": "200"}).stdout
    assert "tau=0.95" in out  # the function's default ...
    assert "tau=0.975, eta=1.0 on cifar10, digits, fashion-mnist, mnist" in out  # ... and what run uses instead
    assert "tau=0.95, eta=1.0 on cifar100" in out and "dataset protocols above replace" in out
    auto = runner.invoke(app, ["methods", "prune4rel_auto"], env={"COLUMNS": "200"}).stdout
    assert "dataset protocols" not in auto and "tau='auto'" in auto


def test_methods_detail_unknown_name(runner):
    result = invoke(runner, ["methods", "nope"])
    assert result.exit_code == 2
    assert "unknown selection method 'nope'" in result.stderr


# --------------------------------------------------------------------------- happy path


def test_select_writes_selection_and_sidecar(runner, signals_file, tmp_path):
    out = tmp_path / "sel.npz"
    result = invoke(
        runner,
        [
            "select",
            "--signals",
            signals_file,
            "--method",
            TEST_METHOD,
            "--fraction",
            0.25,
            "--param",
            "scale=2.5",
            "-p",
            "mode=fast",
            "--seed",
            3,
            "--out",
            out,
        ],
    )
    assert result.exit_code == 0, result.output
    sidecar = tmp_path / "sel.npz.json"
    assert out.exists() and sidecar.exists()
    meta = json.loads(sidecar.read_text())
    assert SIDE_KEYS <= set(meta)
    assert meta["method"] == TEST_METHOD and meta["n"] == N and meta["budget"] == 15
    assert meta["params"]["scale"] == 2.5 and meta["params"]["mode"] == "fast" and meta["params"]["seed"] == 3
    assert meta["robustprune_version"] == robustprune.__version__
    sel = Selection.load(out)
    assert len(sel) == 15 and len(np.unique(sel.indices)) == 15
    expected = robustprune.select(
        TEST_METHOD, signals=Signals.load(signals_file), fraction=0.25, seed=3, scale=2.5, mode="fast"
    )
    np.testing.assert_array_equal(sel.indices, expected.indices)
    # Summary: method, budget, class histogram and noise rate in the subset vs overall.
    assert TEST_METHOD in result.stdout
    assert "15 (25.0%)" in result.stdout
    assert "0:" in result.stdout and "noise rate" in result.stdout and "20.0% overall" in result.stdout


def test_select_with_budget_and_class_balance(runner, signals_file, tmp_path):
    out = tmp_path / "b.npz"
    result = invoke(runner, ["select", "-s", signals_file, "-m", TEST_METHOD, "-b", 12, "--class-balanced", "-o", out])
    assert result.exit_code == 0, result.output
    sel = Selection.load(out)
    assert len(sel) == 12 and sel.params["class_balanced"] is True
    labels = Signals.load(signals_file).labels
    assert sorted(np.bincount(labels[sel.indices], minlength=3)) == [4, 4, 4]


def test_select_appends_npz_suffix(runner, signals_file, tmp_path):
    result = invoke(runner, ["select", "-s", signals_file, "-m", TEST_METHOD, "-b", 5, "-o", tmp_path / "sel"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sel.npz").exists() and (tmp_path / "sel.npz.json").exists()


def test_select_refuses_to_overwrite_without_force(runner, signals_file, tmp_path):
    out = tmp_path / "sel.npz"
    first = invoke(runner, ["select", "-s", signals_file, "-m", TEST_METHOD, "-b", 10, "-o", out])
    assert first.exit_code == 0, first.output
    before = out.read_bytes(), (tmp_path / "sel.npz.json").read_bytes(), out.stat().st_mtime_ns

    again = invoke(runner, ["select", "-s", signals_file, "-m", TEST_METHOD, "-b", 20, "-o", out])
    assert_one_line_error(again, str(out), "--force")
    assert (out.read_bytes(), (tmp_path / "sel.npz.json").read_bytes(), out.stat().st_mtime_ns) == before

    forced = invoke(runner, ["select", "-s", signals_file, "-m", TEST_METHOD, "-b", 20, "-o", out, "--force"])
    assert forced.exit_code == 0, forced.output
    assert len(Selection.load(out)) == 20
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_select_refuses_when_only_sidecar_exists(runner, signals_file, tmp_path):
    (tmp_path / "sel.npz.json").write_text("{}")
    result = invoke(runner, ["select", "-s", signals_file, "-m", TEST_METHOD, "-b", 5, "-o", tmp_path / "sel.npz"])
    assert_one_line_error(result, "sel.npz.json", "--force")
    assert not (tmp_path / "sel.npz").exists()


def test_select_example_digits_saves_signals(runner, tmp_path):
    out, sig_path = tmp_path / "sel.npz", tmp_path / "digits.npz"
    result = invoke(
        runner,
        [
            "select",
            "--example",
            "digits",
            "-m",
            TEST_METHOD,
            "-f",
            0.1,
            "-o",
            out,
            "--save-signals",
            sig_path,
        ],
    )
    assert result.exit_code == 0, result.output
    sig = Signals.load(sig_path)
    assert sig.n == 1797 and sig.probs is not None and sig.true_labels is not None
    assert len(Selection.load(out)) == round(0.1 * 1797)
    assert "40.0% overall" in result.stdout
    # The saved signals file is protected like the selection.
    again = invoke(
        runner,
        [
            "select",
            "--example",
            "digits",
            "-m",
            TEST_METHOD,
            "-f",
            0.1,
            "-o",
            tmp_path / "other.npz",
            "--save-signals",
            sig_path,
        ],
    )
    assert_one_line_error(again, "digits.npz", "--force")


def test_progress_callback_reaches_the_method_and_bar_draws(runner, signals_file, tmp_path):
    calls = []
    bar = ProgressBar("x", delay=0.0, console=Console(file=io.StringIO(), force_terminal=True))
    with bar:
        bar(0, 3)
        calls.append(bar.shown)
        bar(3, 3)
    assert calls == [True]
    quiet = ProgressBar("x", delay=60.0, console=Console(file=io.StringIO(), force_terminal=True))
    quiet(1, 3)
    assert not quiet.shown


# --------------------------------------------------------------------------- errors


def test_error_missing_signal_names_it_and_how_to_make_it(runner, signals_file, tmp_path):
    result = invoke(runner, ["select", "-s", signals_file, "-m", NEEDS_PROBS, "-f", 0.5, "-o", tmp_path / "x"])
    assert_one_line_error(result, "'probs'", "softmax")
    assert not (tmp_path / "x.npz").exists()


def test_error_nan_in_features(runner, tmp_path):
    feats = np.ones((N, 3))
    feats[7, 1] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, labels=np.arange(N) % 3, features=feats)
    result = invoke(runner, ["select", "-s", path, "-m", TEST_METHOD, "-f", 0.5, "-o", tmp_path / "x.npz"])
    assert_one_line_error(result, "features", "NaN", "row 7")


@pytest.mark.parametrize("fraction", ["0", "1.5", "-0.2", "nan"])
def test_error_fraction_outside_unit_interval(runner, signals_file, tmp_path, fraction):
    result = invoke(runner, ["select", "-s", signals_file, "-m", TEST_METHOD, "-f", fraction, "-o", tmp_path / "x"])
    assert_one_line_error(result, "fraction", "(0, 1]")


def test_error_budget_exceeds_n(runner, signals_file, tmp_path):
    result = invoke(runner, ["select", "-s", signals_file, "-m", TEST_METHOD, "-b", N + 1, "-o", tmp_path / "x"])
    assert_one_line_error(result, "budget", str(N + 1), str(N))


def test_error_unknown_method_lists_known(runner, signals_file, tmp_path):
    result = invoke(runner, ["select", "-s", signals_file, "-m", "no_such_method", "-f", 0.5, "-o", tmp_path / "x"])
    assert_one_line_error(result, "no_such_method", "known methods", TEST_METHOD)


def test_error_missing_signals_file(runner, tmp_path):
    result = invoke(runner, ["select", "-s", tmp_path / "nope.npz", "-m", TEST_METHOD, "-f", 0.5, "-o", tmp_path / "x"])
    assert_one_line_error(result, "nope.npz", "does not exist")


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04 truncated"])
def test_error_corrupt_signals_file(runner, tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    result = invoke(runner, ["select", "-s", path, "-m", TEST_METHOD, "-f", 0.5, "-o", tmp_path / "x"])
    assert_one_line_error(result, "bad.npz")


def test_error_signals_path_is_a_directory(runner, tmp_path):
    result = invoke(runner, ["select", "-s", tmp_path, "-m", TEST_METHOD, "-f", 0.5, "-o", tmp_path / "x"])
    assert_one_line_error(result, "cannot read signals file")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_error_unreadable_signals_file(runner, signals_file, tmp_path):
    signals_file.chmod(0)
    try:
        result = invoke(runner, ["select", "-s", signals_file, "-m", TEST_METHOD, "-f", 0.5, "-o", tmp_path / "x"])
    finally:
        signals_file.chmod(0o644)
    assert_one_line_error(result, "signals.npz")


def test_error_signals_file_without_labels(runner, tmp_path):
    path = tmp_path / "nolabels.npz"
    np.savez(path, features=np.ones((5, 2)))
    result = invoke(runner, ["select", "-s", path, "-m", TEST_METHOD, "-f", 0.5, "-o", tmp_path / "x"])
    assert_one_line_error(result, "labels")


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("scale", "key=value"),
        ("=3", "key=value"),
        ("1x=2", "key=value"),
        ("seed=1", "use --seed"),
        ("fraction=0.3", "use --fraction"),
        ("probs=1", "--signals"),
        ("class-balanced=true", "--class-balanced"),
    ],
)
def test_error_bad_param_syntax(runner, signals_file, tmp_path, item, fragment):
    result = invoke(
        runner, ["select", "-s", signals_file, "-m", TEST_METHOD, "-f", 0.5, "-p", item, "-o", tmp_path / "x"]
    )
    assert_one_line_error(result, "bad --param", fragment)


def test_error_param_given_twice(runner, signals_file, tmp_path):
    result = invoke(
        runner,
        [
            "select",
            "-s",
            signals_file,
            "-m",
            TEST_METHOD,
            "-f",
            0.5,
            "-p",
            "scale=1",
            "-p",
            "scale=2",
            "-o",
            tmp_path / "x",
        ],
    )
    assert_one_line_error(result, "scale", "twice")


def test_error_unknown_param_lists_options(runner, signals_file, tmp_path):
    result = invoke(
        runner,
        ["select", "-s", signals_file, "-m", TEST_METHOD, "-f", 0.5, "-p", "bogus=1", "-o", tmp_path / "x"],
    )
    assert_one_line_error(result, "bogus", "scale=1.0")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["-f", "0.5"], "--signals PATH or --example"),
        (["-s", "{sig}", "--example", "digits", "-f", "0.5"], "--signals PATH or --example"),
        (["-s", "{sig}", "-f", "0.5", "-b", "3"], "--fraction"),
        (["-s", "{sig}"], "--fraction"),
        (["-s", "{sig}", "-f", "0.5", "--save-signals", "s.npz"], "--save-signals"),
        (["-s", "{sig}", "-f", "0.5", "--noise-rate", "0.2"], "--noise-rate"),
    ],
)
def test_error_usage_combinations(runner, signals_file, tmp_path, args, fragment):
    args = [str(signals_file) if a == "{sig}" else a for a in args]
    result = invoke(runner, ["select", "-m", TEST_METHOD, "-o", tmp_path / "x", *args])
    assert_one_line_error(result, fragment)


def test_error_unknown_example(runner, tmp_path):
    result = invoke(runner, ["select", "--example", "mnist", "-m", TEST_METHOD, "-f", 0.5, "-o", tmp_path / "x"])
    assert_one_line_error(result, "mnist", "digits")


def test_debug_shows_the_exception(runner, signals_file, tmp_path):
    result = invoke(
        runner,
        ["--debug", "select", "-s", signals_file, "-m", TEST_METHOD, "-b", N + 1, "-o", tmp_path / "x"],
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, ValueError)
    assert "exceeds the number of examples" in str(result.exception)
    # Without --debug the same input is a one-line error again (the flag does not leak between runs).
    plain = invoke(runner, ["select", "-s", signals_file, "-m", TEST_METHOD, "-b", N + 1, "-o", tmp_path / "x"])
    assert_one_line_error(plain, "exceeds")


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        ("-2", -2),
        ("2.5", 2.5),
        ("1e-3", 1e-3),
        ("true", True),
        ("False", False),
        ("none", None),
        ("null", None),
        ("max_prob", "max_prob"),
        ("", ""),
    ],
)
def test_parse_value(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_console_script_process_errors_cleanly(signals_file, tmp_path):
    """The real entry point: exit code 2 and one stderr line, no traceback."""
    code = "from robustprune.cli import main; main()"
    ok = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and robustprune.__version__ in ok.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "select",
            "-s",
            str(tmp_path / "missing.npz"),
            "-m",
            "x",
            "-f",
            "0.5",
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- with the uniform baseline


def test_uniform_on_digits_end_to_end(runner, tmp_path):
    out = tmp_path / "u.npz"
    result = invoke(runner, ["select", "--example", "digits", "-m", "uniform", "-f", 0.2, "--seed", 1, "-o", out])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "u.npz.json").read_text())
    assert SIDE_KEYS <= set(meta) and meta["method"] == "uniform" and meta["budget"] == round(0.2 * 1797)
    assert "noise rate" in result.stdout


def test_uniform_is_deterministic_under_seed(runner, signals_file, tmp_path):
    paths = [tmp_path / f"u{i}.npz" for i in range(3)]
    for path, seed in zip(paths, (5, 5, 6), strict=True):
        result = invoke(runner, ["select", "-s", signals_file, "-m", "uniform", "-b", 20, "--seed", seed, "-o", path])
        assert result.exit_code == 0, result.output
    a, b, c = (Selection.load(p).indices for p in paths)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_one_key_value_parser_for_every_flag():
    from robustprune.cli._common import parse_key_values

    assert parse_key_values(["a=1", "b-c=x", "d=true"], "--x", "a=1") == {"a": 1, "b_c": "x", "d": True}
    assert parse_key_values(["m.k=0.5", "m.j=2", "n.k=none"], "--param", "m.k=1", dotted=True) == {
        "m": {"k": 0.5, "j": 2},
        "n": {"k": None},
    }
    runner = CliRunner()
    for args, fragment in (
        (["run", "--learner-param", "lr_u"], "bad --learner-param 'lr_u': expected key=value"),
        (["run", "--data-param", "x=1", "--data-param", "x=2"], "--data-param 'x' is given twice"),
        (["bench", "--out", "unused", "--param", "kind=margin"], "bad --param 'kind=margin': expected name.key=value"),
        (["bench", "--out", "unused", "--param", "u.k=1", "--param", "u.k=2"], "--param 'u.k' is given twice"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and fragment in result.stderr, (args, result.stderr)
