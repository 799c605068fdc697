"""CIFAR-style pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Layout of the network used by Prune4ReL, SOP and DivideMix for CIFAR: a 3x3 stem convolution without
normalisation, four stages of pre-activation basic blocks (64, 128, 256, 512 channels; strides 1, 2, 2, 2),
global average pooling and a linear layer named ``linear``. The embedding is the average-pooled layer-4
output **without** a final BN/ReLU, so entries can be negative (as in the released code).
Parameter names follow the common CIFAR reference layout (``conv1``, ``layer1.0.bn1``, ``shortcut.0``,
``linear``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robustprune.models.base import FeatureClassifier
from robustprune.models.registry import register_model

__all__ = ["PreActBlock", "PreActResNet", "preact_resnet18"]


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 with an identity or 1x1-conv shortcut on the pre-activated input."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))
        else:
            self.shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        identity = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + identity


class PreActResNet(FeatureClassifier):
    """Pre-activation ResNet for small images (any size; designed for 32x32).

    Parameters
    ----------
    num_blocks : sequence of 4 int
        Blocks per stage; ``(2, 2, 2, 2)`` is PreAct ResNet-18.
    num_classes : int
        Number of logits.
    in_channels : int
        Input channels.
    """

    head_name = "linear"

    def __init__(self, num_blocks: Sequence[int], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if len(num_blocks) != 4:
            raise ValueError(f"num_blocks must list 4 stage depths, got {tuple(num_blocks)!r}")
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        in_planes = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                blocks.append(PreActBlock(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(in_planes, num_classes)
        self.feature_dim = in_planes
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


def preact_resnet18(num_classes: int = 10, in_channels: int = 3) -> PreActResNet:
    """PreAct ResNet-18 (512-d embedding)."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels)


@register_model("preact_resnet18", description="CIFAR PreAct ResNet-18, 512-d embedding (Prune4ReL/SOP)")
def _build_preact18(num_classes: int, in_channels: int, image_size: int, **kwargs) -> PreActResNet:
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels, **kwargs)
