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
training rows only; ``res.probes[f]`` (:class:`FoldProbe`) keeps fold f's weights and standardisation.

**More rows than memory.** ``features`` may be a numpy memory map or any row source (an object with
``shape``, ``dtype`` and row indexing, such as the ``ShardedRows`` of
``robustprune.selection.shards.load_shards(dir).features``); it is read a block of rows at a time. With
``fit_rows=M`` and more than M rows, the folds are still dealt over all N rows, but the probes are fitted on
one seeded stratified sample S of about M rows (:func:`stratified_sample`; only S's rows are read, as
float32): the λ search on fold 0's training rows within S, probe f on S minus fold f. Every one of the N rows
is then predicted by the probe of its fold in one streaming pass (``block`` rows at a time), so it is still
out of sample, for the rows of S as for the others. Memory: S's rows (M·D float32), one block, and the
(N, K) output, which ``out=`` can take block by block instead (``robustprune signals --features DIR`` writes
it one file per shard)::

    res = cross_fitted_probe(rows, labels, fit_rows=1_000_000, out=lambda start, stop, p: ...)
    res.probs      # None: every block went to out(start, stop, probs)
    res.fit_rows   # the rows the probes were fitted on (the size of S; N without a sample)
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

__all__ = [
    "stratified_folds", "stratified_sample", "cross_fitted_probe", "check_probe_labels", "ProbeResult", "FoldProbe",
    "L2_GRID", "signals_from_embeddings",
]  # fmt: skip

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
class FoldProbe:
    """One fold's probe: softmax-regression weights ``(D+1, K)`` on standardised features (the last row the
    bias) and the mean and standard deviation of the rows it was fitted on, which standardise its input."""

    weights: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    rows: int  # the rows it was fitted on

    def __post_init__(self) -> None:
        # the standardisation folded into the weights: (x - mean) / std @ W + b = x @ scale + bias
        self._scale = self.weights[:-1] / self.std[:, None]
        self._bias = self.weights[-1] - self.mean @ self._scale

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, K) of float32 rows ``x`` (B, D)."""
        return torch.softmax(x @ self._scale + self._bias, dim=1)


@dataclass
class ProbeResult:
    """What :func:`cross_fitted_probe` returns."""

    probs: np.ndarray | None  # (N, K) float32, out of fold; None when they were handed to ``out`` instead
    fold: np.ndarray  # (N,) int64
    l2: float
    seconds: float
    inner_losses: dict[float, float] = field(default_factory=dict)  # λ -> inner-split log-loss
    fit_rows: int = 0  # rows the probes were fitted on (N, or the size of the stratified sample)
    given_agreement: float = float("nan")  # share of out-of-fold predictions equal to the given labels
    probes: list[FoldProbe] = field(default_factory=list)  # probe f predicts the rows of fold f

    @property
    def folds(self) -> int:
        return int(self.fold.max()) + 1

    @property
    def sampled(self) -> bool:
        """Whether the probes were fitted on a sample of the rows (and every row predicted by streaming)."""
        return self.fit_rows < self.fold.shape[0]

    def agreement(self, labels: Any = None) -> float:
        """Share of examples whose out-of-fold prediction equals ``labels`` (default: the labels the probe was
        given, the only ones available when ``probs`` were handed to ``out``)."""
        if labels is None:
            return self.given_agreement
        if self.probs is None:
            raise ValueError("the probabilities were handed to out= and not kept; agreement() without labels "
                             "gives the agreement with the labels the probe was fitted on")  # fmt: skip
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


def _is_row_source(x: Any) -> bool:
    """Whether ``x`` is read a block of rows at a time (a numpy memory map, or any object with ``shape``,
    ``dtype`` and row indexing that is not an array in memory, e.g. the ``ShardedRows`` of a shard
    directory) rather than checked and used whole."""
    if isinstance(x, np.memmap):
        return True
    if isinstance(x, (np.ndarray, torch.Tensor, list, tuple)):
        return False
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__getitem__")


def _check_source(x: Any, n: int) -> None:
    """Shape and dtype of a row source, without reading it (its values are checked as they are read)."""
    shape = tuple(x.shape)
    if len(shape) != 2:
        raise ValueError(f"features must have shape (N, D), got {shape}; flatten each example's embedding")
    if shape[0] != n:
        raise ValueError(f"features has {shape[0]} rows but the other signals have {n}")
    if shape[1] < 1:
        raise ValueError("features has zero columns")
    dt = np.dtype(x.dtype)
    if not (np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer) or dt.kind == "b"):
        raise ValueError(f"features must be numeric, got dtype {dt}")


def _read(source: Any, rows: np.ndarray | slice, checked: bool) -> np.ndarray:
    """Rows of ``source`` (ascending indices or a slice) as float32; unless ``checked``, refuse NaN/inf
    naming the first bad row."""
    block = np.asarray(source[rows], dtype=np.float32)
    if not block.flags.writeable:  # a view of a read-only memory map: torch wants its own copy
        block = block.copy()
    if not checked:
        ok = np.isfinite(block).all(1)
        if not ok.all():
            i = int(np.argmin(ok))
            row = int(rows[i]) if isinstance(rows, np.ndarray) else int(rows.start or 0) + i
            what = "NaN" if np.isnan(block[i]).any() else "infinity"
            raise ValueError(f"features contains {what} (first at row {row}); clean or drop those rows first")
    return block


def stratified_sample(labels: Any, fold: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Ascending indices of about ``size`` examples, stratified on ``labels`` and spread over the folds.

    Each class gets its share of ``size`` (largest remainders), but at least as many examples as there are
    folds (all of them for a smaller class). Within a class the examples of each fold are ranked at random
    (stream ``(seed, "probe sample")``) and taken rank by rank, one fold after another, so the class's sample
    is spread over the folds as evenly as their sizes allow."""
    y = np.asarray(labels)
    fold = np.asarray(fold, dtype=np.int64)
    n, folds = y.shape[0], int(fold.max()) + 1
    counts = np.bincount(y)
    share = counts * (size / n)
    quota = np.floor(share).astype(np.int64)
    extra = int(size - quota.sum())
    if extra > 0:  # largest remainders, ties to the smaller class index
        quota[np.argsort(-(share - quota), kind="stable")[:extra]] += 1
    quota = np.minimum(counts, np.maximum(quota, np.minimum(counts, folds)))
    cell = y.astype(np.int64) * folds + fold
    key = stream(seed, "probe sample").random(n)
    order = np.lexsort((key, cell))  # grouped by (class, fold), random within
    del key
    sizes = np.bincount(cell, minlength=counts.size * folds)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first[cell[order]]
    del order
    # a class's examples in the order rank 0 of every fold, rank 1 of every fold, ... (folds rotated by class)
    turn = rank * folds + (fold + y) % folds
    take = (turn < quota[y]) | (quota[y] >= counts[y])
    return np.flatnonzero(take)


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
    fit_rows: int | None = None,
    out: Callable[[int, int, np.ndarray], None] | None = None,
    block: int = 65536,
    progress: Callable[[int, int], None] | None = None,
) -> ProbeResult:
    """Out-of-fold probabilities (N, K) of a linear probe on ``features`` (N, D) for ``labels`` (N,).

    Parameters
    ----------
    features : array (N, D) or a row source
        Embeddings (any float dtype; float16 is fine): an array in memory, a numpy memory map
        (``np.load(path, mmap_mode="r")``) or any row source with ``shape``, ``dtype`` and row indexing
        (``robustprune.selection.shards.load_shards(dir).features``). A memory map or row source is read a
        block of rows at a time and checked (finite) as it is read.
    labels : array (N,)
        Given, possibly noisy, labels in ``[0, num_classes)``.
    num_classes : int, optional
        K (default: one more than the largest label).
    folds : int
        K of the cross-fitting (stratified on ``labels``, seeded by ``seed``), over all N rows.
    l2 : float, optional
        A fixed regularisation strength; by default chosen from ``l2_grid`` on an inner split.
    max_iter : int
        L-BFGS iterations per fit.
    search_rows : int
        The inner split that chooses λ uses at most this many of fold 0's training rows (a stratified sample);
        the λ it chooses is then scaled by the sampled share, since the penalty is on the mean loss and a
        fixed prior on the weights keeps λ·n constant.
    fit_rows : int, optional
        Fit on at most about this many rows. With more than ``fit_rows`` rows, the probes are fitted on one
        seeded stratified sample of about ``fit_rows`` rows (:func:`stratified_sample`; only its rows are read
        for fitting, as float32): the λ search on fold 0's training rows within it, probe f on its rows
        outside fold f. Then every one of the N rows is predicted by the probe of its fold, streaming the
        source ``block`` rows at a time, so every row's probabilities still come from a probe that never saw
        it. Memory: the sample's float32 rows, one block, and the (N, K) output unless ``out`` takes it.
        ``None`` (default): fit on every row.
    out : callable, optional
        ``out(start, stop, probs)`` receives the out-of-fold probabilities (float32, ``stop - start`` rows)
        of consecutive row ranges, in order, covering ``[0, N)``; the result's ``probs`` is then ``None``
        (write them to disk as they come, e.g. one file per shard).
    block : int
        Rows read (and handed to ``out``) at a time.
    progress : callable, optional
        ``progress(done, total)`` after every fit (and, when predicting by streaming, after every block).
    """
    t0 = time.perf_counter()
    y_np = check_labels(labels)
    n = y_np.shape[0]
    streamed = _is_row_source(features)
    if streamed:
        _check_source(features, n)
        x_src = features
    else:
        x_src = check_features(features, n)
    k = int(num_classes) if num_classes is not None else int(y_np.max()) + 1
    if y_np.max() >= k:
        raise ValueError(f"labels contain class {int(y_np.max())} but num_classes is {k}")
    if np.unique(y_np).size < 2:
        raise ValueError("labels hold one class only; a probe needs at least two classes to tell apart")
    if l2 is not None and not (isinstance(l2, (int, float)) and l2 >= 0):
        raise ValueError(f"l2 must be a non-negative number, got {l2!r}")
    grid = [float(l2)] if l2 is not None else sorted({float(v) for v in l2_grid}, reverse=True)
    if not grid or any(not (v >= 0) for v in grid):
        raise ValueError(f"l2_grid must hold non-negative numbers, got {l2_grid!r}")
    fold = stratified_folds(y_np, folds, seed)
    if fit_rows is not None and (
        isinstance(fit_rows, bool) or not isinstance(fit_rows, (int, np.integer)) or fit_rows < k * folds
    ):
        raise ValueError(f"fit_rows must be a whole number of at least {k * folds} (classes × folds), got {fit_rows!r}")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive whole number of rows, got {block!r}")
    sample = None if fit_rows is None or n <= fit_rows else stratified_sample(y_np, fold, int(fit_rows), seed)
    m = n if sample is None else sample.shape[0]
    fold_s = fold if sample is None else fold[sample]
    order = np.argsort(fold_s, kind="stable")  # rows fold by fold: every fit's training rows are 2 contiguous views
    bounds = np.searchsorted(fold_s[order], np.arange(folds + 1))
    pos = np.empty(m, dtype=np.int64)
    pos[order] = np.arange(m)
    # one float32 copy of the fitted rows, read in ascending blocks and placed fold by fold
    x = torch.empty((m, x_src.shape[1]), dtype=torch.float32)
    for lo in range(0, m, block):
        hi = min(m, lo + block)
        which = slice(lo, hi) if sample is None else sample[lo:hi]
        x[torch.from_numpy(pos[lo:hi])] = torch.from_numpy(_read(x_src, which, not streamed))
    del pos
    y_fit = y_np[order] if sample is None else y_np[sample[order]]
    y = torch.from_numpy(np.asarray(y_fit, dtype=np.int64))
    blocks = -(-n // block) if sample is not None else 0  # steps of the streaming pass
    total = folds + (len(grid) if len(grid) > 1 else 0) + blocks
    done = 0
    losses: dict[float, float] = {}
    start = None
    if len(grid) > 1:  # choose λ on an inner split of fold 0's training rows, strongest penalty first (warm starts)
        train0 = np.arange(int(bounds[1]), m)
        sampled = 1.0
        if train0.size > search_rows:  # a stratified sample; λ is rescaled to the fold's size below
            keep = stratified_folds(y_fit[train0], -(-train0.size // search_rows), seed + 2) == 0
            sampled = keep.sum() / train0.size
            train0 = train0[keep]
        inner = stratified_folds(y_fit[train0], 5, seed + 1) == 0
        fit_idx, val_idx = torch.from_numpy(train0[~inner]), torch.from_numpy(train0[inner])
        inner_rows = _Rows([x[fit_idx]], [y[fit_idx]])
        xv, yv = x[val_idx], y[val_idx]
        w, fitted, rises = None, {}, 0
        for lam in grid:
            w = _fit(inner_rows, k, lam, max_iter, w)
            fitted[lam] = w
            p = _probs(inner_rows, xv, w).clamp_min(1e-12)
            losses[lam] = float(F.nll_loss(p.log(), yv))
            done += 1
            if progress is not None:
                progress(done, total)
            rises = rises + 1 if len(losses) > 1 and losses[lam] > min(losses.values()) else 0
            if rises == 2:  # past the minimum: weaker penalties only fit the noise more closely
                break
        del inner_rows, xv, yv, fit_idx, val_idx
        best = min(losses, key=lambda lam: (losses[lam], -lam))
        # searched on a sample: the penalty is on the mean loss, and a fixed prior on W keeps λ·n constant
        chosen = best * sampled
        # warm start in the folds' own standardised space (the inner fit's statistics differ only slightly)
        start = fitted[best]
        total = done + folds + blocks
    else:
        chosen = grid[0]
    probes: list[FoldProbe] = []
    held = torch.zeros(m if sample is None else 0, k, dtype=torch.float32)  # fold-ordered predictions, in memory
    for f in range(folds):
        lo, hi = int(bounds[f]), int(bounds[f + 1])
        rows = _Rows([x[:lo], x[hi:]], [y[:lo], y[hi:]])
        w = _fit(rows, k, chosen, max_iter, start)
        probes.append(FoldProbe(w, rows.mean, rows.std, rows.n))
        if sample is None:
            with torch.no_grad():
                held[lo:hi] = _probs(rows, x[lo:hi], w)
        done += 1
        if progress is not None:
            progress(done, total)
    del rows, x, y
    agree = 0
    probs: np.ndarray | None = None
    if sample is None:  # every row was fitted (and is held): its fold's probe predicted it above
        probs = np.empty((n, k), dtype=np.float32)
        probs[order] = held.numpy()
        del held
        agree = int(np.count_nonzero(probs.argmax(1) == y_np))
        if out is not None:
            for lo in range(0, n, block):
                out(lo, min(n, lo + block), probs[lo : lo + block])
            probs = None
    else:  # predict every row, a block at a time, by the probe of its fold
        probs = np.empty((n, k), dtype=np.float32) if out is None else None
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            xb = torch.from_numpy(_read(x_src, slice(lo, hi), not streamed))
            fb = fold[lo:hi]
            pb = torch.empty(hi - lo, k, dtype=torch.float32)
            with torch.no_grad():
                for f in np.unique(fb):
                    at = torch.from_numpy(np.flatnonzero(fb == f))
                    pb[at] = probes[int(f)].probs(xb[at])
            pn = pb.numpy()
            agree += int(np.count_nonzero(pn.argmax(1) == y_np[lo:hi]))
            if probs is not None:
                probs[lo:hi] = pn
            else:
                out(lo, hi, pn)  # type: ignore[misc]
            done += 1
            if progress is not None:
                progress(done, total)
    return ProbeResult(probs, fold, chosen, time.perf_counter() - t0, losses, fit_rows=m, given_agreement=agree / n,
                       probes=probes)  # fmt: skip


def check_probe_labels(labels: Any, folds: int) -> np.ndarray:
    """``labels`` as int64, refused (one-line ``ValueError``) when they hold one class only or a class with
    fewer examples than ``folds`` (some fold's probe would never see it)."""
    y = check_labels(labels)
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
    return y


def signals_from_embeddings(
    features: Any,
    labels: Any,
    *,
    folds: int = 5,
    seed: int = 0,
    num_classes: int | None = None,
    true_labels: Any = None,
    l2: float | None = None,
    fit_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Signals:
    """A signals bundle from a user's own embeddings and (noisy) labels, for pruning without a warm-up.

    ``probs`` are out-of-sample: a ``folds``-fold cross-fitted linear probe (:func:`cross_fitted_probe`) on
    ``features``; ``features`` are kept as given (float16 stays float16; a memory map or other row source
    stays on disk, its rows checked as the probe reads them). ``fit_rows`` fits the probes on a stratified
    sample of about that many rows when there are more (every row is still predicted out of fold). Every
    label-aware method (``prune4rel_auto``, ``confident_filter``, ``small_loss``, ...) can then select from
    it::

        sig = rp.signals_from_embeddings(embeddings, noisy_labels, folds=5)
        sel = rp.select("prune4rel_auto", signals=sig, fraction=0.2)

    ``true_labels`` (optional, evaluation only) travel in the bundle. One-line ``ValueError`` for rows that
    differ, NaN/inf, one class only, or a class with fewer examples than folds.
    """
    y = check_probe_labels(labels, folds)
    lazy = _is_row_source(features)
    if lazy:
        _check_source(features, y.shape[0])
        x = features
    else:
        x = check_features(features, y.shape[0])
    res = cross_fitted_probe(
        x, y, num_classes=num_classes, folds=folds, seed=seed, l2=l2, fit_rows=fit_rows, progress=progress
    )
    meta = {
        "signal_source": f"probe:{folds} on given embeddings", "out_of_sample": True,
        "probe": {"folds": folds, "l2": res.l2, "seconds": round(res.seconds, 4), "seed": seed,
                  "fit_rows": res.fit_rows,
                  "inner_log_loss": {f"{k:g}": v for k, v in res.inner_losses.items()}},
        "agreement_with_given_labels": res.agreement(),
    }  # fmt: skip
    sig = Signals(labels=y, probs=res.probs, features=None if lazy else x, true_labels=true_labels, meta=meta)
    if lazy:  # every row was read and checked by the probe; the bundle keeps the source as it is
        sig.features = x
    return sig
