"""Prune4ReL selection speed: robustprune's engine against the released dense per-pick rule.

Both run in this one process on the same synthetic clustered embeddings (float16, as the released code
stores them) and confidences. The reference is a direct torch transcription of the released greedy: every
pick recomputes all N gains, takes the argmax, then multiplies the N×D embedding matrix by the picked
vector. robustprune builds the sparse threshold graph once (blocked products) and then touches only the
neighbours of each pick.

Examples::

    python benchmarks/selection_speed.py --n 50000 --d 512 --fraction 0.8 --tau 0.95
    python benchmarks/selection_speed.py --n 200000 --d 256 --fraction 0.3 --reference none
    python benchmarks/selection_speed.py --n 50000 --d 512 --reference prefix:4000   # shorter check

With ``--reference prefix:M`` the reference makes only the first M picks; because a smaller budget's
selection is a prefix of a larger one's, those must equal the first M picks of robustprune, and the
reference time is extrapolated linearly to the full budget (each of its picks costs the same).

The greedy methods are timed by ``selection_speed.py greedy [...]`` (code in ``benchmarks/greedy_speed.py``):
facility location on 5,000 points, 500 picks, against apricot's lazy greedy on the same similarity matrix in
this process, and any registered method by name on synthetic signals::

    python benchmarks/selection_speed.py greedy                      # facility location vs apricot (if installed)
    python benchmarks/selection_speed.py greedy --methods craig,glister --n 50000 --dim 512 --repeats 1
    python benchmarks/selection_speed.py greedy --help
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time

import numpy as np
import torch

import robustprune as rp


class PeakRSS:
    """Samples this process's resident memory in a thread; reports the peak above the starting level."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def __enter__(self):
        self.start = self._rss()
        self.peak = self.start
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self._rss())

    @property
    def delta_gb(self) -> float:
        return (self.peak - self.start) / 2**30

    @property
    def peak_gb(self) -> float:
        return self.peak / 2**30


