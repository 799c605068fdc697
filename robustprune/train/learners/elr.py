"""ELR: early-learning regularisation (Liu et al., NeurIPS 2020).

Per sample a temporal-ensemble target ``t_i <- beta * t_i + (1 - beta) * p_i`` (``p_i`` the clamped,
renormalised, detached softmax of the current batch) is kept outside the network, in an (N, K) tensor
indexed by global sample index and initialised to zeros. The loss is

    CE(y_i, f(x_i)) + lam * mean_i log(1 - <p_i, t_i>),

which pulls predictions towards the targets the network formed while it still fitted mostly clean labels.
Defaults are the CIFAR-10 values (beta 0.7, lam 3); CIFAR-100 uses beta 0.9, lam 7.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustprune.train.engine import EpochContext
from robustprune.train.learners.base import Learner
from robustprune.train.learners.registry import register_learner

__all__ = ["ELRLearner", "ELROptions", "elr_loss"]


@dataclass(frozen=True)
class ELROptions:
    """``beta``: target momentum in [0, 1); ``lam``: weight of the regulariser; ``eps``: probability clamp."""

    beta: float = 0.7
    lam: float = 3.0
    eps: float = 1e-4

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {self.beta!r}")
        if self.lam < 0:
            raise ValueError(f"lam must be non-negative, got {self.lam!r}")


def elr_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor,
    idx: torch.Tensor,
    opts: ELROptions,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Update ``targets[idx]`` in place and return (loss, per-sample cross-entropy); ``weights`` (B,) makes
    both batch means weighted."""
    mean = EpochContext.mean
    p = torch.softmax(logits, 1).clamp(opts.eps, 1.0 - opts.eps)
    pd = p.detach()
    t = opts.beta * targets[idx] + (1.0 - opts.beta) * (pd / pd.sum(1, keepdim=True))
    targets[idx] = t
    ce = F.cross_entropy(logits, labels, reduction="none")
    reg = mean(torch.log(1.0 - (t * p).sum(1)), weights)
    return mean(ce, weights) + opts.lam * reg, ce


@register_learner()
class ELRLearner(Learner):
    """Cross-entropy plus the ELR regulariser on the weak view; warm-up uses the same loss."""

    name = "elr"
    Options = ELROptions

    def init_state(self) -> None:
        self.targets = torch.zeros(self.num_samples, self.num_classes, device=self.device)

    def sample_state(self) -> dict[str, torch.Tensor]:
        return {"targets": self.targets}

    def train_epoch(self, ctx: EpochContext) -> None:
        model, opt = self.model, self.optimizers[0]
        batches = ctx.batches()
        ctx.set_steps(len(batches))
        for idx in batches:
            y = ctx.data.labels[idx]
            logits = ctx.forward(model, ctx.view("weak", idx))
            loss, ce = elr_loss(logits, y, self.targets, idx, self.options, ctx.weights_of(idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ctx.batch_end(idx, logits, ce, y)
            ctx.step_end(loss)
