"""Training-dynamics scores beyond forgetting and AUM: dynamic uncertainty (He et al., 2023) and TDDS
(Zhang et al., 2024).

Dynamic uncertainty is the mean, over sliding windows of J epochs, of the standard deviation of the
probability of the label within the window. It is computed from the per-epoch cross-entropy on the given
label that the warm-up records (``losses``), since that probability is ``exp(−loss)``; under label noise the
label is the given one, the only one a user has.

TDDS scores the variability of the per-step KL-like change of the whole softmax output over sliding windows
of the training trajectory, weighting later windows exponentially more. It needs the per-epoch probabilities
(``epoch_probs``), which a run records only when its method needs them.
"""

from __future__ import annotations

import numpy as np

from robustprune.selection.registry import register

__all__ = ["dynamic_uncertainty_scores", "dynamic_uncertainty", "tdds_scores", "tdds"]


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
            "record more epochs (run: --warmup-epochs; al: --epochs or --dynamics-epochs)"
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


def tdds_scores(
    epoch_probs: np.ndarray,
    trajectory: int | None = None,
    window: int | None = None,
    decay: float = 0.9,
    eps: float = 1e-12,
) -> np.ndarray:
    """Higher = more variable training dynamics (kept); TDDS: decayed sum of windowed deviations of the
    per-step change of the softmax output.

    With ``p_t`` the probabilities at epoch t, the step contribution is
    δ_t = Σ_c |p_{t+1,c} (log(p_{t+1,c} + ε) − log(p_{t,c} + ε))| for t = 0 … T−2. Each window of J epochs
    starting at k = 0 … T−J holds the J−1 steps δ_k … δ_{k+J−2}; V_k is the L2 norm of those steps minus
    their mean. The score is Σ_k β(1−β)^{T−J−k} V_k, so the last window weighs β and each earlier one (1−β)
    times less.

    Parameters
    ----------
    epoch_probs : ndarray, shape (E, N, K)
        Per-epoch softmax outputs (float16 is fine; each epoch is upcast to float64 in turn).
    trajectory : int, optional
        T, the number of leading epochs used (default: all E).
    window : int, optional
        J, epochs per window, at least 3 (two steps); default min(10, T).
    decay : float
        β in (0, 1].
    eps : float
        Added inside the logarithms, so zero probabilities give finite scores.

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    p = epoch_probs
    if np.ndim(p) != 3:
        raise ValueError(f"tdds needs per-epoch probabilities of shape (epochs, N, K), got {np.shape(p)}")
    e = int(p.shape[0])
    if e < 3:
        raise ValueError(
            f"tdds needs per-epoch probabilities of at least 3 warm-up epochs, got {e}; "
            "record more epochs (run: --warmup-epochs; al: --epochs or --dynamics-epochs)"
        )
    t = e if trajectory is None else int(trajectory)
    if not 3 <= t <= e:
        raise ValueError(f"trajectory must be between 3 and the {e} recorded epochs, got {trajectory}")
    j = min(10, t) if window is None else int(window)
    if j < 3:
        raise ValueError(f"window must be at least 3 epochs (two steps), got {window}")
    if j > t:
        raise ValueError(
            f"window of {j} epochs is longer than the trajectory of {t} epochs; lower window or record more "
            "epochs (run: --warmup-epochs; al: --epochs or --dynamics-epochs)"
        )
    if not 0 < float(decay) <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    beta = float(decay)
    # δ_t, one epoch pair at a time: (T−1, N) float64 without a float64 copy of the whole trajectory
    prev = np.asarray(p[0], dtype=np.float64)
    log_prev = np.log(prev + eps)
    steps = np.empty((t - 1, p.shape[1]), dtype=np.float64)
    for i in range(1, t):
        cur = np.asarray(p[i], dtype=np.float64)
        log_cur = np.log(cur + eps)
        steps[i - 1] = np.abs(cur * (log_cur - log_prev)).sum(axis=1)
        log_prev = log_cur
    # V_k over each window of J−1 consecutive steps (centred directly, no cancellation), decayed and summed
    last = t - j
    score = np.zeros(p.shape[1], dtype=np.float64)
    for k in range(last + 1):
        w = steps[k : k + j - 1]
        score += beta * (1.0 - beta) ** (last - k) * np.linalg.norm(w - w.mean(axis=0), axis=0)
    return score


@register(
    "tdds",
    kind="score",
    requires=("epoch_probs",),
    keep="high",
    description="TDDS: highest decayed windowed variability of the per-epoch change of the softmax output",
)
def tdds(
    *, epoch_probs: np.ndarray, trajectory: int | None = None, window: int | None = None, decay: float = 0.9
) -> np.ndarray:
    """TDDS (Zhang et al., CVPR 2024): keep the examples whose predictions change most irregularly late in the
    trajectory. Not class-balanced by default, as released (``class_balanced=True`` gives proportional quotas).
    The released trainer's rescaling of each batch's loss by its samples' scores is not part of selection."""
    return tdds_scores(epoch_probs, trajectory, window, decay)
