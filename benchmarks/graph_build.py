"""The blocked τ-graph build against the plain matrix products of the same tiles, in one process.

The build's cost floor is the products: N²/2 pairs × D multiply-adds over the upper triangle of tiles. This
script times, on the same clustered embeddings (``selection_speed.clustered_data``, float16 stored,
normalised in float32):

1. the products alone: every upper tile's ``z_a @ z_c.T`` into a reused buffer, nothing else (the limit);
2. the build: ``rescaled_cosine_graph(..., backend="blocked")`` for each ``--block-sizes`` value (the fused
   tile: product, threshold flags, word-wise candidate scan, exact re-check on candidates, CSR packing);

and prints each as GFLOP/s-equivalent (N²·D / seconds, i.e. 2 flops per multiply-add over half the pairs)
and the build's share of the products' speed. Machines are shared and noisy: read the ratio.

    python benchmarks/graph_build.py                              # N = 200,000, D = 256, tau 0.95
    python benchmarks/graph_build.py --n 50000 --block-sizes 1024,2048,4096
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from selection_speed import clustered_data  # noqa: E402

from robustprune.selection.core.graph import normalize_rows, rescaled_cosine_graph, upper_tiles  # noqa: E402


def products_only(z: torch.Tensor, bs: int) -> float:
    """Seconds for the upper tiles' products alone, into one reused buffer."""
    n = z.shape[0]
    zt = z.T.contiguous()
    buf = torch.empty(min(bs, n) ** 2, dtype=z.dtype)
    t0 = time.perf_counter()
    for a, c in upper_tiles(n, bs):
        m, k = min(bs, n - a), min(bs, n - c)
        torch.matmul(z[a : a + m], zt[:, c : c + k], out=buf[: m * k].view(m, k))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--clusters", type=int, default=400)
    ap.add_argument("--tau", type=float, default=0.95)
    ap.add_argument("--block-sizes", default="2048,4096")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sizes = [int(b) for b in args.block_sizes.split(",")]
    print(
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); N={args.n:,} D={args.d} tau={args.tau}"
    )
    feats, _, _ = clustered_data(args.n, args.d, 10, args.clusters, args.seed)
    z = normalize_rows(feats, "cpu")
    flops = float(args.n) ** 2 * args.d  # N²/2 pairs x D multiply-adds x 2 flops
    limit = products_only(z, sizes[0])
    print(f"products alone (tiles of {sizes[0]}): {limit:8.2f} s = {flops / limit / 1e9:6.1f} GFLOP/s")
    for bs in sizes:
        t0 = time.perf_counter()
        g = rescaled_cosine_graph(feats, args.tau, device="cpu", block_size=bs, backend="blocked")
        dt = time.perf_counter() - t0
        print(
            f"blocked build, tiles of {bs}: {dt:8.2f} s = {flops / dt / 1e9:6.1f} GFLOP/s-equivalent "
            f"({limit / dt:.2f} of the products' speed); {g.nnz:,} edges (mean degree {g.nnz / g.n:.1f})"
        )


if __name__ == "__main__":
    main()
