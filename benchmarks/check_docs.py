"""Check that the tables of docs/results.md match the committed reports they come from.

A table declares its source in an HTML comment on the line before its header::

    <!-- source: results/prune4rel-evidence-digits metric=test_accuracy dataset=digits noise=asym:0.4 learner=sop -->
    | method | 0.2 | 0.4 |
    |---|---:|---:|
    | uniform | 68.9 ± 11.0 | 69.1 ± 2.5 |

``results/NAME`` is a committed report folder under docs/ holding ``results.csv`` (one row per cell, as
``robustprune report`` writes it); the other keys select the cells (any CSV column: ``metric`` names the value,
``dataset``, ``noise``, ``learner``, ``signal_source``, ... filter rows). By default each table row is a method
label of the CSV and each column a kept fraction (``1`` for ``full``); ``row=COLUMN`` and ``col=COLUMN`` name
other CSV columns (e.g. ``row=seed col=method``;
``col=noise,learner`` makes columns headed ``sym:0.4/sop``; ``col=metric``: each column is the CSV column its
header names). Every cell's ``mean ± std`` (percent, one decimal, sample
standard deviation over seeds; a lone value without ``±``) must equal the CSV's, whatever bold, daggers or
bracketed notes surround it. ``rows=label:value,...`` maps a table's row names to the CSV's where they differ.

Tables derived by a script take one of two other forms::

    <!-- source: run python benchmarks/compare_methods.py docs/results/prune4rel-evidence-* --a A_probe5 -->
    <!-- source: file results/prune4rel-levers/tau-geometry.md -->

``run``: the command (run from the repository root; it must read committed files only) prints the table: its
header and every row must appear among the lines it prints. ``file``: a committed file (a script's saved
output, which names the command that wrote it) holds the table the same way. Lines are compared with bold
marks and repeated spaces removed. A table without figures (a legend) says ``source: text``, and fails if it
holds a number with a decimal point or a percent sign. A table may instead say where its figures come from
when no committed file holds them::

    <!-- source: none (why) -->

Prints one line per checked table and each mismatch; exits 1 on a mismatch, an unreadable source, or (with
``--strict``, as the test suite runs it) a table without a committed source: no comment, or ``none``.

    python benchmarks/check_docs.py [docs/results.md] [--strict]
"""

from __future__ import annotations

import argparse
import csv
import re
import shlex
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from robustprune.bench.report import mean_std  # noqa: E402

_SOURCE = re.compile(r"<!--\s*source:\s*(.*?)\s*-->")
_VALUE = re.compile(r"(-?\d+(?:\.\d+)?)(?:\s*±\s*(\d+(?:\.\d+)?))?")


def _fmt(values: list[float]) -> tuple[str, str | None]:
    """Mean and standard deviation as the reports print them (percent, one decimal; no sd for one value)."""
    m, sd, n = mean_std(values)
    return f"{100 * m:.1f}", None if n == 1 else f"{100 * sd:.1f}"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _col(text: str, key: str) -> str | float:
    """A column's value as the CSV holds it: kept fractions compare as numbers, anything else as text."""
    text = re.sub(r"[*`]", "", text).strip()
    return float(text) if key == "fraction" else text


def _norm(line: str) -> str:
    return re.sub(r"\s+", " ", line.replace("**", "")).strip()


def check_lines(header: str, rows: list[str], printed: str, where: str) -> list[str]:
    """Mismatches of a table against lines a script printed or a file holds (empty: every line is there)."""
    have = {_norm(x) for x in printed.splitlines() if x.lstrip().startswith("|")}
    return [f"line not in {where}: {x.strip()}" for x in [header, *rows] if _norm(x) not in have]


