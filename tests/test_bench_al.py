"""Active-learning grids in robustprune bench: [al] tables and --al-* flags, one loop per cell, resume, and the
report (curves mean ± std, AUC, final accuracy; CSV, JSON, PNG)."""

import csv
import json

import pytest
from typer.testing import CliRunner

from robustprune.bench import ConfigError, build_spec, expand, load_config, run_bench, write_report
from robustprune.bench.report import format_mean_std, mean_std
from robustprune.cli import app

RUN = {"subset": 300, "test_subset": 200, "epochs": 1, "model": "mlp"}
AL = {"initial": 20, "n_query": 20, "rounds": 2}
SIZES = [20, 40, 60]


def tiny(**over):
    data = {"datasets": ["digits"], "noises": ["sym:0.4"], "learners": ["ce"], "methods": ["uniform", "margin"],
            "seeds": [0, 1], "run": dict(RUN), "al": dict(AL),
            "variants": {"margin": {"method": "uncertainty", "kind": "margin"}}}  # fmt: skip
    data.update(over)
    return build_spec(data)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-al") / "sweep"
    spec = tiny()
    return spec, out, run_bench(spec, out, command="test al sweep")


def _rounds(out, key):
    return json.loads((out / "cells" / key / "rounds.json").read_text())


def test_an_al_grid_runs_one_loop_per_cell_without_warm_ups(swept):
    spec, out, result = swept
    groups, cells = expand(spec)
    assert len(groups) == 2 and len(cells) == 4 and all(c.al is not None for c in cells)
    assert [c.key for c in cells][:2] == ["digits_sym0.4_ce_s0/uniform", "digits_sym0.4_ce_s0/margin"]
    assert not result.failed and not result.warmups_computed and not (out / "warmup").exists()
    assert sorted(result.computed) == sorted(c.key for c in cells)
    for c in cells:
        stored = _rounds(out, c.key)
        assert [r["labelled"] for r in stored["rounds"]] == SIZES
        conf = json.loads((out / "cells" / c.key / "al_config.json").read_text())
        assert (
            conf["al"] == {**AL, "dynamics_epochs": None}
            and conf["run"]["method"] == c.method.method
            and conf["run"]["seed"] == c.group.seed
        )
        assert conf["run"]["params"] == c.method.params and conf["run"]["signals"] is None


def _table_rows(text, heading):
    """{method: [cells]} of the first table after ``heading``, bold marks removed."""
    lines = text[text.index(heading) :].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| method |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        cells = [c.strip().replace("**", "") for c in ln.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return header, rows


def test_report_has_the_curves_auc_and_final_accuracy_of_the_cells(swept):
    spec, out, _ = swept
    text = write_report(out).read_text()
    assert text.startswith("# Active-learning report") and "Command: `test al sweep`" in text
    assert "20 examples labelled at random (class-balanced) in round 0, then 20 queried per round for 2" in text
    assert "method `margin` = uncertainty (kind=margin)" in text
    header, rows = _table_rows(text, "### digits, noise sym:0.4, learner ce (seeds 0, 1)")
    assert header == ["method", "20", "40", "60", "AUC", "final"]
    assert set(rows) == {"uniform", "margin"}
    for m in ("uniform", "margin"):
        stored = [_rounds(out, f"digits_sym0.4_ce_s{s}/{m}") for s in (0, 1)]
        curve = [format_mean_std(*mean_std([st["rounds"][i]["test_accuracy"] for st in stored])) for i in range(3)]
        auc = format_mean_std(*mean_std([st["summary"]["auc"] for st in stored]))
        final = format_mean_std(*mean_std([st["summary"]["final_test_accuracy"] for st in stored]))
        assert rows[m] == [*curve, auc, final]
    # the labelled pool after the last round
    _, pool = _table_rows(text, "## Labelled pool after the last round")
    st = [_rounds(out, f"digits_sym0.4_ce_s{s}/uniform") for s in (0, 1)]
    assert pool["uniform"][0] == format_mean_std(*mean_std([x["rounds"][-1]["pool_noise_rate"] for x in st]))
    assert "![test accuracy vs. labelled examples" in text and "](curves.png)" in text
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_report_csv_and_json_hold_every_round_and_the_aggregates(swept):
    spec, out, _ = swept
    write_report(out, figures=False)
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 3
    assert {"round", "labelled", "test_accuracy", "auc", "final_test_accuracy", "cell"} <= set(rows[0])
    for r in rows:
        stored = _rounds(out, r["cell"])
        row = stored["rounds"][int(r["round"])]
        assert float(r["test_accuracy"]) == pytest.approx(row["test_accuracy"])
        assert float(r["auc"]) == pytest.approx(stored["summary"]["auc"])
    res = json.loads((out / "results.json").read_text())
    assert res["missing"] == 0 and len(res["cells"]) == 4 and res["spec"]["al"] == AL
    for a in res["aggregate"]["auc"]:
        vals = [_rounds(out, f"digits_sym0.4_ce_s{s}/{a['method']}")["summary"]["auc"] for s in (0, 1)]
        assert (a["mean"], a["std"], a["n"]) == pytest.approx(mean_std(vals))
    assert {(a["method"], a["labelled"]) for a in res["aggregate"]["curve"]} == {
        (m, n) for m in ("uniform", "margin") for n in SIZES
    }


def test_a_rerun_reuses_finished_loops_and_report_regenerates(swept):
    spec, out, _ = swept
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("rounds.json")}
    again = run_bench(spec, out)
    assert not again.computed and len(again.cached) == 4
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("rounds.json")} == stamps
    (out / "report.md").unlink()
    result = CliRunner().invoke(app, ["report", str(out), "--no-figures"])
    assert result.exit_code == 0, result.output
    assert "| method | 20 | 40 | 60 | AUC | final |" in (out / "report.md").read_text()
    import shutil

    copy = out.parent / "copy"
    shutil.copytree(out, copy)
    changed = run_bench(tiny(run={**RUN, "epochs": 2}), copy)  # other settings: the loops are recomputed
    assert len(changed.computed) == 4 and not changed.cached
    assert all(any("epochs differs" in w for w in why) for why in changed.stale.values())


