"""Greedy k-center (farthest-first traversal) on embeddings, Sener & Savarese (2018).

Only the running minimum distance of every point to the chosen centres is kept (O(N) memory beyond the
features); each pick costs one O(N·D) distance update done with torch. DeepCore's version allocates a
(k−1)×N table instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from robustprune.seeding import stream
from robustprune.selection.budget import class_quotas
from robustprune.selection.core.greedy import argmax_greedy
from robustprune.selection.registry import register
from robustprune.selection.result import MethodOutput

if TYPE_CHECKING:
    import torch

__all__ = ["kcenter_greedy_order", "kcenter_greedy"]

_CHUNK = 65536  # rows per block for the squared norms (bounds temporaries for very large N)


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    import torch

    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], _CHUNK):
        blk = x[s : s + _CHUNK]
        out[s : s + _CHUNK] = (blk * blk).sum(dim=1)
    return out


def kcenter_greedy_order(
    features: np.ndarray,
    k: int,
    first: int | None,
    progress: Callable[[int], None] | None = None,
    device: str | torch.device = "cpu",
    start: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Farthest-first traversal of ``features`` from the centre ``first``, or from the centres ``start``.

    Parameters
    ----------
    features : ndarray, shape (N, D)
        Float64 input is processed in float64, anything else in float32. Features are centred on their
        mean first (distances are unchanged; the squared-norm expansion loses less precision).
    k : int, 0 <= k <= N
        Number of centres to pick.
    first : int or None
        Index of the first pick (it counts toward ``k``); None to start with the point farthest from ``start``.
    progress : callable (picks_done), optional
    device : str or torch.device
        Where the distance updates run. The loop never synchronises with the host.
    start : ndarray of int, optional
        Centres chosen beforehand (a starting set): every distance starts as the distance to the nearest of
        them; they are not picked again and not counted in ``k``.
    allowed : ndarray of bool, shape (N,), optional
        The points that may be picked (default: all); the others still exist but are never chosen.

    Returns
    -------
    order : ndarray of int64, shape (k,)
        Centres in pick order, starting with ``first``.
    gains : ndarray of float64, shape (k,)
        Euclidean distance of each pick to the centres chosen before it, ``start`` included (its coverage
        radius at that moment); a ``first`` pick has no earlier centre and gets +inf. The sequence is
        non-increasing.
    """
    import torch

    n = features.shape[0]
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    dtype = torch.float64 if features.dtype == np.float64 else torch.float32
    x = torch.as_tensor(np.asarray(features)).to(device=device, dtype=dtype)
    x = x - x.mean(dim=0, keepdim=True)
    sq = _sq_norms(x)
    # stored as (D, N): the matrix-vector product over a column-major N×D view is several times faster
    # than over a row-major one on CPU BLAS
    xt = x.t().contiguous()
    del x
    # running minimum of squared distances; chosen points are set to -inf so they are never re-picked
    mind = torch.full((n,), float("inf"), dtype=dtype, device=xt.device)
    if start is not None and len(start):
        s_idx = torch.as_tensor(np.asarray(start, dtype=np.int64), device=xt.device)
        for a in range(0, s_idx.shape[0], 1024):  # blocks of centres: one (block x N) product each
            blk = s_idx[a : a + 1024]
            d = (xt.index_select(1, blk).t() @ xt).mul_(-2.0).add_(sq).add_(sq.index_select(0, blk)[:, None])
            torch.minimum(mind, d.amin(dim=0), out=mind)
        mind.index_fill_(0, s_idx, float("-inf"))
    if allowed is not None:
        mind.masked_fill_(torch.as_tensor(~np.asarray(allowed, dtype=bool), device=xt.device), float("-inf"))

    def update(cur: torch.Tensor) -> None:
        # one O(N·D) update: ||x - c||² = ||x||² − 2 x·c + ||c||² for the new centre c
        centre = xt.index_select(1, cur)[:, 0]
        d = torch.addmv(sq, xt.t(), centre, alpha=-2.0).add_(sq.index_select(0, cur))
        torch.minimum(mind, d, out=mind)
        mind.index_fill_(0, cur, float("-inf"))

    order, sqdist = argmax_greedy(mind, update, k, first=first, progress=progress)
    gains = sqdist.clamp_min(0.0).sqrt()
    return order.cpu().numpy(), gains.cpu().numpy().astype(np.float64)


