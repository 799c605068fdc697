"""Noise inside each subset of a bench sweep, overall and in its worst *given* class (needs true labels).

A subset can look fine overall and still hold a class whose picks are mostly mislabelled, which a learner
then learns as that class. For every cell of a ``robustprune bench`` sweep directory with a stored selection,
this prints "overall / worst given class" noise, averaged over the seeds found, as a Markdown table.

Example::

    python benchmarks/subset_class_noise.py sweeps/fm fashion-mnist_asym0.4_sop \
        uniform,prune4rel,confident_filter,prune4rel_auto 0.2,0.4,0.6,0.8
"""

import argparse
import collections
import glob
import statistics as st

import numpy as np

import robustprune as rp


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", help="a robustprune bench output directory")
    ap.add_argument("group", help="dataset_noise_learner prefix of the warm-up groups, e.g. fashion-mnist_sym0.4_sop")
    ap.add_argument("methods", help="comma-separated method (cell) names")
    ap.add_argument("fractions", help="comma-separated kept fractions as in the cell names")
    args = ap.parse_args(argv)
    d, grp, meths, fr = args.sweep, args.group, args.methods.split(","), args.fractions.split(",")
    out = collections.defaultdict(list)
    for sd in sorted(glob.glob(f"{d}/warmup/{grp}_s*")):
        sig = rp.Signals.load(sd + "/signals.npz")
        if sig.true_labels is None:
            raise SystemExit(f"error: {sd}/signals.npz has no true labels")
        y, t = sig.labels, sig.true_labels
        seed = sd.rsplit("_s", 1)[1]
        for m in meths:
            for f in fr:
                try:
                    idx = rp.Selection.load(f"{d}/cells/{grp}_s{seed}/{m}_f{f}/selection.npz").indices
                except (OSError, ValueError):
                    continue
                wrong = y[idx] != t[idx]
                rates = [wrong[y[idx] == k].mean() for k in np.unique(y[idx])]
                out[(m, f)].append((100 * wrong.mean(), 100 * max(rates)))
    print("| method | " + " | ".join(fr) + " |")
    print("|---|" + "---:|" * len(fr))
    for m in meths:
        cells = []
        for f in fr:
            v = out.get((m, f))
            cells.append("–" if not v else f"{st.mean(a for a, _ in v):.0f}% / {st.mean(b for _, b in v):.0f}%")
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
