"""A small training loop extended by callbacks.

The whole training split lives as one tensor on the device (:class:`~robustprune.train.batches.TrainData`);
a batch is a tensor of *global* sample indices drawn from a seeded permutation of the subset being trained on
(:func:`~robustprune.train.batches.index_batches`). A learner (``robustprune.train.learners``) supplies one
epoch of work through an :class:`EpochContext`; :func:`run_epochs` owns everything around it: per-epoch
seeds, the cosine schedule step, divergence detection, callbacks, progress events and atomic checkpoints
with resume.

Randomness comes only from ``TrainConfig.seed``: every epoch derives its own generators (batch order,
augmentation, host draws, the global torch RNG inside a fork) from ``(seed, stage, epoch)``, so resuming from
a checkpoint reproduces an uninterrupted run bit for bit on the same device, and nothing leaks into the
caller's global RNG state.

On CUDA the forward pass runs under bf16 autocast and image batches are channels_last (both switchable in
:class:`TrainConfig`); the step loop never synchronises with the host except every ``check_every`` steps for
the divergence check.

Under ``torchrun`` (:mod:`robustprune.distributed`) the same loop runs on every rank: each epoch's
permutation is the same on every rank and cut into global batches of ``batch_size * world_size``, of which
each rank trains on its share (``index_batches``: no padding, no example twice), with the networks wrapped
in ``DistributedDataParallel`` (gradients averaged, so one step equals one step on the whole global batch).
Per-example state outside the networks is updated on each rank's own rows and gathered at the end of every
epoch (:meth:`Learner.sync_state <robustprune.train.learners.base.Learner.sync_state>`); the epoch loss is
averaged over ranks and a divergence anywhere stops every rank. Rank 0 alone writes checkpoints (atomically,
after each epoch); on resume it reads the checkpoint and hands it to the others, so a run resumes with any
world size. A rank that dies mid-epoch makes the others stop with
:class:`~robustprune.distributed.PeerFailure` (from the gradient all-reduce too); the last checkpoint is the
one of the last finished epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import robustprune.distributed as dist
from robustprune._io import atomic_write_bytes
from robustprune.seeding import derive_seed
from robustprune.train.batches import TrainData, index_batches

__all__ = [
    "TrainConfig", "Callback", "RunInfo", "ProgressInfo", "EpochContext", "TrainResult", "DivergenceError",
    "run_epochs", "save_checkpoint", "load_checkpoint",
]  # fmt: skip

_CKPT_FORMAT = "robustprune-checkpoint"
_CKPT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and runtime options shared by every learner (spec ``prune4rel.md`` 3 and 6).

    ``epochs`` is the length of the cosine schedule (``T_max``) and the default length of ``fit``; a warm-up
    of ``se`` epochs walks only the first ``se`` steps of it. ``device=None`` picks CUDA when available;
    ``amp`` / ``channels_last`` ``None`` mean "on when the device is CUDA"; ``check_every`` ``None`` means
    every step on CPU and every 50 steps on CUDA. ``batch_size`` is per process: under torchrun one step
    trains on ``batch_size * world_size`` examples.
    """

    epochs: int = 300
    batch_size: int = 128
    lr: float = 0.02
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    min_lr: float = 1e-4
    seed: int = 0
    device: str | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    eval_batch_size: int = 1024
    check_every: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("lr", "momentum", "weight_decay", "min_lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite non-negative number, got {v!r}")
        if self.nesterov and self.momentum <= 0:
            raise ValueError("nesterov needs momentum > 0; set nesterov=False or a positive momentum")
        if self.check_every is not None and (not isinstance(self.check_every, int) or self.check_every < 1):
            raise ValueError(f"check_every must be a positive integer or None, got {self.check_every!r}")

    def fingerprint(self) -> dict[str, Any]:
        """The fields that change the result (runtime-only switches excluded); stored in checkpoints."""
        skip = {"device", "eval_batch_size", "check_every"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


class DivergenceError(RuntimeError):
    """Raised when a training loss becomes NaN or infinite."""


class Callback:
    """Hooks called by :func:`run_epochs`; override any subset. Tensors stay on the device.

    A callback with ``state_dict`` / ``load_state_dict`` is saved in checkpoints and restored on resume.
    ``on_epoch_end`` may add entries to ``logs`` (they land in the run history).
    """

    def on_train_start(self, run: RunInfo) -> None:
        pass

    def on_epoch_start(self, epoch: int) -> None:
        pass

    def on_batch_end(
        self,
        batch_indices: torch.Tensor,
        logits: torch.Tensor,
        loss_per_sample: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        pass

    def on_train_end(self, run: RunInfo) -> None:
        pass


@dataclass
class RunInfo:
    """What a run is: handed to ``Callback.on_train_start`` / ``on_train_end``."""

    learner: Any
    data: TrainData
    indices: torch.Tensor  # (n,) int64 global indices on the device, sorted
    stage: str
    epochs: int
    start_epoch: int = 0
    weights: torch.Tensor | None = None  # (num_samples,) float32 per-example loss weights, or None


@dataclass(frozen=True)
class ProgressInfo:
    """A progress event: after each step (``logs`` None) and at each epoch end (``logs`` set)."""

    stage: str
    epoch: int  # 0-based
    epochs: int
    step: int  # steps done in this epoch
    steps: int  # planned steps in this epoch (0 until the learner announces them)
    logs: dict[str, Any] | None = None


@dataclass
class TrainResult:
    """History of a finished :func:`run_epochs` (one dict per epoch: loss, lr, seconds, callback entries)."""

    stage: str
    epochs: int
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None


class EpochContext:
    """Everything a learner needs for one epoch: batches, views, forward, per-step bookkeeping."""

    def __init__(self, run: RunInfo, epoch: int, config: TrainConfig, callbacks, progress) -> None:
        self.run, self.epoch, self.config = run, epoch, config
        self.stage, self.data, self.indices = run.stage, run.data, run.indices
        self.device = run.data.x.device
        self._callbacks, self._progress = callbacks, progress
        self.world = dist.world()
        seed = config.seed
        # augmentation draws differ per rank (rank 0 keeps the single-process stream); host draws such as a
        # mixup coefficient are the same on every rank, as they would be for one process
        aug = derive_seed(seed, self.stage, "aug", epoch, *rank_key(self.world.rank))
        self.generator = torch.Generator(device=self.device).manual_seed(aug)
        self.rng = np.random.default_rng(derive_seed(seed, self.stage, "host", epoch))
        self._rows: list[torch.Tensor] = []
        cuda = self.device.type == "cuda"
        self.amp = cuda if config.amp is None else bool(config.amp) and cuda
        self.channels_last = cuda if config.channels_last is None else bool(config.channels_last) and cuda
        self.check_every = config.check_every or (50 if cuda else 1)
        self.step, self.steps = 0, 0
        self._loss_sum = torch.zeros((), device=self.device)
        self._bad = torch.full((), -1, dtype=torch.int64, device=self.device)
        self.extra: dict[str, Any] = {}

    def seed(self, *keys: int | str) -> int:
        """A seed for this epoch's extra randomness (e.g. a GMM), distinct per ``keys``."""
        return derive_seed(self.config.seed, self.stage, self.epoch, *keys)

    def batches(self, indices: torch.Tensor | None = None, batch_size: int | None = None, *, stream: str = "batches"):
        """This rank's index batches (global indices on the device) over ``indices`` (default: the run's
        subset): a seeded permutation cut into global batches of ``batch_size * world_size``, of which this
        rank takes its share. The rows are remembered for :meth:`local_rows`."""
        idx = self.indices if indices is None else indices
        bs, seed = batch_size or self.config.batch_size, self.config.seed
        stream = f"{self.stage}/{stream}"
        w = self.world
        out = index_batches(idx, bs, seed=seed, epoch=self.epoch, stream=stream, rank=w.rank, world_size=w.size,
                            device=self.device)  # fmt: skip
        if w.distributed and out:
            self._rows.append(torch.cat(out))
        return out

    def local_rows(self) -> torch.Tensor:
        """The global indices this rank trained on in this epoch (sorted, unique; empty alone: nothing to
        gather in a single process)."""
        if not self._rows:
            return torch.zeros(0, dtype=torch.int64, device=self.device)
        return torch.cat(self._rows).unique()

    def view(self, kind: str, idx: torch.Tensor) -> torch.Tensor:
        """View ``kind`` ("weak", "strong" or "clean") of the examples ``idx``, normalised, for the model."""
        x = getattr(self.data, kind)(self.data.x[idx], self.generator)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def weights_of(self, idx: torch.Tensor) -> torch.Tensor | None:
        """Per-example loss weights of ``idx`` (None when the run is unweighted)."""
        return None if self.run.weights is None else self.run.weights[idx]

    @staticmethod
    def mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """``values.mean()``, or the weighted mean ``Σ w·v / Σ w`` over the batch when ``weights`` is given
        (so that an example of weight 2 counts as much as two copies of it).

        Under DDP the weighted mean's denominator is the global batch's ``Σ w`` divided by the world size (one
        all-reduce), so that the averaged gradients equal the weighted mean over the whole global batch.
        """
        if weights is None:
            return values.mean()
        w = weights.to(values.dtype)
        total = w.sum()
        world = dist.world()
        if world.distributed:
            total = dist.all_reduce(total) / world.size
        return (values * w).sum() / total.clamp_min(torch.finfo(values.dtype).tiny)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Logits in float32 (the forward runs under bf16 autocast on CUDA). With gradients enabled under DDP
        the forward goes through the model's ``DistributedDataParallel`` wrapper (the learner's
        ``train_module``), so that its backward averages the gradients over ranks."""
        if self.world.distributed and torch.is_grad_enabled():
            wrap = getattr(self.run.learner, "train_module", None)
            if wrap is not None:
                model = wrap(model)
        with self.autocast():
            out = model(x)
        return out.float()

    def set_steps(self, steps: int) -> None:
        """Announce how many optimisation steps this epoch will take (for progress bars)."""
        self.steps = int(steps)

    def batch_end(self, idx, logits, loss_per_sample, labels) -> None:
        """Forward per-sample results of a training batch to the callbacks (detached)."""
        lg = logits.detach()
        ls = None if loss_per_sample is None else loss_per_sample.detach()
        for cb in self._callbacks:
            cb.on_batch_end(idx, lg, ls, labels)

    def step_end(self, loss: torch.Tensor) -> None:
        """Book one optimisation step: loss sum, divergence flag, progress event."""
        loss = loss.detach().float()
        self._loss_sum += loss
        self._bad = torch.where((self._bad < 0) & ~torch.isfinite(loss), self.step, self._bad)
        self.step += 1
        if self.step % self.check_every == 0:
            self.check_divergence()
        if self._progress is not None:
            self._progress(ProgressInfo(self.stage, self.epoch, self.run.epochs, self.step, self.steps))

    def check_divergence(self) -> None:
        flag = self._bad
        if self.world.distributed:  # the first bad step on any rank stops every rank at the same point
            big = torch.iinfo(torch.int64).max
            first = dist.all_reduce(torch.where(flag < 0, big, flag), "min")
            flag = torch.where(first == big, -1, first)
        bad = int(flag)
        if bad >= 0:
            name = getattr(self.run.learner, "name", type(self.run.learner).__name__)
            raise DivergenceError(
                f"training diverged: non-finite loss at epoch {self.epoch + 1}, step {bad + 1} "
                f"({self.stage} of learner {name!r}); lower the learning rate or check the inputs for NaN/inf"
            )

    def finish(self) -> dict[str, Any]:
        self.check_divergence()
        total = dist.all_reduce(self._loss_sum, "mean") if self.world.distributed else self._loss_sum
        loss = float(total) / max(self.step, 1)
        return {"loss": loss, "steps": self.step, **self.extra}


def rank_key(rank: int) -> tuple[str | int, ...]:
    """Extra seed keys of a rank's own random stream: none for rank 0 (the single-process stream)."""
    return () if rank == 0 else ("rank", rank)


def _sha1(t: torch.Tensor) -> str:
    return hashlib.sha1(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file in the same folder, then an atomic rename."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: torch.device | str | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain Python values only)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line message
        raise ValueError(f"cannot read checkpoint {path}: {exc}; delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != _CKPT_FORMAT:
        raise ValueError(f"{path} is not a robustprune checkpoint; delete it to start over")
    return state


def _fingerprint(learner, run: RunInfo) -> dict[str, Any]:
    opts = learner.options
    return {
        "learner": learner.name,
        "stage": run.stage,
        "config": learner.config.fingerprint(),
        "options": asdict(opts) if opts is not None and hasattr(opts, "__dataclass_fields__") else {},
        "num_samples": run.data.num_samples,
        "indices_sha1": _sha1(run.indices),
        "labels_sha1": _sha1(run.data.labels),
        "weights_sha1": None if run.weights is None else _sha1(run.weights),
    }


def _weights_tensor(weights: Any, indices: Any, data: TrainData, device: torch.device) -> torch.Tensor | None:
    if weights is None:
        return None
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32)).reshape(-1)
    given = (
        torch.arange(data.num_samples)
        if indices is None
        else torch.as_tensor(np.asarray(indices), dtype=torch.int64).reshape(-1)
    )
    if w.shape[0] != given.shape[0]:
        raise ValueError(f"weights has {w.shape[0]} entries but {given.shape[0]} examples are trained on")
    if not torch.isfinite(w).all() or (w <= 0).any():
        raise ValueError("weights must be positive and finite")
    full = torch.zeros(data.num_samples, dtype=torch.float32)
    full[given] = w
    return full.to(device)


def _read_checkpoint(path: Path, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none; under torchrun rank 0 reads it and hands it to
    every rank (so a run resumes with any number of processes)."""
    if not dist.world().distributed:
        return load_checkpoint(path, map_location=device) if path.exists() else None
    return dist.on_main(lambda: load_checkpoint(path, map_location="cpu") if path.exists() else None)


def _restore(state: dict[str, Any], fingerprint: dict[str, Any], path: Path, learner: Any, callbacks) -> None:
    """Load a checkpoint's learner and callback states, after checking it belongs to this run."""
    diff = sorted(k for k in fingerprint if state.get("fingerprint", {}).get(k) != fingerprint[k])
    if diff:
        raise ValueError(
            f"checkpoint {path} belongs to a different run ({', '.join(diff)} differ); delete it or pass resume=False"
        )
    learner.load_state_dict(state["learner"])
    for cb, cb_state in zip(callbacks, state["callbacks"], strict=False):
        if cb_state is not None and hasattr(cb, "load_state_dict"):
            cb.load_state_dict(cb_state)


def _write_checkpoint(
    path: Path, fingerprint: dict[str, Any], epochs_done: int, learner: Any, callbacks, history: list
) -> None:
    """The state after ``epochs_done`` epochs, written atomically (rank 0 only)."""
    cb_states = [cb.state_dict() if hasattr(cb, "state_dict") else None for cb in callbacks]
    save_checkpoint(path, {
        "format": _CKPT_FORMAT, "version": _CKPT_VERSION, "fingerprint": fingerprint, "epoch": epochs_done,
        "learner": learner.state_dict(), "callbacks": cb_states, "history": history,
        # the complete RNG state: every epoch's generators derive from (seed, stage, epoch)
        "rng": {"seed": learner.config.seed},
    })  # fmt: skip


def run_epochs(
    learner: Any,
    data: TrainData,
    indices: Any = None,
    *,
    stage: str,
    epochs: int,
    callbacks: Sequence[Callback] = (),
    progress: Callable[[ProgressInfo], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    weights: Any = None,
) -> TrainResult:
    """Train ``learner`` for ``epochs`` epochs of ``stage`` on the examples ``indices`` (default: all).

    ``weights`` (optional): one positive loss weight per example of ``indices`` (in the order given), which
    every learner applies as a per-example weight in its batch means (see :meth:`EpochContext.mean`).

    Per epoch: callbacks' ``on_epoch_start``; ``learner.run_epoch(ctx)``; divergence check; one step of every
    scheduler; callbacks' ``on_epoch_end``; checkpoint (if ``checkpoint`` is a path); a progress event.
    With ``resume`` and an existing checkpoint for the same run (learner, options, config, subset and labels
    must match, else ValueError), training continues after its last completed epoch.
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if epochs > learner.config.epochs:
        raise ValueError(
            f"epochs={epochs} exceeds the cosine schedule length TrainConfig.epochs={learner.config.epochs}"
        )
    data = data.to(learner.device)
    if data.num_samples != learner.num_samples or data.num_classes != learner.num_classes:
        raise ValueError(
            f"data has {data.num_samples} examples / {data.num_classes} classes but the learner was built "
            f"for {learner.num_samples} / {learner.num_classes}"
        )
    if indices is None:
        idx = torch.arange(data.num_samples, device=learner.device)
    else:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64).reshape(-1).unique().to(learner.device)
        if idx.numel() and (int(idx[0]) < 0 or int(idx[-1]) >= data.num_samples):
            raise ValueError(f"indices must lie in [0, {data.num_samples})")
    if idx.numel() < 2:
        raise ValueError(f"need at least 2 training examples, got {idx.numel()}")
    run = RunInfo(learner, data, idx, stage, epochs, weights=_weights_tensor(weights, indices, data, learner.device))
    callbacks = list(callbacks)
    for cb in callbacks:
        cb.on_train_start(run)
    result = TrainResult(stage, epochs)
    fp = _fingerprint(learner, run)
    path = Path(checkpoint) if checkpoint is not None else None
    world = dist.world()
    state = _read_checkpoint(path, learner.device) if path is not None and resume else None
    if state is not None:
        _restore(state, fp, path, learner, callbacks)
        result.history = list(state["history"])
        run.start_epoch = result.resumed_from = int(state["epoch"])
    cuda_devices = [learner.device] if learner.device.type == "cuda" else []
    for epoch in range(run.start_epoch, epochs):
        t0 = time.perf_counter()
        for cb in callbacks:
            cb.on_epoch_start(epoch)
        ctx = EpochContext(run, epoch, learner.config, callbacks, progress)
        lr = learner.optimizers[0].param_groups[0]["lr"] if learner.optimizers else None
        # a peer lost in DDP's gradient all-reduce is a PeerFailure naming it, as in the other collectives
        with torch.random.fork_rng(devices=cuda_devices), dist.peer_errors():
            torch.manual_seed(derive_seed(learner.config.seed, stage, "torch", epoch, *rank_key(world.rank)))
            learner.run_epoch(ctx)
        logs = ctx.finish()
        if world.distributed and hasattr(learner, "sync_state"):
            learner.sync_state(ctx.local_rows())
        for sched in learner.schedulers:
            sched.step()
        logs.update(epoch=epoch + 1, lr=lr, seconds=time.perf_counter() - t0)
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        result.history.append(logs)
        if path is not None and world.is_main:
            _write_checkpoint(path, fp, epoch + 1, learner, callbacks, result.history)
        if progress is not None:
            progress(ProgressInfo(stage, epoch, epochs, ctx.step, ctx.steps, logs))
    for cb in callbacks:
        cb.on_train_end(run)
    return result
