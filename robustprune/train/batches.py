"""The training split on the device and its batches: :class:`TrainData` holds every example as one tensor
with its three views (weak, strong, clean); :func:`index_batches` draws seeded batches of global indices."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from robustprune._device import resolve_device
from robustprune.seeding import derive_seed

__all__ = ["TrainData", "FeatureTransform", "index_batches"]


def index_batches(
    indices: torch.Tensor,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    stream: str = "batches",
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = True,
    device: torch.device | str | None = None,
) -> list[torch.Tensor]:
    """Split a seeded permutation of ``indices`` (global sample indices) into batches.

    The permutation depends only on ``(seed, stream, epoch)`` and is drawn on the CPU, so every rank sees
    the same one. Global batches hold ``batch_size * world_size`` examples and rank ``r`` takes positions
    ``r::world_size`` of each: every example appears exactly once per epoch across ranks (no padding, no
    duplicates) and every rank runs the same number of steps. A last global batch with fewer than
    ``2 * world_size`` examples is merged into the previous one (so no rank ever gets a single example,
    which BatchNorm cannot train on).

    Returns
    -------
    list of int64 tensors on ``device`` (views of one tensor; no host synchronisation when sliced).
    """
    if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, {world_size}")
    idx = torch.as_tensor(indices, dtype=torch.int64).cpu().reshape(-1)
    if shuffle:
        gen = torch.Generator().manual_seed(derive_seed(seed, stream, epoch))
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
    if device is not None:
        idx = idx.to(device, non_blocking=True)
    g = batch_size * world_size
    bounds = list(range(0, idx.numel(), g)) + [idx.numel()]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < 2 * world_size:
        del bounds[-2]
    return [idx[s:e][rank::world_size] for s, e in zip(bounds[:-1], bounds[1:], strict=True) if e > s]


class FeatureTransform:
    """Normalisation of tabular (N, D) float rows, with optional Gaussian noise (the "strong" view)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, noise_std: float = 0.0) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.std = torch.as_tensor(std, dtype=torch.float32).flatten().clamp_min(1e-12)
        self.noise_std = float(noise_std)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        y = (x.float() - self.mean.to(x.device)) / self.std.to(x.device)
        if self.noise_std > 0:
            src = generator.device if generator is not None else y.device
            y = y + self.noise_std * torch.randn(y.shape, generator=generator, device=src).to(y.device)
        return y

    def __repr__(self) -> str:
        return f"FeatureTransform(dim={self.mean.numel()}, noise_std={self.noise_std})"


@dataclass(frozen=True, eq=False)
class TrainData:
    """The training split on one device plus its three views.

    Attributes
    ----------
    x : Tensor (N, C, H, W) uint8 / float, or (N, D) float — every example, in global-index order.
    labels : Tensor (N,) int64 — the given (possibly noisy) labels.
    num_classes : int
    weak, strong, clean : callables ``(x_batch, generator) -> normalised float batch``.
    """

    x: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    weak: Callable[..., torch.Tensor]
    strong: Callable[..., torch.Tensor]
    clean: Callable[..., torch.Tensor]

    def __post_init__(self) -> None:
        if self.labels.ndim != 1 or self.labels.shape[0] != self.x.shape[0] or self.labels.dtype != torch.int64:
            raise ValueError(f"labels must be int64 of shape ({self.x.shape[0]},), got {tuple(self.labels.shape)}")
        if self.labels.numel() and (int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")

    @property
    def num_samples(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> TrainData:
        """The same data on ``device`` (``self`` when already there)."""
        device = torch.device(device)
        if self.x.device == device and self.labels.device == device:
            return self
        return replace(self, x=self.x.to(device), labels=self.labels.to(device))

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        labels: Any = None,
        *,
        device: str | torch.device | None = None,
        padding: int | None = None,
        cutout_size: int | None = None,
        strong_noise: float = 0.1,
    ) -> TrainData:
        """Build from an :class:`~robustprune.data.ArrayDataset` (``labels`` default ``y_train``).

        Images: weak = flip + crop (``padding``, default H // 8), strong = AutoAugment + flip + crop + Cutout
        (``cutout_size``, default H // 2), clean = normalisation. Tabular rows: normalisation, plus Gaussian
        noise of ``strong_noise`` (normalised units) for the strong view.
        """
        from robustprune.train.augment import EvalTransform, StrongAugment, WeakAugment

        dev = resolve_device(device)
        y = dataset.y_train if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        x = dataset.x_train
        if x.ndim == 4:
            h = int(x.shape[-1])
            pad = max(1, h // 8) if padding is None else int(padding)
            cut = max(1, h // 2) if cutout_size is None else int(cutout_size)
            weak = WeakAugment(dataset.mean, dataset.std, padding=pad)
            strong = StrongAugment(dataset.mean, dataset.std, padding=pad, cutout_size=cut)
            clean = EvalTransform(dataset.mean, dataset.std)
        else:
            weak = clean = FeatureTransform(dataset.mean, dataset.std)
            strong = FeatureTransform(dataset.mean, dataset.std, noise_std=strong_noise)
        return cls(x.to(dev), y.to(dev), int(dataset.num_classes), weak, strong, clean)
