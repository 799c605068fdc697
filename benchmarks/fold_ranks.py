"""K fold warm-ups under torchrun: dealt to the ranks (each trains its folds alone) against every fold trained
by all ranks in turn (DDP), and one process as the reference, in the same run.

    python benchmarks/fold_ranks.py --nproc 2 --folds 2 --subset 20000 --warmup-epochs 5

Each variant is one ``torchrun --nproc_per_node=NPROC`` launch of this script in worker mode, which computes
the warm-up signals of ``--signal-source folds:K:fold`` (``robustprune.pipeline.make_signals``) with
``robustprune.warmup.spread_folds`` forced to the variant's answer; one thread per process. Prints each
variant's wall time, its speed-up over one process, and whether its out-of-fold probabilities equal one
process's (dealt folds must be bit-identical; DDP folds see other batches and differ).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    import robustprune.warmup as warmup
    from robustprune.pipeline import make_signals
    from robustprune.runconfig import RunConfig

    if args.mode != "auto":
        warmup.spread_folds = lambda folds, world_size: args.mode == "spread" and world_size > 1
    cfg = RunConfig(dataset=args.dataset, subset=args.subset, learner="ce", model="mlp", noise="sym:0.4",
                    warmup_epochs=args.warmup_epochs, epochs=max(args.warmup_epochs, 20), batch_size=64,
                    signal_source=f"folds:{args.folds}:fold", device="cpu", out=args.out)  # fmt: skip
    make_signals(cfg)


def launch(args: argparse.Namespace, mode: str, nproc: int, out: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 \
        else [sys.executable]  # fmt: skip
    cmd += [__file__, "--worker", "--mode", mode, "--out", out, "--dataset", args.dataset, "--subset",
            str(args.subset), "--folds", str(args.folds), "--warmup-epochs", str(args.warmup_epochs)]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="auto", choices=["auto", "spread", "together"])
    ap.add_argument("--out", default=None)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--subset", type=int, default=20000)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--warmup-epochs", type=int, default=5)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    import numpy as np

    from robustprune.signals import Signals

    with tempfile.TemporaryDirectory() as tmp:
        runs = {"one process": ("auto", 1), f"{args.nproc} ranks, folds dealt": ("spread", args.nproc),
                f"{args.nproc} ranks, all ranks per fold": ("together", args.nproc)}  # fmt: skip
        times, probs = {}, {}
        for name, (mode, nproc) in runs.items():
            out = str(Path(tmp) / mode / str(nproc))
            times[name] = launch(args, mode, nproc, out)
            probs[name] = Signals.load(Path(out) / "signals.npz").probs
        ref = "one process"
        print(f"{args.folds} fold warm-ups of {args.warmup_epochs} epochs, {args.dataset} subset {args.subset}, MLP, "
              "one thread per process")  # fmt: skip
        for name, t in times.items():
            same = "identical" if np.array_equal(probs[name], probs[ref]) else "differ"
            print(f"{name:32s} {t:7.1f} s   {times[ref] / t:4.2f}x one process   out-of-fold probs {same}")


if __name__ == "__main__":
    main()
