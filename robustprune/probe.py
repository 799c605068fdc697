"""Out-of-sample predicted probabilities from a cross-fitted linear probe on embeddings.

Confident learning, and every selection rule that trusts a model's belief in a given label, is defined on
**out-of-sample** predictions: a model that trained on an example has, at least partly, learnt its label,
right or wrong. :func:`cross_fitted_probe` splits the examples into K stratified, seeded folds
(:func:`stratified_folds`), fits a multinomial logistic regression (a softmax layer over standardised
features, L2-regularised, full-batch L-BFGS in torch) on every K-1 folds and predicts the fold it left out,
so that no example's probabilities come from a probe that saw it::

    res = cross_fitted_probe(features, labels, folds=5, seed=0)
    res.probs      # (N, K) float32, each row from the probe fitted without that example
    res.fold       # (N,) the fold of each example
    res.l2         # the regularisation chosen on an inner split of the first fold's training rows

The regularisation strength is chosen from ``l2_grid`` by the log-loss (on the given labels, as noisy as
the rest) of an inner stratified split of the first fold's training rows, searched from the strongest
penalty down (each fit warm-started from the previous one) until the loss has risen twice in a row; only that
one number, and the inner fit as a starting point, is shared by the folds. Standardisation uses each fold's
training rows only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from robustprune._validation import check_features, check_labels
from robustprune.seeding import stream
from robustprune.signals import Signals

__all__ = ["stratified_folds", "cross_fitted_probe", "ProbeResult", "L2_GRID", "signals_from_embeddings"]

#: Regularisation strengths tried by default (penalty λ/2·‖W‖² on the mean cross-entropy), half a decade
#: apart; searched from the strongest down until the inner log-loss has risen twice in a row.
L2_GRID = (10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4)


def stratified_folds(labels: Any, folds: int, seed: int = 0) -> np.ndarray:
    """Fold index in ``[0, folds)`` of each example: seeded, stratified on ``labels``.

    Examples are ordered class by class, randomly within a class (stream ``(seed, "folds")``), and dealt to
    the folds in turn, so every class is spread over the folds as evenly as its count allows (sizes differ
    by at most one per class) and the folds' sizes differ by at most one. A class with fewer examples than
    folds is missing from some folds.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-d array, got shape {y.shape}")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= int(folds) <= y.size:
        raise ValueError(f"folds must be an integer in [2, {y.size}] (the number of examples), got {folds!r}")
    key = stream(seed, "folds").random(y.size)
    order = np.lexsort((key, y))  # grouped by class, random within class
    fold = np.empty(y.size, dtype=np.int64)
    fold[order] = np.arange(y.size) % int(folds)
    return fold


@dataclass
class ProbeResult:
    """What :func:`cross_fitted_probe` returns."""

    probs: np.ndarray  # (N, K) float32, out of fold
    fold: np.ndarray  # (N,) int64
    l2: float
    seconds: float
    inner_losses: dict[float, float] = field(default_factory=dict)  # λ -> inner-split log-loss

    @property
    def folds(self) -> int:
        return int(self.fold.max()) + 1

    def agreement(self, labels: Any) -> float:
        """Share of examples whose out-of-fold prediction equals ``labels``."""
        return float(np.mean(self.probs.argmax(1) == np.asarray(labels)))


