"""The learner registry: a class decorator, as selection methods have ``register``.

A learner is one module: a :class:`~robustprune.train.learners.base.Learner` subclass with its ``name`` and
``Options``, decorated with :func:`register_learner`. The command line, run configs, sweeps and the tests read
the registry (:func:`list_learners`), never a list of names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from robustprune._registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from robustprune.train.engine import TrainConfig
    from robustprune.train.learners.base import Learner

__all__ = ["register_learner", "list_learners", "get_learner_class", "build_learner"]

_LEARNERS: Registry[type] = Registry("learner")

L = TypeVar("L", bound=type)


def register_learner(*aliases: str) -> Callable[[L], L]:
    """Register a learner class under its ``name`` (and ``aliases``), a class decorator."""

    def deco(cls: L) -> L:
        if not getattr(cls, "name", ""):
            raise ValueError(f"learner class {cls.__name__} must set a name")
        _LEARNERS.add(cls.name, cls, tuple(aliases))
        return cls

    return deco


def list_learners() -> list[str]:
    """Names of the available learners, sorted."""
    return _LEARNERS.names()


def get_learner_class(name: str) -> type[Learner]:
    """The learner class registered as ``name`` (case-insensitive; aliases such as "sop+" and "standard")."""
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
