"""DivideMix (Li et al., ICLR 2020), as released with Prune4ReL (spec 4.2), plus the warm-up it forgot.

Two networks. Warm-up (the pre-selection stage, and the first ``warmup_epochs`` of :meth:`fit`): plain
cross-entropy on the weak view, net1 then net2. After that, every epoch:

1. per-sample CE of the subset under the clean view, each network in eval mode;
2. min-max normalised losses -> 2-component GMM (max_iter 10, tol 1e-2, reg_covar 5e-4, seeded); the clean
   probability is the posterior of the low-mean component; labeled = prob > ``p_threshold``;
3. co-divide: net1 trains on net2's split and vice versa;
4. MixMatch: label co-refinement ``w y + (1 - w) mean(2 weak predictions)`` sharpened by ``T``; co-guessing
   of unlabeled examples from 4 predictions of both nets, sharpened; mixup with lambda ~ Beta(alpha, alpha),
   lambda = max(lambda, 1 - lambda);
5. loss = soft-CE (labeled) + lambda_u * ramp * MSE (unlabeled) + uniform-prior penalty. ``rampup=0`` keeps
   lambda_u constant (the Prune4ReL release); ``rampup=16`` is the original DivideMix linear ramp.

Degenerate splits are handled: fewer than 4 examples or (near-)constant losses count everyone as clean; a
GMM that fails or leaves fewer than ``min_labeled`` labeled examples falls back to the examples with the
highest clean probability; an empty unlabeled set drops the unsupervised term. Test prediction:
``argmax(logits1 + logits2)``; ``scoring_model`` is net1 (spec 3).

Under DDP the per-sample losses of step 1 are computed in blocks on every rank and gathered in example order;
rank 0 fits the GMM and hands the clean probabilities to every rank, so every rank makes the same split. The
labeled batches and the unlabeled stream are then cut into global batches of which each rank takes its share,
and at least one labeled example per rank is kept (``min_labeled`` is raised to the world size if lower).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import robustprune.distributed as dist
from robustprune.train.engine import EpochContext
from robustprune.train.inference import eval_outputs
from robustprune.train.learners.base import Learner, one_hot
from robustprune.train.learners.registry import register_learner

__all__ = ["DivideMixLearner", "DivideMixOptions", "gmm_clean_prob", "co_divide"]


@dataclass(frozen=True)
class DivideMixOptions:
    """Spec 4.2 / 6 defaults (CIFAR-10). ``warmup_epochs`` None = min(10, max(1, epochs // 10)) of ``fit``."""

    warmup_epochs: int | None = None
    p_threshold: float = 0.5
    T: float = 0.5
    alpha: float = 4.0
    lambda_u: float = 1.0
    rampup: int = 0
    gmm_max_iter: int = 10
    gmm_tol: float = 1e-2
    gmm_reg_covar: float = 5e-4
    min_labeled: int = 2

    def __post_init__(self) -> None:
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be non-negative or None, got {self.warmup_epochs!r}")
        if not 0.0 <= self.p_threshold < 1.0:
            raise ValueError(f"p_threshold must be in [0, 1), got {self.p_threshold!r}")
        if self.T <= 0 or self.alpha <= 0:
            raise ValueError(f"T and alpha must be positive, got T={self.T!r}, alpha={self.alpha!r}")
        if self.lambda_u < 0 or self.rampup < 0 or self.min_labeled < 1:
            raise ValueError("lambda_u and rampup must be non-negative and min_labeled at least 1")


def gmm_clean_prob(
    losses: np.ndarray, *, seed: int, max_iter: int = 10, tol: float = 1e-2, reg_covar: float = 5e-4
) -> np.ndarray:
    """Clean probability per example: posterior of the low-mean component of a 2-GMM on min-max losses.

    Returns all ones when there are fewer than 4 examples, the losses are (near-)constant or not finite, or
    the GMM cannot be fitted.
    """
    from sklearn.mixture import GaussianMixture

    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    n = x.shape[0]
    if n < 4 or not np.isfinite(x).all() or np.ptp(x) < 1e-8:
        return np.ones(n)
    x = ((x - x.min()) / np.ptp(x)).reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, max_iter=max_iter, tol=tol, reg_covar=reg_covar,
                          random_state=seed % (2**32))  # fmt: skip
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gmm.fit(x)
            prob = gmm.predict_proba(x)[:, int(gmm.means_.argmin())]
    except (ValueError, np.linalg.LinAlgError):
        return np.ones(n)
    return np.nan_to_num(prob, nan=1.0)


def co_divide(prob: np.ndarray, p_threshold: float, min_labeled: int) -> np.ndarray:
    """Boolean labeled mask ``prob > p_threshold``, topped up to ``min(min_labeled, n)`` by highest prob."""
    mask = prob > p_threshold
    need = min(min_labeled, prob.shape[0])
    if mask.sum() < need:
        mask = np.zeros_like(mask)
        mask[np.argsort(-prob, kind="stable")[:need]] = True
    return mask


def _sharpen(p: torch.Tensor, T: float) -> torch.Tensor:
    pt = p ** (1.0 / T)
    return pt / pt.sum(1, keepdim=True)


@register_learner("divide_mix")
class DivideMixLearner(Learner):
    """Two networks with co-divide and MixMatch; per-sample clean probabilities are kept per network."""

    name = "dividemix"
    Options = DivideMixOptions
    num_models = 2
    shared_state = ("clean_prob",)  # from rank 0's GMM, the same on every rank

    def init_state(self) -> None:
        # last clean probability of each sample under each network's split (NaN until the first split)
        self.clean_prob = torch.full((2, self.num_samples), float("nan"), device=self.device)

    def sample_state(self) -> dict[str, torch.Tensor]:
        return {"clean_prob": self.clean_prob}

    def sample_stats(self) -> dict[str, torch.Tensor]:
        """``clean_prob``: the last GMM posterior of having a clean label, averaged over the two networks."""
        return {"clean_prob": self.clean_prob.nanmean(0)}

    def warmup_epochs_for(self, epochs: int) -> int:
        w = self.options.warmup_epochs
        return min(10, max(1, epochs // 10)) if w is None else w

    def warmup_epoch(self, ctx: EpochContext) -> None:
        n_batches = len(ctx.batches(stream="ce0"))
        ctx.set_steps(2 * n_batches)
        self.ce_epoch(ctx, 0, record=True)
        self.ce_epoch(ctx, 1, record=False)

    def train_epoch(self, ctx: EpochContext) -> None:
        if ctx.epoch < self.warmup_epochs_for(ctx.run.epochs):
            self.warmup_epoch(ctx)
            return
        idx = ctx.indices
        probs = []
        for j, model in enumerate(self.models):
            logits = self.eval_logits(model, ctx, idx)
            loss = F.cross_entropy(logits, ctx.data.labels[idx], reduction="none")
            o = self.options
            prob = dist.on_main(gmm_clean_prob, loss.cpu().numpy(), seed=ctx.seed("gmm", j), max_iter=o.gmm_max_iter,
                                tol=o.gmm_tol, reg_covar=o.gmm_reg_covar)  # fmt: skip
            probs.append(prob)
            self.clean_prob[j, idx] = torch.as_tensor(prob, dtype=torch.float32).to(self.device)
        splits = []
        min_labeled = max(self.options.min_labeled, ctx.world.size)
        for j in (1, 0):  # net1 trains on net2's split, net2 on net1's
            mask = co_divide(probs[j], self.options.p_threshold, min_labeled)
            m = torch.as_tensor(mask).to(self.device)
            splits.append((idx[m], idx[~m], j))
        plans = [(ctx.batches(lab, stream=f"lab{i}"), unl, j) for i, (lab, unl, j) in enumerate(splits)]
        ctx.set_steps(sum(len(b) for b, _, _ in plans))
        labeled = int(splits[0][0].numel()) + int(splits[1][0].numel())
        ctx.extra["labeled_fraction"] = labeled / (2 * idx.numel())
        for i, (lab_batches, unl, j) in enumerate(plans):
            self._mixmatch(ctx, i, 1 - i, lab_batches, unl, self.clean_prob[j])

    def _unlabeled_stream(self, ctx: EpochContext, unl: torch.Tensor, sizes: list[int], i: int):
        """Cycled seeded permutations of ``unl`` cut into batches of ``sizes`` (global indices); under DDP
        ``sizes`` are per rank, the stream is cut into global batches and each rank takes its share."""
        w = ctx.world
        if w.distributed:
            sizes = [s * w.size for s in sizes]
        total, n = sum(sizes), unl.numel()
        if n == 0:
            return [None] * len(sizes)
        reps = math.ceil(total / n)
        gen = torch.Generator().manual_seed(ctx.seed("unlabeled", i))
        order = torch.rand(reps, n, generator=gen).argsort(1).reshape(-1)[:total].to(self.device)
        stream = unl[order]
        cuts = np.cumsum([0, *sizes])
        out = [stream[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        return [b[w.rank :: w.size] for b in out] if w.distributed else out

    def _mixmatch(self, ctx: EpochContext, i: int, other: int, lab_batches, unl, w_all: torch.Tensor) -> None:
        net, net2, opt, o = self.models[i], self.models[other], self.optimizers[i], self.options
        net.train()
        net2.eval()
        k = self.num_classes
        unl_batches = self._unlabeled_stream(ctx, unl, [ctx.config.batch_size] * len(lab_batches), i)
        n_steps = max(len(lab_batches), 1)
        warm = self.warmup_epochs_for(ctx.run.epochs)
        for step, (idx_x, idx_u) in enumerate(zip(lab_batches, unl_batches, strict=True)):
            b = idx_x.numel()
            y = ctx.data.labels[idx_x]
            y1 = one_hot(y, k)
            w = w_all[idx_x].nan_to_num(1.0).view(-1, 1)
            x1, x2 = ctx.view("weak", idx_x), ctx.view("weak", idx_x)
            with torch.no_grad():
                ox1, ox2 = ctx.forward(net, x1), ctx.forward(net, x2)
                px = (torch.softmax(ox1, 1) + torch.softmax(ox2, 1)) / 2
                targets_x = _sharpen(w * y1 + (1 - w) * px, o.T)
                if idx_u is not None:
                    u1, u2 = ctx.view("weak", idx_u), ctx.view("weak", idx_u)
                    pu = sum(torch.softmax(ctx.forward(m, u), 1) for m in (net, net2) for u in (u1, u2)) / 4
                    targets_u = _sharpen(pu, o.T)
            if i == 0:
                ctx.batch_end(idx_x, ox1, None, y)
            lam = float(ctx.rng.beta(o.alpha, o.alpha))
            lam = max(lam, 1.0 - lam)
            parts_x, parts_t = [x1, x2], [targets_x, targets_x]
            if idx_u is not None:
                parts_x += [u1, u2]
                parts_t += [targets_u, targets_u]
            all_x, all_t = torch.cat(parts_x), torch.cat(parts_t)
            perm = torch.randperm(all_x.shape[0], generator=ctx.generator, device=ctx.generator.device)
            perm = perm.to(all_x.device)
            mixed_x = lam * all_x + (1 - lam) * all_x[perm]
            mixed_t = lam * all_t + (1 - lam) * all_t[perm]
            logits = ctx.forward(net, mixed_x)
            wx = ctx.weights_of(idx_x)
            rw = None  # per-row loss weights of the mixed rows (the mix of the two source rows' weights)
            if wx is not None:
                rows = [wx, wx] + ([ctx.weights_of(idx_u)] * 2 if idx_u is not None else [])
                src = torch.cat(rows)
                rw = lam * src + (1 - lam) * src[perm]
            ce_x = -(F.log_softmax(logits[: 2 * b], 1) * mixed_t[: 2 * b]).sum(1)
            lx = ctx.mean(ce_x, None if rw is None else rw[: 2 * b])
            loss = lx
            if idx_u is not None:
                sq = ((torch.softmax(logits[2 * b :], 1) - mixed_t[2 * b :]) ** 2).mean(1)
                lu = ctx.mean(sq, None if rw is None else rw[2 * b :])
                ramp = 1.0
                if o.rampup > 0:
                    ramp = min(max((ctx.epoch + step / n_steps - warm) / o.rampup, 0.0), 1.0)
                loss = loss + o.lambda_u * ramp * lu
            prior = torch.full((k,), 1.0 / k, device=logits.device)
            pred_mean = torch.softmax(logits, 1).mean(0)
            loss = loss + (prior * torch.log(prior / pred_mean)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ctx.step_end(loss)
        net2.train()

    def predict(
        self, x: torch.Tensor, *, transform: Any = None, batch_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax of ``logits1 + logits2`` (argmax = the DivideMix test prediction) and net1's features."""
        bs = batch_size or self.config.eval_batch_size
        l1, h1 = eval_outputs(self.models[0], x, bs, transform, self.config.amp, features=True, to_cpu=True)
        l2, _ = eval_outputs(self.models[1], x, bs, transform, self.config.amp, features=False, to_cpu=True)
        return torch.softmax(l1 + l2, 1), h1
