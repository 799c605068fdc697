"""The cross-fitted probe at scale: robustprune's torch softmax layer against scikit-learn's logistic regression.

    python benchmarks/probe_speed.py --n 1000000 --d 512 --compare-n 200000

Synthetic embeddings (a Gaussian per class, overlapping enough that a linear probe is right on about 93% of
them; float16, written to a memory-mapped .npy as a user's file would be) with 40% symmetric label noise.
Two measurements, in this one process:

1. **One fit, both libraries, the same problem**: a multinomial logistic regression with the same L2 strength
   on the same standardised rows (four folds of ``--compare-n`` rows), fitted by robustprune's full-batch
   L-BFGS in torch and by ``sklearn.linear_model.LogisticRegression(solver="lbfgs")`` (C = 1 / (λ·n), the
   same objective). Printed: wall time, the objective each reaches, and their agreement on the held-out fold.
2. **The whole probe** (:func:`robustprune.signals_from_embeddings`: λ searched on an inner split, then K
   fold fits) on all ``--n`` rows read from the memory-mapped float16 file: wall time, the chosen λ, the
   agreement of the out-of-fold predictions with the true labels, and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make(n: int, d: int, k: int, seed: int, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write float16 embeddings to ``path`` in chunks; return them memory-mapped, with noisy and true labels."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    noisy = np.where(rng.random(n) < 0.4, rng.integers(0, k, n), true)
    centres = rng.normal(size=(k, d)).astype(np.float32) * 0.08  # overlapping classes: a probe is ~93% right
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, d))
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        x[lo:hi] = centres[true[lo:hi]] + rng.normal(size=(hi - lo, d)).astype(np.float32) * 0.5
    x.flush()
    del x
    return np.load(path, mmap_mode="r"), noisy, true


def compare(x: np.ndarray, y: np.ndarray, lam: float, max_iter: int) -> None:
    import torch
    from sklearn.linear_model import LogisticRegression

    from robustprune.probe import _fit, _probs, _Rows, stratified_folds

    fold = stratified_folds(y, 5, 0)
    tr, te = fold != 0, fold == 0
    xt = torch.from_numpy(np.asarray(x[tr], dtype=np.float32))
    yt = torch.from_numpy(y[tr].astype(np.int64))
    rows = _Rows([xt], [yt])
    xs = ((xt - rows.mean) / rows.std).numpy()  # sklearn gets the same standardised rows
    xe = torch.from_numpy(np.asarray(x[te], dtype=np.float32))
    k = int(y.max()) + 1

    def objective(logits: np.ndarray, w: np.ndarray) -> float:
        z = logits - logits.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return float(-logp[np.arange(len(logp)), y[tr]].mean() + 0.5 * lam * (w**2).sum())

    t0 = time.perf_counter()
    w = _fit(rows, k, lam, max_iter)
    t_torch = time.perf_counter() - t0
    with torch.no_grad():
        obj_torch = objective(rows.logits(xt, w).numpy(), w[:-1].numpy())
        pred_torch = _probs(rows, xe, w).argmax(1).numpy()
    t0 = time.perf_counter()
    clf = LogisticRegression(C=1.0 / (lam * xs.shape[0]), solver="lbfgs", max_iter=max_iter, tol=1e-7)
    clf.fit(xs, y[tr])
    t_sk = time.perf_counter() - t0
    obj_sk = objective(clf.decision_function(xs), clf.coef_.T)
    pred_sk = clf.predict(((xe - rows.mean) / rows.std).numpy())
    print(f"\n1. one fit on {int(tr.sum()):,} x {x.shape[1]} rows, lambda {lam:g}, at most {max_iter} iterations")
    print("| fit | time | objective reached |")
    print("|---|---:|---:|")
    print(f"| robustprune (torch L-BFGS, {torch.get_num_threads()} threads) | {t_torch:.2f} s | {obj_torch:.5f} |")
    print(f"| scikit-learn LogisticRegression(lbfgs) | {t_sk:.2f} s | {obj_sk:.5f} |")
    print(f"scikit-learn / robustprune time: {t_sk / t_torch:.1f}x; "
          f"the two agree on {100 * np.mean(pred_torch == pred_sk):.2f}% of the held-out fold")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--compare-n", type=int, default=200_000, help="rows of the one-fit comparison (0: skip)")
    ap.add_argument("--lam", type=float, default=1e-3, help="L2 strength of the one-fit comparison")
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import robustprune as rp

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        x, noisy, true = make(args.n, args.d, args.classes, args.seed, Path(tmp) / "features.npy")
        print(f"{args.n:,} x {args.d} float16 embeddings ({x.nbytes / 2**30:.2f} GiB memory-mapped), "
              f"{args.classes} classes, 40% symmetric noise; written in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        if args.compare_n:
            m = min(args.compare_n, args.n)
            compare(x[:m], noisy[:m], args.lam, args.max_iter)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        t0 = time.perf_counter()
        steps = []

        def note(done: int, total: int) -> None:
            steps.append((done, total, time.perf_counter() - t0))

        sig = rp.signals_from_embeddings(x, noisy, folds=args.folds, seed=args.seed, progress=note)
        took = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        probe = sig.meta["probe"]
        print(f"\n2. signals_from_embeddings on all {args.n:,} rows ({args.folds} folds)")
        print(f"time {took:.1f} s ({len(steps)} fits: {len(probe['inner_log_loss'])} in the lambda search, "
              f"{args.folds} fold fits); lambda {probe['l2']:.3g}")  # fmt: skip
        print(f"out-of-fold predictions right on {100 * np.mean(sig.probs.argmax(1) == true):.2f}% "
              f"(agree with the noisy labels on {100 * sig.meta['agreement_with_given_labels']:.2f}%)")  # fmt: skip
        print(f"peak resident memory {rss:.2f} GiB (before the probe: {rss0:.2f} GiB; the float16 input is "
              f"{x.nbytes / 2**30:.2f} GiB, a float32 copy {2 * x.nbytes / 2**30:.2f} GiB)")  # fmt: skip


if __name__ == "__main__":
    main()
