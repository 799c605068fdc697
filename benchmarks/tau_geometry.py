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

``--embedding center|whiten`` takes the cosine in a transformed space (Prune4ReL's ``embedding`` option), and
a τ written ``auto:D`` is the automatic threshold for a mean degree of D in that space. The Prune4ReL subsets
are then drawn with the same embedding; ``--confidence label_prob`` adds the label-aware variant's subsets.

Example::

    python benchmarks/tau_geometry.py sweeps/fashion-mnist-cpu/warmup/fashion-mnist_sym0.4_sop_s0/signals.npz \\
        --taus 0.9,0.95,0.975,0.99 --fraction 0.2
    python benchmarks/tau_geometry.py SIGNALS --embedding whiten --taus auto:20 --fraction 0.2
"""

from __future__ import annotations

import argparse

import numpy as np

import robustprune as rp
from robustprune.selection.core.geometry import auto_tau, transform_embedding
from robustprune.selection.core.graph import rescaled_cosine_graph
from robustprune.selection.methods.prune4rel import confidence_scores


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
    ap.add_argument("--embedding", default="raw", help="raw, center or whiten; several comma-separated")
    ap.add_argument(
        "--markdown",
        action="store_true",
        help="print one Markdown table (a row per space and tau: degree, isolated, purity, coverage)",
    )
    args = ap.parse_args(argv)
    spaces = args.embedding.split(",")
    if any(e not in ("raw", "center", "whiten") for e in spaces):
        raise SystemExit(f"error: --embedding takes raw, center or whiten, not {args.embedding!r}")

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
    if args.markdown:
        print(
            f"\n| space | tau | degree | isolated | purity | coverage (self, {args.fraction:g}) "
            f"| coverage (exact, {args.fraction:g}) | coverage (uniform) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
    else:
        print(header)
        print("-" * len(header))
    for space in spaces:
        _space(args, sig, space, true, conf, pred, uni, k)


def _space(args, sig, space, true, conf, pred, uni, k) -> None:
    n = sig.n
    z = transform_embedding(sig.features, space)
    if not args.markdown:
        print(f"embedding: {space}")
    for spec in args.taus.split(","):
        tau = auto_tau(z, float(spec.split(":")[1])) if spec.startswith("auto:") else float(spec)
        g = rescaled_cosine_graph(z, tau)
        deg = g.degrees()
        rows = np.repeat(np.arange(n), deg)
        off = rows != g.indices
        purity = np.mean(true[rows[off]] == true[g.indices[off]]) if true is not None and off.any() else float("nan")
        subsets = {}
        for gain in ("self", "exact"):
            s = rp.select(
                "prune4rel", probs=sig.probs, features=sig.features, labels=sig.labels,
                fraction=args.fraction, tau=tau, eta=args.eta, gain=gain, embedding=space,
            )  # fmt: skip
            subsets[f"prune4rel/{gain}"] = s.indices
        subsets["uniform"] = uni.indices
        if args.markdown:
            cov = [f"{np.mean(neighbourhood_vote(g, conf, pred, idx, k) >= 0):.1%}" for idx in subsets.values()]
            print(
                f"| {space} | {tau:.4f} | {deg.mean():.1f} | {np.mean(deg == 1):.1%} | {purity:.1%} | "
                + " | ".join(cov)
                + " |"
            )
            continue
        for j, (name, idx) in enumerate(subsets.items()):
            vote = neighbourhood_vote(g, conf, pred, idx, k)
            covered = vote >= 0
            acc = np.mean(vote[covered] == true[covered]) if true is not None else float("nan")
            pacc = np.mean(pred[idx] == true[idx]) if true is not None else float("nan")
            lead = f"{tau:<6.4g} {deg.mean():7.1f} {np.mean(deg == 1):8.1%} {purity:7.1%}" if j == 0 else " " * 31
            print(f"{lead} | {name:<15} {covered.mean():8.1%} {acc:9.1%} {pacc:16.1%}")


if __name__ == "__main__":
    main()
