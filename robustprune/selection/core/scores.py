"""Per-example score functions, each stating its direction on its first docstring line.

The registered score methods (:mod:`robustprune.selection.methods.scores`) are thin wrappers over these; CCS
and D2 rank by :func:`ccs_difficulty`, one definition per difficulty name. Inputs are trusted (the public API
validates them); the functions upcast to float64 so scores do not depend on the input precision.
"""

from __future__ import annotations

import numpy as np

from robustprune.seeding import stream

__all__ = [
    "uniform_scores", "full_scores", "small_loss_scores", "uncertainty_scores", "el2n_scores", "grand_scores",
    "forgetting_scores", "aum_scores", "deepfool_scores", "UNCERTAINTY_KINDS", "CCS_SCORES", "ccs_difficulty",
]  # fmt: skip

#: Valid values of the ``kind`` option of :func:`uncertainty_scores`.
UNCERTAINTY_KINDS = ("least_confidence", "entropy", "margin")


def _given_label_probs(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.take_along_axis(np.asarray(probs, dtype=np.float64), np.asarray(labels)[:, None], axis=1)[:, 0]


def _residual_norm(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """‖p − onehot(y)‖₂ per row, without materialising the one-hot matrix."""
    p = np.asarray(probs, dtype=np.float64)
    py = _given_label_probs(p, labels)
    # ‖p − e_y‖² = ‖p‖² − 2 p_y + 1
    sq = np.einsum("ij,ij->i", p, p) - 2.0 * py + 1.0
    return np.sqrt(np.maximum(sq, 0.0))


def uniform_scores(n: int, seed: int = 0) -> np.ndarray:
    """Higher = kept; i.i.d. uniform random numbers in [0, 1) from the stream ``stream(seed, "uniform")``.

    Keeping the top ``budget`` of these is uniform sampling without replacement; with class balance the
    shared budget function turns it into per-class uniform sampling with proportional quotas.

    Parameters
    ----------
    n : int
        Number of examples.
    seed : int

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    return stream(seed, "uniform").random(n)


def full_scores(n: int) -> np.ndarray:
    """Higher = kept; all zeros, so ties keep the lowest indices (index order).

    Meant for ``fraction=1`` (keep everything); with a smaller budget it keeps a prefix of the data.

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    return np.zeros(n, dtype=np.float64)


def small_loss_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Lower = more likely clean (kept); cross-entropy −log p_y of the given label.

    The small-loss trick of the noisy-label literature, as in Prune4ReL's SmallLoss baseline: after the
    warm-up, the examples whose given label the model already fits best are the likely-clean ones.
    Probabilities are clipped at 1e-12 so a zero probability gives a large finite loss.

    Parameters
    ----------
    probs : ndarray, shape (N, K)
        Softmax outputs of the warmed-up model (eval mode, no augmentation).
    labels : ndarray of int, shape (N,)
        Given (possibly noisy) labels.

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    return -np.log(np.maximum(_given_label_probs(probs, labels), 1e-12))


def uncertainty_scores(probs: np.ndarray, kind: str = "entropy") -> np.ndarray:
    """Higher = more uncertain (kept); least confidence, entropy or negative margin of the softmax.

    - ``"least_confidence"``: 1 − max_c p_c (on probabilities, not raw logits as DeepCore does).
    - ``"entropy"``: −Σ_c p_c log p_c, with 0 log 0 = 0.
    - ``"margin"``: −(p_(1) − p_(2)), minus the gap between the two largest probabilities.

    Parameters
    ----------
    probs : ndarray, shape (N, K)
    kind : {"least_confidence", "entropy", "margin"}

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    if kind not in UNCERTAINTY_KINDS:
        raise ValueError(f"uncertainty kind must be one of {UNCERTAINTY_KINDS}, got {kind!r}")
    p = np.asarray(probs, dtype=np.float64)
    if kind == "least_confidence":
        return 1.0 - p.max(axis=1)
    if kind == "entropy":
        logp = np.log(np.where(p > 0, p, 1.0))  # 0 log 0 = 0
        return -np.einsum("ij,ij->i", p, logp)
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return -(top2[:, 1] - top2[:, 0])


def el2n_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Higher = harder / more important (kept); EL2N = ‖p − onehot(y)‖₂.

    Paul et al. (2021) average this over about 10 independently trained models at an early checkpoint
    (epoch 20 on CIFAR-10). Here it is computed from the given ``probs``, i.e. from one model; to reproduce
    the original, average the probability-space scores of several runs yourself (or pass averaged probs,
    which is a different, smoother estimator).

    Parameters
    ----------
    probs : ndarray, shape (N, K)
    labels : ndarray of int, shape (N,)

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    return _residual_norm(probs, labels)


def grand_scores(probs: np.ndarray, labels: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Higher = larger gradient norm (kept); last-layer GraNd = ‖p − onehot(y)‖₂ · sqrt(1 + ‖h‖₂²).

    This is the exact norm of the per-sample gradient of the cross-entropy with respect to the weight and
    bias of a final linear layer ``z = W h + b``: the gradient is ``[(p − y) hᵀ, p − y]`` and its norm
    factorises, so the C·(D+1) vector is never built. Paul et al. use the full-parameter gradient averaged
    over runs; DeepCore (and this function) use the last layer of one model.

    Parameters
    ----------
    probs : ndarray, shape (N, K)
    labels : ndarray of int, shape (N,)
    features : ndarray, shape (N, D)
        The input ``h`` of the final linear layer (penultimate embedding).

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    h = np.asarray(features, dtype=np.float64)
    return _residual_norm(probs, labels) * np.sqrt(1.0 + np.einsum("ij,ij->i", h, h))


def forgetting_scores(correct: np.ndarray) -> np.ndarray:
    """Higher = forgotten more often (kept); never-learned examples get +inf (hardest).

    A forgetting event for example i at epoch t is ``correct[t-1, i] and not correct[t, i]`` (learned, then
    lost). The state before the first epoch counts as "incorrect", so the first epoch cannot be an event.
    Examples that were never classified correctly in any epoch score +inf, as in Toneva et al. (2019) and
    mansheej/data_diet; DeepCore gives them 0 (the same as unforgettable examples).

    Parameters
    ----------
    correct : ndarray of bool, shape (E, N)
        Whether the prediction matched the given label at each recorded epoch.

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    c = np.asarray(correct).astype(bool)
    if c.ndim == 1:
        c = c[None, :]
    events = (c[:-1] & ~c[1:]).sum(axis=0).astype(np.float64)
    events[~c.any(axis=0)] = np.inf
    return events


def aum_scores(margins: np.ndarray) -> np.ndarray:
    """Higher = easier / more likely correctly labelled (kept); AUM = mean margin over epochs.

    The margin at an epoch is the given-label logit minus the largest other logit. Pleiss et al. (2020)
    show that mislabeled examples have low (typically negative) AUM, and remove them; so for pruning a
    noisy dataset the examples with the HIGHEST AUM are kept. (CCS reads low AUM as "hard" and removes the
    lowest-AUM examples with its β cutoff; the ``ccs`` method uses that convention internally.)

    Parameters
    ----------
    margins : ndarray, shape (E, N)

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    m = np.asarray(margins, dtype=np.float64)
    if m.ndim == 1:
        m = m[None, :]
    return m.mean(axis=0)


def deepfool_scores(deepfool: np.ndarray) -> np.ndarray:
    """Lower = closer to the decision boundary (kept); the DeepFool minimal-perturbation norm ‖r‖.

    The signal is the norm of the accumulated DeepFool perturbation that flips the warmed-up model's
    prediction (capped at the attack's ``max_iter`` steps). The released code ranks by ‖r‖²; the order is
    the same.

    Parameters
    ----------
    deepfool : ndarray, shape (N,)

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    return np.asarray(deepfool, dtype=np.float64).reshape(-1)


#: Valid values of the ``score`` option of :func:`ccs`.
CCS_SCORES = ("auto", "aum", "el2n", "forgetting", "small_loss", "loss")


# score -> signals it needs; "auto" tries them in this order
_NEEDS = {
    "aum": ("margins",),
    "el2n": ("probs", "labels"),
    "forgetting": ("correct",),
    "small_loss": ("probs", "labels"),
    "loss": ("losses",),
}


_AUTO_ORDER = ("aum", "el2n", "forgetting", "loss")


def ccs_difficulty(score: str, signals: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
    """Higher = harder (pruned first by the cutoff); the difficulty score CCS ranks by.

    - ``"aum"``: −AUM (mean margin over epochs; low AUM = hard or mislabeled).
    - ``"el2n"``: ‖p − onehot(y)‖₂ from ``probs``.
    - ``"forgetting"``: forgetting events, +inf for never-learned examples.
    - ``"small_loss"``: cross-entropy −log p_y from ``probs``.
    - ``"loss"``: mean of the per-epoch ``losses``.
    - ``"auto"``: the first of aum, el2n, forgetting, loss whose signals are present.

    Parameters
    ----------
    score : str
        One of :data:`CCS_SCORES`.
    signals : dict of str to ndarray
        Available signals (``None`` values count as absent).

    Returns
    -------
    name : str
        The score actually used ("auto" resolved).
    difficulty : ndarray of float64, shape (N,)
    """
    if score not in CCS_SCORES:
        raise ValueError(f"ccs score must be one of {CCS_SCORES}, got {score!r}")
    have = {k for k, v in signals.items() if v is not None}
    if score == "auto":
        found = [s for s in _AUTO_ORDER if set(_NEEDS[s]) <= have]
        if not found:
            raise ValueError(
                "ccs needs a difficulty signal: pass margins (AUM), probs and labels (EL2N), "
                "correct (forgetting) or losses"
            )
        score = found[0]
    missing = [s for s in _NEEDS[score] if s not in have]
    if missing:
        raise ValueError(f"ccs score={score!r} needs the signal {missing[0]!r}; pass it or choose another score")
    if score == "aum":
        return score, -aum_scores(signals["margins"])
    if score == "el2n":
        return score, el2n_scores(signals["probs"], signals["labels"])
    if score == "forgetting":
        return score, forgetting_scores(signals["correct"])
    if score == "small_loss":
        return score, small_loss_scores(signals["probs"], signals["labels"])
    losses = np.asarray(signals["losses"], dtype=np.float64)
    return score, (losses[None, :] if losses.ndim == 1 else losses).mean(axis=0)
