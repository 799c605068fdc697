"""The interface every learner follows, and the plain cross-entropy epoch they share.

A learner owns its network(s), one SGD optimiser (momentum 0.9, Nesterov, weight decay) and one cosine
schedule (``T_max = TrainConfig.epochs``, ``eta_min = min_lr``) per network, and its per-sample state:
tensors of N rows indexed by global sample index, kept outside the networks (so a DDP wrapper never sees
them). Two drivers run it through :func:`robustprune.train.engine.run_epochs`:

- :meth:`Learner.warmup`: the learner's own warm-up loss on (typically) the full noisy set, before selection;
- :meth:`Learner.fit`: training on the selected subset (a *fresh* learner per stage).

Subclasses set ``name`` and ``Options`` (a dataclass of hyperparameters), and implement
:meth:`Learner.train_epoch` (and :meth:`Learner.warmup_epoch` where the warm-up loss differs).

Under ``torchrun`` every network gets a ``DistributedDataParallel`` wrapper (:meth:`Learner.train_module`,
used by ``EpochContext.forward`` for the training forward passes); ``self.models`` stay the plain networks,
so checkpoints, prediction and per-sample state do not depend on the world size. Per-sample state is updated
on each rank's own rows and gathered at every epoch end by :meth:`Learner.sync_state`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

import robustprune.distributed as dist
from robustprune._device import resolve_device
from robustprune.seeding import derive_seed
from robustprune.train.batches import TrainData
from robustprune.train.engine import (
    Callback,
    EpochContext,
    ProgressInfo,
    TrainConfig,
    TrainResult,
    run_epochs,
)
from robustprune.train.inference import eval_outputs, predict

__all__ = ["Learner", "NoOptions", "one_hot"]


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float one-hot rows; unlike ``F.one_hot`` it never validates values on the host (no CUDA sync)."""
    out = torch.zeros(labels.shape[0], num_classes, device=labels.device)
    return out.scatter_(1, labels.view(-1, 1), 1.0)


@dataclass(frozen=True)
class NoOptions:
    """A learner without hyperparameters of its own."""


