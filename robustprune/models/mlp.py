"""A multi-layer perceptron for flat inputs (tabular features or flattened small images)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustprune.models.base import FeatureClassifier
from robustprune.models.registry import register_model

__all__ = ["MLP"]


class MLP(FeatureClassifier):
    """Linear -> (BatchNorm) -> ReLU blocks, then a linear head.

    Inputs of any shape (B, ...) are flattened to (B, in_features). The embedding is the last hidden
    activation, so ``feature_dim == hidden[-1]``.

    Parameters
    ----------
    in_features : int
        Width of the flattened input.
    num_classes : int
        Number of logits.
    hidden : sequence of int
        Hidden layer widths; at least one.
    batch_norm : bool
        Insert ``BatchNorm1d`` after each hidden linear layer.
    dropout : float
        Dropout probability after each hidden activation (0 disables it).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        *,
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must list at least one positive width, got {hidden!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.in_features = in_features
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)
        self.feature_dim = width
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"MLP expects {self.in_features} input values per example, got {x.shape[1]}; "
                "build it with in_channels * image_size ** 2 equal to the input width"
            )
        return self.body(x)


@register_model("mlp", input_kind="flat", description="MLP on flattened inputs (hidden=(256, 256))")
def _build_mlp(num_classes: int, in_channels: int, image_size: int, **kwargs) -> MLP:
    return MLP(in_channels * image_size * image_size, num_classes, **kwargs)
