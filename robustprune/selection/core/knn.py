"""Blocked k-nearest-neighbour search in Euclidean distance (no N×N matrix is held), shared by Cal and D2."""

from __future__ import annotations

import numpy as np

__all__ = ["knn_indices", "knn_among"]

_BLOCK = 2048


def knn_indices(features: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` nearest other rows of each row (Euclidean; ties: lower index), shape (N, k), blocked."""
    import torch

    x = torch.as_tensor(np.asarray(features, dtype=np.float64))
    n = x.shape[0]
    sq = (x * x).sum(dim=1)
    out = np.empty((n, k), dtype=np.int64)
    for a in range(0, n, _BLOCK):
        d = sq[a : a + _BLOCK, None] - 2.0 * x[a : a + _BLOCK] @ x.T + sq[None, :]
        rows = torch.arange(d.shape[0])
        d[rows, rows + a] = float("inf")  # not its own neighbour
        # stable ascending sort: equal distances keep the lower index first
        out[a : a + _BLOCK] = torch.sort(d, dim=1, stable=True).indices[:, :k].numpy()
    return out


def knn_among(features: np.ndarray, queries: np.ndarray, refs: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` nearest rows among ``refs`` of each row in ``queries`` (Euclidean; an index is never its own
    neighbour; ties: lower index), as indices into ``features``, shape (len(queries), k), blocked."""
    import torch

    x = torch.as_tensor(np.asarray(features, dtype=np.float64))
    q_idx = np.asarray(queries, dtype=np.int64)
    r_idx = np.sort(np.asarray(refs, dtype=np.int64))  # ascending, so a stable sort breaks ties by index
    xr = x[torch.as_tensor(r_idx)]
    sq_r = (xr * xr).sum(dim=1)
    out = np.empty((q_idx.shape[0], k), dtype=np.int64)
    for a in range(0, q_idx.shape[0], _BLOCK):
        qi = q_idx[a : a + _BLOCK]
        xq = x[torch.as_tensor(qi)]
        d = (xq * xq).sum(dim=1)[:, None] - 2.0 * xq @ xr.T + sq_r[None, :]
        d[torch.as_tensor(qi[:, None] == r_idx[None, :])] = float("inf")  # not its own neighbour
        out[a : a + _BLOCK] = r_idx[torch.sort(d, dim=1, stable=True).indices[:, :k].numpy()]
    return out
