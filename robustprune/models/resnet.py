"""ImageNet-style ResNet-18/34/50 (He et al. 2016) with torchvision-compatible parameter names.

The module tree mirrors torchvision's ``resnet18/34/50`` (``conv1``, ``bn1``, ``layer1``..``layer4`` of
``BasicBlock`` / ``Bottleneck`` with ``conv1``/``bn1``/``conv2``/``bn2``/(``conv3``/``bn3``)/``downsample.0``/
``downsample.1``, ``fc``), so a torchvision ``state_dict`` file loads with ``load_state_dict(strict=True)``
(see :func:`robustprune.models.load_weights`). Bottlenecks put the stride on the 3x3 convolution ("ResNet
v1.5"), as torchvision does. torchvision itself is not needed.

``cifar_stem=True`` swaps the 7x7/stride-2 stem and the max-pool for a 3x3/stride-1 convolution, the usual
adaptation for 32x32 inputs; the parameter names are unchanged but ``conv1.weight`` then has another shape,
so ImageNet weights only load with the standard stem.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustprune.models.base import FeatureClassifier
from robustprune.models.registry import register_model

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50"]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(FeatureClassifier):
    """ResNet with torchvision's module names; embedding = global-average-pooled layer-4 output.

    Parameters
    ----------
    block : BasicBlock or Bottleneck class
        Residual block type.
    layers : sequence of 4 int
        Blocks per stage.
    num_classes : int
        Number of logits (1000 for ImageNet weights).
    in_channels : int
        Input channels.
    cifar_stem : bool
        3x3/stride-1 stem without max-pool (for 32x32 inputs) instead of 7x7/stride-2 + max-pool.
    zero_init_residual : bool
        Zero the last BN scale of every block, so each block starts as the identity.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        cifar_stem: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must list 4 stage depths, got {tuple(layers)!r}")
        self.inplanes = 64
        self.cifar_stem = cifar_stem
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = 512 * block.expansion
        self.fc = nn.Linear(self.feature_dim, num_classes)
        self.num_classes = num_classes

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        mods = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        mods.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*mods)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def resnet18(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]); 512-d embedding."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, **kwargs)


def resnet34(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
    """ResNet-34 (BasicBlock, [3, 4, 6, 3]); 512-d embedding."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels, **kwargs)


def resnet50(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
    """ResNet-50 (Bottleneck, [3, 4, 6, 3]); 2048-d embedding."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, **kwargs)


@register_model("resnet18", description="ImageNet ResNet-18, torchvision names, 512-d (cifar_stem option)")
def _build_resnet18(num_classes: int, in_channels: int, image_size: int, **kwargs) -> ResNet:
    return resnet18(num_classes, in_channels, **kwargs)


@register_model("resnet34", description="ImageNet ResNet-34, torchvision names, 512-d (cifar_stem option)")
def _build_resnet34(num_classes: int, in_channels: int, image_size: int, **kwargs) -> ResNet:
    return resnet34(num_classes, in_channels, **kwargs)


@register_model("resnet50", description="ImageNet ResNet-50, torchvision names, 2048-d (cifar_stem option)")
def _build_resnet50(num_classes: int, in_channels: int, image_size: int, **kwargs) -> ResNet:
    return resnet50(num_classes, in_channels, **kwargs)
