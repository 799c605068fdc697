"""How far a pruning method is from the same learner trained on all the (noisy) data, per setting.

    python benchmarks/gap_to_full.py docs/results/prune4rel-evidence-digits docs/results/... --method A_probe5

For every (dataset, noise, learner) block of each report's results.csv: the mean test accuracy of ``full``
(all data) and of ``--method`` (and of ``--reference``, default ``uniform``) at each kept fraction, with the
method's relative gap ``(full - method) / full``, and whether it meets the field's aim: within 5% at 0.2 kept
and within 2% at 0.4. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

AIM = {0.2: 0.05, 0.4: 0.02}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", help="report folders holding results.csv")
    ap.add_argument("--method", default="A_probe5")
    ap.add_argument("--reference", default="uniform")
    args = ap.parse_args()
    print(f"| setting | all data | {args.reference} 0.2 | {args.method} 0.2 | gap | {args.reference} 0.4 | "
          f"{args.method} 0.4 | gap | aim met |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    met = total = 0
    for folder in args.reports:
        vals: dict[tuple, list[float]] = defaultdict(list)
        with (Path(folder) / "results.csv").open() as fh:
            for r in csv.DictReader(fh):
                block = (r["dataset"], r["noise"], r["learner"])
                vals[(block, r["method"], float(r["fraction"]))].append(float(r["test_accuracy"]))
        blocks = sorted({k[0] for k in vals})
        for block in blocks:
            full = vals.get((block, "full", 1.0))
            if not full or not vals.get((block, args.method, 0.2)):
                continue
            f = sum(full) / len(full)
            cells, ok = [], True
            for frac in (0.2, 0.4):
                ref, got = vals.get((block, args.reference, frac)), vals.get((block, args.method, frac))
                if not got:
                    cells += ["–", "–", "–"]
                    ok = False
                    continue
                m = sum(got) / len(got)
                gap = (f - m) / f
                ok &= gap <= AIM[frac]
                cells += [
                    "–" if not ref else f"{100 * sum(ref) / len(ref):.1f}",
                    f"{100 * m:.1f}",
                    f"{100 * gap:+.1f}%",
                ]
            met += ok
            total += 1
            name = f"{Path(folder).name}: {block[0]} {block[1]} {block[2]}"
            print(f"| {name} | {100 * f:.1f} | " + " | ".join(cells) + f" | {'yes' if ok else 'no'} |")
    print(f"\nthe aim is met in {met} of {total} settings")


if __name__ == "__main__":
    main()
