"""Plain cross-entropy: the "standard model" of the Prune4ReL paper (``--robust-learner CE``)."""

from __future__ import annotations

from robustprune.train.engine import EpochContext
from robustprune.train.learners.base import Learner, NoOptions
from robustprune.train.learners.registry import register_learner

__all__ = ["CELearner"]


@register_learner("standard", "cross_entropy")
class CELearner(Learner):
    """Cross-entropy on the weak (flip + crop) view; warm-up and training use the same loss."""

    name = "ce"
    Options = NoOptions

    def train_epoch(self, ctx: EpochContext) -> None:
        self.ce_epoch(ctx)
