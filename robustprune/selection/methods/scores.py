"""Per-example score baselines: uniform, full, small-loss, uncertainty, EL2N, GraNd, forgetting, AUM, DeepFool.

Every method here is registered with ``kind="score"``: it returns one number per example and the registry's
``keep`` says which end the API keeps (through :func:`robustprune.selection.budget.select_by_scores`, which
also applies class-balanced quotas). Nothing here does top-k or quotas itself.

The scores themselves are the functions of :mod:`robustprune.selection.core.scores` (each states its direction).
"""

from __future__ import annotations

import numpy as np

from robustprune.selection.core.scores import (
    aum_scores,
    deepfool_scores,
    el2n_scores,
    forgetting_scores,
    full_scores,
    grand_scores,
    small_loss_scores,
    uncertainty_scores,
    uniform_scores,
)
from robustprune.selection.registry import register

__all__ = ["uniform", "full", "small_loss", "uncertainty", "el2n", "grand", "forgetting", "aum", "deepfool"]


# ------------------------------------------------------------------------------------------------
# uniform and full
# ------------------------------------------------------------------------------------------------


@register(
    "uniform",
    kind="score",
    keep="high",
    description="random subset (seeded); class-balanced quotas come from the shared budget function",
)
def uniform(*, n: int, seed: int = 0) -> np.ndarray:
    """Uniform random selection of the ``n`` examples (the API counts them from whatever signal is given)."""
    return uniform_scores(n, seed)


@register(
    "full",
    kind="score",
    keep="high",
    description="the whole dataset in index order (use with fraction=1; smaller budgets keep a prefix)",
    fixed_fraction=1.0,
)
def full(*, n: int) -> np.ndarray:
    """Keep everything (constant scores; the budget function breaks ties by lowest index)."""
    return full_scores(n)


# ------------------------------------------------------------------------------------------------
# small loss
# ------------------------------------------------------------------------------------------------


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
