"""Robust learners: ``ce`` (standard model), ``sop`` (SOP+), ``dividemix``, ``elr``, one module each, registered
by :func:`~robustprune.train.learners.registry.register_learner` (importing this package registers them).

::

    from robustprune.train import TrainConfig, TrainData
    from robustprune.train.learners import build_learner
    learner = build_learner("sop", lambda: build_model("preact_resnet18", 10), num_classes=10,
                            num_samples=data.num_samples, config=TrainConfig(epochs=300), lr_u=10, lr_v=100)
    learner.warmup(data, epochs=10, callbacks=[recorder])       # before selection, full noisy set
    fresh = build_learner("sop", ...); fresh.fit(data, subset)   # after selection
"""

from __future__ import annotations

from robustprune.train.learners.base import Learner, NoOptions
from robustprune.train.learners.ce import CELearner
from robustprune.train.learners.dividemix import DivideMixLearner, DivideMixOptions, co_divide, gmm_clean_prob
from robustprune.train.learners.elr import ELRLearner, ELROptions, elr_loss
from robustprune.train.learners.registry import build_learner, get_learner_class, list_learners, register_learner
from robustprune.train.learners.sop import SOPLearner, SOPOptions, sop_loss

__all__ = [
    "Learner", "NoOptions", "CELearner", "SOPLearner", "SOPOptions", "DivideMixLearner", "DivideMixOptions",
    "ELRLearner", "ELROptions", "build_learner", "get_learner_class", "list_learners", "register_learner",
    "sop_loss", "elr_loss", "gmm_clean_prob", "co_divide",
]  # fmt: skip
