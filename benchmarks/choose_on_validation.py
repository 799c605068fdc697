"""Apply a study's decision rule to a sweep: choose among candidate methods on VALIDATION accuracy only.

    python benchmarks/choose_on_validation.py sweeps/dev-validation \
        --candidates A_warmup,A_ensemble,A_warmup2,A_probe5,A_folds3,A_folds5,A_folds10,A_folds5fold \
        --prefer A_probe5,A_folds3,A_folds5fold,A_folds5,A_folds10,A_warmup2,A_warmup,A_ensemble
    python benchmarks/choose_on_validation.py docs/results/prune4rel-dev-validation --markdown \
        --against A_probe5 --candidates A_probe5_eta1,A_probe5_center

A candidate's score is its mean validation accuracy over every cell (block x fraction x seed) of the sweep
that all candidates share. The best score wins unless another candidate is within one standard deviation of
the paired (same cell) differences to it: then they tie, and the tie goes to the first of them in
``--prefer`` (the rule's tie-break order, fixed before the sweep ran). Test accuracy is printed after the
choice, for the record; it takes no part in it.

The first argument is a sweep directory or a report folder holding its ``results.csv`` (a committed report is
enough). ``--against REF`` applies the rule to REF and each candidate in turn (one decision per row, the tie
going to REF: "undo one option at a time"). ``--markdown`` prints Markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robustprune.bench.report import collect  # noqa: E402


def load(path: str) -> tuple[list[dict], int]:
    """One record per finished cell (from a sweep directory, or a report folder's results.csv) and the number
    of cells not finished (unknown, 0, for a results.csv)."""
    folder = Path(path)
    if (folder / "bench.json").is_file() and (folder / "cells").is_dir():
        _meta, records, missing = collect(folder)
        return records, missing
    if not (folder / "results.csv").is_file():
        raise SystemExit(f"error: {folder} holds neither bench.json nor results.csv")
    with (folder / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in ("val_accuracy", "test_accuracy"):
            r[k] = float(r[k]) if r.get(k) not in (None, "") else None
    return rows, 0


class Rule:
    """The decision rule over the cells a set of candidates shares."""

    def __init__(self, records: list[dict], cands: list[str]) -> None:
        self.cell = {}
        for r in records:
            if r["method"] in cands and r.get("val_accuracy") is not None:
                key = (r["dataset"], r["noise"], r["learner"], str(float(r["fraction"])), str(r["seed"]))
                self.cell[(r["method"], *key)] = r
        keys = sorted({k[1:] for k in self.cell})
        self.shared = [k for k in keys if all((c, *k) in self.cell for c in cands)]
        if not self.shared:
            raise SystemExit(f"error: {', '.join(cands)} share no cell with a validation accuracy")
        self.score = {c: self._mean(c, "val_accuracy") for c in cands}
        self.test = {c: self._mean(c, "test_accuracy") for c in cands}
        self.best = max(cands, key=lambda c: self.score[c])
        self.ties = [c for c in cands if c == self.best or self.score[self.best] - self.score[c] <= self.sd(c)]

    def _mean(self, c: str, key: str) -> float:
        return sum(self.cell[(c, *k)][key] for k in self.shared) / len(self.shared)

    def sd(self, c: str, ref: str | None = None) -> float:
        """Sample standard deviation of the paired (same-cell) validation differences of ``c`` to ``ref``."""
        ref = ref or self.best
        if c == ref:
            return 0.0
        d = [self.cell[(ref, *k)]["val_accuracy"] - self.cell[(c, *k)]["val_accuracy"] for k in self.shared]
        m = sum(d) / len(d)
        return math.sqrt(sum((x - m) ** 2 for x in d) / max(len(d) - 1, 1))

    def chosen(self, prefer: list[str]) -> str:
        return min(self.ties, key=lambda c: prefer.index(c) if c in prefer else len(prefer))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help="a sweep directory, or a report folder holding results.csv")
    ap.add_argument("--candidates", required=True, help="comma-separated method labels")
    ap.add_argument("--prefer", default="", help="tie-break order (default: the candidates' order)")
    ap.add_argument("--against", default="", help="compare each candidate with this one, one decision each")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = ap.parse_args()
    cands = [c for c in args.candidates.split(",") if c]
    prefer = [c for c in args.prefer.split(",") if c] or cands
    records, missing = load(args.sweep)
    if args.against:
        ref = args.against
        rows = []
        for c in cands:
            rule = Rule(records, [ref, c])
            diff = rule.score[c] - rule.score[ref]
            pick = rule.chosen([ref, c])
            rows.append((c, len(rule.shared), rule.score[c], diff, rule.sd(c, ref), c in rule.ties and ref in rule.ties,
                         pick, rule.test[c]))  # fmt: skip
        if args.markdown:
            print(
                f"| candidate | cells | validation mean | − {ref} | paired sd | tie | chosen | test mean (not used) |"
            )
            print("|---|---:|---:|---:|---:|---|---|---:|")
            for c, n, v, d, sd, tie, pick, t in rows:
                print(f"| {c} | {n} | {100 * v:.2f} | {100 * d:+.2f} | {100 * sd:.2f} | {'yes' if tie else 'no'} "
                      f"| {pick} | {100 * t:.2f} |")  # fmt: skip
        else:
            for c, n, v, d, sd, tie, pick, t in rows:
                print(f"{c:<22} cells {n:3d}  val {100 * v:6.2f}  vs {ref} {100 * d:+6.2f}  paired sd {100 * sd:5.2f}"
                      f"  {'tie' if tie else '   '}  chosen {pick}  test {100 * t:6.2f}")  # fmt: skip
        return
    rule = Rule(records, cands)
    order = sorted(cands, key=lambda c: -rule.score[c])
    chosen = rule.chosen(prefer)
    if args.markdown:
        print(f"{len(rule.shared)} shared cells; best on validation: {rule.best}; chosen: {chosen}\n")
        print("| candidate | validation mean | − best | paired sd | tie with the best | test mean (not used) |")
        print("|---|---:|---:|---:|---|---:|")
        for c in order:
            tie = "–" if c == rule.best else ("yes" if c in rule.ties else "no")
            sd = "–" if c == rule.best else f"{100 * rule.sd(c):.2f}"
            print(f"| {c} | {100 * rule.score[c]:.2f} | {100 * (rule.score[c] - rule.score[rule.best]):+.2f} | {sd} "
                  f"| {tie} | {100 * rule.test[c]:.2f} |")  # fmt: skip
        return
    print(f"{len(rule.shared)} shared cells ({missing} cells of the sweep not finished)")
    print(f"{'candidate':<22} {'val mean':>9} {'- best':>8} {'paired sd':>10} {'tie':>4} {'test mean':>10}")
    for c in order:
        print(f"{c:<22} {100 * rule.score[c]:9.2f} {100 * (rule.score[c] - rule.score[rule.best]):8.2f} "
              f"{100 * rule.sd(c):10.2f} {'yes' if c in rule.ties else '':>4} {100 * rule.test[c]:10.2f}")  # fmt: skip
    print(
        f"best on validation: {rule.best}; tied with it: {', '.join(t for t in rule.ties if t != rule.best) or 'none'}"
    )
    print(f"chosen: {chosen}")


if __name__ == "__main__":
    main()
