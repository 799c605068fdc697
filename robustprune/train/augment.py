"""Augmentation pipelines on whole batches on the device: the weak, strong and evaluation views.

Pipelines (spec ``prune4rel.md`` 2.2 and 4.1):

- :class:`WeakAugment`: random horizontal flip, random crop with padding, normalisation.
- :class:`StrongAugment`: AutoAugment CIFAR-10 policy (one random sub-policy per image, each op applied with
  its own probability), flip, crop (padding 4), normalisation, Cutout (16-pixel square set to 0 = the mean).
- :class:`EvalTransform`: normalisation (and an optional centre crop).

The building blocks live in :mod:`robustprune.train.imageops` (flip, crop, normalise, Cutout; the batch and
generator conventions) and :mod:`robustprune.train.autoaugment` (AutoAugment / RandAugment ops); this module
composes them into the three views.
"""

from __future__ import annotations

import torch

from robustprune.train.autoaugment import AUTOAUGMENT_CIFAR10_POLICY, auto_augment, encode_policy
from robustprune.train.imageops import (
    center_crop,
    check_images,
    cutout,
    make_generator,
    normalize,
    random_crop,
    random_flip,
)

__all__ = [
    "weak_augment",
    "strong_augment",
    "WeakAugment",
    "StrongAugment",
    "EvalTransform",
]

# -------------------------------------------------------------------------------------------- pipelines


def weak_augment(x, gen, mean, std, *, padding: int = 4, size=None, padding_mode: str = "constant"):
    """Flip, crop with padding (in the input's dtype), normalise: float32 (B, C, *size)."""
    y = random_flip(x, gen)
    y = random_crop(y, padding, gen, size=size, padding_mode=padding_mode)
    return normalize(y, mean, std)


def strong_augment(
    x,
    gen,
    mean,
    std,
    *,
    padding: int = 4,
    size=None,
    cutout_size: int = 16,
    policy=AUTOAUGMENT_CIFAR10_POLICY,
    fill: float = 0.5,
    padding_mode: str = "constant",
):
    """AutoAugment, flip, crop with padding, normalise, Cutout (spec 2.2): float32 (B, C, *size).

    Like the reference PIL pipeline, a uint8 batch comes out of AutoAugment as uint8 (rounded); flip and
    crop then move bytes, and normalisation makes the float batch.
    """
    y = auto_augment(x, gen, policy=policy, fill=fill)
    y = random_flip(y, gen)
    y = random_crop(y, padding, gen, size=size, padding_mode=padding_mode)
    y = normalize(y, mean, std)
    return cutout(y, cutout_size, gen) if cutout_size > 0 else y


class _Transform:
    """Holds mean/std and a seeded generator per device; ``__call__(x, generator=None)``."""

    def __init__(self, mean, std, *, image_size=None, seed: int = 0) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if self.mean.numel() != self.std.numel() or self.mean.numel() == 0:
            n_mean, n_std = self.mean.numel(), self.std.numel()
            raise ValueError(f"mean and std need the same number of channels, got {n_mean} and {n_std}")
        if bool((self.std <= 0).any()):
            raise ValueError("std must be positive in every channel")
        self.image_size = image_size
        self.seed = int(seed)
        self._generators: dict[torch.device, torch.Generator] = {}

    def generator(self, device: torch.device) -> torch.Generator:
        """This transform's own generator on ``device``, seeded with ``seed`` on first use."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._generators:
            self._generators[device] = make_generator(self.seed, device)
        return self._generators[device]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(x)
        return self._run(x, generator if generator is not None else self.generator(x.device))

    def _run(self, x, gen):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


class WeakAugment(_Transform):
    """Weak view: random flip, random crop (``padding``, output ``image_size``), normalisation."""

    def __init__(self, mean, std, *, padding: int = 4, image_size=None, padding_mode="constant", seed=0):
        super().__init__(mean, std, image_size=image_size, seed=seed)
        self.padding = padding
        self.padding_mode = padding_mode

    def _run(self, x, gen):
        return weak_augment(
            x,
            gen,
            self.mean,
            self.std,
            padding=self.padding,
            size=self.image_size,
            padding_mode=self.padding_mode,
        )


class StrongAugment(_Transform):
    """Strong view: AutoAugment CIFAR-10 policy, flip, crop, normalisation, Cutout(``cutout_size``)."""

    def __init__(
        self,
        mean,
        std,
        *,
        padding: int = 4,
        image_size=None,
        cutout_size: int = 16,
        policy=AUTOAUGMENT_CIFAR10_POLICY,
        fill: float = 0.5,
        padding_mode="constant",
        seed=0,
    ):
        super().__init__(mean, std, image_size=image_size, seed=seed)
        encode_policy(policy)  # validate early
        self.padding = padding
        self.cutout_size = cutout_size
        self.policy = policy
        self.fill = fill
        self.padding_mode = padding_mode

    def _run(self, x, gen):
        return strong_augment(
            x,
            gen,
            self.mean,
            self.std,
            padding=self.padding,
            size=self.image_size,
            cutout_size=self.cutout_size,
            policy=self.policy,
            fill=self.fill,
            padding_mode=self.padding_mode,
        )

    def __repr__(self) -> str:
        return (
            f"StrongAugment(mean={self.mean.tolist()}, std={self.std.tolist()}, padding={self.padding}, "
            f"image_size={self.image_size}, cutout_size={self.cutout_size}, "
            f"policy=<{len(self.policy)} sub-policies>, fill={self.fill})"
        )


class EvalTransform(_Transform):
    """Test view: optional centre crop to ``image_size``, then normalisation (no randomness)."""

    def _run(self, x, gen):
        if self.image_size is not None:
            x = center_crop(x, self.image_size)
        return normalize(x, self.mean, self.std)
