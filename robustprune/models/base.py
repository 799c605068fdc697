"""The contract every model follows: ``features`` -> ``head`` -> logits.

A model exposes its penultimate embedding so that signals (``features (N, D)``) and the classifier share one
forward pass. Subclasses implement :meth:`FeatureClassifier.features` and name their final linear layer in
``head_name``; :meth:`head`, :meth:`forward` and :meth:`reset_head` come for free.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeatureClassifier"]


class FeatureClassifier(nn.Module):
    """Base class: ``forward(x) == head(features(x))``.

    Attributes
    ----------
    feature_dim : int
        Width D of the embedding returned by :meth:`features`.
    num_classes : int
        Number of logits returned by :meth:`head`.
    head_name : str
        Attribute name of the final ``nn.Linear`` (``"fc"`` unless a subclass keeps a reference naming).
    """

    head_name: str = "fc"
    feature_dim: int
    num_classes: int

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Penultimate embedding, shape (B, feature_dim)."""
        raise NotImplementedError

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from embeddings: (B, feature_dim) -> (B, num_classes)."""
        return getattr(self, self.head_name)(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def reset_head(self, num_classes: int) -> None:
        """Replace the final layer by a freshly initialised ``nn.Linear(feature_dim, num_classes)``.

        The new layer is created on the device and dtype of the old one.
        """
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        old = getattr(self, self.head_name)
        new = nn.Linear(self.feature_dim, num_classes).to(device=old.weight.device, dtype=old.weight.dtype)
        setattr(self, self.head_name, new)
        self.num_classes = num_classes
