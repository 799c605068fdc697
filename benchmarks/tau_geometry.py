"""How Prune4ReL's threshold τ sits in a signals bundle's embedding geometry, and what a subset covers.

For each τ the script builds the graph Prune4ReL uses (``s = ½ + ½·cos > τ``) on the bundle's features and
prints:

- **degree**: mean neighbours per example (self included) and the share with no neighbour but itself;
- **edge purity**: the share of neighbour pairs (self-pairs excluded) whose *true* labels agree (needs
  ``true_labels``): how often "my neighbour's label" is the right label for me;
- for each subset (Prune4ReL self and exact gain at ``--fraction``, and a uniform one), **coverage**: the
  share of all examples with a selected neighbour (NC > 0), and **neighbourhood re-labeling accuracy**: for
  every covered example, the class that its selected neighbours' warm-up predictions vote for (weights w·c,
  as in NC) compared with its true label. This is the paper's premise made measurable: a re-labeling
  learner trained on the subset can only fix what the subset's confident neighbourhoods point to.

Example::

    python benchmarks/tau_geometry.py sweeps/fashion-mnist-cpu/warmup/fashion-mnist_sym0.4_sop_s0/signals.npz \\
        --taus 0.9,0.95,0.975,0.99 --fraction 0.2
"""

from __future__ import annotations

import argparse

import numpy as np

import robustprune as rp
from robustprune.selection.graph import rescaled_cosine_graph
from robustprune.selection.prune4rel import confidence_scores


def neighbourhood_vote(graph, conf: np.ndarray, pred: np.ndarray, selected: np.ndarray, k: int) -> np.ndarray:
    """Per example, the class with the largest Σ w·c over its selected neighbours; -1 when none."""
    votes = np.zeros((graph.n, k), dtype=np.float64)
    for p in selected:
        idx, w = graph.row(int(p))
        votes[idx, pred[p]] += w * conf[p]
    out = votes.argmax(1)
    out[votes.max(1) == 0] = -1
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("signals")
    ap.add_argument("--taus", default="0.9,0.95,0.975,0.99")
    ap.add_argument("--fraction", type=float, default=0.2)
    ap.add_argument("--eta", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    sig = rp.Signals.load(args.signals)
    if sig.features is None or sig.probs is None:
        raise SystemExit("error: the signals bundle needs features and probs")
    true = sig.true_labels
    k = sig.probs.shape[1]
    pred = sig.probs.argmax(1)
    conf = confidence_scores(sig.probs, "max_prob")
    n = sig.n
    print(f"{args.signals}: N={n}, D={sig.features.shape[1]}, K={k}")
    if true is not None:
        print(
            f"given labels wrong: {np.mean(sig.labels != true):.1%}; "
            f"warm-up predictions right: {np.mean(pred == true):.1%}"
        )
    uni = rp.select("uniform", labels=sig.labels, fraction=args.fraction, seed=args.seed, class_balanced=True)
    header = "tau    degree  isolated  purity | subset          coverage  vote-acc  subset-pred-acc"
    print(header)
    print("-" * len(header))
    for tau in (float(t) for t in args.taus.split(",")):
        g = rescaled_cosine_graph(sig.features, tau)
        deg = g.degrees()
        rows = np.repeat(np.arange(n), deg)
        off = rows != g.indices
        purity = np.mean(true[rows[off]] == true[g.indices[off]]) if true is not None and off.any() else float("nan")
        subsets = {}
        for gain in ("self", "exact"):
            s = rp.select(
                "prune4rel", probs=sig.probs, features=sig.features, labels=sig.labels,
                fraction=args.fraction, tau=tau, eta=args.eta, gain=gain,
            )  # fmt: skip
            subsets[f"prune4rel/{gain}"] = s.indices
        subsets["uniform"] = uni.indices
        for j, (name, idx) in enumerate(subsets.items()):
            vote = neighbourhood_vote(g, conf, pred, idx, k)
            covered = vote >= 0
            acc = np.mean(vote[covered] == true[covered]) if true is not None else float("nan")
            pacc = np.mean(pred[idx] == true[idx]) if true is not None else float("nan")
            lead = f"{tau:<6} {deg.mean():7.1f} {np.mean(deg == 1):8.1%} {purity:7.1%}" if j == 0 else " " * 31
            print(f"{lead} | {name:<15} {covered.mean():8.1%} {acc:9.1%} {pacc:16.1%}")


if __name__ == "__main__":
    main()
