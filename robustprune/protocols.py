"""Per-dataset protocols: the model, schedule and learner / method options a run uses where it sets none.

:data:`PROTOCOLS` holds the Prune4ReL scripts' settings for CIFAR (spec ``prune4rel.md`` section 6) and
CPU-sized ones (measured) for digits and (Fashion-)MNIST; :func:`protocol_for` gives a generic one for a
user's own images or tabular rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Protocol", "PROTOCOLS", "protocol_for"]


@dataclass(frozen=True)
class Protocol:
    """Per-dataset defaults: model, schedule, and learner / method hyperparameters by name."""

    model: str
    epochs: int
    warmup_epochs: int
    lr: float = 0.02
    batch_size: int = 128
    learner_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    method_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The network used instead of ``model`` when the run's device is a CPU and no model was asked for: a
    #: default run must finish in minutes there (``small_cnn`` on all of Fashion-MNIST takes hours on 2 cores).
    cpu_model: str | None = None


_SOP_C10 = {"rc": 0.9, "rb": 0.1, "lr_u": 10.0, "lr_v": 100.0}
_P4R = {"prune4rel": {"tau": 0.975, "eta": 1.0}}
_MNIST_LIKE = Protocol(
    "small_cnn", 30, 5, lr=0.02, learner_params={"sop": _SOP_C10}, method_params=_P4R, cpu_model="lenet"
)

#: Spec ``prune4rel.md`` section 6 for CIFAR; CPU-sized settings (measured) for digits and MNIST-likes.
PROTOCOLS: dict[str, Protocol] = {
    "cifar10": Protocol("preact_resnet18", 300, 10, learner_params={"sop": _SOP_C10}, method_params=_P4R),
    "cifar100": Protocol(
        "preact_resnet18", 300, 30,
        learner_params={"sop": {**_SOP_C10, "lr_u": 1.0}, "elr": {"beta": 0.9, "lam": 7.0}},
        method_params={"prune4rel": {"tau": 0.95, "eta": 1.0}},
    ),
    # an MLP: ~15x faster than small_cnn on 8x8 inputs on a CPU, ~0.91 test accuracy at 40% noise
    "digits": Protocol("mlp", 50, 10, lr=0.1, learner_params={"sop": _SOP_C10}, method_params=_P4R),
    "fashion-mnist": _MNIST_LIKE,
    "mnist": _MNIST_LIKE,
}  # fmt: skip
_FALLBACK_IMAGES = Protocol("small_cnn", 30, 5)
_FALLBACK_TABULAR = Protocol("mlp", 30, 5, lr=0.1)


def protocol_for(dataset: str, *, tabular: bool = False) -> Protocol:
    """The :class:`Protocol` of a dataset (a generic one for user data: images or tabular rows)."""
    from robustprune.data import get_dataset_info

    name = get_dataset_info(dataset).name
    return PROTOCOLS.get(name, _FALLBACK_TABULAR if tabular else _FALLBACK_IMAGES)
