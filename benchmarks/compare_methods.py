"""Compare two methods cell by cell across reports: above, tied (within one standard deviation) or below.

    python benchmarks/compare_methods.py docs/results/prune4rel-evidence-* --a A_probe5 --b A_in
    python benchmarks/compare_methods.py docs/results/prune4rel-evidence-* --pairs A_probe5:A_in,A_probe5:uniform

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


def verdicts(reports: list[str], a: str, b: str, metric: str) -> list[tuple]:
    """(report, dataset, noise, learner, fraction, (mean, sd) of A, (mean, sd) of B, verdict) per shared cell."""
    out = []
    for folder in reports:
        vals: dict[tuple, list[float]] = defaultdict(list)
        with (Path(folder) / "results.csv").open() as fh:
            for r in csv.DictReader(fh):
                if r.get(metric) not in (None, ""):
                    key = (r["dataset"], r["noise"], r["learner"], float(r["fraction"]), r["method"])
                    vals[key].append(float(r[metric]))
        for key in sorted({k[:4] for k in vals}):
            va, vb = vals.get((*key, a)), vals.get((*key, b))
            if not va or not vb:
                continue
            (ma, sa, _), (mb, sb, _) = mean_std(va), mean_std(vb)
            spread = max(sa, sb)
            verdict = "above" if ma - mb > spread else "below" if mb - ma > spread else "tie"
            out.append((Path(folder).name, *key, (ma, sa), (mb, sb), verdict))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--a", help="method A (with --b: one comparison, cell by cell)")
    ap.add_argument("--b")
    ap.add_argument("--pairs", default="", help="A:B,C:D,...: print only the counts, one row per pair")
    ap.add_argument("--metric", default="test_accuracy")
    args = ap.parse_args()
    if args.pairs:
        print("| A against B | cells | A above | tie | A below |\n|---|---:|---:|---:|---:|")
        for pair in args.pairs.split(","):
            a, _, b = pair.partition(":")
            got = [v[-1] for v in verdicts(args.reports, a, b, args.metric)]
            print(f"| `{a}` against `{b}` | {len(got)} | {got.count('above')} | {got.count('tie')} | "
                  f"{got.count('below')} |")  # fmt: skip
        return
    if not (args.a and args.b):
        ap.error("give --a and --b, or --pairs")
    counts = {"above": 0, "tie": 0, "below": 0}
    print(f"| report | setting | fraction | {args.a} | {args.b} | verdict |\n|---|---|---:|---:|---:|---|")
    for name, ds, noise, learner, frac, (ma, sa), (mb, sb), verdict in verdicts(args.reports, args.a, args.b,
                                                                               args.metric):  # fmt: skip
        counts[verdict] += 1
        print(f"| {name} | {ds} {noise} {learner} | {frac:g} | {100 * ma:.1f} ± {100 * sa:.1f} | "
              f"{100 * mb:.1f} ± {100 * sb:.1f} | {verdict} |")  # fmt: skip
    print(
        f"\n{args.a} against {args.b}: above in {counts['above']}, tied in {counts['tie']}, below in {counts['below']}"
    )


if __name__ == "__main__":
    main()
