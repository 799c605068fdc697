"""Prune4ReL's τ-graph built by several processes together (``SharedBuild``), against one process.

Each world size runs in fresh processes joined by a gloo process group (as torchrun would start them), every
process with ONE torch thread, so that the comparison is of processes and not of threads: on N GPUs or N
cores each rank would own one. Every rank generates the same clustered embeddings
(``selection_speed.clustered_data``), τ comes from ``auto_tau`` for a mean degree of ``--degree``, and the
ranks call ``rescaled_cosine_graph`` with a ``SharedBuild``: the tiles are dealt round-robin, each rank
builds its own, the edges are gathered on rank 0, which assembles the CSR graph. Printed per world size: the
build's wall time on rank 0 (tiles, gather and CSR packing), the speed-up against one process, and whether
the graph equals the one-process graph bit for bit.

A machine with fewer free cores than the largest world size cannot show the speed-up (the ranks then share
cores); the figures are meaningful up to the number of idle cores.

    python benchmarks/graph_ranks.py                      # N = 50,000, D = 128, worlds 1 and 2
    python benchmarks/graph_ranks.py --n 100000 --worlds 1,2,4
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), OMP_NUM_THREADS="1")  # fmt: skip
    torch.set_num_threads(1)
    from selection_speed import clustered_data

    import robustprune.distributed as dist
    from robustprune.selection.core.geometry import auto_tau
    from robustprune.selection.core.graph import BuildHandedOff, SharedBuild, rescaled_cosine_graph

    dist.init("cpu")
    feats, _, _ = clustered_data(args.n, args.d, 10, args.clusters, args.seed)
    tau = auto_tau(feats, args.degree, seed=args.seed, device="cpu")
    dist.barrier()
    t0 = time.perf_counter()
    try:
        g = rescaled_cosine_graph(feats, tau, device="cpu", shared=SharedBuild())
    except BuildHandedOff:
        g = None
    seconds = time.perf_counter() - t0
    if g is not None:
        np.savez(out, indptr=g.indptr, indices=g.indices, weights=g.weights, seconds=seconds, tau=tau)
    dist.barrier()
    if world > 1:
        torch.distributed.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--clusters", type=int, default=400)
    ap.add_argument("--degree", type=float, default=50.0)
    ap.add_argument("--worlds", default="1,2")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    worlds = [int(w) for w in args.worlds.split(",")]
    print(
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
        f"torch {torch.__version__}, one thread per process; N={args.n:,} D={args.d} mean degree {args.degree:g}"
    )
    ref = None
    with tempfile.TemporaryDirectory() as tmp:
        for w in worlds:
            out = str(Path(tmp) / f"world{w}.npz")
            if w == 1:
                _worker(0, 1, 0, args, out)
            else:
                mp.spawn(_worker, args=(w, _free_port(), args, out), nprocs=w, join=True)
            with np.load(out) as z:
                got = {k: z[k] for k in ("indptr", "indices", "weights")}
                seconds, tau = float(z["seconds"]), float(z["tau"])
            if ref is None:
                ref = (got, seconds)
                print(f"world 1: {seconds:7.2f} s; {got['indices'].size:,} edges (tau {tau:.6f})")
                continue
            same = all(np.array_equal(got[k], ref[0][k]) for k in got)
            print(
                f"world {w}: {seconds:7.2f} s; {ref[1] / seconds:.2f}x one process; "
                f"{'identical to one process (bit for bit)' if same else 'DIFFERS from one process'}"
            )


if __name__ == "__main__":
    main()
