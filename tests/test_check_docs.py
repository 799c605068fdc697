"""benchmarks/check_docs.py: the tables of docs/results.md against the committed reports they name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_docs", ROOT / "benchmarks" / "check_docs.py")
check_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_docs)

CSV = """dataset,noise,learner,seed,method,fraction,test_accuracy,val_accuracy
d,sym:0.4,sop,0,uniform,0.2,0.60,0.40
d,sym:0.4,sop,1,uniform,0.2,0.70,0.42
d,sym:0.4,sop,0,auto,0.2,0.80,0.45
d,sym:0.4,sop,1,auto,0.2,0.81,0.46
d,sym:0.4,ce,0,auto,0.2,0.10,0.10
d,sym:0.4,sop,0,full,1.0,0.90,0.5
"""


def _doc(tmp_path, table: str) -> Path:
    (tmp_path / "results" / "r").mkdir(parents=True)
    (tmp_path / "results" / "r" / "results.csv").write_text(CSV)
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nSome text.\n\n" + table + "\nMore text.\n")
    return doc


GOOD = """<!-- source: results/r metric=test_accuracy learner=sop -->
| method | 0.2 | 1 |
|---|---:|---:|
| uniform | 65.0 ± 7.1 | – |
| **auto** | **80.5 ± 0.7** † (7%) | – |
| all data | – | 90.0 |
"""


def test_a_table_that_matches_its_report_passes(tmp_path, capsys):
    doc = _doc(
        tmp_path,
        GOOD.replace("metric=test_accuracy", "metric=test_accuracy rows=all:full").replace("| all data |", "| all |"),
    )
    assert check_docs.check(doc) == 0
    assert "1 tables checked against their sources, 0 failed" in capsys.readouterr().out


def test_a_wrong_number_or_missing_cell_fails(tmp_path, capsys):
    doc = _doc(
        tmp_path, GOOD.replace("65.0 ± 7.1", "65.0 ± 7.0").replace("| all data | – | 90.0 |", "| all | – | 90.0 |")
    )
    assert check_docs.check(doc) == 1
    out = capsys.readouterr().out
    assert "uniform at 0.2: docs say 65.0 ± 7.0, the report 65.0 ± 7.1" in out
    assert "all at 1: no cell in the source" in out


def test_tables_without_a_source_fail_only_when_strict(tmp_path, capsys):
    doc = _doc(tmp_path, GOOD.split("\n", 1)[1])
    assert check_docs.check(doc) == 0 and check_docs.check(doc, strict=True) == 1
    doc = _doc(tmp_path / "x", "<!-- source: none (a hand-made table) -->\n" + GOOD.split("\n", 1)[1])
    assert check_docs.check(doc) == 0 and check_docs.check(doc, strict=True) == 1


def test_other_row_and_column_keys(tmp_path, capsys):
    by_seed = """<!-- source: results/r metric=test_accuracy row=seed col=method learner=sop fraction=0.2 -->
| seed | uniform | auto |
|---|---:|---:|
| 0 | 60.0 | **80.0** |
| seed 1 | 70.0 | 81.0 |
"""
    assert check_docs.check(_doc(tmp_path, by_seed)) == 0
    assert check_docs.check(_doc(tmp_path / "x", by_seed.replace("| 81.0 |", "| 81.5 |"))) == 1
    assert "1 at auto: docs say 81.5, the report 81.0" in capsys.readouterr().out
    joined = """<!-- source: results/r metric=test_accuracy col=noise,learner method=auto fraction=0.2 row=seed -->
| seed | sym:0.4/sop | sym:0.4/ce |
|---|---:|---:|
"""
    assert check_docs.check(_doc(tmp_path / "y", joined + "| 0 | 80.0 | 10.0 |\n")) == 0
    assert check_docs.check(_doc(tmp_path / "z", joined + "| 0 | 80.0 | 11.0 |\n")) == 1


TABLE = "| a | b |\n|---|---:|\n| x | 1.5 |\n"


def test_a_table_printed_by_a_script_is_rerun_and_compared(tmp_path, capsys):
    cmd = "python -c \"print('| a | b |'); print('|---|---:|'); print('| x | **1.5** |'); print('| y | 2.0 |')\""
    assert check_docs.check(_doc(tmp_path, f"<!-- source: run {cmd} -->\n" + TABLE)) == 0
    assert check_docs.check(_doc(tmp_path / "x", f"<!-- source: run {cmd} -->\n" + TABLE.replace("1.5", "1.6"))) == 1
    assert "line not in its output: | x | 1.6 |" in capsys.readouterr().out
    failing = 'python -c "import sys; sys.exit(3)"'
    assert check_docs.check(_doc(tmp_path / "y", f"<!-- source: run {failing} -->\n" + TABLE)) == 1
    assert "exited 3" in capsys.readouterr().out


def test_a_table_held_in_a_committed_file(tmp_path, capsys):
    doc = _doc(tmp_path, "<!-- source: file results/r/out.md -->\n" + TABLE)
    (tmp_path / "results" / "r" / "out.md").write_text("# saved output\n\n" + TABLE.replace("| x |", "|  x  |"))
    assert check_docs.check(doc) == 0
    (tmp_path / "results" / "r" / "out.md").write_text("# saved output\n\n" + TABLE.replace("1.5", "2.5"))
    assert check_docs.check(doc) == 1
    (tmp_path / "results" / "r" / "out.md").unlink()
    assert check_docs.check(doc) == 1
    assert "does not exist" in capsys.readouterr().out


def test_a_text_table_may_hold_no_figures(tmp_path):
    legend = "| label | meaning |\n|---|---|\n| `A_in` | in-sample signals |\n"
    assert check_docs.check(_doc(tmp_path, "<!-- source: text -->\n" + legend), strict=True) == 0
    bad = legend + "| `A_probe5` | 3.5% better |\n"
    assert check_docs.check(_doc(tmp_path / "x", "<!-- source: text -->\n" + bad), strict=True) == 1


def test_the_results_document_matches_its_reports(capsys):
    # strict: every table names its committed source (a report, a script over reports, or saved output)
    assert check_docs.check(ROOT / "docs" / "results.md", strict=True) == 0, capsys.readouterr().out
