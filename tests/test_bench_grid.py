"""Benchmark grids: the identities of groups and cells (the sweep cache's keys) stay what they were."""

import ast
from pathlib import Path

from robustprune.bench import build_spec, expand

TINY_RUN = {"subset": 200, "test_subset": 200, "warmup_epochs": 1, "epochs": 2}


def test_cell_keys_are_pinned():
    # a sweep directory finds its finished cells by these keys: they must not change
    spec = build_spec({
        "datasets": ["digits"], "noises": ["sym:0.4", "asym:0.2"], "learners": ["ce"],
        "methods": ["prune4rel", "oof", "full"], "fractions": [0.3, 0.6], "seeds": [0, 1], "run": dict(TINY_RUN),
        "variants": {"oof": {"method": "prune4rel", "signal_source": "folds:3"}},
    })  # fmt: skip
    groups, cells = expand(spec)
    assert [g.name for g in groups[:2]] == ["digits_sym0.4_ce_s0", "digits_sym0.4_ce_s0_signal_source-folds3"]
    assert [g.tag for g in groups[:2]] == ["", "signal_source-folds3"]
    assert [c.key for c in cells[:5]] == [
        "digits_sym0.4_ce_s0/prune4rel_f0.3",
        "digits_sym0.4_ce_s0/prune4rel_f0.6",
        "digits_sym0.4_ce_s0_signal_source-folds3/oof_f0.3",
        "digits_sym0.4_ce_s0_signal_source-folds3/oof_f0.6",
        "digits_sym0.4_ce_s0/full_f1",
    ]
    assert cells[-1].key == "digits_asym0.2_ce_s1/full_f1"
    assert len(groups) == 8 and len(cells) == 20
    assert [c.fraction for c in cells[:5]] == [0.3, 0.6, 0.3, 0.6, 1.0]
    assert cells[2].config.signal_source == "folds:3" and cells[2].group is groups[1]


def test_active_learning_cell_keys_are_pinned():
    spec = build_spec({
        "datasets": ["digits"], "noises": ["sym:0.4"], "learners": ["ce"], "methods": ["uniform", "margin"],
        "seeds": [0, 1], "run": dict(TINY_RUN), "al": {"initial": 20, "n_query": 10, "rounds": 2},
        "variants": {"margin": {"method": "uncertainty", "kind": "margin", "warmup_epochs": 3}},
    })  # fmt: skip
    groups, cells = expand(spec)
    assert [g.name for g in groups] == ["digits_sym0.4_ce_s0", "digits_sym0.4_ce_s1"]
    assert [c.key for c in cells] == [
        "digits_sym0.4_ce_s0/uniform",
        "digits_sym0.4_ce_s0/margin",
        "digits_sym0.4_ce_s1/uniform",
        "digits_sym0.4_ce_s1/margin",
    ]
    # an active-learning cell is recorded at fraction 1, its config keeps RunConfig's default fraction, and a
    # variant's run options play no part (a loop has no warm-up)
    assert {c.fraction for c in cells} == {1.0} and {c.config.fraction for c in cells} == {0.5}
    assert cells[1].config.warmup_epochs == 1 and cells[1].al.rounds == 2


def test_bench_modules_import_the_grid_from_where_it_lives():
    # each part is imported from the module that holds it, and the types import no other part of bench
    bench = Path(__file__).resolve().parents[1] / "robustprune" / "bench"

    def bench_imports(name: str) -> set[str]:
        tree = ast.parse((bench / name).read_text())
        found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        return {m for m in found if m.startswith("robustprune.bench")}

    assert not (bench / "grid.py").exists()
    assert bench_imports("spec.py") == set()
    assert bench_imports("config_file.py") == {"robustprune.bench.spec"}
