"""Prune4ReL's similarity graph at scale: the blocked build against faiss's exact and approximate backends.

On synthetic clustered embeddings (``selection_speed.clustered_data``: Gaussian clusters on the unit sphere,
float16, 10 classes, noisy labels, confident-ish probabilities), with τ chosen by ``auto_tau`` for a mean
degree of ``--degree`` (self included), in this one process:

1. each backend builds the graph (``rescaled_cosine_graph(..., backend=B)``): seconds, ratio to the blocked
   build, edges, and against the blocked build (the reference) whether the graph is bit-identical (exact)
   or its edge recall and the pairs it found beyond the reference (approximate: last-bit borderline pairs);
2. Prune4ReL (``select("prune4rel", backend=B)``, class-balanced as released, gain "self" and "exact") at
   ``--fraction``: seconds (graph included), peak resident memory, and the overlap of its picks with the
   blocked build's picks (share of the budget in both subsets; 1.0 = the same set) and whether the pick
   order is identical.

The blocked build is skipped when it is not in ``--backends`` (then nothing is compared: the mode for
N = 1,000,000, which reports time and peak memory of the backend given).

Examples::

    python benchmarks/graph_scale.py                                   # N = 100,000, all three backends
    python benchmarks/graph_scale.py --n 1000000 --backends faiss-approx   # time and peak memory only
    python benchmarks/graph_scale.py --n 20000 --gains self            # a quick look
    python benchmarks/graph_scale.py --n 1000000 --backends blocked --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import time

import numpy as np
import scipy.sparse
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from selection_speed import PeakRSS, clustered_data  # noqa: E402

import robustprune as rp  # noqa: E402
from robustprune.selection.core.geometry import auto_tau  # noqa: E402
from robustprune.selection.core.graph import rescaled_cosine_graph  # noqa: E402


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def max_rss_gb() -> float:
    """Peak resident memory of this process so far (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def as_matrix(g) -> scipy.sparse.csr_matrix:
    return scipy.sparse.csr_matrix((g.weights, g.indices, g.indptr), shape=(g.n, g.n))


def compare_graphs(g, ref) -> str:
    """Identical, or edge recall / extra pairs / largest weight difference against the reference."""
    if all(np.array_equal(getattr(g, k), getattr(ref, k)) for k in ("indptr", "indices", "weights")):
        return "identical to blocked (edges and weights, bit for bit)"
    a, r = as_matrix(g), as_matrix(ref)
    n = g.n
    hit = r.multiply(a > 0).tocsr()  # reference edges found
    found = a.multiply(r > 0).tocsr()
    hit.sort_indices()
    found.sort_indices()
    recall = (hit.nnz - n) / max(r.nnz - n, 1)  # self-pairs aside
    extra = a.nnz - hit.nnz
    dw = float(np.abs(found.data.astype(np.float64) - hit.data).max()) if hit.nnz else 0.0
    return (
        f"edge recall {recall:.5f} ({r.nnz - hit.nnz:,} of {r.nnz - n:,} directed pairs missed), "
        f"{extra:,} pairs beyond the reference, max weight difference {dw:.2g}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=400)
    ap.add_argument("--degree", type=float, default=50.0, help="mean degree (self included) tau is chosen for")
    ap.add_argument("--fraction", type=float, default=0.3)
    ap.add_argument("--backends", default="blocked,faiss,faiss-approx")
    ap.add_argument("--gains", default="self,exact")
    ap.add_argument("--nprobe", type=int, default=16, help="faiss-approx: IVF cells probed per query")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="where the blocked build runs (cpu or cuda; faiss: the CPU)")
    args = ap.parse_args(argv)

    backends = [b for b in args.backends.split(",") if b]
    gains = [g for g in args.gains.split(",") if g]
    compare = "blocked" in backends
    if compare:  # the reference first
        backends = ["blocked"] + [b for b in backends if b != "blocked"]
    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = "not installed"
    print(
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {cpu_model()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}; robustprune {rp.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), faiss {faiss_version}"
    )

    t0 = time.perf_counter()
    feats, probs, labels = clustered_data(args.n, args.d, args.classes, args.clusters, args.seed)
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    tau = auto_tau(feats, args.degree, seed=args.seed, device="cpu")
    budget = int(round(args.fraction * args.n))
    print(
        f"N={args.n:,} D={args.d} clusters={args.clusters} fraction={args.fraction} (budget {budget:,}); "
        f"tau={tau:.6f} (auto_tau for mean degree {args.degree:g}, {time.perf_counter() - t0:.2f} s); "
        f"data {t_data:.1f} s; peak RSS so far {max_rss_gb():.2f} GB"
    )

    ref_graph = None
    graph_seconds: dict[str, float] = {}
    if compare or len(backends) > 1:
        print("\n-- graph build (rescaled_cosine_graph)")
        for b in backends:
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                g = rescaled_cosine_graph(feats, tau, device=args.device, backend=b, nprobe=args.nprobe, seed=args.seed)
                dt = time.perf_counter() - t0
            graph_seconds[b] = dt
            ratio = f", {graph_seconds['blocked'] / dt:.2f}x the blocked build's speed" if compare else ""
            print(
                f"{b:>13}: {dt:8.2f} s{ratio}; {g.nnz:,} edges (mean degree {g.nnz / g.n:.1f}); "
                f"+{mem.delta_gb:.2f} GB RSS during the build"
            )
            if compare and b == "blocked":
                ref_graph = g
            elif compare:
                print(f"{'':>15}{compare_graphs(g, ref_graph)}")
            del g
        del ref_graph

    print(f"\n-- Prune4ReL (select, class-balanced, graph included), fraction {args.fraction}")
    ref_picks: dict[str, np.ndarray] = {}
    ref_time: dict[str, float] = {}
    for gain in gains:
        for b in backends:
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                sel = rp.select(
                    "prune4rel", probs=probs, features=feats, labels=labels, budget=budget, tau=tau, gain=gain,
                    backend=b, device=args.device, seed=args.seed,
                )  # fmt: skip
                dt = time.perf_counter() - t0
            p = sel.params
            line = (
                f"gain={gain:<5} {b:>13}: {dt:8.2f} s (graph {p['graph_seconds']:.2f} s, greedy "
                f"{p['greedy_seconds']:.2f} s); peak RSS {mem.peak_gb:.2f} GB (+{mem.delta_gb:.2f} GB)"
            )
            if compare and b == "blocked":
                ref_picks[gain], ref_time[gain] = sel.indices, dt
            elif compare:
                same_order = np.array_equal(sel.indices, ref_picks[gain])
                overlap = np.intersect1d(sel.indices, ref_picks[gain]).size / budget
                line += (
                    f"; {ref_time[gain] / dt:.2f}x blocked's speed; pick overlap with blocked {overlap:.4f}"
                    f"{' (identical, in order)' if same_order else ''}"
                )
            print(line, flush=True)
    print(f"\npeak RSS of the whole process (ru_maxrss): {max_rss_gb():.2f} GB; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