@register(
    "kcenter_greedy",
    kind="greedy",
    requires=("features",),
    optional=("labels",),
    description="greedy k-center (farthest-first) coverage of the embedding space, seeded random start",
)
def kcenter_greedy(
    *,
    features: np.ndarray,
    labels: np.ndarray | None = None,
    budget: int,
    class_balanced: bool = False,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    device: str = "cpu",
    start: np.ndarray | None = None,
    pool: np.ndarray | None = None,
) -> MethodOutput:
    """kCenterGreedy (Sener & Savarese, 2018) with Euclidean distances on ``features``.

    The first centre is drawn uniformly at random with ``stream(seed, "kcenter_greedy")`` and counts toward
    the budget; every further pick is the point farthest from all chosen centres. ``gains`` holds each
    pick's distance to the earlier centres (+inf for a first centre).

    With ``class_balanced=True`` the traversal runs separately inside each class with its
    :func:`~robustprune.selection.budget.class_quotas` share; class c's first centre is drawn from
    ``stream(seed, "kcenter_greedy", c)`` (independent of the budget, so a smaller budget gives per-class
    prefixes). The per-class sequences are merged by descending gain (ties: earlier within-class pick,
    then lower class index), so the returned gains are non-increasing overall and each class keeps its own
    pick order.

    ``device`` ("cpu", "cuda", "auto") is where the distance updates run; picks can differ between devices
    only on exact or near ties. The default is "cpu" so results are bit-identical across machines.

    Active learning (``select(..., start=S0, candidates=...)``): every distance starts as the distance to the
    nearest member of S0, so each pick is the candidate farthest from S0 and the earlier picks (no random
    first centre; gains are finite). Only candidates (``pool``) are picked; every example is still a point.
    With ``class_balanced=True`` the quotas are split over the candidates' labels and class c's traversal
    starts from S0's members of class c (a random first centre, drawn among the class's candidates, when it
    has none). An empty S0 is pruning.

    Returns
    -------
    MethodOutput
        ``indices`` (budget,) in pick order, ``gains`` (budget,).
    """
    from robustprune._device import resolve_device

    dev = resolve_device(device)
    n = features.shape[0]
    total = int(budget)
    allowed = in_start = None
    if pool is not None:
        allowed = np.zeros(n, dtype=bool)
        allowed[pool] = True
    if start is not None and len(start):
        in_start = np.zeros(n, dtype=bool)
        in_start[start] = True
        allowed = ~in_start if allowed is None else allowed & ~in_start
    if not class_balanced:
        info = {}
        first = None
        if in_start is None:
            cand = np.arange(n) if allowed is None else np.flatnonzero(allowed)
            first = int(cand[stream(seed, "kcenter_greedy").integers(cand.shape[0])])
            info["first_center"] = first
        cb = None if progress is None else (lambda done: progress(done, total))
        order, gains = kcenter_greedy_order(features, total, first, cb, dev, start, allowed)
        return MethodOutput(indices=order, gains=gains, info=info)

    if labels is None:
        raise ValueError("class_balanced=True needs labels")
    if allowed is None:
        quotas = class_quotas(labels, total)
    else:
        quotas = class_quotas(labels[allowed], total, int(labels.max()) + 1)
    members = np.argsort(labels, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(labels, minlength=quotas.shape[0]))))
    parts_idx, parts_gain, parts_rank, parts_cls = [], [], [], []
    done_before = 0
    for c in np.flatnonzero(quotas):
        idx = members[bounds[c] : bounds[c + 1]]
        ok = None if allowed is None else allowed[idx]
        s_c = None if in_start is None else np.flatnonzero(in_start[idx])
        first = None
        if s_c is None or not s_c.size:
            cand = np.arange(idx.shape[0]) if ok is None else np.flatnonzero(ok)
            first = int(cand[stream(seed, "kcenter_greedy", int(c)).integers(cand.shape[0])])
        base = done_before
        cb = None if progress is None else (lambda done, base=base: progress(base + done, total))
        order, gains = kcenter_greedy_order(features[idx], int(quotas[c]), first, cb, dev, s_c, ok)
        parts_idx.append(idx[order])
        parts_gain.append(gains)
        parts_rank.append(np.arange(order.shape[0]))
        parts_cls.append(np.full(order.shape[0], c))
        done_before += int(quotas[c])
    all_idx = np.concatenate(parts_idx)
    all_gain = np.concatenate(parts_gain)
    # lexsort: last key is primary -> gain descending, then within-class rank, then class
    merge = np.lexsort((np.concatenate(parts_cls), np.concatenate(parts_rank), -all_gain))
    return MethodOutput(indices=all_idx[merge].astype(np.int64), gains=all_gain[merge])
