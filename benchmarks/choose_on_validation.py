"""Apply a study's decision rule to a sweep: choose among candidate methods on VALIDATION accuracy only.

    python benchmarks/choose_on_validation.py sweeps/dev-validation \
        --candidates A_warmup,A_ensemble,A_warmup2,A_probe5,A_folds3,A_folds5,A_folds10,A_folds5fold \
        --prefer A_probe5,A_folds3,A_folds5fold,A_folds5,A_folds10,A_warmup2,A_warmup,A_ensemble

A candidate's score is its mean validation accuracy over every cell (block x fraction x seed) of the sweep
that all candidates share. The best score wins unless another candidate is within one standard deviation of
the paired (same cell) differences to it: then they tie, and the tie goes to the first of them in
``--prefer`` (the rule's tie-break order, fixed before the sweep ran). Test accuracy is printed after the
choice, for the record; it takes no part in it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robustprune.bench.report import collect  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep")
    ap.add_argument("--candidates", required=True, help="comma-separated method labels")
    ap.add_argument("--prefer", default="", help="tie-break order (default: the candidates' order)")
    args = ap.parse_args()
    cands = [c for c in args.candidates.split(",") if c]
    prefer = [c for c in args.prefer.split(",") if c] or cands
    _meta, records, missing = collect(args.sweep)
    cell = {}
    for r in records:
        if r["method"] in cands and r.get("val_accuracy") is not None:
            cell[(r["method"], r["dataset"], r["noise"], r["learner"], r["fraction"], r["seed"])] = r
    keys = sorted({k[1:] for k in cell})
    shared = [k for k in keys if all((c, *k) in cell for c in cands)]
    if not shared:
        raise SystemExit("error: the candidates share no cell with a validation accuracy")
    score = {c: sum(cell[(c, *k)]["val_accuracy"] for k in shared) / len(shared) for c in cands}
    test = {c: sum(cell[(c, *k)]["test_accuracy"] for k in shared) / len(shared) for c in cands}
    best = max(cands, key=lambda c: score[c])

    def paired_sd(a: str, b: str) -> float:
        d = [cell[(a, *k)]["val_accuracy"] - cell[(b, *k)]["val_accuracy"] for k in shared]
        m = sum(d) / len(d)
        return math.sqrt(sum((x - m) ** 2 for x in d) / max(len(d) - 1, 1))

    ties = [c for c in cands if c == best or score[best] - score[c] <= paired_sd(best, c)]
    chosen = min(ties, key=lambda c: prefer.index(c) if c in prefer else len(prefer))
    print(f"{len(shared)} shared cells ({missing} cells of the sweep not finished)")
    print(f"{'candidate':<22} {'val mean':>9} {'- best':>8} {'paired sd':>10} {'tie':>4} {'test mean':>10}")
    for c in sorted(cands, key=lambda c: -score[c]):
        sd = 0.0 if c == best else paired_sd(best, c)
        print(f"{c:<22} {100 * score[c]:9.2f} {100 * (score[c] - score[best]):8.2f} {100 * sd:10.2f} "
              f"{'yes' if c in ties else '':>4} {100 * test[c]:10.2f}")  # fmt: skip
    print(f"best on validation: {best}; tied with it: {', '.join(t for t in ties if t != best) or 'none'}")
    print(f"chosen: {chosen}")


if __name__ == "__main__":
    main()
