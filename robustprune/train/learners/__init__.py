"""Robust learners: ``ce`` (standard model), ``sop`` (SOP+), ``dividemix``, ``elr``.

::

    from robustprune.train import TrainConfig, TrainData
    from robustprune.train.learners import build_learner
    learner = build_learner("sop", lambda: build_model("preact_resnet18", 10), num_classes=10,
                            num_samples=data.num_samples, config=TrainConfig(epochs=300), lr_u=10, lr_v=100)
    learner.warmup(data, epochs=10, callbacks=[recorder])       # before selection, full noisy set
    fresh = build_learner("sop", ...); fresh.fit(data, subset)   # after selection
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from robustprune._registry import Registry
from robustprune.train.engine import TrainConfig
from robustprune.train.learners.base import Learner, NoOptions
from robustprune.train.learners.ce import CELearner
from robustprune.train.learners.dividemix import DivideMixLearner, DivideMixOptions, co_divide, gmm_clean_prob
from robustprune.train.learners.elr import ELRLearner, ELROptions, elr_loss
from robustprune.train.learners.sop import SOPLearner, SOPOptions, sop_loss

__all__ = [
    "Learner", "NoOptions", "CELearner", "SOPLearner", "SOPOptions", "DivideMixLearner", "DivideMixOptions",
    "ELRLearner", "ELROptions", "build_learner", "get_learner_class", "list_learners", "sop_loss", "elr_loss",
    "gmm_clean_prob", "co_divide",
]  # fmt: skip

_LEARNERS: Registry[type[Learner]] = Registry("learner")
for _cls, _aliases in ((CELearner, ("standard", "cross_entropy")), (SOPLearner, ("sop+",)),
                       (DivideMixLearner, ("divide_mix",)), (ELRLearner, ())):  # fmt: skip
    _LEARNERS.add(_cls.name, _cls, _aliases)


def list_learners() -> list[str]:
    """Names of the available learners, sorted."""
    return _LEARNERS.names()


def get_learner_class(name: str) -> type[Learner]:
    """The learner class registered as ``name`` (case-insensitive; "sop+" and "standard" are aliases)."""
    return _LEARNERS.get(name)


def build_learner(
    name: str,
    model_fn: Callable[[], nn.Module],
    num_classes: int,
    num_samples: int,
    config: TrainConfig | None = None,
    **options: Any,
) -> Learner:
    """A fresh learner: ``model_fn()`` networks, SGD + cosine schedule from ``config``, per-sample state of
    ``num_samples`` rows; ``options`` are the learner's hyperparameters (ValueError for unknown ones)."""
    return get_learner_class(name)(model_fn, num_classes, num_samples, config, **options)
