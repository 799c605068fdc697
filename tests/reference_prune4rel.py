"""A direct, dense transcription of the released Prune4ReL greedy, used only as a test oracle.

One similarity column per pick (O(budget · N · D)), float32 state, ``argmax`` with lowest-index ties,
and the released class-balanced round-robin with its 1.5x break rule. Deliberately naive.
"""

from __future__ import annotations

import numpy as np
import torch


def _tanh(x):
    return torch.tanh(torch.from_numpy(x)).numpy()


def released_prune4rel(
    probs,
    features,
    budget,
    *,
    tau=0.95,
    eta=1.0,
    labels=None,
    num_classes=None,
    confidence="max_prob",
    start=(),
    candidates=None,
    gain="self",
    return_gains=False,
):
    """``start`` (active learning): NC begins with those examples' support; ``candidates``: only these may be
    picked, and the balanced round-robin counts only them. ``gain="exact"``: the true marginal gain of F for
    every candidate, recomputed from a dense similarity matrix each pick in float64 (the released schedule
    around it unchanged); ``return_gains`` also returns each pick's gain. The defaults are the released rule."""
    probs = np.asarray(probs, dtype=np.float32)
    if confidence == "max_prob":
        confs = probs.max(axis=1)
    elif confidence == "margin":
        s = np.sort(probs, axis=1)
        confs = (s[:, -1] - s[:, -2]).astype(np.float32)
    else:
        raise ValueError(confidence)
    z = np.asarray(features, dtype=np.float32)
    z = z / np.linalg.norm(z, axis=1, keepdims=True).astype(np.float32)
    n = z.shape[0]
    eta32 = np.float32(eta)

    def column(p):
        sim = np.float32(0.5) + np.float32(0.5) * (z @ z[p])
        sim[p] = 1.0
        return sim * (sim > np.float32(tau))

    exact = gain == "exact"
    if exact:
        w_all = np.stack([column(p) for p in range(n)], axis=1).astype(np.float64)  # w_all[v, x] = w(v, x)
        c64 = confs.astype(np.float64)
    nc = np.zeros(n, dtype=np.float64 if exact else np.float32)
    for s in np.sort(np.asarray(start, dtype=np.int64)):
        nc += column(s) * confs[s]
    selected = np.zeros(n, dtype=bool)  # picked, or not a candidate
    if candidates is not None:
        selected[:] = True
        selected[np.asarray(candidates, dtype=np.int64)] = False
    balance = labels is not None
    if balance:
        k = num_classes if num_classes is not None else probs.shape[1]
        avail = list(range(k))
        members = [np.flatnonzero((labels == c) & ~selected) for c in range(k)]
        remaining = [int(m.size) for m in members]
        init = list(remaining)
        min_balance = 0
    broken = False
    order, gains = [], []
    for i in range(budget):
        if exact:  # per candidate x: sum over v of tanh((NC_v + w(v, x) c_x) / eta) - tanh(NC_v / eta)
            scores = (np.tanh((nc[:, None] + w_all * c64[None, :]) / eta) - np.tanh(nc[:, None] / eta)).sum(0)
            scores[selected] = -np.inf
        else:
            scores = _tanh((nc + confs) / eta32) - _tanh(nc / eta32)
            scores[selected] = -1
        if not balance or broken:
            p = int(np.argmax(scores))
        else:
            target = avail[i % len(avail)]
            while remaining[target] == 0:
                if len(avail) == k:
                    min_balance = init[target]
                avail = [c for c in avail if c != target]
                target = avail[i % len(avail)]
                if init[target] - remaining[target] > 1.5 * min_balance:
                    broken = True
            idx = members[target]
            p = int(idx[np.argmax(scores[idx])])
            remaining[target] -= 1
        selected[p] = True
        order.append(p)
        gains.append(float(scores[p]))
        if i == budget - 1:
            break
        nc += (w_all[:, p] * c64[p]) if exact else column(p) * confs[p]
    order = np.array(order, dtype=np.int64)
    return (order, np.array(gains)) if return_gains else order
