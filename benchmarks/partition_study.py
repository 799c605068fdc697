"""How the partitioned greedy's objective depends on the number of parts and on how the examples are split.

On the synthetic clustered embeddings of ``web_scale.py`` (``selection_speed.clustered_data``), in this one
process: the one-process ``prune4rel_auto`` (the reference), then ``prune4rel_auto`` with ``parts=P`` for
every P of ``--parts`` and every partition of ``--partitions``; each subset's objective F(S) = Σ_v
tanh(NC_v(S)/η) is evaluated on the one-process objective (its τ and η, the whole graph of the same backend),
and printed as a ratio to the reference with the wall time of the run. ``class`` needs P <= the number of
classes (10 here); larger P are skipped.

    python benchmarks/partition_study.py --n 100000 --parts 2,4,8,16
    python benchmarks/partition_study.py --n 100000 --parts 4,16 --oversample 1,2,4
    python benchmarks/partition_study.py --n 100000 --parts 4,8 --imbalance 100 --fraction 0.5
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--parts", default="2,4,8,16")
    ap.add_argument("--partitions", default="cluster,class,random")
    ap.add_argument("--oversample", default="2")
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--backend", default="faiss-approx")
    ap.add_argument(
        "--imbalance",
        type=float,
        default=1.0,
        help="long-tailed classes: the largest about this many times the smallest (before the noise)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    from selection_speed import clustered_data

    import robustprune as rp
    from robustprune.selection.core.geometry import transform_embedding
    from robustprune.selection.core.graph import rescaled_cosine_graph
    from robustprune.selection.methods.prune4rel.objective import prune4rel_objective

    print(
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
        f"torch {torch.__version__}; N={args.n:,} D={args.d} fraction {args.fraction} classes {args.classes} "
        f"clusters {args.clusters}; backend {args.backend}",
        flush=True,
    )
    feats, probs, labels = clustered_data(args.n, args.d, args.classes, args.clusters, args.seed, args.imbalance)
    if args.imbalance != 1.0:
        from robustprune.selection.core.partition import released_quotas

        counts = np.bincount(labels, minlength=args.classes)
        quotas, rest = released_quotas(counts, round(args.fraction * args.n))
        print(f"class sizes {counts.tolist()}; the released schedule: {quotas.tolist()} by class, then {rest:,} "
              "from any class", flush=True)  # fmt: skip
    kw = dict(features=feats, probs=probs, labels=labels, fraction=args.fraction, backend=args.backend,
              device="cpu", seed=args.seed)  # fmt: skip
    t0 = time.perf_counter()
    one = rp.select("prune4rel_auto", **kw)
    t_one = time.perf_counter() - t0
    tau, eta = one.params["tau"], one.params["eta"]
    graph = rescaled_cosine_graph(transform_embedding(feats, "whiten"), tau, device="cpu", backend=args.backend,
                                  seed=args.seed)  # fmt: skip
    c = np.take_along_axis(probs, labels[:, None], axis=1)[:, 0]
    ref = prune4rel_objective(graph, c, one.indices, eta)
    print(f"one process: {t_one:.1f} s, F {ref:.2f} (tau {tau:.5f}, eta {eta:.3g}, {graph.nnz:,} edges)", flush=True)
    print("| partition | P | oversample | objective ratio | picks shared with one process | time |")
    print("|---|---:|---:|---:|---:|---:|")
    for partition in args.partitions.split(","):
        for p in (int(v) for v in args.parts.split(",")):
            for a in (float(v) for v in args.oversample.split(",")):
                if partition == "class" and p > args.classes:
                    print(f"| {partition} | {p} | {a:g} | (P > classes) | | |", flush=True)
                    continue
                t0 = time.perf_counter()
                sel = rp.select("prune4rel_auto", parts=p, partition=partition, oversample=a, **kw)
                seconds = time.perf_counter() - t0
                ratio = prune4rel_objective(graph, c, sel.indices, eta) / ref
                shared = np.intersect1d(sel.indices, one.indices).size / one.indices.size
                print(f"| {partition} | {p} | {a:g} | {ratio:.4f} | {shared:.3f} | {seconds:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