def _error(tmp_path, text):
    p = tmp_path / "al.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        cfg = load_config(p)
        build_spec(cfg["data"], cfg["where"])
    return str(exc.value).replace(str(p), "FILE")


GRID = 'datasets = ["digits"]\nnoises = ["sym:0.4"]\nlearners = ["ce"]\nmethods = ["uniform"]\n'


@pytest.mark.parametrize(
    "table, fragments",
    [
        ("[al]\nn_query = 0\n", ["FILE:6:", "n_query = 0", "positive integer"]),
        (
            "[al]\nrounds = 2\nn_querys = 5\n",
            ["FILE:7:", "unknown [al] key 'n_querys'", "initial, n_query, rounds, dynamics_epochs"],
        ),
        ('[al]\nrounds = "5"\n', ["FILE:6:", "bad [al] value rounds"]),
        ("[al]\ninitial = 1\n", ["FILE:6:", "initial", "at least 2"]),
        ("al = 3\n", ["FILE:5:", "'al' must be a table"]),
        ("fractions = [0.5]\n[al]\nrounds = 2\n", ["FILE:5:", "'fractions' does not apply"]),
        ("[run]\nsubset = 100\n[al]\nn_query = 50\nrounds = 2\n", ["FILE:9:", "= 150 exceeds the subset of 100"]),
    ],
)
def test_bad_al_tables_name_the_key_and_line(tmp_path, table, fragments):
    msg = _error(tmp_path, GRID + table)
    for f in fragments:
        assert f in msg, msg


def test_al_grids_take_training_dynamics_methods_and_refuse_methods_that_query_nothing(tmp_path):
    p = tmp_path / "dyn.toml"
    p.write_text(GRID.replace('"uniform"', '"uniform", "forgetting"') + "[al]\ndynamics_epochs = 2\n")
    cfg = load_config(p)
    spec = build_spec(cfg["data"], cfg["where"])
    assert [m.method for m in spec.methods] == ["uniform", "forgetting"] and spec.al == {"dynamics_epochs": 2}
    assert "'full' keeps every example" in _error(tmp_path, GRID.replace('"uniform"', '"full"') + "[al]\n")


def test_cli_al_flags_make_or_override_an_al_grid(tmp_path, monkeypatch):
    import robustprune.bench as bench_pkg

    seen = {}

    def fake_run_bench(spec, out, **kw):
        seen["spec"] = spec
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_pkg, "run_bench", fake_run_bench)

    def invoke(app, args):
        return CliRunner().invoke(app, args, env={"COLUMNS": "160"})

    invoke(app, ["bench", "--al-rounds", "3", "--al-n-query", "40", "--out", str(tmp_path)])
    spec = seen.pop("spec")
    assert spec.al == {"rounds": 3, "n_query": 40} and spec.fractions == ()
    assert [m.method for m in spec.methods] == ["prune4rel_auto"]  # robustprune al's default acquisition (run's)
    invoke(app, ["bench", "--al", "--method", "uniform,kcenter_greedy", "--out", str(tmp_path)])
    assert seen.pop("spec").al == {}
    p = tmp_path / "g.toml"
    p.write_text(GRID + "[al]\ninitial = 30\nrounds = 4\n")
    invoke(app, ["bench", "--config", str(p), "--al-rounds", "2", "--out", str(tmp_path)])
    assert seen.pop("spec").al == {"initial": 30, "rounds": 2}
    result = invoke(app, ["bench", "--al-rounds", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "bad [al] value rounds = 0" in result.stderr
    result = invoke(app, ["bench", "--al", "--fraction", "0.3", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "'fractions' does not apply" in result.stderr
    result = invoke(app, ["bench", "--al-rounds", "2", "--method", "uniform", "--dry-run"])
    assert "active learning: 1 loop (initial 100, 100 queried per round, 2 rounds), no warm-ups" in result.stdout
    keys = [ln.split()[0] for ln in result.stdout.splitlines()[1:] if ln.strip()]
    assert "epochs" in keys and "fraction" not in keys and "warmup_epochs" not in keys
    assert "spec" not in seen
