"""Prune4ReL at web scale: the partitioned two-round greedy (``parts=P``) against the one-process greedy.

On synthetic clustered embeddings (``selection_speed.clustered_data``: Gaussian clusters on the unit sphere,
float16, noisy labels, confident-ish probabilities) written to ``--workdir`` as ``.npy`` files:

1. ``prune4rel_auto`` with ``parts=P`` in a fresh process that reads the features and the probabilities as
   memory maps (the partitioned path reads one part's rows at a time; ``--probs memory`` loads the
   probabilities whole instead): wall time, peak resident memory (``VmHWM`` of that process, and the
   largest anonymous resident memory, sampled: the pages of memory-mapped files are not in it), the per-part
   figures;
2. where N allows (``--single auto``: N <= 2,000,000), the one-process ``prune4rel_auto`` in another fresh
   process, features in memory: wall time and peak resident memory; then, in the same process after its peak
   was read, the objective F(S) = Σ_v tanh(NC_v(S)/η) of both subsets on the one-process objective (its τ,
   its η, the whole graph built with the same backend, whitened space, probability of the given label);
3. the last line: ``objective ratio R`` = F(partitioned) / F(one process) (``nan`` when the one-process
   greedy was not run).

Both runs use ``--backend`` for their graphs (``faiss-approx``, the approximate index, by default: the only
one that reaches N = 10,000,000 on a CPU in minutes). The machine's load is printed: the wall times on a
shared machine are upper bounds.

    python benchmarks/web_scale.py --n 100000 --d 64 --parts 4
    python benchmarks/web_scale.py --n 1000000 --d 64 --parts 8 --partition cluster
    python benchmarks/web_scale.py --n 10000000 --d 64 --parts 16 --single never
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _status_kb(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_gb() -> float:
    """This process's peak resident memory so far, in GiB: ``VmHWM``, the high-water mark of its own address
    space. (``ru_maxrss`` is not used: on Linux it survives ``exec``, so a child started by ``spawn`` reports
    at least the resident memory its parent had when it forked.) Elsewhere ``ru_maxrss``."""
    kb = _status_kb("VmHWM")
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 2**20


class AnonPeak:
    """The largest anonymous resident memory (``RssAnon``: not pages of memory-mapped files, which the kernel
    may drop and read again) seen by sampling ``/proc/self/status`` every 20 ms on a thread, in GiB."""

    def __init__(self) -> None:
        import threading

        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, (_status_kb("RssAnon") or 0) / 2**20)
            self._stop.wait(0.02)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, (_status_kb("RssAnon") or 0) / 2**20)
        return self.peak


def write_data(args: argparse.Namespace, workdir: Path) -> None:
    from selection_speed import clustered_data

    feats, probs, labels = clustered_data(args.n, args.d, args.classes, args.clusters, args.seed)
    np.save(workdir / "features.npy", feats)
    np.save(workdir / "probs.npy", probs)
    np.save(workdir / "labels.npy", labels)


def _options(args: argparse.Namespace) -> dict:
    return dict(fraction=args.fraction, backend=args.backend, device="cpu", seed=args.seed)


def run_parts(args: argparse.Namespace, workdir: str, out: str) -> None:
    """The partitioned greedy in this (fresh) process, features memory-mapped."""
    import torch

    import robustprune as rp

    torch.set_num_threads(args.threads)
    w = Path(workdir)
    feats = np.load(w / "features.npy", mmap_mode="r")
    probs = np.load(w / "probs.npy", mmap_mode=None if args.probs == "memory" else "r")
    labels = np.load(w / "labels.npy")
    base, anon = peak_gb(), AnonPeak()
    t0 = time.perf_counter()
    sel = rp.select("prune4rel_auto", features=feats, probs=probs, labels=labels, parts=args.parts,
                    partition=args.partition, oversample=args.oversample, **_options(args))  # fmt: skip
    seconds = time.perf_counter() - t0
    anon_gb = anon.stop()
    np.save(w / "parts_indices.npy", sel.indices)
    keep = ("tau", "eta", "eta_parts", "n_edges", "mean_degree", "part_rows", "round1_picks", "setup_seconds",
            "round1_seconds", "greedy_seconds", "clusters")  # fmt: skip
    facts = {k: sel.params[k] for k in keep if k in sel.params}
    result = {"seconds": seconds, "peak_gb": peak_gb(), "anon_gb": anon_gb, "start_gb": base, **facts}
    Path(out).write_text(json.dumps(result))


def run_single(args: argparse.Namespace, workdir: str, out: str) -> None:
    """The one-process greedy in this (fresh) process, features in memory; then both subsets' objective."""
    import torch

    import robustprune as rp
    from robustprune.selection.core.geometry import transform_embedding
    from robustprune.selection.core.graph import rescaled_cosine_graph
    from robustprune.selection.methods.prune4rel.objective import prune4rel_objective

    torch.set_num_threads(args.threads)
    w = Path(workdir)
    feats, probs, labels = np.load(w / "features.npy"), np.load(w / "probs.npy"), np.load(w / "labels.npy")
    base, anon = peak_gb(), AnonPeak()
    t0 = time.perf_counter()
    sel = rp.select("prune4rel_auto", features=feats, probs=probs, labels=labels, **_options(args))
    seconds = time.perf_counter() - t0
    peak, anon_gb = peak_gb(), anon.stop()
    tau, eta = sel.params["tau"], sel.params["eta"]
    t1 = time.perf_counter()
    z = transform_embedding(feats, "whiten")
    del feats
    graph = rescaled_cosine_graph(z, tau, device="cpu", backend=args.backend, seed=args.seed)
    del z
    c = np.take_along_axis(probs, labels[:, None], axis=1)[:, 0]
    f_single = prune4rel_objective(graph, c, sel.indices, eta)
    f_parts = prune4rel_objective(graph, c, np.load(w / "parts_indices.npy"), eta)
    facts = {
        "tau": tau,
        "eta": eta,
        "n_edges": sel.params.get("n_edges"),
        "graph_seconds": sel.params.get("graph_seconds"),
    }
    result = {"seconds": seconds, "peak_gb": peak, "anon_gb": anon_gb, "start_gb": base, "f_single": f_single,
              "f_parts": f_parts,
              "eval_seconds": time.perf_counter() - t1, **facts}  # fmt: skip
    Path(out).write_text(json.dumps(result))


