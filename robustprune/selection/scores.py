"""Per-example score baselines: uniform, full, small-loss, uncertainty, EL2N, GraNd, forgetting, AUM, DeepFool.

Every method here is registered with ``kind="score"``: it returns one number per example and the registry's
``keep`` says which end the API keeps (through :func:`robustprune.selection.budget.select_by_scores`, which
also applies class-balanced quotas). Nothing here does top-k or quotas itself.

Each ``*_scores`` function states its direction on its first docstring line. Inputs are trusted (the public
API validates them); the functions upcast to float64 so scores do not depend on the input precision.
"""

from __future__ import annotations

import numpy as np

from robustprune.seeding import stream
from robustprune.selection.registry import register

__all__ = [
    "uniform_scores",
    "full_scores",
    "small_loss_scores",
    "uncertainty_scores",
    "el2n_scores",
    "grand_scores",
    "forgetting_scores",
    "aum_scores",
    "deepfool_scores",
    "UNCERTAINTY_KINDS",
]

#: Valid values of the ``kind`` option of :func:`uncertainty_scores`.
UNCERTAINTY_KINDS = ("least_confidence", "entropy", "margin")

# Signals any of which tells a signal-free method (uniform, full) the number of examples.
_ANY_SIGNAL = ("labels", "probs", "features", "correct", "losses", "margins")


def _num_examples(**arrays: np.ndarray | None) -> int:
    for name in ("labels", "probs", "features"):
        if arrays.get(name) is not None:
            return int(np.shape(arrays[name])[0])
    for name in ("correct", "losses", "margins"):
        if arrays.get(name) is not None:
            return int(np.shape(arrays[name])[-1])
    raise ValueError("pass at least one signal (for example labels=...) so the number of examples is known")


def _given_label_probs(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.take_along_axis(np.asarray(probs, dtype=np.float64), np.asarray(labels)[:, None], axis=1)[:, 0]


def _residual_norm(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """‖p − onehot(y)‖₂ per row, without materialising the one-hot matrix."""
    p = np.asarray(probs, dtype=np.float64)
    py = _given_label_probs(p, labels)
    # ‖p − e_y‖² = ‖p‖² − 2 p_y + 1
    sq = np.einsum("ij,ij->i", p, p) - 2.0 * py + 1.0
    return np.sqrt(np.maximum(sq, 0.0))


# ------------------------------------------------------------------------------------------------
# uniform and full
# ------------------------------------------------------------------------------------------------


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


@register(
    "uniform",
    kind="score",
    optional=_ANY_SIGNAL,
    keep="high",
    description="random subset (seeded); class-balanced quotas come from the shared budget function",
)
def uniform(
    *,
    labels: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    features: np.ndarray | None = None,
    correct: np.ndarray | None = None,
    losses: np.ndarray | None = None,
    margins: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Uniform random selection; any signal only serves to tell the number of examples."""
    n = _num_examples(labels=labels, probs=probs, features=features, correct=correct, losses=losses, margins=margins)
    return uniform_scores(n, seed)


def full_scores(n: int) -> np.ndarray:
    """Higher = kept; all zeros, so ties keep the lowest indices (index order).

    Meant for ``fraction=1`` (keep everything); with a smaller budget it keeps a prefix of the data.

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    return np.zeros(n, dtype=np.float64)


@register(
    "full",
    kind="score",
    optional=_ANY_SIGNAL,
    keep="high",
    description="the whole dataset in index order (use with fraction=1; smaller budgets keep a prefix)",
)
def full(
    *,
    labels: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    features: np.ndarray | None = None,
    correct: np.ndarray | None = None,
    losses: np.ndarray | None = None,
    margins: np.ndarray | None = None,
) -> np.ndarray:
    """Keep everything (constant scores; the budget function breaks ties by lowest index)."""
    n = _num_examples(labels=labels, probs=probs, features=features, correct=correct, losses=losses, margins=margins)
    return full_scores(n)


# ------------------------------------------------------------------------------------------------
# small loss
# ------------------------------------------------------------------------------------------------


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


@register(
    "small_loss",
    kind="score",
    requires=("probs", "labels"),
    keep="low",
    description="smallest cross-entropy on the given label after warm-up (likely-clean examples)",
)
def small_loss(*, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """SmallLoss (Prune4ReL's baseline): keep the lowest loss.

    The loss is computed from ``probs`` (the warm-up model's predictions), exactly as the released code
    does with one eval-mode pass; the per-epoch ``losses`` record is not used.
    """
    return small_loss_scores(probs, labels)


# ------------------------------------------------------------------------------------------------
# uncertainty
# ------------------------------------------------------------------------------------------------


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


@register(
    "uncertainty",
    kind="score",
    requires=("probs",),
    keep="high",
    description="most uncertain predictions (kind: least_confidence, entropy or margin)",
)
def uncertainty(*, probs: np.ndarray, kind: str = "entropy") -> np.ndarray:
    """Uncertainty sampling: keep the MOST uncertain examples (balanced or not).

    ``kind`` defaults to "entropy", DeepCore's command-line default.
    """
    return uncertainty_scores(probs, kind)


# ------------------------------------------------------------------------------------------------
# EL2N and GraNd
# ------------------------------------------------------------------------------------------------


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


@register(
    "el2n",
    kind="score",
    requires=("probs", "labels"),
    keep="high",
    description="largest error-vector norm ||p - onehot(y)|| (hardest examples), single-model estimate",
)
def el2n(*, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """EL2N (Paul et al., 2021): keep the highest error-vector norms."""
    return el2n_scores(probs, labels)


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


@register(
    "grand",
    kind="score",
    requires=("probs", "labels", "features"),
    keep="high",
    description="largest last-layer per-sample gradient norm ||p - y|| * sqrt(1 + ||h||^2)",
)
def grand(*, probs: np.ndarray, labels: np.ndarray, features: np.ndarray) -> np.ndarray:
    """GraNd, last-layer closed form (as DeepCore): keep the largest per-sample gradient norms."""
    return grand_scores(probs, labels, features)


# ------------------------------------------------------------------------------------------------
# training dynamics: forgetting and AUM
# ------------------------------------------------------------------------------------------------


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


@register(
    "forgetting",
    kind="score",
    requires=("correct",),
    keep="high",
    description="most forgetting events during warm-up; never-learned examples count as hardest (+inf)",
)
def forgetting(*, correct: np.ndarray) -> np.ndarray:
    """Forgetting (Toneva et al., 2019): keep the most-forgotten examples, never-learned first."""
    return forgetting_scores(correct)


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


@register(
    "aum",
    kind="score",
    requires=("margins",),
    keep="high",
    description="highest area under the margin (drops low-AUM, likely-mislabeled examples)",
)
def aum(*, margins: np.ndarray) -> np.ndarray:
    """Area Under the Margin (Pleiss et al., 2020): keep the highest AUM (likely clean)."""
    return aum_scores(margins)


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


@register(
    "deepfool",
    kind="score",
    requires=("deepfool",),
    keep="low",
    default_class_balanced=True,
    description="DeepFool: smallest minimal-perturbation norm (closest to the warmed-up model's decision boundary)",
)
def deepfool(*, deepfool: np.ndarray) -> np.ndarray:
    """DeepFool (Ducoffe & Precioso, 2018): keep the examples closest to the decision boundary, per class by
    default (the released command line's ``--balance`` default)."""
    return deepfool_scores(deepfool)