class Learner:
    """Base class. ``model_fn()`` builds one fresh network (a ``FeatureClassifier``).

    Parameters
    ----------
    model_fn : callable
        ``model_fn() -> nn.Module`` with ``features``/``head``; called once per network, seeded from
        ``config.seed`` (the caller's global RNG is left untouched).
    num_classes : int
        K.
    num_samples : int
        N, the size of the full training set; per-sample state has N rows.
    config : TrainConfig, optional
    **options
        The learner's hyperparameters (fields of ``Options``).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    num_models: ClassVar[int] = 1
    #: per-sample state computed identically on every rank (not gathered by :meth:`sync_state`)
    shared_state: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> Any:
        """The learner's ``Options`` built from ``options``: the one check of a learner's option names and
        values (a learner, run configs and sweeps all call it). ValueError naming the valid options."""
        known = [f.name for f in fields(cls.Options)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"learner {cls.name!r} has no option {unknown[0]!r}; valid: {', '.join(known) or 'none'}")
        return cls.Options(**options)

    def __init__(
        self,
        model_fn: Callable[[], nn.Module],
        num_classes: int,
        num_samples: int,
        config: TrainConfig | None = None,
        **options: Any,
    ) -> None:
        for key, v in (("num_classes", num_classes), ("num_samples", num_samples)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{key} must be a positive integer, got {v!r}")
        self.config = config if config is not None else TrainConfig()
        if not isinstance(self.config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(self.config).__name__}")
        self.options = self.check_options(options)
        self.num_classes, self.num_samples = num_classes, num_samples
        self.device = dist.rank_device(resolve_device(self.config.device))
        cl = self.device.type == "cuda" and self.config.channels_last is not False
        self.models: list[nn.Module] = []
        for i in range(self.num_models):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(self.config.seed, "model", i))
                model = model_fn()
            model = model.to(self.device)
            self.models.append(model.to(memory_format=torch.channels_last) if cl else model)
        c = self.config
        self.optimizers = [
            torch.optim.SGD(m.parameters(), lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                            weight_decay=c.weight_decay)
            for m in self.models
        ]  # fmt: skip
        self.schedulers = [
            torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=c.epochs, eta_min=c.min_lr) for o in self.optimizers
        ]
        self._ddp: dict[int, nn.Module] = {}
        if dist.world().distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device] if self.device.type == "cuda" else None
            # buffers (BatchNorm statistics) are averaged at epoch ends instead of broadcast at every forward
            params = inspect.signature(DistributedDataParallel).parameters
            no_sync = {"forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers": False}
            for m in self.models:
                self._ddp[id(m)] = DistributedDataParallel(m, device_ids=ids, **no_sync)
        self.init_state()

    # ----------------------------------------------------------------------------- per-sample state
    def init_state(self) -> None:
        """Create the per-sample state tensors (N rows, on ``self.device``); none by default."""

    def sample_state(self) -> dict[str, torch.Tensor]:
        """The per-sample state tensors by name (saved in checkpoints); empty by default."""
        return {}

    def sample_stats(self) -> dict[str, torch.Tensor]:
        """One interpretable number per example (N,) by name, summarised in a run's metrics; none by default."""
        return {}

    def sync_state(self, rows: torch.Tensor) -> None:
        """Under DDP, at the end of every epoch: gather the per-sample state rows each rank updated (``rows``,
        this rank's training examples of the epoch) so that every rank holds the whole state (every tensor of
        :meth:`sample_state` except those named in ``shared_state``), and average the networks' floating-point
        buffers (BatchNorm running statistics, kept per rank during the epoch) so that every rank holds the
        same networks. Never called in a single process."""
        for name, t in self.sample_state().items():
            if name not in self.shared_state:
                dist.sync_rows(t, rows)
        for m in self.models:
            for b in m.buffers():
                if b.is_floating_point():
                    b.copy_(dist.all_reduce(b, "mean"))

    def train_module(self, model: nn.Module) -> nn.Module:
        """The module that training forward passes of ``model`` go through: its DDP wrapper under torchrun
        (gradients averaged over ranks in backward), else ``model`` itself."""
        wrapper = self._ddp.get(id(model))
        if wrapper is None:
            return model
        wrapper.training = model.training
        return wrapper

    @property
    def model(self) -> nn.Module:
        """The first (for most learners the only) network."""
        return self.models[0]

    @property
    def scoring_model(self) -> nn.Module:
        """The network whose probabilities and features become selection signals (net1)."""
        return self.models[0]

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers, schedulers and per-sample state."""
        return {
            "models": [m.state_dict() for m in self.models],
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "samples": {k: v.detach().clone() for k, v in self.sample_state().items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for m, s in zip(self.models, state["models"], strict=True):
            m.load_state_dict(s)
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"], strict=True):
            sch.load_state_dict(s)
        mine = self.sample_state()
        if set(mine) != set(state["samples"]):
            raise ValueError(f"checkpoint per-sample state {sorted(state['samples'])} != {sorted(mine)}")
        for k, v in mine.items():
            v.copy_(state["samples"][k])

    # ----------------------------------------------------------------------------------- drivers
    def warmup(
        self,
        data: TrainData,
        indices: Any = None,
        *,
        epochs: int,
        callbacks: Sequence[Callback] = (),
        progress: Callable[[ProgressInfo], None] | None = None,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = True,
    ) -> TrainResult:
        """The learner's own warm-up for ``epochs`` epochs (first steps of the long cosine schedule)."""
        return run_epochs(self, data, indices, stage="warmup", epochs=epochs, callbacks=callbacks,
                          progress=progress, checkpoint=checkpoint, resume=resume)  # fmt: skip

    def fit(
        self,
        data: TrainData,
        indices: Any = None,
        *,
        epochs: int | None = None,
        callbacks: Sequence[Callback] = (),
        progress: Callable[[ProgressInfo], None] | None = None,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = True,
        weights: Any = None,
    ) -> TrainResult:
        """Train on ``indices`` (global indices; default all) for ``epochs`` (default ``config.epochs``),
        with optional per-example loss ``weights`` aligned with ``indices``."""
        epochs = self.config.epochs if epochs is None else epochs
        return run_epochs(self, data, indices, stage="train", epochs=epochs, callbacks=callbacks,
                          progress=progress, checkpoint=checkpoint, resume=resume, weights=weights)  # fmt: skip

    def run_epoch(self, ctx: EpochContext) -> None:
        """Dispatch one epoch to :meth:`warmup_epoch` or :meth:`train_epoch`."""
        for m in self.models:
            m.train()
        if ctx.stage == "warmup":
            self.warmup_epoch(ctx)
        else:
            self.train_epoch(ctx)

    def warmup_epoch(self, ctx: EpochContext) -> None:
        """One warm-up epoch; the training loss unless a learner overrides it."""
        self.train_epoch(ctx)

    def train_epoch(self, ctx: EpochContext) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------------------- prediction
    def predict(
        self, x: torch.Tensor, *, transform: Callable | None = None, batch_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Test-time probabilities (N, K) and features (N, D) of ``x``, float32 on the CPU."""
        return predict(self.models[0], x, batch_size or self.config.eval_batch_size, transform=transform,
                       amp=self.config.amp)  # fmt: skip

    def eval_logits(self, model: nn.Module, ctx: EpochContext, indices: torch.Tensor) -> torch.Tensor:
        """Logits (n, K) of the clean view of ``indices`` in eval mode, on the device (no host sync)."""
        x = ctx.data.x[indices]
        out, _ = eval_outputs(model, x, self.config.eval_batch_size, ctx.data.clean, self.config.amp,
                               features=False, to_cpu=False)  # fmt: skip
        return out

    # ------------------------------------------------------------------------------- shared steps
    def ce_epoch(self, ctx: EpochContext, model_index: int = 0, *, record: bool = True) -> None:
        """Plain cross-entropy on the weak view, one pass over the subset (the standard model)."""
        model, opt = self.models[model_index], self.optimizers[model_index]
        batches = ctx.batches(stream=f"ce{model_index}")
        if not ctx.steps:
            ctx.set_steps(len(batches))
        for idx in batches:
            y = ctx.data.labels[idx]
            logits = ctx.forward(model, ctx.view("weak", idx))
            loss_ps = F.cross_entropy(logits, y, reduction="none")
            loss = ctx.mean(loss_ps, ctx.weights_of(idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if record:
                ctx.batch_end(idx, logits, loss_ps, y)
            ctx.step_end(loss)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(options={self.options}, num_samples={self.num_samples})"
