"""A small convolutional network for small images (8x8 digits, 28x28 MNIST-like, 32x32 CIFAR)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robustprune.models.base import FeatureClassifier
from robustprune.models.registry import register_model

__all__ = ["SmallCNN"]


class SmallCNN(FeatureClassifier):
    """Stages of two 3x3 conv-BN-ReLU layers; 2x2 max-pooling between stages; global average pooling.

    Pooling uses ``ceil_mode`` so odd sizes (7x7) and tiny inputs (8x8 -> 4x4 -> 2x2) work. The embedding is
    the pooled output of the last stage, ``feature_dim == widths[-1]``.

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Number of logits.
    widths : sequence of int
        Channels of each stage (default three stages: 32, 64, 128).
    """

    def __init__(self, in_channels: int, num_classes: int, widths: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must list at least one positive channel count, got {widths!r}")
        stages = []
        c = in_channels
        for w in widths:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(c, w, 3, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(w, w, 3, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                )
            )
            c = w
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(c, num_classes)
        self.feature_dim = c
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for i, stage in enumerate(self.stages):
            if i > 0 and min(x.shape[-2:]) > 1:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = stage(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


@register_model("small_cnn", description="3-stage conv net with global pooling for 8x8 to 32x32 images")
def _build_small_cnn(num_classes: int, in_channels: int, image_size: int, **kwargs) -> SmallCNN:
    return SmallCNN(in_channels, num_classes, **kwargs)
