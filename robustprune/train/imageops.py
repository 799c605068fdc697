"""Batched image transforms and the helpers every augmentation shares.

Every function takes a whole batch ``x`` of shape (B, C, H, W), uint8 (0..255) or float (0..1 before
normalisation), on any device, and draws its randomness from an explicit :class:`torch.Generator`: the same
seed gives the same result on the same device. Per-sample choices (flip or not, crop offsets, Cutout
centres) are tensors, applied through index grids, masks and ``torch.where``; there is no Python loop over
the batch and no host synchronisation. A generator on another device than the batch also works (its draws
are copied over); one on the batch's device avoids the copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["make_generator", "to_float", "random_flip", "random_crop", "center_crop", "normalize", "cutout"]

# --------------------------------------------------------------------------------------------- helpers


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(int(seed))


def check_images(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got {shape}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ValueError(f"{name} must be uint8 (0..255) or floating (0..1), got {x.dtype}")


_DEVICE_CACHE: dict[tuple, torch.Tensor] = {}


def cached(key: tuple, device: torch.device, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """A small constant tensor on ``device``, copied there once (a blocking copy would sync the host)."""
    t = _DEVICE_CACHE.get((key, device))
    if t is None:
        if len(_DEVICE_CACHE) > 256:
            _DEVICE_CACHE.clear()
        t = _DEVICE_CACHE[(key, device)] = make().to(device)
    return t


def rand_uniform(gen: torch.Generator | None, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    src = gen.device if gen is not None else device
    return torch.rand(shape, generator=gen, device=src).to(device, non_blocking=True)


def rand_int(gen: torch.Generator | None, high: int, shape: tuple[int, ...], device: torch.device):
    src = gen.device if gen is not None else device
    return torch.randint(0, high, shape, generator=gen, device=src).to(device, non_blocking=True)


def _like_input(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Keep channels_last batches channels_last, make everything else contiguous."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1; floating input -> float32, unchanged in value (may be ``x`` itself)."""
    check_images(x)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def restore_dtype(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.uint8:
        return y.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return y.to(dtype)


def _scalar_like(value: float, x: torch.Tensor) -> int | float:
    """A Python scalar that keeps ``torch.where`` in ``x``'s dtype (no device tensor, so no copy)."""
    return int(round(value)) if x.dtype == torch.uint8 else float(value)


def _pair(size: int | Sequence[int] | None, default: tuple[int, int], name: str) -> tuple[int, int]:
    if size is None:
        return default
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return int(h), int(w)


def _channel_vector(v: float | Sequence[float] | torch.Tensor, c: int, name: str, like: torch.Tensor):
    if isinstance(v, torch.Tensor) and v.device == like.device:
        t = v.to(torch.float32).flatten()  # trusted: already on the device (no check, no sync)
        if t.numel() not in (1, c):
            raise ValueError(f"{name} has {t.numel()} values but the images have {c} channels")
        return t.view(1, -1, 1, 1)
    values = tuple(float(a) for a in torch.as_tensor(v, dtype=torch.float32).flatten().tolist())
    if len(values) not in (1, c):
        raise ValueError(f"{name} has {len(values)} values but the images have {c} channels")
    if name == "std" and min(values) <= 0:
        raise ValueError("std must be positive in every channel")
    return cached(("channels", values), like.device, lambda: torch.tensor(values).view(1, -1, 1, 1))


# ------------------------------------------------------------------------------------ basic transforms


def random_flip(x: torch.Tensor, gen: torch.Generator | None, p: float = 0.5) -> torch.Tensor:
    """Flip each image horizontally with probability ``p``. Same dtype and shape."""
    check_images(x)
    flip = rand_uniform(gen, (x.shape[0],), x.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_crop(
    x: torch.Tensor,
    padding: int,
    gen: torch.Generator | None,
    *,
    size: int | Sequence[int] | None = None,
    padding_mode: str = "constant",
    fill: float = 0,
) -> torch.Tensor:
    """Pad each image by ``padding`` pixels and cut a ``size`` crop at a random per-image offset.

    The padding is never materialised: output pixels gather input pixels through per-image index grids.

    Parameters
    ----------
    x : Tensor (B, C, H, W), uint8 or float
    padding : int
        Pixels added on every side (0: a plain random crop; with ``size`` = input size, the identity).
    gen : torch.Generator or None
    size : int or (int, int), optional
        Crop height and width; default the input size.
    padding_mode : {"constant", "reflect", "replicate"}
        Padding value: ``fill``, the mirror image without repeating the edge, or the edge pixel.
    fill : number
        Value of constant padding (in the input's scale).

    Returns
    -------
    Tensor (B, C, *size), same dtype.
    """
    check_images(x)
    b, _, h, w = x.shape
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    if padding_mode not in ("constant", "reflect", "replicate"):
        raise ValueError(f"padding_mode must be 'constant', 'reflect' or 'replicate', got {padding_mode!r}")
    if padding_mode == "reflect" and padding >= min(h, w):
        raise ValueError(f"reflect padding needs padding < image side, got {padding} for {h}x{w}")
    oh, ow = _pair(size, (h, w), "size")
    if oh > h + 2 * padding or ow > w + 2 * padding:
        raise ValueError(f"crop size {oh}x{ow} exceeds the padded image {h + 2 * padding}x{w + 2 * padding}")
    dev = x.device
    oy = rand_int(gen, h + 2 * padding - oh + 1, (b,), dev)
    ox = rand_int(gen, w + 2 * padding - ow + 1, (b,), dev)
    rows = oy[:, None] + torch.arange(oh, device=dev) - padding  # (B, oh), coordinates in the input
    cols = ox[:, None] + torch.arange(ow, device=dev) - padding
    valid = None
    if padding_mode == "reflect":
        rows = torch.where(rows < 0, -rows, torch.where(rows > h - 1, 2 * (h - 1) - rows, rows))
        cols = torch.where(cols < 0, -cols, torch.where(cols > w - 1, 2 * (w - 1) - cols, cols))
    elif padding_mode == "constant" and padding > 0:
        valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    if x.is_contiguous():  # one gather along the flattened pixels: far cheaper than advanced indexing
        c = x.shape[1]
        flat = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, oh * ow).expand(b, c, oh * ow)
        out = x.reshape(b, c, h * w).gather(2, flat).view(b, c, oh, ow)
    else:
        bidx = torch.arange(b, device=dev)[:, None, None]
        out = x[bidx, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, oh, ow, C) -> NCHW
    if valid is not None:
        out = torch.where(valid[:, None], out, _scalar_like(fill, x))
    return _like_input(out, x)


def center_crop(x: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Cut the central ``size`` crop (deterministic)."""
    check_images(x)
    h, w = x.shape[-2:]
    oh, ow = _pair(size, (h, w), "size")
    if oh > h or ow > w:
        raise ValueError(f"crop size {oh}x{ow} exceeds the image {h}x{w}")
    top, left = (h - oh) // 2, (w - ow) // 2
    return x[..., top : top + oh, left : left + ow]


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel, on float32 images in [0, 1] (uint8 input is scaled first)."""
    y = to_float(x)
    m = _channel_vector(mean, y.shape[1], "mean", y)
    s = _channel_vector(std, y.shape[1], "std", y)
    return (y - m) / s


def cutout(x: torch.Tensor, size: int, gen: torch.Generator | None, *, fill: float = 0.0) -> torch.Tensor:
    """Set a ``size``x``size`` square (clipped at the border) at a random centre of each image to ``fill``.

    As in DeVries & Taylor (2017); after normalisation the default ``fill=0`` is the channel mean.
    """
    check_images(x)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"cutout size must be a non-negative integer, got {size!r}")
    b, _, h, w = x.shape
    dev = x.device
    cy = rand_int(gen, h, (b,), dev)
    cx = rand_int(gen, w, (b,), dev)
    ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
    y0, x0 = (cy - size // 2)[:, None], (cx - size // 2)[:, None]
    in_y = (ar_h >= y0) & (ar_h < y0 + size)
    in_x = (ar_w >= x0) & (ar_w < x0 + size)
    mask = (in_y[:, :, None] & in_x[:, None, :])[:, None]
    return torch.where(mask, _scalar_like(fill, x), x)
