"""Compare robustprune's confident-learning filter with cleanlab's on synthetic noisy labels.

For a few seeded settings (symmetric and pair flips i -> i+1, two flip rates, a sharper and a weaker model)
this prints, per setting: how many examples each implementation flags, how much the two sets agree
(intersection over union, and the share of our flags that cleanlab also flags) and each one's precision
and recall against the true flips, plus our estimated noise rate next to the true one.

cleanlab is not a dependency of robustprune; run this in a virtualenv of its own (robustprune's selection
functions used here need numpy only, so ``--no-deps`` is enough)::

    python -m venv /tmp/cl && /tmp/cl/bin/pip install cleanlab numpy scikit-learn \\
        && /tmp/cl/bin/pip install --no-deps -e /work/main
    /tmp/cl/bin/python benchmarks/confident_learning_check.py

The reference is ``cleanlab.filter.find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate")``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def make_fixture(kind: str, rate: float, n: int, k: int, boost: float, seed: int):
    """Labels with known flips and softmax outputs of a model that favours the true label.

    Returns (given labels (N,), probs (N, K), flipped mask (N,)).
    """
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), true] += boost
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    flip = rng.random(n) < rate
    if kind == "sym":
        other = (true + rng.integers(1, k, n)) % k  # any other class, uniformly
    elif kind == "pair":
        other = (true + 1) % k
    else:
        raise ValueError(f"unknown flip kind {kind!r}")
    return np.where(flip, other, true), probs, flip


def _pr(mask: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hits = int((mask & truth).sum())
    return hits / max(int(mask.sum()), 1), hits / max(int(truth.sum()), 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="examples per setting")
    ap.add_argument("--k", type=int, default=10, help="classes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.2, 0.4], help="flip rates")
    ap.add_argument("--boosts", type=float, nargs="+", default=[3.0, 2.0], help="logit boost of the true class")
    args = ap.parse_args(argv)

    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        print(
            "cleanlab is not installed here. Run this check in a virtualenv of its own:\n"
            "  python -m venv /tmp/cl && /tmp/cl/bin/pip install cleanlab numpy scikit-learn "
            "&& /tmp/cl/bin/pip install --no-deps -e /work/main\n"
            "  /tmp/cl/bin/python benchmarks/confident_learning_check.py",
            file=sys.stderr,
        )
        return 2
    import cleanlab

    from robustprune.selection.core.confident_learning import estimate_joint, label_issue_mask

    print(f"cleanlab {cleanlab.__version__}, N={args.n}, K={args.k}, seed={args.seed}")
    head = (
        f"{'setting':<20} {'true':>5} {'ours':>5} {'cl':>5} {'IoU':>6} {'ours∩cl/ours':>12} "
        f"{'P ours':>7} {'R ours':>7} {'P cl':>7} {'R cl':>7} {'noise est/true':>15}"
    )
    print(head)
    print("-" * len(head))
    worst = 1.0
    for s, (kind, rate, boost) in enumerate(
        (kind, rate, boost) for boost in args.boosts for kind in ("sym", "pair") for rate in args.rates
    ):
        labels, probs, flip = make_fixture(kind, rate, args.n, args.k, boost, args.seed + s)
        ours = label_issue_mask(labels, probs)
        ref = np.asarray(find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1), dtype=bool)
        inter, union = int((ours & ref).sum()), int((ours | ref).sum())
        iou = inter / union if union else 1.0
        worst = min(worst, iou)
        share = inter / max(int(ours.sum()), 1)
        p_o, r_o = _pr(ours, flip)
        p_c, r_c = _pr(ref, flip)
        est = 1.0 - float(np.trace(estimate_joint(labels, probs)))
        name = f"{kind} {rate:.1f} boost {boost:g}"
        print(
            f"{name:<20} {int(flip.sum()):>5} {int(ours.sum()):>5} {int(ref.sum()):>5} {iou:>6.3f} {share:>12.3f} "
            f"{p_o:>7.3f} {r_o:>7.3f} {p_c:>7.3f} {r_c:>7.3f} {est:>7.3f}/{flip.mean():.3f}"
        )
    print(f"lowest IoU: {worst:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
