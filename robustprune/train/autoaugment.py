"""AutoAugment and RandAugment on whole batches (one random sub-policy / op set per image).

Ops follow PIL's definitions (as the reference AutoAugment code does) on float images in [0, 1]. Deviations,
all small: geometric ops use bilinear ``grid_sample`` about the image centre by default; Equalize is PIL's
exact histogram equalisation computed on the image quantised to 256 levels; Contrast uses the exact
(unrounded) grey mean; Sharpness's smoothed image is not rounded to integers. Colour becomes a no-op on
images with other than 3 channels.

On an accelerator every op runs on the whole batch and a mask keeps the images that chose it (no host
synchronisation); on the CPU the images are grouped by op and each op runs on its own images only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from robustprune.train.imageops import cached, check_images, rand_int, rand_uniform, restore_dtype, to_float

__all__ = ["OPS", "AUTOAUGMENT_CIFAR10_POLICY", "auto_augment", "rand_augment"]

#: Op names; geometric ops come first (ids 0..4).
OPS = tuple(
    "ShearX ShearY TranslateX TranslateY Rotate AutoContrast Equalize Solarize Posterize Contrast Color "
    "Brightness Sharpness Invert Identity".split()
)
_OP_ID = {name: i for i, name in enumerate(OPS)}
_N_GEOMETRIC = 5
_SIGNED = frozenset(
    {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Contrast", "Color", "Brightness", "Sharpness"}
)


def _magnitudes(name: str) -> list[float]:
    """Value of each of the 10 magnitude bins (0..9), as in the AutoAugment paper's search space."""
    lin = lambda a, b: [a + (b - a) * i / 9 for i in range(10)]  # noqa: E731
    if name in ("ShearX", "ShearY"):
        return lin(0.0, 0.3)  # shear factor
    if name in ("TranslateX", "TranslateY"):
        return lin(0.0, 150 / 331)  # fraction of the image side (150 px of 331)
    if name == "Rotate":
        return lin(0.0, 30.0)  # degrees
    if name == "Solarize":
        return lin(256.0, 0.0)  # threshold on the 0..255 scale
    if name == "Posterize":
        return [float(round(v)) for v in lin(8.0, 4.0)]  # bits kept
    if name in ("Contrast", "Color", "Brightness", "Sharpness"):
        return lin(0.0, 0.9)  # enhancement factor = 1 +- value
    return [0.0] * 10


_MAG_TABLE = torch.tensor([_magnitudes(n) for n in OPS], dtype=torch.float32)
_SIGNED_MASK = torch.tensor([n in _SIGNED for n in OPS])

#: AutoAugment's policy found on reduced CIFAR-10 (Cubuk et al., CVPR 2019): 25 sub-policies of two
#: (op, probability, magnitude bin 0..9) steps.
AUTOAUGMENT_CIFAR10_POLICY: tuple[tuple[tuple[str, float, int], ...], ...] = (
    (("Invert", 0.1, 7), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, 8), ("Equalize", 0.9, 2)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 5), ("Equalize", 0.5, 1)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, 7), ("AutoContrast", 0.4, 8)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, 3)),
    (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 8), ("Equalize", 0.6, 4)),
    (("Color", 0.9, 9), ("Equalize", 0.6, 6)),
    (("AutoContrast", 0.8, 4), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 3)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, 2), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, 8), ("Invert", 0.1, 3)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1)),
)


# ------------------------------------------------------------------------- AutoAugment ops (batched)


def _gray(y: torch.Tensor) -> torch.Tensor:
    if y.shape[1] == 3:
        return 0.299 * y[:, 0:1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3]
    return y.mean(1, keepdim=True)