class _Rows:
    """Training rows of one fit as contiguous views of the fold-ordered float32 matrix (no copies), with the
    mean and standard deviation of those rows; the standardisation is folded into the weights, so
    ``(x - mean) / std @ W + b`` is computed as ``x @ (W / std) + (b - (mean / std) @ W)``."""

    def __init__(self, blocks: list[torch.Tensor], targets: list[torch.Tensor]) -> None:
        self.blocks, self.targets = blocks, targets
        self.n = sum(int(b.shape[0]) for b in blocks)
        # column sums and sums of squares in float64, 65,536 rows at a time (no N x D float64 copy)
        total = torch.zeros(blocks[0].shape[1], dtype=torch.float64)
        sq = torch.zeros_like(total)
        for b in blocks:
            for c in b.split(65536):
                c64 = c.double()
                total += c64.sum(0)
                sq += (c64 * c64).sum(0)
        mean = total / self.n
        var = (sq / self.n - mean**2).clamp_min(0)
        self.mean = mean.float()
        self.std = var.sqrt().float().clamp_min(1e-6)

    def logits(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scale = w[:-1] / self.std[:, None]
        return x @ scale + (w[-1] - self.mean @ scale)


def _fit(rows: _Rows, k: int, l2: float, max_iter: int, init: torch.Tensor | None = None) -> torch.Tensor:
    """Weights (D+1, K) of a softmax regression minimising mean CE + l2/2·‖W[:-1]‖² on the standardised rows.

    Full-batch L-BFGS with the gradient written out (``Gᵀ X`` per block, where G = softmax − one-hot): the
    product autograd would take, ``Xᵀ G`` on the transposed rows, is several times slower on a CPU."""
    d = rows.blocks[0].shape[1]
    w = torch.zeros(d + 1, k) if init is None else init.clone()
    w.requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-10)  # fmt: skip
    inv = 1.0 / rows.std
    shift = rows.mean * inv

    def closure() -> torch.Tensor:
        with torch.no_grad():
            scale = w[:-1] * inv[:, None]
            bias = w[-1] - shift @ w[:-1]
            loss = torch.zeros((), dtype=torch.float64)
            g_scale = torch.zeros(k, d)
            g_bias = torch.zeros(k, dtype=torch.float64)
            for x, t in zip(rows.blocks, rows.targets, strict=True):
                z = x @ scale + bias
                lse = torch.logsumexp(z, 1)
                loss += (lse - z.gather(1, t[:, None]).squeeze(1)).sum(dtype=torch.float64)
                g = torch.exp(z - lse[:, None])
                g[torch.arange(t.shape[0]), t] -= 1.0
                g_scale += g.T @ x
                g_bias += g.sum(0, dtype=torch.float64)
            g_scale, g_bias = g_scale.T / rows.n, (g_bias / rows.n).float()
            grad = torch.empty_like(w)
            grad[:-1] = g_scale * inv[:, None] - shift[:, None] * g_bias[None, :] + l2 * w[:-1]
            grad[-1] = g_bias
            w.grad = grad
            return (loss / rows.n).float() + 0.5 * l2 * (w[:-1] ** 2).sum()

    opt.step(closure)
    return w.detach()


