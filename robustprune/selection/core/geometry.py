"""The embedding geometry Prune4ReL's neighbourhoods live in: transforms, an automatic τ, a scale for η.

Prune4ReL's neighbourhood is a threshold on the rescaled cosine ``s = 0.5 + 0.5·cos`` of two embeddings. A
fixed τ means very different graphs in different spaces: the non-negative (post-ReLU) penultimate features
of a small network have high cosines everywhere, so τ = 0.95 joins hundreds of neighbours there and a
handful in a ResNet's space. This module gives the three tools that make the neighbourhood a property of
the data instead of a constant:

- :func:`transform_embedding`: raw features, centred (the mean removed: cosines spread over [-1, 1]) or
  whitened (centred, then each principal direction scaled to unit variance);
- :func:`auto_tau`: the τ at which the graph has a requested mean degree, from one pass over a sample of
  the similarity distribution (exact when ``N`` is at most the sample size);
- :func:`support_scale`: the mean neighbourhood confidence a uniform subset of the budget would give each
  example, a natural unit for η (``tanh(NC/η)`` then saturates around what a fair share of picks supplies).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from robustprune.selection.core.graph import SimilarityGraph, normalize_rows

__all__ = ["EMBEDDINGS", "transform_embedding", "whitening", "auto_tau", "support_scale", "coverage"]

#: Valid values of ``embedding``.
EMBEDDINGS = ("raw", "center", "whiten")


def transform_embedding(features: np.ndarray, kind: str = "raw") -> np.ndarray:
    """Features in the space the cosine is taken in; float32, shape (N, D') with D' <= D.

    Parameters
    ----------
    features : array (N, D)
    kind : {"raw", "center", "whiten"}
        "raw" returns the features unchanged (the released behaviour). "center" subtracts the mean row.
        "whiten" centres, then projects on the principal directions whose variance exceeds 1e-6 of the
        largest and divides each by its standard deviation (PCA whitening): every direction of variation
        counts equally in the cosine.

    Returns
    -------
    ndarray of float32, shape (N, D')
    """
    if kind not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {kind!r}")
    if kind == "raw":
        return features
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if kind == "center":
        return x.astype(np.float32)
    return (x @ whitening(x.T @ x / max(1, x.shape[0] - 1))).astype(np.float32)


def whitening(cov: np.ndarray) -> np.ndarray:
    """The PCA whitening of centred rows with covariance ``cov`` (D, D): the (D, D') matrix that projects on the
    principal directions whose variance exceeds 1e-6 of the largest and divides each by its standard deviation.
    Each eigenvector's sign is fixed (largest-magnitude entry positive), so the result does not depend on
    LAPACK."""
    vals, vecs = np.linalg.eigh(cov)
    keep = vals > 1e-6 * max(float(vals[-1]), 0.0)
    if not keep.any():
        raise ValueError("embedding='whiten' needs features that vary; all rows are equal")
    v = vecs[:, keep]
    v *= np.sign(v[np.abs(v).argmax(axis=0), np.arange(v.shape[1])])
    return v / np.sqrt(vals[keep])


def auto_tau(
    features: np.ndarray,
    target_degree: float,
    *,
    sample: int = 4096,
    seed: int = 0,
    device: str = "auto",
    read: Callable[[np.ndarray], np.ndarray] | None = None,
) -> float:
    """The τ (on ``0.5 + 0.5·cos``) at which the radius graph's mean degree, self included, is ``target_degree``.

    The mean degree at threshold t is ``1 + (N - 1)·P(s_ij > t)`` over pairs i != j. The pair distribution
    is read from a ``sample × sample`` block of rows and columns drawn without replacement (every pair when
    ``N <= sample``, which makes the degree exact up to ties); τ is the order statistic of that block that
    leaves the wanted share of pairs strictly above it. Deterministic for a seed: one matrix product and one
    partial sort, no graph.

    Parameters
    ----------
    features : array (N, D)
        The embeddings the graph will be built on (after :func:`transform_embedding`).
    target_degree : float
        Wanted mean neighbours per example, self included; clipped to [1, N].
    sample : int
        Rows and columns of the similarity block read (cost ``sample² · D``).
    seed, device
    read : callable, optional
        ``read(indices)`` returns those rows' embeddings (ascending indices): for rows kept out of memory
        (a memory map, shards) or mapped on the way in. Default: ``features[indices]``.

    Returns
    -------
    float
        τ in [0, 1]. A target degree of 1 gives the largest off-diagonal similarity (only self-pairs pass).
    """
    if not np.isfinite(target_degree) or target_degree <= 0:
        raise ValueError(f"target_degree must be a positive number, got {target_degree}")
    if sample < 2:
        raise ValueError(f"sample must be at least 2, got {sample}")
    import torch

    from robustprune._device import resolve_device

    dev = resolve_device(device)
    n = int(np.shape(features)[0])
    if n < 2:
        return 0.0
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7A1]))
    if n <= sample:
        rows = cols = np.arange(n)
    else:
        rows = np.sort(rng.choice(n, sample, replace=False))
        cols = np.sort(rng.choice(n, sample, replace=False))
    both = np.union1d(rows, cols)
    z = normalize_rows(np.asarray(features)[both] if read is None else read(both), dev)
    zr = z[torch.from_numpy(np.searchsorted(both, rows)).to(dev)]
    zc = z[torch.from_numpy(np.searchsorted(both, cols)).to(dev)]
    s = (zr @ zc.T).mul_(0.5).add_(0.5)  # float32, rounded as the graph builder rounds it
    same = torch.from_numpy(rows[:, None] == cols[None, :]).to(dev)
    vals = s[~same].cpu().numpy()
    share = (min(float(target_degree), n) - 1.0) / (n - 1)
    above = int(round(share * vals.size))
    if above >= vals.size:
        return 0.0
    # the (above+1)-th largest value: `above` pairs lie strictly above it (ties aside)
    kth = float(np.partition(vals, vals.size - above - 1)[vals.size - above - 1])
    return min(max(kth, 0.0), 1.0)


def support_scale(graph: SimilarityGraph, confidences: np.ndarray, fraction: float) -> float:
    """Mean over examples of the neighbourhood confidence a uniform subset of ``fraction`` would give.

    ``E[NC_v] = fraction · Σ_{x ∈ N(v)} w(v, x)·c(x)``, averaged over v: the NC a typical example reaches
    when the budget is spread without preference. One pass over the graph's edges.
    """
    if graph.nnz == 0:
        return 0.0
    conf = np.asarray(confidences, dtype=np.float64)
    total = float(np.dot(graph.weights.astype(np.float64), conf[graph.indices]))
    return fraction * total / graph.n


def coverage(nc: np.ndarray) -> float:
    """Share of examples with some support from the subset (NC > 0)."""
    return float(np.mean(np.asarray(nc) > 0)) if np.size(nc) else 0.0
