"""Every number traceable: the code identity, a run's identity (resolved values, inputs, code), sweeps that
recompute exactly the cells whose identity changed and say why, provenance in artifacts and reports, ties."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math

import pytest

import robustprune.rundir as rundir
from robustprune._provenance import code_identity, source_digest
from robustprune.bench import build_spec, run_bench, write_report
from robustprune.bench.report import leaders, render_table
from robustprune.pipeline import run
from robustprune.runconfig import RunConfig

TINY = {"subset": 200, "test_subset": 100, "warmup_epochs": 1, "epochs": 2}


def spec(methods=("uniform", "prune4rel_auto", "prune4rel"), **run_over):
    return build_spec({
        "datasets": ["digits"], "noises": ["sym:0.4"], "learners": ["ce"], "methods": list(methods),
        "fractions": [0.3], "seeds": [0], "run": {**TINY, **run_over},
    })  # fmt: skip


# ------------------------------------------------------------------------------------------ code identity


def test_the_source_digest_ignores_comments_docstrings_and_layout_but_not_code(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text('"""Doc."""\n\ndef f(x):\n    """Doc of f."""\n    return x + 1  # one\n')
    first = source_digest(str(pkg))
    (pkg / "a.py").write_text('"""Another doc."""\n# a comment\n\n\ndef f(x):\n    return (x +\n            1)\n')
    source_digest.cache_clear()
    assert source_digest(str(pkg)) == first
    (pkg / "a.py").write_text('"""Doc."""\n\ndef f(x):\n    return x + 2\n')
    source_digest.cache_clear()
    second = source_digest(str(pkg))
    assert second != first
    (pkg / "cli").mkdir()  # presentation-only modules are left out
    (pkg / "cli" / "run.py").write_text("print('a summary')\n")
    source_digest.cache_clear()
    assert source_digest(str(pkg)) == second
    source_digest.cache_clear()


def test_code_identity_names_version_and_source():
    ident = code_identity()
    assert ident["version"] and len(ident["source_sha256"]) == 64
    assert ident["commit"] is None or len(ident["commit"]) == 40


# ---------------------------------------------------------------------------------------------- sweeps


@pytest.fixture()
def swept(tmp_path):
    s = spec()
    out = tmp_path / "sweep"
    first = run_bench(s, out)
    assert not first.failed and len(first.computed) == 3
    return s, out


def _recomputed(result):
    return sorted(k.split("/")[-1] for k in result.computed)


def test_an_unchanged_sweep_reuses_every_cell(swept):
    s, out = swept
    again = run_bench(s, out)
    assert again.computed == [] and len(again.cached) == 3 and again.stale == {}


def test_a_changed_method_default_recomputes_exactly_that_methods_cells(swept, monkeypatch):
    from robustprune.selection import registry

    s, out = swept
    info = registry.get_method("prune4rel_auto")
    sig = inspect.signature(info.func)

    def func(**kw):  # prune4rel_auto with another default for target_degree
        return info.func(**{"target_degree": 7.0, **kw})

    func.__signature__ = sig.replace(
        parameters=[p.replace(default=7.0) if p.name == "target_degree" else p for p in sig.parameters.values()]
    )
    changed = dataclasses.replace(info, func=func)
    original = registry.get_method
    monkeypatch.setattr(registry, "get_method", lambda name: changed if original(name).name == info.name
                        else original(name))  # fmt: skip
    again = run_bench(s, out)
    assert _recomputed(again) == ["prune4rel_auto_f0.3"] and len(again.cached) == 2
    (why,) = again.stale.values()
    assert any(w.startswith("params.target_degree None -> 7.0") for w in why), why


def test_a_changed_protocol_value_recomputes_exactly_the_cells_that_use_it(swept, monkeypatch):
    import robustprune.runconfig as runconfig

    s, out = swept
    original = runconfig.protocol_for

    def protocol(dataset, tabular=False):
        p = original(dataset, tabular=tabular)
        params = {**p.method_params, "prune4rel": {**p.method_params.get("prune4rel", {}), "tau": 0.9}}
        return dataclasses.replace(p, method_params=params)

    monkeypatch.setattr(runconfig, "protocol_for", protocol)  # the one place a protocol value is read
    again = run_bench(s, out)
    assert _recomputed(again) == ["prune4rel_f0.3"] and len(again.cached) == 2
    (why,) = again.stale.values()
    assert any(w.startswith("params.tau 0.975 -> 0.9") for w in why), why


def test_changed_code_recomputes_warmups_and_cells_and_reuse_stale_keeps_them(swept, monkeypatch):
    s, out = swept
    monkeypatch.setattr(rundir, "source_digest", lambda: "f" * 64)
    kept = run_bench(s, out, reuse_stale=True)
    assert kept.computed == [] and len(kept.stale_kept) == 3 and kept.stale == {}
    text = write_report(out).read_text()
    assert "‡" in text and "kept with --reuse-stale" in text and "code changed" in text
    again = run_bench(s, out)
    assert len(again.computed) == 3 and again.warmups_computed == ["digits_sym0.4_ce_s0"]
    assert "warmup/digits_sym0.4_ce_s0" in again.stale
    assert all("code changed" in "; ".join(v) for v in again.stale.values())
    assert run_bench(s, out).computed == []  # and now they are current
    text = write_report(out).read_text()
    assert "‡" not in text


def test_a_report_says_where_its_cells_came_from(swept):
    s, out = swept
    run_bench(s, out)  # computes nothing
    text = write_report(out).read_text()
    assert "## Provenance" in text and "rendered on" in text and "computed none of them" in text
    rows = (out / "results.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"code", "computed_at", "host"} <= set(header)
    metrics = json.loads(next((out / "cells").rglob("metrics.json")).read_text())
    prov = metrics["provenance"]
    assert prov["code"]["source_sha256"] == source_digest() and prov["computed_at"].endswith("Z")
    assert prov["host"]["torch_threads"] >= 1


# ------------------------------------------------------------------------------------------ run --resume


def test_resume_refuses_a_run_made_by_other_code(tmp_path, monkeypatch):
    cfg = dict(dataset="digits", subset=200, warmup_epochs=1, epochs=2, learner="ce", fraction=0.3,
               out=str(tmp_path / "r"))  # fmt: skip
    run(RunConfig(**cfg))
    run(RunConfig(**cfg, resume=True))  # same code: read back
    monkeypatch.setattr(rundir, "source_digest", lambda: "0" * 64)
    with pytest.raises(ValueError, match=r"made by other code or defaults \(code changed"):
        run(RunConfig(**cfg, resume=True))
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["identity"]["resolved"]["params.gain"] == "exact"  # defaults are part of the identity
    assert stored["provenance"]["code"]["version"]


# -------------------------------------------------------------------------------------------------- ties


def test_ties_are_marked_as_ties():
    stats = {"a": (0.70, 0.02, 2), "b": (0.69, 0.005, 2), "c": (0.60, 0.01, 2), "d": (math.nan, 0.0, 0)}
    assert leaders(stats) == {"a", "b"}  # b is within a's standard deviation
    assert leaders({"a": (0.70, 0.0, 1), "b": (0.69, 0.0, 1)}) == {"a"}
    assert leaders({"x": (0.10, 0.01, 2), "y": (0.30, 0.01, 2)}, higher_better=False) == {"x"}
    agg = {("d", "n", "l", m, 0.2): v for m, v in stats.items() if m != "d"}
    table = render_table(agg, ("d", "n", "l"), ["a", "b", "c"], [0.2], True, seeds=3)
    assert "| a | **70.0 ± 2.0** (n=2) |" in table and "| b | **69.0 ± 0.5** (n=2) |" in table
    assert "| c | 60.0 ± 1.0 (n=2) |" in table
