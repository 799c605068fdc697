"""Callbacks that record training dynamics per epoch, keyed by global sample index.

:class:`DynamicsRecorder` fills (E, N) tensors on the device from the logits of every training batch (the
augmented view the learner trained on): whether the prediction equals the given label (forgetting events,
Toneva et al. 2019), the cross-entropy on the given label, the AUM margin (given-label logit minus the largest
other logit, Pleiss et al. 2020) and, optionally, the softmax probabilities (E, N, K). Examples not seen in an
epoch (outside the trained subset) stay marked: ``seen`` is False, losses and margins are NaN.

::

    rec = DynamicsRecorder()
    learner.warmup(data, epochs=10, callbacks=[rec])
    signals = Signals(labels=y, probs=p, features=h, **rec.signals_kwargs())

Under DDP each rank records the rows of its own batches and the recorder gathers the epoch's rows from every
rank at the epoch end, so every rank holds the whole (E, N) record.

:class:`EpochPredictions` instead predicts every example (trained or not: the clean view, in eval mode) at the
end of chosen epochs, and :func:`dynamics_from_log_probs` turns those predictions into the same four signals
against any labels, e.g. pseudo-labels of unlabelled examples in active learning.

:class:`EvalAccuracy` evaluates a learner on held-out data at the end of every epoch (a sharded prediction
under DDP: every rank calls it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import robustprune.distributed as dist
from robustprune.train.engine import Callback, RunInfo

__all__ = ["DynamicsRecorder", "EpochPredictions", "dynamics_from_log_probs", "snapshot_epochs", "EvalAccuracy"]


class DynamicsRecorder(Callback):
    """Per-epoch correctness, CE loss, AUM margin (and optionally probabilities) of every sample.

    Parameters
    ----------
    probs : bool
        Also record softmax probabilities, (E, N, K) float16.
    device : torch.device or str, optional
        Where the arrays live; default the training device.

    Attributes (after training)
    ---------------------------
    correct : Tensor (E, N) int8 — 1 / 0, or -1 where the sample was not seen in that epoch.
    losses, margins : Tensor (E, N) float32 — NaN where not seen.
    probs : Tensor (E, N, K) float16 or None.
    """

    def __init__(self, *, probs: bool = False, device: torch.device | str | None = None) -> None:
        self.record_probs = bool(probs)
        self.device = device
        self.correct: torch.Tensor | None = None
        self.losses: torch.Tensor | None = None
        self.margins: torch.Tensor | None = None
        self.probs: torch.Tensor | None = None
        self._epoch = 0
        self._rows: list[torch.Tensor] = []  # this rank's recorded rows of the epoch (under DDP)

    def on_train_start(self, run: RunInfo) -> None:
        e, n, k = run.epochs, run.data.num_samples, run.data.num_classes
        dev = torch.device(self.device) if self.device is not None else run.data.x.device
        self.correct = torch.full((e, n), -1, dtype=torch.int8, device=dev)
        self.losses = torch.full((e, n), float("nan"), dtype=torch.float32, device=dev)
        self.margins = torch.full((e, n), float("nan"), dtype=torch.float32, device=dev)
        self.probs = torch.full((e, n, k), float("nan"), dtype=torch.float16, device=dev) if self.record_probs else None

    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch
        self._rows = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if not dist.world().distributed or self.correct is None:
            return
        dev = self.correct.device
        rows = torch.cat(self._rows).unique() if self._rows else torch.zeros(0, dtype=torch.int64, device=dev)
        for t in (self.correct, self.losses, self.margins, self.probs):
            if t is not None:
                dist.sync_rows(t[epoch], rows)
        self._rows = []

    def on_batch_end(self, batch_indices, logits, loss_per_sample, labels) -> None:
        if self.correct is None:
            raise RuntimeError("DynamicsRecorder was not started; pass it in callbacks= of warmup/fit")
        e, dev = self._epoch, self.correct.device
        lg = logits.float()
        y = labels.view(-1, 1)
        given = lg.gather(1, y).squeeze(1)
        other = lg.scatter(1, y, float("-inf")).amax(1)
        idx = batch_indices.to(dev, non_blocking=True)
        if dist.world().distributed:
            self._rows.append(idx)
        self.correct[e, idx] = (lg.argmax(1) == labels).to(torch.int8).to(dev, non_blocking=True)
        self.losses[e, idx] = F.cross_entropy(lg, labels, reduction="none").to(dev, non_blocking=True)
        self.margins[e, idx] = (given - other).to(dev, non_blocking=True)
        if self.probs is not None:
            self.probs[e, idx] = torch.softmax(lg, 1).half().to(dev, non_blocking=True)

    @property
    def seen(self) -> torch.Tensor:
        """(E, N) bool: the sample was trained on (and recorded) in that epoch."""
        return self.correct >= 0

    def state_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "losses": self.losses, "margins": self.margins, "probs": self.probs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("correct", "losses", "margins"):
            getattr(self, key).copy_(state[key])
        if self.probs is not None and state.get("probs") is not None:
            self.probs.copy_(state["probs"])

    def arrays(self) -> dict[str, np.ndarray]:
        """``correct`` (E, N) bool (False where unseen), ``seen`` (E, N) bool, ``losses`` / ``margins``
        (E, N) float32 (NaN where unseen) and, when recorded, ``probs`` (E, N, K) float16, as numpy."""
        if self.correct is None:
            raise RuntimeError("DynamicsRecorder holds nothing yet; train with it first")
        out = {
            "correct": (self.correct > 0).cpu().numpy(),
            "seen": self.seen.cpu().numpy(),
            "losses": self.losses.cpu().numpy(),
            "margins": self.margins.cpu().numpy(),
        }
        if self.probs is not None:
            out["probs"] = self.probs.cpu().numpy()
        return out

    def signals_kwargs(self, indices: Any = None) -> dict[str, np.ndarray]:
        """Arrays ``correct``, ``losses``, ``margins`` (and ``epoch_probs`` when probabilities were recorded)
        for ``Signals`` (columns ``indices``, default all).

        Raises ValueError when a requested sample was not seen in every epoch (Signals needs finite values).
        """
        a = self.arrays()
        cols = slice(None) if indices is None else np.asarray(indices, dtype=np.int64)
        if not a["seen"][:, cols].all():
            missing = int((~a["seen"][:, cols]).any(0).sum())
            raise ValueError(
                f"{missing} requested samples were not trained on in every recorded epoch; pass the trained "
                "indices (indices=...) or record on the full set"
            )
        out = {k: a[k][:, cols] for k in ("correct", "losses", "margins")}
        if "probs" in a:
            out["epoch_probs"] = a["probs"][:, cols]
        return out


def snapshot_epochs(epochs: int, count: int | None) -> list[int]:
    """``count`` epochs (0-based) spread evenly over ``range(epochs)``, the last always included; every epoch
    when ``count`` is None or at least ``epochs``."""
    if count is None or count >= epochs:
        return list(range(epochs))
    if count < 1:
        raise ValueError(f"the number of recorded epochs must be at least 1, got {count}")
    return sorted({int(round((i + 1) * epochs / count)) - 1 for i in range(count)})


class EpochPredictions(Callback):
    """Log-probabilities of every example at the end of chosen epochs: ``log_probs`` (E', N, K) float16, CPU.

    Unlike :class:`DynamicsRecorder`, which records the training forward pass of the trained examples, this
    runs a prediction pass (the learner's scoring model in eval mode, the clean view ``run.data.clean``) over all of
    ``run.data.x`` (or ``x`` when given), so examples outside the trained subset get a trajectory too. It costs
    one inference pass over the N examples per recorded epoch; ``count`` limits the recorded epochs to that
    many, evenly spread and always including the last (default: every epoch). Under DDP the pass is sharded
    and every rank receives all rows (every rank must hold this callback).

    Log-probabilities are stored rather than probabilities because margins are differences of logits, which
    equal differences of log-probabilities; float16 keeps about three significant digits of them.
    """

    def __init__(self, x: torch.Tensor | None = None, *, transform: Callable | None = None, count: int | None = None):
        self.x, self.transform, self.count = x, transform, count
        self.epochs: list[int] = []
        self._snaps: list[torch.Tensor] = []
        self._learner = None
        self._want: set[int] = set()

    def on_train_start(self, run: RunInfo) -> None:
        self._learner = run.learner
        if self.x is None:
            self.x, self.transform = run.data.x, (self.transform or run.data.clean)
        self._want = set(snapshot_epochs(run.epochs, self.count))
        self.epochs, self._snaps = [], []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if epoch not in self._want:
            return
        from robustprune.train.inference import predict

        lrn = self._learner
        probs, _ = predict(lrn.scoring_model, self.x, lrn.config.eval_batch_size, transform=self.transform,
                           amp=lrn.config.amp)  # fmt: skip
        self._snaps.append(torch.log(probs.clamp_min(torch.finfo(torch.float32).tiny)).half())
        self.epochs.append(epoch)

    def state_dict(self) -> dict[str, Any]:
        """The snapshots so far (kept in checkpoints, so that a resumed run keeps its earlier epochs)."""
        return {"epochs": list(self.epochs), "snaps": [t.clone() for t in self._snaps]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs = [int(e) for e in state["epochs"]]
        self._snaps = [torch.as_tensor(t) for t in state["snaps"]]

    @property
    def log_probs(self) -> np.ndarray:
        """(E', N, K) float16: one slice per recorded epoch, in epoch order."""
        if not self._snaps:
            raise RuntimeError("EpochPredictions holds nothing yet; train with it in callbacks=")
        return torch.stack(self._snaps).numpy()


def dynamics_from_log_probs(
    log_probs: np.ndarray, labels: Any, keys: tuple[str, ...] = ("correct", "losses", "margins", "epoch_probs")
) -> dict[str, np.ndarray]:
    """``correct``, ``losses``, ``margins`` (E, N) and ``epoch_probs`` (E, N, K) float16 for ``Signals``, from
    per-epoch log-probabilities (E, N, K) against ``labels`` (N,): the prediction equals the label, the
    cross-entropy on it, and the label's log-probability minus the largest other one (the AUM margin, as
    softmax leaves logit differences unchanged). Only the ``keys`` asked for are computed (the margins and
    the probabilities each cost a pass over all E·N·K values)."""
    lp = np.asarray(log_probs, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    if lp.ndim != 3 or y.shape != (lp.shape[1],):
        raise ValueError(f"log_probs must be (E, N, K) and labels (N,); got {lp.shape} and {y.shape}")
    given = np.take_along_axis(lp, y[None, :, None], axis=2)[..., 0]
    out: dict[str, np.ndarray] = {}
    if "correct" in keys:
        out["correct"] = lp.argmax(2) == y[None, :]
    if "losses" in keys:
        out["losses"] = -given
    if "margins" in keys:
        other = lp.copy()
        np.put_along_axis(other, np.broadcast_to(y[None, :, None], (lp.shape[0], y.shape[0], 1)), -np.inf, axis=2)
        out["margins"] = given - other.max(2)
    if "epoch_probs" in keys:
        out["epoch_probs"] = np.exp(lp).astype(np.float16)
    return out


class EvalAccuracy(Callback):
    """Accuracy of ``learner.predict`` on ``(x, y)`` after every ``every``-th epoch, logged as ``key``.

    ``transform`` normalises ``x`` (e.g. ``TrainData.clean``); ``history`` keeps (epoch, accuracy) pairs.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: Any,
        *,
        transform: Callable[..., torch.Tensor] | None = None,
        every: int = 1,
        key: str = "test_acc",
    ) -> None:
        self.x, self.y = x, torch.as_tensor(np.asarray(y), dtype=torch.int64)
        self.transform, self.every, self.key = transform, max(1, int(every)), key
        self.history: list[tuple[int, float]] = []
        self._learner = None
        self._epochs = 0

    def on_train_start(self, run: RunInfo) -> None:
        self._learner, self._epochs = run.learner, run.epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if (epoch + 1) % self.every and epoch + 1 != self._epochs:
            return
        probs, _ = self._learner.predict(self.x, transform=self.transform)
        acc = float((probs.argmax(1) == self.y).float().mean())
        logs[self.key] = acc
        self.history.append((epoch + 1, acc))

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [(int(e), float(a)) for e, a in state["history"]]