def check_derived(doc_dir: Path, spec: str, header: str, rows: list[str]) -> list[str]:
    """A ``run``, ``file`` or ``text`` source (see the module docstring)."""
    kind, _, arg = spec.partition(" ")
    if kind == "text":
        figures = [x for x in rows if re.search(r"\d\.\d|\d%", x)]
        return [f"a text table holds figures: {x.strip()}" for x in figures]
    if kind == "file":
        path = doc_dir / arg.strip()
        if not path.is_file():
            return [f"source {path} does not exist"]
        return check_lines(header, rows, path.read_text(), str(path.relative_to(doc_dir.parent)))
    argv = shlex.split(arg)
    if argv and argv[0] == "python":
        argv[0] = sys.executable
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"cannot run {arg}: {exc}"]
    if done.returncode != 0:
        return [f"{arg} exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"]
    return check_lines(header, rows, done.stdout, "its output")


def check_table(doc_dir: Path, spec: str, header: str, rows: list[str]) -> list[str]:
    """Mismatches of one table against its source (empty: it matches)."""
    parts = spec.split()
    folder, opts = parts[0], dict(p.split("=", 1) for p in parts[1:])
    metric = opts.pop("metric", "test_accuracy")
    row_key, col_key = opts.pop("row", "method"), opts.pop("col", "fraction")
    alias = dict(a.split(":", 1) for a in opts.pop("rows", "").split(",") if a) if "rows" in opts else {}
    path = doc_dir / folder / "results.csv"
    if not path.is_file():
        return [f"source {path} does not exist"]
    with path.open() as fh:
        data = [r for r in csv.DictReader(fh) if all(r.get(k) == v for k, v in opts.items())]
    if not data:
        return [f"no cells of {path} match {opts}"]
    by: dict[tuple[str, float], list[float]] = defaultdict(list)
    cols = _cells(header)[1:]
    for r in data:
        if col_key == "metric":  # each column is a metric of its own
            for name in cols:
                key = _col(name, col_key)
                if r.get(key) not in (None, ""):
                    by[(r[row_key], key)].append(float(r[key]))
        elif r.get(metric) not in (None, ""):
            by[(r[row_key], _col("/".join(r[k] for k in col_key.split(",")), col_key))].append(float(r[metric]))
    problems = []
    for line in rows:
        cells = _cells(line)
        label = re.sub(r"[*`]", "", cells[0]).strip()
        method = alias.get(label, label)
        if row_key == "seed":
            method = method.removeprefix("seed ").strip()
        for col, text in zip(cols, cells[1:], strict=False):
            found = _VALUE.search(text.replace("**", ""))
            if text.strip() in ("–", "-", "") or found is None:
                continue
            key = (method, _col(col, col_key))
            if key not in by:
                problems.append(f"{label} at {col}: no cell in the source")
                continue
            mean, sd = _fmt(by[key])
            if found.group(1) != mean or (found.group(2) or None) != sd:
                want = mean if sd is None else f"{mean} ± {sd}"
                problems.append(f"{label} at {col}: docs say {found.group(0)}, the report {want}")
    return problems


def check(doc: Path, strict: bool = False) -> int:
    lines = doc.read_text().splitlines()
    failures = unsourced = checked = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-:| ]+\|$", lines[i + 1].strip()):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            m = _SOURCE.search(prev)
            where = f"{doc.name}:{i + 1}"
            if m is None or m.group(1).startswith("none"):
                unsourced += 1
                if strict:
                    print(f"{where}: table without a committed source ({'none' if m else 'no source comment'})")
                    failures += 1
            else:
                spec = m.group(1)
                derived = spec.split()[0] in ("run", "file", "text")
                problems = (check_derived if derived else check_table)(doc.parent, spec, line, lines[i + 2 : j])
                checked += 1
                status = "ok" if not problems else f"{len(problems)} mismatches"
                print(f"{where}: {' '.join(m.group(1).split()[:2])}: {status}")
                for p in problems:
                    print(f"  {p}")
                failures += bool(problems)
            i = j
            continue
        i += 1
    print(f"{checked} tables checked against their sources, {failures} failed, {unsourced} without a committed source")
    return 1 if failures else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("doc", nargs="?", default=str(ROOT / "docs" / "results.md"))
    ap.add_argument("--strict", action="store_true", help="a table without a committed source fails")
    args = ap.parse_args()
    sys.exit(check(Path(args.doc), args.strict))


if __name__ == "__main__":
    main()
