"""Model registry: ``@register_model`` plus a frozen record per architecture, and :func:`build_model`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from robustprune._registry import Registry

__all__ = ["ModelInfo", "register_model", "build_model", "list_models", "get_model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """Metadata of one registered architecture.

    Attributes
    ----------
    name : str
        Registry key, lower case with underscores.
    builder : callable
        ``builder(num_classes, in_channels, image_size, **kwargs) -> FeatureClassifier``.
    input_kind : str
        "flat" (any shape, flattened) or "image" (B, C, H, W).
    description : str
        One line for listings.
    """

    name: str
    builder: Callable[..., nn.Module]
    input_kind: str
    description: str


_REGISTRY: Registry[ModelInfo] = Registry("model")


def register_model(name: str, *, input_kind: str = "image", description: str = "") -> Callable:
    """Decorator registering ``builder(num_classes, in_channels, image_size, **kwargs)`` under ``name``."""
    if input_kind not in ("flat", "image"):
        raise ValueError(f"input_kind must be 'flat' or 'image', got {input_kind!r}")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY.add(name, ModelInfo(name, fn, input_kind, description))
        return fn

    return deco


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    return _REGISTRY.names()


def get_model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``; ValueError listing the known names otherwise."""
    return _REGISTRY.get(name)


def _check_positive_int(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field} must be a positive integer, got {value!r}")


def build_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32, **kwargs: Any) -> nn.Module:
    """Build a registered architecture.

    Parameters
    ----------
    name : str
        One of :func:`list_models` (``"mlp"``, ``"small_cnn"``, ``"preact_resnet18"``, ``"resnet18"``, ...).
    num_classes : int
        Number of logits.
    in_channels : int
        Image channels (C). For ``"mlp"`` the input width is ``in_channels * image_size ** 2``, so flat
        data with D columns is ``in_channels=D, image_size=1``.
    image_size : int
        Side of the (square) input images, used by models whose layout depends on it.
    **kwargs
        Architecture options, e.g. ``hidden=(256, 256)`` for the MLP, ``cifar_stem=True`` for ResNets.

    Returns
    -------
    FeatureClassifier
        A model with ``features(x) -> (B, D)``, ``head(h) -> (B, num_classes)`` and ``feature_dim``.
    """
    info = get_model_info(name)
    _check_positive_int(num_classes, "num_classes")
    _check_positive_int(in_channels, "in_channels")
    _check_positive_int(image_size, "image_size")
    return info.builder(num_classes, in_channels, image_size, **kwargs)
