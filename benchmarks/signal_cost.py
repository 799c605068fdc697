"""What each signal source costs, gathered from the warm-up cost tables of committed sweep reports.

    python benchmarks/signal_cost.py docs/results/prune4rel-dev-validation docs/results/prune4rel-evidence-digits

Each report's "Warm-up cost" table (written by ``robustprune report`` for a sweep whose variants set their own
signal source) gives the mean time of a warm-up and its signals per warm-up setting, and its ratio to the
grid's own (in-sample) warm-up. This prints one Markdown row per report: the grid's time and the ratio of
each signal source (``–`` where the report has none), in the order of ``--sources``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

GRID = "the grid's"


def cost_table(report: Path) -> dict[str, tuple[str, str]]:
    """Warm-up setting -> (mean time, ratio to the grid's), from a report.md's warm-up cost table."""
    lines = report.read_text().splitlines()
    try:
        start = next(i for i, x in enumerate(lines) if x.startswith("| warm-up setting |"))
    except StopIteration:
        raise SystemExit(f"error: {report} has no warm-up cost table") from None
    out = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0]] = (cells[2], cells[3])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", help="report folders holding report.md")
    ap.add_argument("--sources", default="ensemble,probe5,folds5,folds5fold,folds10",
                    help="signal-source labels, as the report names them after signal_source-")  # fmt: skip
    ap.add_argument("--grid", default="in-sample warm-up", help="what the grid's own signals are, for the header")
    args = ap.parse_args()
    sources = args.sources.split(",")
    names = {"probe5": "probe:5", "folds5": "folds:5", "folds5fold": "folds:5:fold", "folds10": "folds:10",
             "encoderefficientnet-lite05": "encoder:efficientnet-lite0:5"}  # fmt: skip
    print(f"| report | {args.grid} | " + " | ".join(f"`{names.get(s, s)}`" for s in sources) + " |")
    print("|---|---:|" + "---:|" * len(sources))
    for folder in args.reports:
        table = cost_table(Path(folder) / "report.md")
        if GRID not in table:
            sys.exit(f"error: {folder}/report.md's warm-up cost table has no row for the grid's warm-up")
        ratios = []
        for s in sources:
            got = table.get(f"signal_source-{s}")
            ratios.append(f"{float(got[1]):.2f}×" if got else "–")
        name = re.sub(r"^prune4rel-", "", Path(folder).name)
        print(f"| {name} | {table[GRID][0]} | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
