"""LeNet-5-style network: the classic fast CNN for 28x28 grey images (and other small inputs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustprune.models.base import FeatureClassifier
from robustprune.models.registry import register_model

__all__ = ["LeNet"]


class LeNet(FeatureClassifier):
    """Two 5x5 conv + ReLU + 2x2 max-pool stages, then fully connected 120 -> 84 -> head (LeCun et al. 1998,
    with ReLU and max-pooling).

    Both convolutions pad by 2 ("same" size) and pooling uses ``ceil_mode`` (skipped on a 1x1 map), so any
    input size works:
    28x28 -> 14x14 -> 7x7, 8x8 -> 4x4 -> 2x2, 32x32 -> 16x16 -> 8x8. The embedding is the 84-wide layer.
    About 20 times cheaper to train than ``small_cnn`` on 28x28 inputs on a CPU.

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Number of logits.
    image_size : int
        Side of the (square) input, fixing the width of the first fully connected layer.
    channels : (int, int)
        Output channels of the two convolutions (default 6, 16).
    hidden : (int, int)
        Widths of the two fully connected layers (default 120, 84); the second is ``feature_dim``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        channels: tuple[int, int] = (6, 16),
        hidden: tuple[int, int] = (120, 84),
    ) -> None:
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        h1, h2 = (int(h) for h in hidden)
        if min(c1, c2, h1, h2) < 1 or int(image_size) < 1:
            msg = f"channels, hidden and image_size must be positive, got {channels}, {hidden}, {image_size}"
            raise ValueError(msg)
        side = int(image_size)
        for _ in range(2):  # two ceil-mode poolings, skipped on a 1x1 map
            side = (side + 1) // 2 if side > 1 else side
        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.fc1 = nn.Linear(c2 * side * side, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc = nn.Linear(h2, num_classes)
        self.feature_dim = h2
        self.num_classes = num_classes
        self.image_size = int(image_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(
                f"LeNet was built for {self.image_size}x{self.image_size} inputs, got {x.shape[-2]}x{x.shape[-1]}"
            )
        for conv in (self.conv1, self.conv2):
            x = F.relu(conv(x))
            if x.shape[-1] > 1:
                x = F.max_pool2d(x, 2, ceil_mode=True)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.relu(self.fc2(x))


@register_model("lenet", description="LeNet-5-style CNN (conv 6, 16; fc 120, 84): fast on a CPU")
def _build_lenet(num_classes: int, in_channels: int, image_size: int, **kwargs) -> LeNet:
    return LeNet(in_channels, num_classes, image_size, **kwargs)
