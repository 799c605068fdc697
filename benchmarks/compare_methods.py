"""Compare two methods cell by cell across reports: above, tied (within one standard deviation) or below.

    python benchmarks/compare_methods.py docs/results/prune4rel-evidence-* --a A_probe5 --b A_in

For every (report, dataset, noise, learner, fraction) where both methods have cells: the means and sample
standard deviations of test accuracy over seeds, and a verdict: ``above`` when A's mean exceeds B's by more
than the larger of the two standard deviations, ``below`` when it falls short by more than that, else
``tie``. Prints a Markdown table and the counts.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robustprune.bench.report import mean_std  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--metric", default="test_accuracy")
    args = ap.parse_args()
    counts = {"above": 0, "tie": 0, "below": 0}
    print(f"| report | setting | fraction | {args.a} | {args.b} | verdict |\n|---|---|---:|---:|---:|---|")
    for folder in args.reports:
        vals: dict[tuple, list[float]] = defaultdict(list)
        with (Path(folder) / "results.csv").open() as fh:
            for r in csv.DictReader(fh):
                if r.get(args.metric) not in (None, ""):
                    key = (r["dataset"], r["noise"], r["learner"], float(r["fraction"]), r["method"])
                    vals[key].append(float(r[args.metric]))
        for key in sorted({k[:4] for k in vals}):
            a, b = vals.get((*key, args.a)), vals.get((*key, args.b))
            if not a or not b:
                continue
            (ma, sa, _), (mb, sb, _) = mean_std(a), mean_std(b)
            spread = max(sa, sb)
            verdict = "above" if ma - mb > spread else "below" if mb - ma > spread else "tie"
            counts[verdict] += 1
            setting = f"{key[0]} {key[1]} {key[2]}"
            print(f"| {Path(folder).name} | {setting} | {key[3]:g} | {100 * ma:.1f} ± {100 * sa:.1f} | "
                  f"{100 * mb:.1f} ± {100 * sb:.1f} | {verdict} |")  # fmt: skip
    print(
        f"\n{args.a} against {args.b}: above in {counts['above']}, tied in {counts['tie']}, below in {counts['below']}"
    )


if __name__ == "__main__":
    main()
