"""DeepFool (Moosavi-Dezfooli et al., 2016), batched: the minimal perturbation that changes a model's prediction.

Used as a selection signal by Ducoffe & Precioso (2018): the norm of each training example's perturbation under
the warmed-up model measures its distance to the decision boundary. Every iteration linearises the model at the
current points of the samples whose prediction has not changed yet (the gradients of all K logits with respect
to the input, K backward passes over the batch) and moves each of them by the smallest step that reaches the
linearised boundary of its nearest other class. A sample stops when its prediction differs from the original
one, or after ``max_iter`` steps. As released (and in DeepCore), there is no overshoot by default.

The perturbation lives in the model's input space: after ``transform`` (e.g. ``TrainData.clean``, the
normalisation) when one is given.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["deepfool_norms"]


def deepfool_norms(
    model: nn.Module,
    x: torch.Tensor,
    *,
    max_iter: int = 50,
    overshoot: float = 0.0,
    batch_size: int = 256,
    transform: Callable[..., torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepFool perturbation norms ‖r‖ (not squared) and step counts of every input, float32 / int64 on the CPU.

    Parameters
    ----------
    model : nn.Module
        Maps a batch of inputs to logits (N, K). Runs in eval mode, in float32 (float64 for a float64 model),
        without autocast; the mode is restored and the parameters are left untouched.
    x : Tensor (N, ...)
        Inputs, on any device (moved batch by batch to the model's device).
    max_iter : int
        Most linearised steps per sample (>= 0). A sample that has not flipped by then keeps the norm of its
        accumulated perturbation.
    overshoot : float
        The perturbation is applied as (1 + overshoot)·r, which helps samples cross the boundary; 0 as released.
        The returned norm is that of the applied perturbation.
    batch_size : int
        Samples attacked together (memory grows with batch_size · K · input size).
    transform : callable, optional
        Applied to each batch before the attack (e.g. the normalisation).

    Returns
    -------
    norms : Tensor (N,) float32
    steps : Tensor (N,) int64, the number of steps each sample took (<= max_iter)
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative integer, got {max_iter!r}")
    if not overshoot >= 0:
        raise ValueError(f"overshoot must be >= 0, got {overshoot!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    param = next(model.parameters())
    device, dtype = param.device, (torch.float64 if param.dtype == torch.float64 else torch.float32)
    was_training = model.training
    model.eval()
    norms: list[torch.Tensor] = []
    steps: list[torch.Tensor] = []
    try:
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size].to(device, non_blocking=True)
            if transform is not None:
                with torch.no_grad():
                    xb = transform(xb)
            r, n = _attack(model, xb.to(dtype), max_iter, float(overshoot))
            norms.append(r.float().cpu())
            steps.append(n.cpu())
    finally:
        model.train(was_training)
    if not norms:
        return torch.empty(0), torch.empty(0, dtype=torch.int64)
    return torch.cat(norms), torch.cat(steps)


def _attack(model: nn.Module, x0: torch.Tensor, max_iter: int, overshoot: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch: (norms, steps) of the DeepFool perturbations of ``x0`` (B, ...)."""
    b = x0.shape[0]
    flat0 = x0.reshape(b, -1)
    r_tot = torch.zeros_like(flat0)
    steps = torch.zeros(b, dtype=torch.int64, device=x0.device)
    with torch.no_grad():
        orig = model(x0).argmax(1)
    active = torch.arange(b, device=x0.device)
    scale = 1.0 + overshoot
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        xa = (flat0[active] + scale * r_tot[active]).reshape(-1, *x0.shape[1:]).requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa).float()
            y = orig[active]
            still = logits.argmax(1) == y
            if not still.any():
                break
            # the gradient of each logit w.r.t. the inputs of every active sample: K backward passes
            k = logits.shape[1]
            grads = torch.stack(
                [
                    torch.autograd.grad(logits[:, c].sum(), xa, retain_graph=c < k - 1)[0].reshape(xa.shape[0], -1)
                    for c in range(k)
                ],
                dim=1,
            )  # (A, K, D)
        logits = logits.detach()
        rows = torch.arange(xa.shape[0], device=x0.device)
        df = logits - logits[rows, y].unsqueeze(1)  # f_c − f_y <= 0 while unflipped
        dw = grads - grads[rows, y].unsqueeze(1)  # (A, K, D)
        dw_norm = dw.norm(dim=2)
        dist = df.abs() / dw_norm
        dist[rows, y] = float("inf")
        dist = torch.where(dw_norm > 0, dist, torch.full_like(dist, float("inf")))
        best = dist.argmin(1)
        best_dist = dist[rows, best]
        movable = still & torch.isfinite(best_dist) & (best_dist > 0)
        # the minimal step onto the linearised boundary of the nearest other class: |Δf| / ‖Δw‖² · Δw
        w = dw[rows, best]
        coef = torch.where(movable, best_dist / dw_norm[rows, best].clamp_min(torch.finfo(w.dtype).tiny), 0.0)
        step = coef.unsqueeze(1) * w
        r_tot[active] += step
        steps[active] += movable.long()
        # flipped samples leave now; so do samples that cannot move (on a boundary already, or no gradient)
        active = active[movable]
    return (scale * r_tot).norm(dim=1), steps
