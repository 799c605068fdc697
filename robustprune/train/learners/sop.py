"""SOP+: sparse over-parameterisation (Liu et al., ICML 2022), as released with Prune4ReL (spec 4.1).

Per sample a scalar ``u_i`` and a vector ``v_i`` in R^K, initialised N(0, init_std^2) with init_std = 1e-8,
model the label noise: with ``y`` the one-hot given label,

    U = clamp(u^2 * y, 0, 1),   V = clamp(v^2 * (1 - y), 0, 1),
    p' = clamp(softmax(f(x_weak)) + U - stopgrad(V), min=eps), L1-normalised, clamped to [eps, 1],
    loss = CE(y, p') + ||onehot(argmax f(x_weak)) + U - V - y||^2 / B
           + rb * (-sum_k 1/K log mean_batch p'_k)
           + rc * KL(stopgrad softmax f(x_weak) || softmax f(x_strong)).

``u`` and ``v`` live outside the network in (N, 1) and (N, K) tensors indexed by global sample index, and
are trained by their own plain SGD (no momentum, no weight decay, learning rates ``lr_u`` / ``lr_v``). The
update is applied to the batch rows only, which is exactly what dense SGD without momentum or decay does
(other rows have zero gradient) at O(B K) instead of O(N K) cost. Weak and strong views go through the
network in one forward pass (as in the release). Warm-up uses the same loss, u and v included.

Under DDP each rank updates the u and v rows of its own share of the global batch. The gradients of the
network are averaged over ranks, i.e. they are the gradients of the mean of the ranks' losses; the u and v
gradients are scaled by ``1 / world_size`` to match (each row is in one rank's loss only), so a step equals
the single-process step on the whole global batch. The rows are gathered at every epoch end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustprune.train.engine import EpochContext
from robustprune.train.learners.base import Learner, one_hot
from robustprune.train.learners.registry import register_learner

__all__ = ["SOPLearner", "SOPOptions", "sop_loss"]


@dataclass(frozen=True)
class SOPOptions:
    """Spec 4.1 / 6 defaults (CIFAR-10): ``rc`` consistency 0.9, ``rb`` class balance 0.1, ``lr_u`` 10,
    ``lr_v`` 100. CIFAR-100 uses ``lr_u=1``; ImageNet ``rc=rb=0, lr_u=0.1, lr_v=1``."""

    rc: float = 0.9
    rb: float = 0.1
    lr_u: float = 10.0
    lr_v: float = 100.0
    init_std: float = 1e-8
    eps: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("rc", "rb", "lr_u", "lr_v", "init_std", "eps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)!r}")


def sop_loss(
    logits_weak: torch.Tensor,
    logits_strong: torch.Tensor | None,
    onehot: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    opts: SOPOptions,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SOP+ loss of a batch and the per-sample CE(y, p'); ``u`` (B, 1), ``v`` (B, K) are batch rows.
    ``weights`` (B,) turns the per-sample means (CE, the u/v square loss, consistency) into weighted means."""
    mean = EpochContext.mean
    eps = opts.eps
    big_u = (u * u * onehot).clamp(0, 1)
    big_v = (v * v * (1 - onehot)).clamp(0, 1)
    pred = torch.softmax(logits_weak, 1)
    p = (pred + big_u - big_v.detach()).clamp(min=eps)
    p = F.normalize(p, p=1, dim=1, eps=eps).clamp(eps, 1.0)
    ce = -(onehot * torch.log(p)).sum(1)
    hard = one_hot(logits_weak.detach().argmax(1), onehot.shape[1])
    mse = mean(((hard + big_u - big_v - onehot) ** 2).sum(1), weights)
    loss = mean(ce, weights) + mse
    if opts.rb > 0:
        avg = p.mean(0).clamp(eps, 1.0)
        loss = loss + opts.rb * (-(torch.log(avg) / onehot.shape[1]).sum())
    if opts.rc > 0 and logits_strong is not None:
        kl = F.kl_div(F.log_softmax(logits_strong, 1), pred.detach(), reduction="none").sum(1)
        loss = loss + opts.rc * mean(kl, weights)
    return loss, ce


@register_learner("sop+")
class SOPLearner(Learner):
    """SOP+ on weak (+ strong when ``rc > 0``) views; u and v are per-sample tensors outside the network."""

    name = "sop"
    Options = SOPOptions

    def init_state(self) -> None:
        gen = torch.Generator().manual_seed(self.config.seed)
        std = self.options.init_std
        self.u = (torch.randn(self.num_samples, 1, generator=gen) * std).to(self.device)
        self.v = (torch.randn(self.num_samples, self.num_classes, generator=gen) * std).to(self.device)

    def sample_state(self) -> dict[str, torch.Tensor]:
        return {"u": self.u, "v": self.v}

    def sample_stats(self) -> dict[str, torch.Tensor]:
        """``u``: clamp(u_i^2, 0, 1), the mass added to the given label's probability; ``v``: the sum over
        classes of clamp(v_ik^2, 0, 1) (the given class's entry is masked out of the loss, gets no gradient and
        stays at its ~1e-16 start)."""
        return {"u": (self.u[:, 0] ** 2).clamp(0, 1), "v": (self.v**2).clamp(0, 1).sum(1)}

    def train_epoch(self, ctx: EpochContext) -> None:
        model, opt, o = self.model, self.optimizers[0], self.options
        batches = ctx.batches()
        ctx.set_steps(len(batches))
        k = self.num_classes
        scale = 1.0 / ctx.world.size  # the u, v share of the mean over ranks' losses
        for idx in batches:
            y = ctx.data.labels[idx]
            onehot = one_hot(y, k)
            xw = ctx.view("weak", idx)
            strong = o.rc > 0
            x = torch.cat([xw, ctx.view("strong", idx)]) if strong else xw
            logits = ctx.forward(model, x)
            lw, ls = (logits[: len(idx)], logits[len(idx) :]) if strong else (logits, None)
            u_b = self.u[idx].requires_grad_(True)
            v_b = self.v[idx].requires_grad_(True)
            loss, ce = sop_loss(lw, ls, onehot, u_b, v_b, o, ctx.weights_of(idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                gu, gv = (u_b.grad, v_b.grad) if scale == 1.0 else (u_b.grad * scale, v_b.grad * scale)
                self.u[idx] = u_b - o.lr_u * gu
                self.v[idx] = v_b - o.lr_v * gv
            ctx.batch_end(idx, lw, ce, y)
            ctx.step_end(loss)
