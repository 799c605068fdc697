"""Benchmark sweeps: grid expansion, TOML configs and their errors, aggregation, resume, reports, CLI."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from robustprune.bench import (
    BenchSpec,
    ConfigError,
    aggregate,
    build_spec,
    collect,
    cost_summary,
    expand,
    load_config,
    mean_std,
    run_bench,
    write_report,
)
from robustprune.bench.report import render_table
from robustprune.cli import app
from robustprune.pipeline import make_signals, run
from robustprune.runconfig import RunConfig, warmup_key

TINY_RUN = {"subset": 200, "test_subset": 200, "warmup_epochs": 1, "epochs": 2}


def tiny_spec(**over):
    data = {
        "datasets": ["digits"], "noises": ["sym:0.4"], "learners": ["ce"], "methods": ["uniform", "prune4rel"],
        "fractions": [0.3, 0.6], "seeds": [0], "run": dict(TINY_RUN),
    }  # fmt: skip
    data.update(over)
    return build_spec(data)


def write_toml(tmp_path, text, name="grid.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD_TOML = """\
# a grid
datasets = ["digits"]
noises = ["sym:0.4", "asym:0.2"]
learners = ["sop", "ce"]
methods = [
  "prune4rel",
  "p4r_exact",
  "uncertainty",
  "full",
]
fractions = [0.2, 0.5]
seeds = [0, 1, 2]

[run]
subset = 300
epochs = 3
warmup_epochs = 1

[params.uncertainty]
kind = "margin"

[learner_params.sop]
lr_u = 1.0