def _child(fn, args: argparse.Namespace, workdir: Path, name: str) -> dict:
    out = workdir / f"{name}.json"
    p = mp.get_context("spawn").Process(target=fn, args=(args, str(workdir), str(out)))
    p.start()
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"the {name} run failed (exit code {p.exitcode})")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--partition", default="cluster", choices=("cluster", "random", "class"))
    ap.add_argument("--oversample", type=float, default=2.0)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=1000, help="Gaussian clusters of the synthetic embeddings")
    ap.add_argument("--backend", default="faiss-approx", choices=("faiss-approx", "blocked", "faiss"))
    ap.add_argument("--single", default="auto", choices=("auto", "always", "never"),
                    help="run the one-process greedy (auto: when N <= 2,000,000)")  # fmt: skip
    ap.add_argument("--probs", default="mmap", choices=("mmap", "memory", "both"),
                    help="the partitioned run reads probs as a memory map (each part's rows, default) or whole; "
                    "both: one run each, in that order")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", default=None, help="where the data files go (default: a temporary directory)")
    args = ap.parse_args(argv)

    import torch

    print(
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f}; torch {torch.__version__}, {args.threads} threads; N={args.n:,} D={args.d} "
        f"fraction {args.fraction} classes {args.classes} clusters {args.clusters}; backend {args.backend}",
        flush=True,
    )
    single = args.single == "always" or (args.single == "auto" and args.n <= 2_000_000)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        write_data(args, workdir)
        print(f"data          {time.perf_counter() - t0:.1f} s (written to {workdir})", flush=True)
        for mode in ("memory", "mmap") if args.probs == "both" else (args.probs,):
            part = _child(run_parts, argparse.Namespace(**{**vars(args), "probs": mode}), workdir, "parts")
            _print_parts(args, part, mode)
        if not single:
            print("one process   not run (--single)")
            print("objective ratio nan")
            return
        one = _child(run_single, args, workdir, "single")
    print(
        f"one process   {one['seconds']:.1f} s (graph {one['graph_seconds']:.1f}), peak RSS {one['peak_gb']:.2f} "
        f"GiB (anonymous {one['anon_gb']:.2f}; {one['start_gb']:.2f} before the selection); edges "
        f"{one['n_edges']:,}, tau {one['tau']:.5f}, eta {one['eta']:.3g}"
    )
    print(f"objective     partitioned {one['f_parts']:.2f}, one process {one['f_single']:.2f} "
          f"(F on the one-process objective, evaluated in {one['eval_seconds']:.1f} s)")  # fmt: skip
    print(f"objective ratio {one['f_parts'] / one['f_single']:.4f}")


def _print_parts(args: argparse.Namespace, part: dict, mode: str) -> None:
    """One line of the partitioned run's figures."""
    print(
        f"partitioned   P={args.parts} ({args.partition}, oversample {args.oversample:g}, probs {mode}): "
        f"{part['seconds']:.1f} s (setup {part['setup_seconds']:.1f}, round 1 {part['round1_seconds']:.1f}, "
        f"round 2 {part['greedy_seconds']:.2f}), peak RSS {part['peak_gb']:.2f} GiB (anonymous {part['anon_gb']:.2f}; "
        f"{part['start_gb']:.2f} before the selection); rows per part "
        f"{part['part_rows'][0]:,}-{part['part_rows'][1]:,}, edges {part['n_edges']:,} (mean degree "
        f"{part['mean_degree']:.1f}), tau {part['tau']:.5f}, eta {part['eta_parts'][0]:.3g}-"
        f"{part['eta_parts'][1]:.3g}, round-1 picks {part['round1_picks']:,}",
        flush=True,
    )


if __name__ == "__main__":
    main()
