"""Training-dynamics scores beyond forgetting and AUM: dynamic uncertainty (He et al., 2023).

Dynamic uncertainty is the mean, over sliding windows of J epochs, of the standard deviation of the
probability of the label within the window. It is computed from the per-epoch cross-entropy on the given
label that the warm-up records (``losses``), since that probability is ``exp(−loss)``; under label noise the
label is the given one, the only one a user has.
"""

from __future__ import annotations

import numpy as np

from robustprune.selection.registry import register

__all__ = ["dynamic_uncertainty_scores", "dynamic_uncertainty"]


def dynamic_uncertainty_scores(losses: np.ndarray, window: int = 10) -> np.ndarray:
    """Higher = more uncertain (kept); the mean over windows of the unbiased std of p(label) = exp(−loss).

    As released, the last epoch's record is left out and the windows are those ending at epochs J−1 … T−2
    (0-based). With fewer epochs than ``window + 1`` the window shrinks to every epoch but the last.

    Parameters
    ----------
    losses : ndarray, shape (E, N)
        Per-epoch cross-entropy on the given label; E >= 3.
    window : int
        J, the number of epochs per window (>= 2).

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    loss = np.asarray(losses, dtype=np.float64)
    if loss.ndim != 2 or loss.shape[0] < 3:
        raise ValueError(
            f"dynamic_uncertainty needs per-epoch losses of at least 3 warm-up epochs, got shape {loss.shape}; "
            "warm up for more epochs (--warmup-epochs)"
        )
    if int(window) < 2:
        raise ValueError(f"window must be at least 2 epochs, got {window}")
    p = np.exp(-loss[:-1])  # the last epoch's record is skipped, as released
    j = min(int(window), p.shape[0])
    # std of every window of j consecutive epochs, vectorised with cumulative sums
    c1 = np.concatenate([np.zeros((1, p.shape[1])), np.cumsum(p, axis=0)])
    c2 = np.concatenate([np.zeros((1, p.shape[1])), np.cumsum(p * p, axis=0)])
    s1, s2 = c1[j:] - c1[:-j], c2[j:] - c2[:-j]
    var = np.maximum(s2 - s1 * s1 / j, 0.0) / (j - 1)
    return np.sqrt(var).mean(axis=0)


@register(
    "dynamic_uncertainty",
    kind="score",
    requires=("losses",),
    keep="high",
    description="dynamic uncertainty: highest windowed std of the label's probability over warm-up epochs",
)
def dynamic_uncertainty(*, losses: np.ndarray, window: int = 10) -> np.ndarray:
    """Dynamic uncertainty (He et al., 2023): keep the examples whose label probability fluctuates most."""
    return dynamic_uncertainty_scores(losses, window)