def _blend(degenerate: torch.Tensor, y: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: ``degenerate + factor * (image - degenerate)``, clipped."""
    return (degenerate + factor * (y - degenerate)).clamp(0.0, 1.0)


def _affine(y: torch.Tensor, theta: torch.Tensor, fill: float, mode: str) -> torch.Tensor:
    """Warp each image by its own 2x3 matrix (normalised coordinates); outside pixels become ``fill``."""
    b, c, h, w = y.shape
    ones = torch.ones((b, 1, h, w), dtype=y.dtype, device=y.device)
    # F.affine_grid(theta, align_corners=False) written out: output pixel centres in [-1, 1], mapped by each
    # image's 2x3 matrix (elementwise; affine_grid's batched matmul with an inner size of 3 is slow).
    gy = (torch.arange(h, device=y.device, dtype=y.dtype) * 2 + 1) / h - 1
    gx = (torch.arange(w, device=y.device, dtype=y.dtype) * 2 + 1) / w - 1
    t = theta.to(y.dtype).view(b, 6, 1, 1)
    px = t[:, 0] * gx[None, None, :] + t[:, 1] * gy[None, :, None] + t[:, 2]
    py = t[:, 3] * gx[None, None, :] + t[:, 4] * gy[None, :, None] + t[:, 5]
    grid = torch.stack([px, py], -1)  # (B, H, W, 2)
    s = F.grid_sample(torch.cat([y, ones], 1), grid, mode=mode, padding_mode="zeros", align_corners=False)
    return s[:, :c] + (1.0 - s[:, c:]) * fill


def _geometric_theta(op: torch.Tensor, value: torch.Tensor, h: int, w: int) -> torch.Tensor:
    one, zero = torch.ones_like(value), torch.zeros_like(value)
    rad = value * (math.pi / 180.0)
    rot = op == _OP_ID["Rotate"]
    a = torch.where(rot, torch.cos(rad), one)
    e = a
    bb = torch.where(rot, -torch.sin(rad) * (h / w), zero)
    d = torch.where(rot, torch.sin(rad) * (w / h), zero)
    bb = torch.where(op == _OP_ID["ShearX"], value * (h / w), bb)  # shear about the centre
    d = torch.where(op == _OP_ID["ShearY"], value * (w / h), d)
    c = torch.where(op == _OP_ID["TranslateX"], 2.0 * value, zero)  # value = fraction of the side
    f = torch.where(op == _OP_ID["TranslateY"], 2.0 * value, zero)
    return torch.stack([a, bb, c, d, e, f], 1).view(-1, 2, 3)


def _autocontrast(y: torch.Tensor) -> torch.Tensor:
    lo = y.amin(dim=(-2, -1), keepdim=True)
    hi = y.amax(dim=(-2, -1), keepdim=True)
    ok = hi > lo
    scale = torch.where(ok, 1.0 / (hi - lo).clamp_min(1e-12), torch.ones_like(hi))
    return ((y - torch.where(ok, lo, torch.zeros_like(lo))) * scale).clamp(0.0, 1.0)


def _equalize(y: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageOps.equalize`` per image and channel, on the image quantised to 0..255."""
    b, c, h, w = y.shape
    v = (y * 255.0).round().clamp(0, 255).long().reshape(b * c, h * w)
    offsets = torch.arange(b * c, device=y.device)[:, None] * 256
    idx = (v + offsets).flatten()  # scatter_add_, not bincount: bincount syncs the host on CUDA
    hist = torch.zeros(b * c * 256, dtype=torch.long, device=y.device)
    hist = hist.scatter_add_(0, idx, torch.ones_like(idx)).view(b * c, 256)
    last = 255 - (hist > 0).flip(-1).int().argmax(-1, keepdim=True)  # highest level present
    step = (h * w - hist.gather(1, last)) // 255
    cum = hist.cumsum(1) - hist
    levels = torch.arange(256, device=y.device).expand(b * c, 256)
    lut = ((step // 2 + cum) // step.clamp_min(1)).clamp_max(255)
    lut = torch.where(step == 0, levels, lut)
    return lut.gather(1, v).view(b, c, h, w).to(y.dtype) / 255.0


def _sharpness(y: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    b, c, h, w = y.shape
    if h < 3 or w < 3:
        return y
    # PIL's SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]]/13 = (9 * 3x3 mean + 4 * centre) / 13; a pooling call is
    # far cheaper than a grouped convolution on the CPU.
    centre = y[..., 1:-1, 1:-1]
    smooth = (F.avg_pool2d(y, 3, stride=1) * 9.0 + 4.0 * centre) / 13.0
    degenerate = y.clone()
    degenerate[..., 1:-1, 1:-1] = smooth  # PIL keeps the border pixels
    return _blend(degenerate, y, factor)


def _pixel_op(name: str, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Apply op ``name`` to the whole batch with per-image values ``v`` of shape (B, 1, 1, 1)."""
    if name == "AutoContrast":
        return _autocontrast(y)
    if name == "Equalize":
        return _equalize(y)
    if name == "Solarize":
        return torch.where(y * 255.0 >= v, 1.0 - y, y)
    if name == "Posterize":
        q = torch.exp2(8.0 - v)
        return torch.floor((y * 255.0).round() / q) * q / 255.0
    if name == "Contrast":
        return _blend(_gray(y).mean(dim=(-3, -2, -1), keepdim=True), y, 1.0 + v)
    if name == "Color":
        return _blend(_gray(y), y, 1.0 + v) if y.shape[1] == 3 else y
    if name == "Brightness":
        return (y * (1.0 + v)).clamp(0.0, 1.0)
    if name == "Sharpness":
        return _sharpness(y, 1.0 + v)
    if name == "Invert":
        return 1.0 - y
    return y


def _apply_step(y, op, value, apply, used: frozenset[int], fill: float, mode: str) -> torch.Tensor:
    """One step of every image's sub-policy: image i gets op[i] with value[i] where apply[i].

    On an accelerator every op runs on the whole batch and ``torch.where`` keeps the images that chose it
    (no data-dependent shapes, so no host synchronisation). On the CPU, where synchronising is free, one
    stable sort groups the images by op, each op runs once on its contiguous slice, and one scatter puts
    the images back in order. Both give the same result: every op is per-image.
    """
    if y.device.type == "cpu" and not _FORCE_MASKED:
        return _apply_step_grouped(y, op, value, apply, fill, mode)
    b = y.shape[0]
    groups: list[tuple[int, torch.Tensor]] = []
    if any(i < _N_GEOMETRIC for i in used):
        groups.append((-1, apply & (op < _N_GEOMETRIC)))
    groups += [(i, apply & (op == i)) for i in sorted(used) if i >= _N_GEOMETRIC and OPS[i] != "Identity"]
    for i, sel in groups:
        y = torch.where(sel.view(b, 1, 1, 1), _run_op(i, y, op, value, fill, mode), y)
    return y


_IDENTITY = _OP_ID["Identity"]


def _apply_step_grouped(y, op, value, apply, fill: float, mode: str) -> torch.Tensor:
    # Group key: 0 = any geometric op (one warp with per-image matrices), else the op id; images whose step
    # does not fire, or is Identity, get the Identity key and are left alone.
    key = torch.where(op < _N_GEOMETRIC, 0, op)
    key = torch.where(apply & (op != _IDENTITY), key, _IDENTITY)
    counts = torch.bincount(key, minlength=len(OPS)).tolist()
    if counts[_IDENTITY] == y.shape[0]:
        return y
    order = torch.argsort(key, stable=True)
    ys = y.index_select(0, order)  # a fresh tensor: ops write their slices back into it
    op_s, value_s = op.index_select(0, order), value.index_select(0, order)
    start = 0
    for k, n in enumerate(counts):
        if n and k != _IDENTITY:
            sl = slice(start, start + n)
            ys[sl] = _run_op(-1 if k == 0 else k, ys[sl], op_s[sl], value_s[sl], fill, mode)
        start += n
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return ys.index_select(0, inverse)  # a gather back into batch order: cheaper than index_copy_ here


def _run_op(i: int, y: torch.Tensor, op, value, fill: float, mode: str) -> torch.Tensor:
    if i < 0:  # every geometric op, through one warp with per-image matrices
        return _affine(y, _geometric_theta(op, value, *y.shape[-2:]), fill, mode)
    return _pixel_op(OPS[i], y, value.view(-1, 1, 1, 1))


#: Tests set this to check that the CPU's per-subset path equals the accelerator's masked path.
_FORCE_MASKED = False


def _signed_values(op, bins, gen, device) -> torch.Tensor:
    table = cached(("magnitudes",), device, lambda: _MAG_TABLE)
    signed = cached(("signed",), device, lambda: _SIGNED_MASK)
    sign = torch.where(rand_uniform(gen, tuple(op.shape), device) < 0.5, -1.0, 1.0)
    return table[op, bins] * torch.where(signed[op], sign, torch.ones_like(sign))


def _freeze_policy(policy) -> tuple:
    try:
        return tuple(tuple((str(n), float(p), int(m)) for n, p, m in sub) for sub in policy)
    except (TypeError, ValueError):
        msg = "policy must be a sequence of sub-policies of (op, probability, magnitude bin)"
        raise ValueError(msg) from None


def encode_policy(policy) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not policy:
        raise ValueError("policy must list at least one sub-policy")
    width = max(len(sub) for sub in policy)
    ops, probs, bins = [], [], []
    for sub in policy:
        steps = list(sub) + [("Identity", 0.0, 0)] * (width - len(sub))
        for name, p, m in steps:
            if name not in _OP_ID:
                raise ValueError(f"unknown augmentation op {name!r}; known ops: {', '.join(OPS)}")
            if not 0.0 <= p <= 1.0 or not 0 <= int(m) <= 9:
                raise ValueError(f"step ({name!r}, {p}, {m}) needs probability in [0, 1] and magnitude 0..9")
        ops.append([_OP_ID[s[0]] for s in steps])
        probs.append([float(s[1]) for s in steps])
        bins.append([int(s[2]) for s in steps])
    return torch.tensor(ops), torch.tensor(probs), torch.tensor(bins)


def auto_augment(
    x: torch.Tensor,
    gen: torch.Generator | None,
    *,
    policy: Sequence[Sequence[tuple[str, float, int]]] = AUTOAUGMENT_CIFAR10_POLICY,
    fill: float = 0.5,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """AutoAugment: each image draws one sub-policy; each of its steps fires with its own probability.

    Parameters
    ----------
    x : Tensor (B, C, H, W), uint8 or float in [0, 1]
    gen : torch.Generator or None
    policy : sequence of sub-policies
        Each a sequence of ``(op name, probability, magnitude bin 0..9)``; default the CIFAR-10 policy.
    fill : float
        Value in [0, 1] for pixels uncovered by geometric ops (0.5 ~ the reference's grey 128).
    interpolation : {"bilinear", "nearest"}
        Resampling of geometric ops.

    Returns
    -------
    Tensor of the input's shape and dtype.
    """
    check_images(x)
    key = _freeze_policy(policy)
    ops_cpu, probs_cpu, bins_cpu = encode_policy(key)  # validates; tiny
    used = frozenset(ops_cpu.flatten().tolist())
    dev = x.device
    y = to_float(x)
    b = y.shape[0]
    sub = rand_int(gen, len(ops_cpu), (b,), dev)
    ops = cached(("policy_ops", key), dev, lambda: ops_cpu)[sub]  # (B, steps)
    probs = cached(("policy_probs", key), dev, lambda: probs_cpu)[sub]
    bins = cached(("policy_bins", key), dev, lambda: bins_cpu)[sub]
    apply = rand_uniform(gen, tuple(ops.shape), dev) < probs
    values = _signed_values(ops, bins, gen, dev)
    for s in range(ops.shape[1]):
        y = _apply_step(y, ops[:, s], values[:, s], apply[:, s], used, fill, interpolation)
    return restore_dtype(y, x.dtype)


def rand_augment(
    x: torch.Tensor,
    gen: torch.Generator | None,
    *,
    num_ops: int = 2,
    magnitude: int = 9,
    ops: Sequence[str] = OPS,
    fill: float = 0.5,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """RandAugment (Cubuk et al. 2020): ``num_ops`` uniformly drawn ops per image at one magnitude (0..9)."""
    check_images(x)
    if not 0 <= int(magnitude) <= 9 or int(num_ops) < 0:
        raise ValueError(f"need magnitude in 0..9 and num_ops >= 0, got {magnitude!r}, {num_ops!r}")
    unknown = [o for o in ops if o not in _OP_ID]
    if unknown or not ops:
        raise ValueError(f"ops must be a non-empty subset of: {', '.join(OPS)}; got unknown {unknown}")
    dev = x.device
    y = to_float(x)
    b = y.shape[0]
    id_list = tuple(_OP_ID[o] for o in ops)
    ids = cached(("op_ids", id_list), dev, lambda: torch.tensor(id_list))
    op = ids[rand_int(gen, len(ids), (b, int(num_ops)), dev)]
    values = _signed_values(op, torch.full_like(op, int(magnitude)), gen, dev)
    apply = torch.ones_like(op, dtype=torch.bool)
    used = frozenset(_OP_ID[o] for o in ops)
    for s in range(int(num_ops)):
        y = _apply_step(y, op[:, s], values[:, s], apply[:, s], used, fill, interpolation)
    return restore_dtype(y, x.dtype)
