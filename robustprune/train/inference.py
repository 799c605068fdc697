"""Inference passes of a trained model: probabilities, logits and features of many inputs, batch by batch.

Under ``torchrun`` a pass is sharded: each rank computes a contiguous block of the rows and the blocks are
gathered on every rank in example order (:func:`robustprune.distributed.block` /
:func:`~robustprune.distributed.all_gather_cat`). Every rank must then make the same calls (``shard=False``
computes every row on the calling rank alone).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

import robustprune.distributed as dist

__all__ = ["predict", "eval_outputs"]


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 1024,
    *,
    transform: Callable[..., torch.Tensor] | None = None,
    amp: bool | None = None,
    shard: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (N, K) and features (N, D) of ``x`` in index order, float32 on the CPU.

    ``x`` is normalised already unless ``transform`` (e.g. ``TrainData.clean``) is given. Runs in eval mode
    without gradients (the model's mode is restored), under bf16 autocast on CUDA unless ``amp=False``.
    Under DDP (and ``shard``) the rows are split over ranks and every rank receives all of them.
    """
    logits, feats = eval_outputs(model, x, batch_size, transform, amp, features=True, to_cpu=True, shard=shard)
    return torch.softmax(logits, 1), feats


@torch.no_grad()
def eval_outputs(model, x, batch_size, transform, amp, *, features: bool, to_cpu: bool, shard: bool = True):
    """Logits (and features) of ``x`` in eval mode, batch by batch; on the CPU or the model's device. Under
    DDP (and ``shard``) each rank computes its block of rows and every rank receives all rows in order."""
    if shard and dist.world().distributed:
        rows = dist.block(x.shape[0])
        part = x[rows] if rows.stop > rows.start else x[:1]  # an empty block still needs the output shapes
        out, h = eval_outputs(model, part, batch_size, transform, amp, features=features, to_cpu=to_cpu, shard=False)
        if rows.stop == rows.start:
            out, h = out[:0], (h[:0] if features else h)
        return dist.all_gather_cat(out), (dist.all_gather_cat(h) if features else h)
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    use_amp = cuda if amp is None else bool(amp) and cuda
    was_training = model.training
    model.eval()
    outs: list[torch.Tensor] = []
    hs: list[torch.Tensor] = []
    try:
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size].to(device, non_blocking=True)
            if transform is not None:
                xb = transform(xb)
            if cuda and xb.ndim == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext():
                h = model.features(xb) if features else None
                out = model.head(h) if features else model(xb)
            out = out.float()
            outs.append(out.cpu() if to_cpu else out)
            if features:
                hs.append(h.float().cpu() if to_cpu else h.float())
    finally:
        model.train(was_training)
    empty = torch.empty(0, device="cpu" if to_cpu else device)
    return (torch.cat(outs) if outs else empty), (torch.cat(hs) if hs else empty)