[variants.p4r_exact]
method = "prune4rel"
gain = "exact"
"""


# ------------------------------------------------------------------------------------- grid and config


def test_toml_config_expands_to_groups_and_cells(tmp_path):
    loaded = load_config(write_toml(tmp_path, GOOD_TOML))
    spec = build_spec(loaded["data"], loaded["where"])
    assert [m.label for m in spec.methods] == ["prune4rel", "p4r_exact", "uncertainty", "full"]
    assert spec.methods[1].method == "prune4rel" and spec.methods[1].params == {"gain": "exact"}
    assert spec.methods[2].params == {"kind": "margin"}
    groups, cells = expand(spec)
    assert len(groups) == 1 * 2 * 2 * 3  # datasets x noises x learners x seeds: one warm-up each
    # three methods x two fractions, plus `full` once (fraction 1) per group
    assert len(cells) == len(groups) * (3 * 2 + 1)
    assert len({c.key for c in cells}) == len(cells)
    full = [c for c in cells if c.method.label == "full"]
    assert len(full) == len(groups) and all(c.fraction == 1.0 for c in full)
    sop = [c for c in cells if c.group.learner == "sop"]
    assert all(c.config.learner_params["lr_u"] == 1.0 for c in sop)
    assert all(c.config.epochs == 3 and c.config.subset == 300 for c in cells)
    # all cells of a group share its warm-up
    from robustprune.runconfig import warmup_key

    for c in cells:
        assert warmup_key(c.config) == warmup_key(c.group.config)
    # the spec round-trips through bench.json
    assert BenchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def _line_error(tmp_path, text):
    p = write_toml(tmp_path, text)
    loaded = load_config(p)
    with pytest.raises(ConfigError) as info:
        build_spec(loaded["data"], loaded["where"])
    return str(info.value), p


@pytest.mark.parametrize(
    "old, new, line, fragment",
    [
        ('  "uncertainty",', '  "no_such_method",', 8, "unknown method 'no_such_method'"),
        ('datasets = ["digits"]', 'datasets = ["digitz"]', 2, "unknown dataset 'digitz'"),
        ('learners = ["sop", "ce"]', 'learners = ["sop", "cee"]', 4, "unknown learner 'cee'"),
        ('noises = ["sym:0.4", "asym:0.2"]', 'noises = ["sym:0.4", "asym:2"]', 3, "bad noise spec 'asym:2'"),
        ('kind = "margin"', 'kindd = "margin"', 20, "method 'uncertainty' has no option 'kindd'"),
        ("subset = 300", "subsett = 300", 15, "unknown run option 'subsett'"),
        ('gain = "exact"', 'gian = "exact"', 27, "method 'prune4rel' has no option 'gian'"),
        ("fractions = [0.2, 0.5]", "fractions = [0.2, 1.5]", 11, "fraction 1.5 is outside (0, 1]"),
    ],
)
def test_config_errors_name_file_and_line(tmp_path, old, new, line, fragment):
    assert old in GOOD_TOML
    msg, p = _line_error(tmp_path, GOOD_TOML.replace(old, new))
    assert msg.startswith(f"{p}:{line}: "), msg
    assert fragment in msg


def test_config_file_level_errors(tmp_path):
    p = write_toml(tmp_path, 'datasets = ["digits"\n')
    with pytest.raises(ConfigError, match=r"grid.toml: invalid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    p = write_toml(tmp_path, "extra = 1\n" + GOOD_TOML, "extra.toml")
    with pytest.raises(ConfigError, match=r"extra.toml:1: unknown key 'extra'"):
        load_config(p)
    msg, _ = _line_error(tmp_path, GOOD_TOML.replace('learners = ["sop", "ce"]\n', ""))
    assert "the grid needs 'learners'" in msg
    msg, _ = _line_error(tmp_path, GOOD_TOML.replace("seeds = [0, 1, 2]", "seeds = [0, 0]"))
    assert "'seeds' lists 0 twice" in msg


def test_command_line_grid_errors_have_no_file():
    with pytest.raises(ConfigError, match="^unknown method 'nope'"):
        build_spec({"datasets": ["digits"], "noises": ["sym:0.2"], "learners": ["ce"], "methods": ["nope"],
                    "fractions": [0.5]})  # fmt: skip


# ------------------------------------------------------------------------------------------ aggregation


def test_mean_std_on_known_values():
    m, sd, n = mean_std([0.5, 0.7])
    assert (m, n) == (pytest.approx(0.6), 2) and sd == pytest.approx(math.sqrt(0.02))
    assert mean_std([0.25]) == (0.25, 0.0, 1)
    m, sd, n = mean_std([1.0, 2.0, 4.0])
    assert m == pytest.approx(7 / 3) and sd == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1)) and n == 3
    assert mean_std([])[2] == 0 and math.isnan(mean_std([])[0])


def _rec(method, fraction, seed, acc, **kw):
    base = {"dataset": "d", "noise": "sym:0.4", "learner": "ce", "method": method, "fraction": fraction,
            "seed": seed, "test_accuracy": acc}  # fmt: skip
    base.update(kw)
    return base


def test_aggregate_groups_over_seeds_and_table_bolds_the_best():
    recs = [_rec("a", 0.2, 0, 0.50), _rec("a", 0.2, 1, 0.70), _rec("b", 0.2, 0, 0.80), _rec("b", 0.2, 1, 0.90),
            _rec("a", 0.4, 0, 0.95), _rec("b", 0.4, 0, 0.91)]  # fmt: skip
    agg = aggregate(recs, "test_accuracy")
    assert agg[("d", "sym:0.4", "ce", "a", 0.2)][0] == pytest.approx(0.6)
    assert agg[("d", "sym:0.4", "ce", "b", 0.2)][1] == pytest.approx(math.sqrt(0.005))
    assert agg[("d", "sym:0.4", "ce", "a", 0.4)][2] == 1
    table = render_table(agg, ("d", "sym:0.4", "ce"), ["a", "b"], [0.2, 0.4], higher_better=True)
    rows = table.splitlines()
    assert rows[0] == "| method | 0.2 | 0.4 |"
    assert rows[2] == "| a | 60.0 ± 14.1 | **95.0** |"
    assert rows[3] == "| b | **85.0 ± 7.1** | 91.0 |"
    low = render_table(agg, ("d", "sym:0.4", "ce"), ["a", "b"], [0.2, 0.4], higher_better=False)
    assert "| **60.0 ± 14.1** |" in low


def test_cost_summary_counts_each_shared_warmup_once():
    def r(group, warm, sel, train):
        return {"warmup_group": group, "time_warmup": warm, "time_signals": 1.0, "time_selection": sel,
                "time_train": train, "time_evaluate": 0.0}  # fmt: skip

    c = cost_summary([r("g1", 9.0, 0.5, 4.0), r("g1", 9.0, 0.5, 6.0), r("g1", 9.0, 1.0, 8.0), r("g2", 4.0, 0, 2)])
    assert c["warmup"] == pytest.approx(10.0 + 5.0)
    assert c["selection"] == pytest.approx(2.0) and c["train"] == pytest.approx(20.0)
    assert c["total"] == pytest.approx(37.0)
    assert c["warmup_per_cell"] == pytest.approx(3 * 10.0 + 5.0)
    assert c["saved"] == pytest.approx(20.0) and c["warmups"] == 2 and c["cells"] == 4


# -------------------------------------------------------------------------------------------- sweeps


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "sweep"
    spec = tiny_spec()
    result = run_bench(spec, out, command="test sweep")
    return spec, out, result


def test_sweep_shares_one_warmup_and_writes_every_cell(swept):
    spec, out, result = swept
    groups, cells = expand(spec)
    assert result.warmups_computed == [groups[0].name] and not result.failed and not result.cached
    assert sorted(result.computed) == sorted(c.key for c in cells)
    sig_path = out / "warmup" / groups[0].name / "signals.npz"
    assert sig_path.is_file()
    warm = json.loads((out / "warmup" / groups[0].name / "config.json").read_text())
    for c in cells:
        m = json.loads((out / "cells" / c.key / "metrics.json").read_text())
        assert "signals" in m["reused"]  # no warm-up of its own
        assert not (out / "cells" / c.key / "signals.npz").exists()
        assert m["budget"] == round(c.fraction * 200) and m["method"] == c.method.method
        cfg = json.loads((out / "cells" / c.key / "config.json").read_text())
        assert cfg["signals"] == str(sig_path.resolve()) and cfg["seed"] == warm["seed"]


def test_report_renders_tables_csv_json_and_figures(swept):
    spec, out, _ = swept
    path = write_report(out)
    text = path.read_text()
    assert "Command: `test sweep`" in text and "## Compute cost" in text
    assert "### digits, noise sym:0.4, learner ce (seeds 0)" in text
    assert "| method | 0.3 | 0.6 |" in text and "| prune4rel |" in text and "| uniform |" in text
    assert "sharing it saved" in text
    for fig in ("accuracy.png", "relabel.png", "class_histogram.png"):
        data = (out / fig).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        assert f"]({fig})" in text
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert rows[0].startswith("dataset,noise,learner,seed,method,")
    assert len(rows) == 1 + len(expand(spec)[1])
    res = json.loads((out / "results.json").read_text())
    assert res["cost"]["cells"] == 4 and res["cost"]["warmups"] == 1
    assert "learner_state" in rows[0].split(",")
    for c in res["cells"]:  # the learner's per-example statistics travel from metrics.json to the report
        m = json.loads((out / "cells" / c["cell"] / "metrics.json").read_text())
        assert json.loads(c["learner_state"]) == m["sample_state"]
    # the aggregate in results.json equals the cells' own numbers (one seed: mean = the value)
    accs = {(c["method"], c["fraction"]): c["test_accuracy"] for c in res["cells"]}
    for a in res["aggregate"]["test_accuracy"]:
        assert a["mean"] == pytest.approx(accs[(a["method"], a["fraction"])]) and a["n"] == 1


def test_rerun_skips_finished_cells(swept):
    spec, out, _ = swept
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("metrics.json")}
    again = run_bench(spec, out)
    assert not again.computed and not again.warmups_computed and len(again.cached) == len(stamps)
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("metrics.json")} == stamps


def test_killed_sweep_resumes_without_losing_or_repeating_cells(tmp_path):
    spec = tiny_spec(methods=["uniform", "small_loss", "prune4rel"], seeds=[0, 1])
    groups, cells = expand(spec)
    out = tmp_path / "sweep"
    seen = {"cells": 0}

    def killer(ev):
        if ev.kind == "cell":
            seen["cells"] += 1
        # the kill lands in the middle of the fourth cell's training
        if ev.kind == "epoch" and seen["cells"] == 3 and ev.info.stage == "train" and ev.info.logs is not None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_bench(spec, out, progress=killer)
    finished = {str(p.parent.relative_to(out / "cells")) for p in (out / "cells").rglob("metrics.json")}
    assert len(finished) == 3
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("metrics.json")}
    second = run_bench(spec, out)
    assert set(second.cached) == finished
    assert not set(second.computed) & finished
    assert sorted(second.cached + second.computed) == sorted(c.key for c in cells)
    assert second.warmups_computed == [groups[1].name]  # the first group's warm-up was done before the kill
    for p, t in stamps.items():
        assert p.stat().st_mtime_ns == t  # finished cells were not computed again
    _, records, missing = collect(out)
    assert missing == 0 and len(records) == len(cells)


def test_cells_run_with_other_settings_are_recomputed_and_the_sweep_says_why(swept, tmp_path):
    import shutil

    spec, out, _ = swept
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    changed = tiny_spec(run={**TINY_RUN, "epochs": 3})
    res = run_bench(changed, copy)
    assert sorted(res.computed) == sorted(c.key for c in expand(changed)[1]) and not res.cached
    # the warm-up's schedule changed too (its cosine runs over `epochs`): it and every cell are stale
    assert all(any("epochs 2 -> 3" in w for w in why) for why in res.stale.values())
    meta = json.loads((copy / "bench.json").read_text())
    assert set(meta["stale_recomputed"]) == set(res.stale)


def test_failed_cell_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import robustprune.bench.runner as runner

    real = runner._do_cell

    def flaky(cfg, progress=None):
        if cfg["method"] == "uniform":
            raise RuntimeError("diverged")
        return real(cfg, progress)

    monkeypatch.setattr(runner, "_do_cell", flaky)
    res = run_bench(tiny_spec(fractions=[0.5]), tmp_path / "s")
    assert list(res.failed.values()) == ["diverged"] and len(res.computed) == 1
    meta = json.loads((tmp_path / "s" / "bench.json").read_text())
    assert list(meta["failed"]) == list(res.failed)


def test_signals_reuse_needs_the_same_training_set(tmp_path):
    sig = tmp_path / "w"
    make_signals(RunConfig(subset=200, warmup_epochs=1, epochs=2, out=str(sig)))
    res = run(RunConfig(subset=200, warmup_epochs=1, epochs=2, signals=str(sig / "signals.npz"), method="uniform"))
    assert res.reused == ("signals",) and res.metrics["timings"]["warmup"] > 0
    with pytest.raises(ValueError, match="was made for another training set"):
        run(RunConfig(subset=200, noise="sym:0.2", warmup_epochs=1, epochs=2, signals=str(sig / "signals.npz")))
    with pytest.raises(ValueError, match="signals file .* does not exist"):
        run(RunConfig(subset=200, signals=str(tmp_path / "nope.npz")))


@pytest.mark.slow
def test_parallel_jobs_give_the_same_cells(tmp_path):
    """Two worker processes (one thread each) compute every cell as one process with one thread does: the same
    warm-up signals, subsets and accuracies, bit for bit."""
    import torch

    from robustprune.bench.runner import cell_dir, warmup_dir
    from robustprune.selection.result import Selection
    from robustprune.signals import Signals

    spec = tiny_spec()
    res = run_bench(spec, tmp_path / "p", jobs=2)
    groups, cells = expand(spec)
    assert not res.failed and len(res.computed) == len(cells)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = run_bench(spec, tmp_path / "s", jobs=1)
    finally:
        torch.set_num_threads(threads)
    assert not ref.failed
    for g in groups:
        a, b = (Signals.load(warmup_dir(tmp_path / d, g) / "signals.npz") for d in ("p", "s"))
        assert np.array_equal(a.probs, b.probs) and np.array_equal(a.features, b.features)
    for c in cells:
        pa, sa = (cell_dir(tmp_path / d, c) for d in ("p", "s"))
        picks = [Selection.load(d / "selection.npz").indices for d in (pa, sa)]
        assert np.array_equal(*picks)
        ma, ms = (json.loads((d / "metrics.json").read_text()) for d in (pa, sa))
        assert ma["test_accuracy"] == ms["test_accuracy"] and ma["relabel_accuracy"] == ms["relabel_accuracy"]


# -------------------------------------------------------------------------------------------------- CLI


def invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "160"})


def test_cli_bench_and_report(tmp_path):
    out = tmp_path / "cli"
    args = ["bench", "--dataset", "digits", "--noise", "sym:0.4", "--learners", "ce", "--methods",
            "uniform,uncertainty", "--param", "uncertainty.kind=margin", "--fractions", "0.5", "--seeds", "0",
            "--epochs", "2", "--warmup-epochs", "1", "--subset", "200", "--no-figures", "--out", out]  # fmt: skip
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "2 cells computed, 0 reused, 0 failed" in result.stdout
    # not a terminal: a plain line per cell with the elapsed and remaining time of the sweep
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("cell ")]
    assert len(lines) == 2 and all("elapsed, remaining ~" in ln for ln in lines), result.stderr
    text = (out / "report.md").read_text()
    assert "method `uncertainty` = uncertainty (kind=margin)" in text
    result = invoke(args)
    assert "0 cells computed, 2 reused" in result.stdout
    result = invoke(["report", out, "--no-figures"])
    assert result.exit_code == 0 and "report.md" in result.stdout


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_cli_bench_takes_run_names_and_defaults(tmp_path, monkeypatch):
    import robustprune.bench as bench_pkg

    seen = {}

    def fake_run_bench(spec, out, **kw):
        seen["spec"] = spec
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(bench_pkg, "run_bench", fake_run_bench)
    # singular names as in run, and run's defaults for every axis not given
    invoke(["bench", "--method", "uniform", "--learner", "ce", "--fraction", "0.3", "--seed", "2", "--out", tmp_path])
    spec = seen["spec"]
    assert [m.method for m in spec.methods] == ["uniform"] and list(spec.learners) == ["ce"]
    assert list(spec.fractions) == [0.3] and list(spec.seeds) == [2]
    assert list(spec.datasets) == ["digits"] and list(spec.noises) == ["sym:0.4"]
    invoke(["bench", "--out", tmp_path])
    spec = seen["spec"]
    assert [m.method for m in spec.methods] == ["prune4rel_auto"] and list(spec.learners) == ["sop"]
    assert list(spec.fractions) == [0.5] and list(spec.seeds) == [0]
    # every option a grid may set has run's flag (derived from the RunConfig field), unset = not overridden
    invoke(["bench", "--epochs", "3", "--eval-every", "2", "--subset", "100", "--no-class-balanced",
            "--out", tmp_path])  # fmt: skip
    assert seen["spec"].run == {"epochs": 3, "eval_every": 2, "subset": 100, "class_balanced": False}
    # plural forms are still accepted
    invoke(["bench", "--methods", "uniform,el2n", "--learners", "sop,ce", "--fractions", "0.2,0.4", "--out", tmp_path])
    assert [m.method for m in seen["spec"].methods] == ["uniform", "el2n"]
    assert list(seen["spec"].fractions) == [0.2, 0.4]


def test_cli_bench_dry_run_shows_one_cell_and_runs_nothing(tmp_path):
    result = invoke(["bench", "--method", "uniform,prune4rel", "--fraction", "0.2,0.4", "--epochs", "3", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "1 warm-up groups, 4 cells; the first cell, digits_sym0.4_sop_s0/uniform_f0.2" in result.stdout
    rows = {
        ln.split()[0]: [p.strip() for p in ln.split(None, 2)[1:]] for ln in result.stdout.splitlines()[1:] if ln.strip()
    }
    assert rows["epochs"] == ["3", "grid (config file or flag)"]
    assert rows["warmup_epochs"] == ["3", "dataset protocol"]  # the protocol's 10, capped at the epochs
    assert "nothing was run" in result.stdout and not any(tmp_path.iterdir())


def test_cli_bench_errors(tmp_path):
    p = write_toml(tmp_path, GOOD_TOML.replace('  "uncertainty",', '  "bogus",'))
    assert_one_line_error(invoke(["bench", "--config", p, "--out", tmp_path / "o"]), f"{p}:8:", "'bogus'")
    assert_one_line_error(invoke(["bench", "--config", p]), "--out DIR is required")
    assert_one_line_error(invoke(["bench", "--config", p, "--fractions", "0.2,x", "--out", tmp_path / "o"]),
                          "--fraction must be")  # fmt: skip
    assert_one_line_error(invoke(["report", tmp_path]), "not a sweep directory")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml")), ids=str)
def test_every_shipped_config_loads(path):
    from robustprune.bench import build_spec, expand, load_config

    cfg = load_config(path)
    run_table = cfg["data"].get("run", {})
    if run_table.get("device") == "cuda":  # GPU presets: everything but the device is checked on a CPU machine
        run_table["device"] = "cpu"
    groups, cells = expand(build_spec(cfg["data"], cfg["where"]))  # names, options and variants are checked here
    assert groups and cells


def test_a_sweep_with_other_methods_reuses_the_warm_ups_of_the_same_directory(tmp_path):
    out = tmp_path / "sweep"
    first = run_bench(tiny_spec(methods=["small_loss"], fractions=[0.5]), out)
    assert first.warmups_computed
    stamp = next((out / "warmup").rglob("signals.npz")).stat().st_mtime_ns
    # another first method and fraction: the warm-up depends on neither and is reused, not refused or redone
    second = run_bench(tiny_spec(methods=["prune4rel", "small_loss"], fractions=[0.3, 0.5]), out)
    assert second.warmups_computed == []
    assert next((out / "warmup").rglob("signals.npz")).stat().st_mtime_ns == stamp
    assert len(second.cached) == 1 and len(second.computed) == 3


def test_one_fraction_plots_points_per_method_not_reference_lines(tmp_path, monkeypatch):
    import matplotlib.axes

    calls = {"axhline": [], "errorbar": []}
    real_errorbar = matplotlib.axes.Axes.errorbar

    def axhline(self, y=0, *args, **kw):
        calls["axhline"].append(kw.get("label"))

    def errorbar(self, x, y, *args, **kw):
        calls["errorbar"].append((kw.get("label"), list(x)))
        return real_errorbar(self, x, y, *args, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", axhline)
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", errorbar)
    out = tmp_path / "one"
    run_bench(tiny_spec(methods=["uniform", "small_loss", "full"], fractions=[0.3]), out)
    write_report(out)
    # accuracy.png and relabel.png: each method at 0.3 is a point; only "full" (all data) is a line
    assert calls["axhline"] == ["full (all data)", "full (all data)"]
    assert sorted(calls["errorbar"]) == [("small_loss", [0.3])] * 2 + [("uniform", [0.3])] * 2


# ------------------------------------------------------------------ signal sources and the validation split


def test_a_variant_with_its_own_signal_source_gets_its_own_warmup_group(tmp_path):
    text = GOOD_TOML.replace('  "full",\n]', '  "full",\n  "p4r_oof",\n  "p4r_ep2",\n]') + (
        '\n[variants.p4r_oof]\nmethod = "prune4rel_auto"\nsignal_source = "FOLDS:3"\n'
        '\n[variants.p4r_ep2]\nmethod = "prune4rel"\nwarmup_epochs = 2\ngain = "exact"\n'
    )
    loaded = load_config(write_toml(tmp_path, text))
    spec = build_spec(loaded["data"], loaded["where"])
    oof = next(m for m in spec.methods if m.label == "p4r_oof")
    assert oof.run == {"signal_source": "FOLDS:3"} and oof.params == {}
    assert next(m for m in spec.methods if m.label == "p4r_ep2").params == {"gain": "exact"}
    groups, cells = expand(spec)
    assert len(groups) == 3 * (1 * 2 * 2 * 3)  # each (dataset, noise, learner, seed) has three warm-ups
    names = {g.name for g in groups}
    assert "digits_sym0.4_sop_s0" in names and "digits_sym0.4_sop_s0_signal_source-folds3" in names
    assert "digits_sym0.4_sop_s0_warmup_epochs-2" in names
    for c in cells:
        assert warmup_key(c.config) == warmup_key(c.group.config)
        want = "folds:3" if c.method.label == "p4r_oof" else RunConfig().signal_source
        assert c.config.signal_source == want and c.group.block == (c.group.dataset, c.group.noise, c.group.learner)
    assert BenchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    bad = text.replace('signal_source = "FOLDS:3"', 'signal_source = "folds:1"')
    msg, p = _line_error(tmp_path, bad)
    assert msg.startswith(f"{p}:") and "variant 'p4r_oof'" in msg and "at least 2" in msg


def test_validation_accuracy_is_tabulated_and_marks_the_choice_in_the_test_table():
    from robustprune.bench.report import chosen_on_validation, render_markdown

    recs = []
    times = {"time_warmup": 1.0, "time_signals": 0.0, "time_selection": 0.1, "time_train": 1.0, "time_evaluate": 0.1,
             "warmup_group": "g", "relabel_accuracy": 0.5, "subset_noise_rate": 0.1, "dataset": "digits"}  # fmt: skip

    def _rec(method, fraction, seed, acc, **kw):  # noqa: F811 - the module's, with the report's fields
        return {"noise": "sym:0.4", "learner": "ce", "method": method, "fraction": fraction, "seed": seed,
                "test_accuracy": acc, **times, **kw}  # fmt: skip

    # validation prefers b at 0.2 (test prefers a) and a at 0.4
    for seed in (0, 1):
        recs += [
            _rec("a", 0.2, seed, 0.80, val_accuracy=0.50),
            _rec("b", 0.2, seed, 0.70, val_accuracy=0.55),
            _rec("a", 0.4, seed, 0.85, val_accuracy=0.60),
            _rec("b", 0.4, seed, 0.75, val_accuracy=0.40),
        ]
    chosen = chosen_on_validation(recs)
    assert chosen == {("digits", "sym:0.4", "ce", 0.2): "b", ("digits", "sym:0.4", "ce", 0.4): "a"}
    spec = tiny_spec(methods=["uniform"], fractions=[0.2, 0.4], seeds=[0, 1], run={**TINY_RUN, "val_fraction": 0.2})
    meta = {"spec": {**spec.to_dict(), "methods": [{"label": m, "method": "uniform", "params": {}} for m in "ab"]}}
    text = render_markdown(meta, recs, 0)
    assert text.index("## Validation accuracy") < text.index("## Test accuracy")
    assert "| b | 70.0 ± 0.0 † | 75.0 ± 0.0 |" in text and "| a | **80.0 ± 0.0** | **85.0 ± 0.0** † |" in text
    assert "decisions: on validation accuracy (a 20% split" in text
    assert "signals: `probe:5` (out-of-sample)" in text  # the default
    # without a validation split the report says it cannot choose
    no_val = [{**r, "val_accuracy": None} for r in recs]
    text = render_markdown({"spec": {**meta["spec"], "run": dict(TINY_RUN)}}, no_val, 0)
    assert "## Validation accuracy" not in text and "†" not in text and "cannot choose options" in text


def test_warmup_costs_compare_each_signal_setting_with_the_grids():
    from robustprune.bench.report import warmup_costs

    recs = [
        {"warmup_group": "g_s0", "warmup_tag": "", "time_warmup": 2.0, "time_signals": 0.0},
        {"warmup_group": "g_s0", "warmup_tag": "", "time_warmup": 2.0, "time_signals": 0.0},  # same warm-up
        {"warmup_group": "g_s1", "warmup_tag": "", "time_warmup": 4.0, "time_signals": 0.0},
        {"warmup_group": "g_s0_f5", "warmup_tag": "signal_source-folds5", "time_warmup": 14.0, "time_signals": 1.0},
    ]
    assert warmup_costs(recs) == [("", 2, 3.0, 1.0), ("signal_source-folds5", 1, 15.0, 5.0)]
