"""Contextual diversity (after Agarwal et al., ECCV 2020, as DeepCore adapts it): k-center greedy on the
warm-up model's predictions, with the symmetric KL divergence ``½KL(a‖b) + ½KL(b‖a)`` as the distance.

Probabilities are clipped to ``epsilon`` first (DeepCore has none, so a zero probability gives inf or NaN).
The running minimum divergence to the chosen centres is one length-N vector updated in O(N·K) per pick on the
shared :func:`~robustprune.selection.core.greedy.argmax_greedy` engine; no N×k table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from robustprune.seeding import stream
from robustprune.selection.core.greedy import argmax_greedy, per_class_greedy
from robustprune.selection.registry import register
from robustprune.selection.result import MethodOutput

if TYPE_CHECKING:
    import torch

__all__ = ["contextual_diversity", "symmetric_kl_order"]


def symmetric_kl_order(
    probs: np.ndarray, k: int, first: int, epsilon: float = 1e-8, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Farthest-first traversal of ``probs`` (N, K) in symmetric KL from the centre ``first``.

    ``½KL(a‖b) + ½KL(b‖a) = ½ Σ_c (a_c − b_c)(log a_c − log b_c)``: with ``A = Σ a log a`` per row it is
    ``½ (A_i + A_j − p_i·log p_j − p_j·log p_i)``, two matrix-vector products per pick. Returns the centres and
    each one's divergence to the earlier centres (+inf for the first).
    """
    import torch

    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    p = torch.as_tensor(np.asarray(probs, dtype=np.float64), device=device).clamp_min(epsilon)
    p = p / p.sum(dim=1, keepdim=True)
    logp = p.log()
    self_term = (p * logp).sum(dim=1)
    mind = torch.full((p.shape[0],), float("inf"), dtype=p.dtype, device=p.device)

    def update(cur: torch.Tensor) -> None:
        pj, lj = p.index_select(0, cur)[0], logp.index_select(0, cur)[0]
        d = 0.5 * (self_term + self_term.index_select(0, cur) - p @ lj - logp @ pj)
        torch.minimum(mind, d.clamp_min(0.0), out=mind)
        mind.index_fill_(0, cur, float("-inf"))

    order, values = argmax_greedy(mind, update, k, first=first)
    return order.cpu().numpy(), values.cpu().numpy()


@register(
    "contextual_diversity",
    kind="greedy",
    requires=("probs",),
    optional=("labels",),
    balance="proportional",
    default_class_balanced=True,
    description="contextual diversity: k-center greedy on predictions in symmetric KL (seeded random start)",
)
def contextual_diversity(
    *,
    probs: np.ndarray,
    labels: np.ndarray | None = None,
    budget: int,
    class_balanced: bool = True,
    epsilon: float = 1e-8,
    seed: int = 0,
    device: str = "cpu",
) -> MethodOutput:
    """Contextual diversity selection; per class (with :func:`class_quotas`) when balanced (the default).

    The first centre (of each class) is drawn with ``stream(seed, "contextual_diversity"[, class])``; ``gains``
    hold each pick's symmetric KL to the earlier centres of its class.
    """
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
    from robustprune._device import resolve_device

    dev = resolve_device(device)
    n = probs.shape[0]
    if not class_balanced:
        first = int(stream(seed, "contextual_diversity").integers(n))
        order, gains = symmetric_kl_order(probs, budget, first, epsilon, dev)
        return MethodOutput(indices=order, gains=gains, info={"first_center": first})
    if labels is None:
        raise ValueError("class_balanced=True needs labels")

    def run_class(members: np.ndarray, k: int, c: int) -> tuple[np.ndarray, np.ndarray]:
        first = int(stream(seed, "contextual_diversity", c).integers(members.shape[0]))
        return symmetric_kl_order(probs[members], k, first, epsilon, dev)

    idx, gains = per_class_greedy(labels, budget, run_class)
    return MethodOutput(indices=idx, gains=gains)
