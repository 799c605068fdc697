"""Render a table of docs/results.md from a committed report's results.csv, with its source comment.

    python benchmarks/doc_table.py results/prune4rel-evidence-digits metric=test_accuracy noise=asym:0.4 \
        --rows uniform,A_in,A_probe5 --dagger

Cells are ``mean ± std`` over seeds (percent, one decimal; sample standard deviation). The best mean of a
column is in bold, and so is every mean within the larger of its own and the best's standard deviation (a
tie). ``--dagger`` marks with † the row that has the best mean validation accuracy (``val_accuracy``) in each
column among the rows shown: the choice a user makes without the test set. ``--noise-rate`` appends the
subset's noise rate in brackets. The output passes ``benchmarks/check_docs.py``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT))

from robustprune.bench.report import format_mean_std, leaders, mean_std  # noqa: E402

#: Metrics where lower is better (bold marks the lowest).
LOWER = {"subset_noise_rate", "subset_noise_worst_class", "signals_fit_wrong_labels", "time_selection"}


def render(folder: str, filters: dict[str, str], rows: list[str] | None, dagger: bool, noise_rate: bool,
           metric: str = "test_accuracy", fractions: list[float] | None = None, row_key: str = "method",
           col_key: str = "fraction", cols_order: list[str] | None = None) -> str:  # fmt: skip
    with (DOCS / folder / "results.csv").open() as fh:
        data = [r for r in csv.DictReader(fh) if all(r.get(k) == v for k, v in filters.items())]
    vals: dict[str, dict[tuple[str, float], list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in data:
        if col_key == "metric":  # each column is a metric of its own (cols_order names them)
            for name in cols_order or ():
                if r.get(name) not in (None, ""):
                    vals[metric][(r[row_key], name)].append(float(r[name]))
            continue
        for key in dict.fromkeys((metric, "val_accuracy", "subset_noise_rate")):
            if r.get(key) not in (None, ""):
                col = float(r[col_key]) if col_key == "fraction" else "/".join(r[k] for k in col_key.split(","))
                vals[key][(r[row_key], col)].append(float(r[key]))
    methods = rows or list(dict.fromkeys(r[row_key] for r in data))
    cols = fractions if col_key == "fraction" and fractions else cols_order
    cols = cols or sorted({f for (_m, f) in vals[metric]}, key=lambda c: (isinstance(c, str), c))
    higher = metric not in LOWER
    keys = [f"row={row_key}"] * (row_key != "method") + [f"col={col_key}"] * (col_key != "fraction")
    head = " | ".join(f"{f:g}" if isinstance(f, float) else f for f in cols)
    first = [] if col_key == "metric" else [f"metric={metric}"]
    out = ["<!-- source: " + " ".join([folder, *first, *keys, *(f"{k}={v}" for k, v in filters.items())])
           + " -->", f"| {row_key} | " + head + " |", "|---|" + "---:|" * len(cols)]  # fmt: skip
    bold, chosen = {}, {}
    for f in cols:
        if row_key != "method":  # rows are not competitors (seeds, learners): nothing to mark
            continue
        bold[f] = leaders({m: mean_std(vals[metric][(m, f)]) for m in methods if vals[metric].get((m, f))}, higher)
        vv = {m: mean_std(vals["val_accuracy"][(m, f)])[0] for m in methods if vals["val_accuracy"].get((m, f))}
        if dagger and len(vv) > 1:  # a column with one candidate (e.g. all data) chooses nothing
            chosen[f] = max(vv, key=lambda m: vv[m])
    for m in methods:
        cells = []
        for f in cols:
            v = vals[metric].get((m, f))
            if not v:
                cells.append("–")
                continue
            text = format_mean_std(*mean_std(v))
            text = f"**{text}**" if m in bold.get(f, ()) else text
            if chosen.get(f) == m:
                text += " †"
            if noise_rate and vals["subset_noise_rate"].get((m, f)):
                text += f" ({100 * mean_std(vals['subset_noise_rate'][(m, f)])[0]:.0f}%)"
            cells.append(text)
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="a report folder under docs/, e.g. results/prune4rel-evidence-digits")
    ap.add_argument("filters", nargs="*", help="metric=NAME and COLUMN=VALUE filters")
    ap.add_argument("--rows", default="", help="comma-separated method labels, in order (default: all)")
    ap.add_argument("--fractions", default="", help="comma-separated kept fractions (default: all)")
    ap.add_argument("--row-key", default="method", help="the CSV column whose values are the rows")
    ap.add_argument("--col-key", default="fraction", help="the CSV column whose values are the columns")
    ap.add_argument("--cols", default="", help="comma-separated column values, in order (default: all)")
    ap.add_argument("--dagger", action="store_true", help="mark the validation choice of each column with †")
    ap.add_argument("--noise-rate", action="store_true", help="append the subset noise rate in brackets")
    args = ap.parse_args()
    filters = dict(f.split("=", 1) for f in args.filters)
    metric = filters.pop("metric", "test_accuracy")
    rows = [r for r in args.rows.split(",") if r] or None
    fractions = [float(f) for f in args.fractions.split(",") if f] or None
    cols = [c for c in args.cols.split(",") if c] or None
    print(
        render(
            args.folder,
            filters,
            rows,
            args.dagger,
            args.noise_rate,
            metric,
            fractions,
            args.row_key,
            args.col_key,
            cols,
        )
    )


if __name__ == "__main__":
    main()
