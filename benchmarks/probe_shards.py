"""The cross-fitted probe on a directory of shards: ``robustprune signals --features DIR --fit-rows M``.

    python benchmarks/probe_shards.py --n 2000000 --d 64 --shard-rows 250000 --fit-rows 200000

Writes synthetic float16 embeddings (one Gaussian per class, overlapping so that a linear probe is right on
about 90% of them) with 40% symmetric label noise as uncompressed shards (``part-00000.npz``, ... holding
``labels``, ``features`` and ``true_labels``), then runs the command in a child process and prints its wall
time and peak resident memory (the child's own, from ``os.wait4``), the size of the input and of one float32
copy of it, and the out-of-fold predictions' accuracy on the true labels: over all rows, over the rows of the
sample the probes were fitted on, and over the other rows (out of sample, the two should be alike).

``--compare`` then runs the probe fitted on every row, as before shards: the same rows as one memory-mapped
``.npy`` with the labels beside it, ``robustprune signals --features x.npy --labels y.npy --fit-rows N``
(one float32 copy of every row), and prints the same figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_shards(directory: Path, n: int, d: int, k: int, shard_rows: int, noise: float, seed: int) -> None:
    """Shards of float16 embeddings with noisy and true labels, written one shard at a time."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype(np.float32) * 0.2  # overlapping: a linear probe is ~90% right
    directory.mkdir(parents=True, exist_ok=True)
    for j, a in enumerate(range(0, n, shard_rows)):
        b = min(n, a + shard_rows)
        true = rng.integers(0, k, b - a)
        noisy = np.where(rng.random(b - a) < noise, rng.integers(0, k, b - a), true)
        x = (centres[true] + rng.normal(size=(b - a, d)).astype(np.float32) * 0.5).astype(np.float16)
        np.savez(directory / f"part-{j:05d}.npz", labels=noisy, features=x, true_labels=true)


def run(cmd: list[str]) -> tuple[float, float]:
    """Run ``robustprune`` with ``cmd`` in a child process: its wall time (s) and peak resident memory (GiB)."""
    full = [sys.executable, "-m", "robustprune", *cmd]
    print("$ robustprune " + " ".join(cmd))
    t0 = time.perf_counter()
    child = subprocess.Popen(full, env={**os.environ, "PYTHONPATH": str(ROOT)})
    _, status, usage = os.wait4(child.pid, 0)
    took = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"the command failed with exit code {os.waitstatus_to_exitcode(status)}")
    print(f"wall time {took:.1f} s; peak resident memory {usage.ru_maxrss / 2**20:.2f} GiB")
    return took, usage.ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--shard-rows", type=int, default=250_000)
    ap.add_argument("--fit-rows", type=int, default=200_000)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--noise", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="where the shards go (default: a temporary folder)")
    ap.add_argument("--compare", action="store_true", help="also fit on every row from one memory-mapped .npy")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = (args.workdir or Path(tmp)) / "shards"
        t0 = time.perf_counter()
        write_shards(directory, args.n, args.d, args.classes, args.shard_rows, args.noise, args.seed)
        size = args.n * args.d * 2
        print(f"{args.n:,} x {args.d} float16 embeddings ({size / 2**30:.2f} GiB; a float32 copy "
              f"{2 * size / 2**30:.2f} GiB), {args.classes} classes, {100 * args.noise:.0f}% symmetric noise, "
              f"{-(-args.n // args.shard_rows)} shards of {args.shard_rows:,} rows; written in "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
        run(["signals", "--features", str(directory), "--fit-rows", str(args.fit_rows), "--folds", str(args.folds),
             "--seed", str(args.seed)])  # fmt: skip

        from robustprune.probe import stratified_folds, stratified_sample
        from robustprune.selection.shards import load_shards

        sig = load_shards(directory)
        right = sig.probs.argmax(1) == sig.true_labels
        fitted = np.zeros(sig.n, dtype=bool)
        if args.fit_rows < sig.n:
            fold = stratified_folds(sig.labels, args.folds, args.seed)
            fitted[stratified_sample(sig.labels, fold, args.fit_rows, args.seed)] = True
        print(f"out-of-fold predictions right on {100 * right.mean():.2f}% of all rows; on the {fitted.sum():,} "
              f"rows the probes were fitted on {100 * right[fitted].mean():.2f}%, on the other "
              f"{(~fitted).sum():,} {100 * right[~fitted].mean():.2f}%")  # fmt: skip
        if args.compare:
            x = np.lib.format.open_memmap(Path(tmp) / "x.npy", mode="w+", dtype=np.float16, shape=(sig.n, args.d))
            for a in range(0, sig.n, 1 << 18):
                x[a : a + (1 << 18)] = sig.features[a : min(sig.n, a + (1 << 18))]
            x.flush()
            del x
            np.save(Path(tmp) / "y.npy", sig.labels)
            print(f"\nthe probe fitted on every row ({sig.n:,}), one float32 copy of them:")
            run(["signals", "--features", str(Path(tmp) / "x.npy"), "--labels", str(Path(tmp) / "y.npy"),
                 "--fit-rows", str(sig.n), "--folds", str(args.folds), "--seed", str(args.seed), "--out",
                 str(Path(tmp) / "all.npz")])  # fmt: skip
            with np.load(Path(tmp) / "all.npz") as z:
                print(f"out-of-fold predictions right on {100 * np.mean(z['probs'].argmax(1) == sig.true_labels):.2f}%")


if __name__ == "__main__":
    main()