def clustered_data(n: int, d: int, k: int, clusters: int, seed: int, imbalance: float = 1.0):
    """Embeddings around `clusters` centres with varied spread; confident, partly noisy predictions.
    ``imbalance`` R > 1: the clusters' classes are drawn long-tailed, class c with weight R^(-c/(k-1)) (the
    largest class about R times the smallest before the label noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    assign = rng.integers(0, clusters, n)
    spread = rng.uniform(0.2, 0.45, clusters).astype(np.float32)  # within-cluster cos ~ 1/(1+spread^2)
    feats = np.empty((n, d), dtype=np.float16)
    for a in range(0, n, 20000):
        b = min(n, a + 20000)
        noise = rng.normal(size=(b - a, d)).astype(np.float32) / np.sqrt(d)
        feats[a:b] = (centres[assign[a:b]] + spread[assign[a:b], None] * noise).astype(np.float16)
    if imbalance == 1.0:
        cls_of_cluster = rng.integers(0, k, clusters)
    else:
        weights = float(imbalance) ** (-np.arange(k) / max(k - 1, 1))
        cls_of_cluster = rng.choice(k, clusters, p=weights / weights.sum())
    true = cls_of_cluster[assign]
    labels = np.where(rng.random(n) < 0.3, rng.integers(0, k, n), true)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    logits[np.arange(n), true] += rng.uniform(0.0, 6.0, n).astype(np.float32)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    probs = probs.astype(np.float16).astype(np.float32)  # released code stores float16
    return feats, probs, labels


def released_dense_rule(probs, feats, budget, tau, eta, labels, balance, device):
    """Torch transcription of the released greedy (one similarity column per pick)."""
    dev = torch.device(device)
    confs = torch.from_numpy(probs).to(dev).max(dim=1).values
    z = torch.from_numpy(feats).to(dev).float()
    z = z / torch.linalg.vector_norm(z, dim=1, keepdim=True)
    n = z.shape[0]
    nc = torch.zeros(n, device=dev)
    selected = torch.zeros(n, dtype=torch.bool, device=dev)
    k = probs.shape[1]
    if balance:
        lab = torch.from_numpy(labels).to(dev)
        members = [(lab == c).nonzero().squeeze(1) for c in range(k)]
        remaining = [int(m.numel()) for m in members]
        init = list(remaining)
        avail = list(range(k))
        min_balance = 0
    broken = False
    out = np.empty(budget, dtype=np.int64)
    tau_t = torch.tensor(tau, dtype=torch.float32, device=dev)
    for i in range(budget):
        scores = torch.tanh((nc + confs) / eta) - torch.tanh(nc / eta)
        scores[selected] = -1
        if not balance or broken:
            p = int(torch.argmax(scores))
        else:
            target = avail[i % len(avail)]
            while remaining[target] == 0:
                if len(avail) == k:
                    min_balance = init[target]
                avail = [c for c in avail if c != target]
                target = avail[i % len(avail)]
                if init[target] - remaining[target] > 1.5 * min_balance:
                    broken = True
            idx = members[target]
            p = int(idx[torch.argmax(scores[idx])])
            remaining[target] -= 1
        selected[p] = True
        out[i] = p
        if i == budget - 1:
            break
        sim = 0.5 + 0.5 * (z @ z[p])
        sim[p] = 1.0
        nc += sim * (sim > tau_t) * confs[p]
    return out


def main() -> None:
    if sys.argv[1:2] == ["greedy"]:  # the greedy methods: facility location vs apricot, any method by name
        from greedy_speed import main as greedy_main  # benchmarks/ is on sys.path when run as a script

        greedy_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=400)
    ap.add_argument("--fraction", type=float, default=0.8)
    ap.add_argument("--tau", type=float, default=0.95)
    ap.add_argument("--eta", type=float, default=1.0)
    ap.add_argument("--no-balance", action="store_true", help="unbalanced greedy (default: balanced, as released)")
    ap.add_argument("--reference", default="full", help="full | prefix:M | none")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--auto", action="store_true", help="also time prune4rel_auto (whitening, tau/eta from the data)")
    ap.add_argument("--markdown", action="store_true", help="end with the timings as a Markdown table")
    args = ap.parse_args()
    table = ["| | time | of which |", "|---|---:|---|"]

    balance = not args.no_balance
    feats, probs, labels = clustered_data(args.n, args.d, args.classes, args.clusters, args.seed)
    budget = int(round(args.fraction * args.n))
    print(
        f"robustprune {rp.__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, device {args.device}"
    )
    print(
        f"N={args.n} D={args.d} K={args.classes} clusters={args.clusters} fraction={args.fraction} "
        f"budget={budget} tau={args.tau} eta={args.eta} balanced={balance}"
    )

    with PeakRSS() as mem_ours:
        t0 = time.perf_counter()
        sel = rp.select(
            "prune4rel",
            probs=probs,
            features=feats,
            labels=labels,
            budget=budget,
            class_balanced=balance,
            tau=args.tau,
            eta=args.eta,
            device=args.device,
        )
        t_ours = time.perf_counter() - t0
    p = sel.params
    table.append(f"| `prune4rel`, τ {args.tau:g} (graph engine) | {t_ours:.2f} s | graph {p['graph_seconds']:.2f} s, "
                 f"greedy {p['greedy_seconds']:.2f} s (mean degree {p['mean_degree']:.1f}) |")  # fmt: skip
    print(
        f"robustprune: {t_ours:8.2f} s  (graph {p['graph_seconds']:.2f} s, greedy {p['greedy_seconds']:.2f} s; "
        f"{p['n_edges']:,} edges, mean degree {p['mean_degree']:.1f}; "
        f"peak RSS {mem_ours.peak_gb:.2f} GB, +{mem_ours.delta_gb:.2f} GB during selection)"
    )

    # the automatic threshold: one sampled pass over the similarity distribution, for the degree just built
    from robustprune.selection.core.geometry import auto_tau

    t0 = time.perf_counter()
    tau_auto = auto_tau(feats, p["mean_degree"], device=args.device)
    t_auto = time.perf_counter() - t0
    table.append(f"| `tau=\"auto\"` for that degree | {t_auto:.2f} s | "
                 f"{100 * t_auto / max(p['graph_seconds'], 1e-9):.0f}% of the graph build; it finds τ {tau_auto:.5f} "
                 f"for the degree τ {args.tau:g} gave |")  # fmt: skip
    print(
        f"tau='auto' for mean degree {p['mean_degree']:.1f}: {t_auto:8.2f} s "
        f"({100 * t_auto / max(p['graph_seconds'], 1e-9):.0f}% of the graph build); found tau {tau_auto:.5f} "
        f"(given {args.tau})"
    )

    if args.auto:
        t0 = time.perf_counter()
        auto = rp.select("prune4rel_auto", probs=probs, features=feats, labels=labels, budget=budget,
                         class_balanced=balance, device=args.device)  # fmt: skip
        t_sel = time.perf_counter() - t0
        q = auto.params
        table.append(f"| `prune4rel_auto` | {t_sel:.2f} s | whitening {q['embedding_seconds']:.2f} s, automatic τ "
                     f"{q['auto_tau_seconds']:.2f} s, graph {q['graph_seconds']:.2f} s, exact-gain greedy "
                     f"{q['greedy_seconds']:.2f} s (mean degree {q['mean_degree']:.1f}) |")  # fmt: skip
        print(
            f"prune4rel_auto: {t_sel:8.2f} s  (tau {q['tau']:.4f} for mean degree {q['target_degree']:.1f}, "
            f"eta {q['eta']:.3g}; whitening {q['embedding_seconds']:.2f} s, auto tau {q['auto_tau_seconds']:.2f} s, "
            f"graph {q['graph_seconds']:.2f} s, greedy {q['greedy_seconds']:.2f} s; {q['n_edges']:,} edges; "
            f"coverage {q['coverage']:.1%})"
        )

    if args.markdown:
        print("\n" + "\n".join(table))
    if args.reference == "none":
        return
    m = budget if args.reference == "full" else int(args.reference.split(":")[1])
    with PeakRSS() as mem_ref:
        t0 = time.perf_counter()
        ref = released_dense_rule(probs, feats, m, args.tau, args.eta, labels, balance, args.device)
        t_ref = time.perf_counter() - t0
    est = t_ref * budget / m
    same = np.array_equal(ref, sel.indices[:m])
    first_diff = "" if same else f" (first difference at pick {int(np.argmax(ref != sel.indices[:m]))})"
    label = "reference" if m == budget else f"reference ({m} picks, extrapolated to {budget})"
    print(f"{label}: {est:8.2f} s  (peak RSS +{mem_ref.delta_gb:.2f} GB)")
    print(f"identical picks (in order){'' if m == budget else f', first {m}'}: {same}{first_diff}")
    print(f"speed-up: {est / t_ours:.1f}x")


if __name__ == "__main__":
    main()