def _probs(rows: _Rows, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.softmax(rows.logits(x, w), dim=1)


def cross_fitted_probe(
    features: Any,
    labels: Any,
    *,
    num_classes: int | None = None,
    folds: int = 5,
    seed: int = 0,
    l2: float | None = None,
    l2_grid: Sequence[float] = L2_GRID,
    max_iter: int = 200,
    search_rows: int = 200_000,
    progress: Callable[[int, int], None] | None = None,
) -> ProbeResult:
    """Out-of-fold probabilities (N, K) of a linear probe on ``features`` (N, D) for ``labels`` (N,).

    Parameters
    ----------
    features : array (N, D)
        Embeddings (any float dtype; float16 is fine).
    labels : array (N,)
        Given, possibly noisy, labels in ``[0, num_classes)``.
    num_classes : int, optional
        K (default: one more than the largest label).
    folds : int
        K of the cross-fitting (stratified on ``labels``, seeded by ``seed``).
    l2 : float, optional
        A fixed regularisation strength; by default chosen from ``l2_grid`` on an inner split.
    max_iter : int
        L-BFGS iterations per fit.
    search_rows : int
        The inner split that chooses λ uses at most this many of fold 0's training rows (a stratified sample);
        the λ it chooses is then scaled by the sampled share, since the penalty is on the mean loss and a
        fixed prior on the weights keeps λ·n constant.
    progress : callable, optional
        ``progress(done, total)`` after every fit.
    """
    t0 = time.perf_counter()
    y_np = check_labels(labels)
    x_np = check_features(features, y_np.shape[0])
    k = int(num_classes) if num_classes is not None else int(y_np.max()) + 1
    if y_np.max() >= k:
        raise ValueError(f"labels contain class {int(y_np.max())} but num_classes is {k}")
    if np.unique(y_np).size < 2:
        raise ValueError("labels hold one class only; a probe needs at least two classes to tell apart")
    if l2 is not None and not (isinstance(l2, (int, float)) and l2 >= 0):
        raise ValueError(f"l2 must be a non-negative number, got {l2!r}")
    fold = stratified_folds(y_np, folds, seed)
    order = np.argsort(fold, kind="stable")  # rows fold by fold: every fit's training rows are 2 contiguous views
    bounds = np.searchsorted(fold[order], np.arange(folds + 1))
    x = torch.empty(x_np.shape, dtype=torch.float32)  # one float32 copy, filled in chunks (inputs may be memmaps)
    for lo in range(0, x.shape[0], 65536):
        x[lo : lo + 65536] = torch.from_numpy(np.asarray(x_np[order[lo : lo + 65536]], dtype=np.float32))
    y = torch.from_numpy(np.asarray(y_np[order], dtype=np.int64))
    grid = [float(l2)] if l2 is not None else sorted({float(v) for v in l2_grid}, reverse=True)
    if not grid or any(not (v >= 0) for v in grid):
        raise ValueError(f"l2_grid must hold non-negative numbers, got {l2_grid!r}")
    total = folds + (len(grid) if len(grid) > 1 else 0)
    done = 0
    losses: dict[float, float] = {}
    start = None
    if len(grid) > 1:  # choose λ on an inner split of fold 0's training rows, strongest penalty first (warm starts)
        train0 = np.arange(int(bounds[1]), x.shape[0])
        sampled = 1.0
        if train0.size > search_rows:  # a stratified sample; λ is rescaled to the fold's size below
            keep = stratified_folds(y_np[order[train0]], -(-train0.size // search_rows), seed + 2) == 0
            sampled = keep.sum() / train0.size
            train0 = train0[keep]
        inner = stratified_folds(y_np[order[train0]], 5, seed + 1) == 0
        fit_idx, val_idx = torch.from_numpy(train0[~inner]), torch.from_numpy(train0[inner])
        fit_rows = _Rows([x[fit_idx]], [y[fit_idx]])
        xv, yv = x[val_idx], y[val_idx]
        w, fitted, rises = None, {}, 0
        for lam in grid:
            w = _fit(fit_rows, k, lam, max_iter, w)
            fitted[lam] = w
            p = _probs(fit_rows, xv, w).clamp_min(1e-12)
            losses[lam] = float(F.nll_loss(p.log(), yv))
            done += 1
            if progress is not None:
                progress(done, total)
            rises = rises + 1 if len(losses) > 1 and losses[lam] > min(losses.values()) else 0
            if rises == 2:  # past the minimum: weaker penalties only fit the noise more closely
                break
        best = min(losses, key=lambda lam: (losses[lam], -lam))
        # searched on a sample: the penalty is on the mean loss, and a fixed prior on W keeps λ·n constant
        chosen = best * sampled
        # warm start in the folds' own standardised space (the inner fit's statistics differ only slightly)
        start = fitted[best]
        total = done + folds
    else:
        chosen = grid[0]
    out = torch.zeros(x.shape[0], k, dtype=torch.float32)
    for f in range(folds):
        lo, hi = int(bounds[f]), int(bounds[f + 1])
        rows = _Rows([x[:lo], x[hi:]], [y[:lo], y[hi:]])
        w = _fit(rows, k, chosen, max_iter, start)
        with torch.no_grad():
            out[lo:hi] = _probs(rows, x[lo:hi], w)
        done += 1
        if progress is not None:
            progress(done, total)
    probs = np.empty((x.shape[0], k), dtype=np.float32)
    probs[order] = out.numpy()
    return ProbeResult(probs, fold, chosen, time.perf_counter() - t0, losses)


def signals_from_embeddings(
    features: Any,
    labels: Any,
    *,
    folds: int = 5,
    seed: int = 0,
    num_classes: int | None = None,
    true_labels: Any = None,
    l2: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Signals:
    """A signals bundle from a user's own embeddings and (noisy) labels, for pruning without a warm-up.

    ``probs`` are out-of-sample: a ``folds``-fold cross-fitted linear probe (:func:`cross_fitted_probe`) on
    ``features``; ``features`` are kept as given (float16 stays float16). Every label-aware method
    (``prune4rel_auto``, ``confident_filter``, ``small_loss``, ...) can then select from it::

        sig = rp.signals_from_embeddings(embeddings, noisy_labels, folds=5)
        sel = rp.select("prune4rel_auto", signals=sig, fraction=0.2)

    ``true_labels`` (optional, evaluation only) travel in the bundle. One-line ``ValueError`` for rows that
    differ, NaN/inf, one class only, or a class with fewer examples than folds.
    """
    y = check_labels(labels)
    x = check_features(features, y.shape[0])
    counts = np.bincount(y)
    present = counts[counts > 0]
    if present.size < 2:
        raise ValueError("labels hold one class only; a probe needs at least two classes to tell apart")
    if present.min() < folds:
        c = int(np.flatnonzero((counts > 0) & (counts < folds))[0])
        raise ValueError(
            f"class {c} has {int(counts[c])} examples, fewer than the {folds} folds; use --folds "
            f"{max(2, int(present.min()))} or fewer, or drop the class"
        )
    res = cross_fitted_probe(x, y, num_classes=num_classes, folds=folds, seed=seed, l2=l2, progress=progress)
    meta = {
        "signal_source": f"probe:{folds} on given embeddings", "out_of_sample": True,
        "probe": {"folds": folds, "l2": res.l2, "seconds": round(res.seconds, 4), "seed": seed,
                  "inner_log_loss": {f"{k:g}": v for k, v in res.inner_losses.items()}},
        "agreement_with_given_labels": res.agreement(y),
    }  # fmt: skip
    return Signals(labels=y, probs=res.probs, features=x, true_labels=true_labels, meta=meta)
