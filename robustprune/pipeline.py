"""End-to-end runs: noise -> warm-up -> signals -> select -> fresh learner on the subset -> evaluate.

::

    from robustprune.pipeline import run
    from robustprune.runconfig import RunConfig
    result = run(RunConfig(dataset="digits", noise="sym:0.4", learner="sop", method="prune4rel_auto",
                           fraction=0.5, out="runs/demo"))
    result.metrics["test_accuracy"], result.metrics["relabel_accuracy"]

Every field of :class:`~robustprune.runconfig.RunConfig` has a default; ``None`` means "from the dataset's
protocol" (:data:`robustprune.protocols.PROTOCOLS`: the Prune4ReL scripts' settings for CIFAR, CPU-sized ones
for digits and (Fashion-)MNIST).
With ``out`` set, a run directory receives, each written atomically as its stage finishes:

==================  ===================================================================================
``config.json``     the resolved :class:`RunConfig` (every default filled in)
``signals.npz``     warm-up probabilities, features, dynamics and true labels (usable by ``robustprune
                    select``); absent when the subset came from ``selection``
``selection.npz``   the subset (indices in pick order, plus a ``.json`` sidecar)
``metrics.json``    test / re-labeling accuracy, noise rates, class counts, times, per-epoch history
``run.log``         one line per stage and epoch
``*.ckpt``          warm-up / training checkpoints while a stage runs (removed once its artifact exists)
==================  ===================================================================================

A directory holding a run is never overwritten unless ``force``; with ``resume`` an interrupted run
continues: finished stages (signals, selection) are reused and training resumes from its checkpoint, which
gives the same result as an uninterrupted run on the same device.

Indices (signals rows, selections, ``selection`` files) refer to the training set *of the run*: the loaded
training split (after ``subset``) minus the validation examples when ``val_fraction > 0``.

Under ``torchrun --nproc_per_node=N -m robustprune run ...`` every rank calls :func:`run`: the learners train
with DistributedDataParallel on shards of every epoch (``batch_size`` is per rank, so a step sees
``batch_size * N`` examples), the prediction passes are sharded and gathered, the selection runs on rank 0,
and rank 0 alone checks and writes the run directory (every rank returns the result).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import robustprune.distributed as dist
import robustprune.evaluate as ev
from robustprune._io import write_json
from robustprune._provenance import code_identity, host_identity, now
from robustprune._version import __version__
from robustprune.runconfig import Resolved, RunConfig, resolve
from robustprune.rundir import (
    RunEvent,
    RunLog,
    StageDone,
    check_run_dir,
    check_same_run,
    input_digests,
    open_run_dir,
    run_identity,
    unlink_if_exists,
)
from robustprune.selection.result import Selection, load_indices
from robustprune.signals import Signals
from robustprune.stages import (
    RunMetrics,
    RunState,
    evaluate_stage,
    load_run_data,
    selection_stage,
    signals_stage,
    train_stage,
)

if TYPE_CHECKING:  # annotations only: the stages import these lazily
    from robustprune.data import ArrayDataset
    from robustprune.noise import NoiseRecord

__all__ = ["RunResult", "run", "make_signals"]


@dataclass
class RunResult:
    """What :func:`run` returns: the resolved config, metrics (as in ``metrics.json``) and artifacts."""

    config: RunConfig
    metrics: RunMetrics
    selection: Selection
    signals: Signals | None = None
    out: Path | None = None
    reused: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------- run


@dataclass(kw_only=True)
class _Setup:
    """What :func:`_prepare` hands to :func:`run` and :func:`make_signals`."""

    cfg: RunConfig
    out: Path | None
    resuming: bool
    finished: bool
    t0: float
    ds: ArrayDataset | None = None
    noisy: np.ndarray | None = None
    rec: NoiseRecord | None = None
    x_val: torch.Tensor | None = None
    y_val: np.ndarray | None = None
    given: tuple[np.ndarray, str] | None = None
    given_signals: Signals | None = None
    resolved: list[tuple[str, Any, str]] = field(default_factory=list)
    identity: dict[str, Any] = field(default_factory=dict)


def _prepare(config: RunConfig | Resolved, done: str) -> _Setup:
    """Resolve the config (unless the caller did: a :class:`~robustprune.runconfig.Resolved`), check the run
    directory and load the data, the noise and any given selection or signals file; nothing is written here,
    so bad input leaves an existing directory untouched."""
    res = config if isinstance(config, Resolved) else resolve(config)  # names and options fail here
    config, cfg = res.given, res.config
    out = Path(config.out).expanduser() if config.out is not None else None
    dist.init(cfg.device)  # a no-op unless torchrun started several processes
    resuming = dist.on_main(check_run_dir, out, config, done) if out is not None else False
    t0 = time.perf_counter()
    resolved = res.rows()
    identity = run_identity(cfg, warmup_only=done == "signals.npz", resolved=resolved)
    ds, noisy, rec, x_val, y_val = load_run_data(cfg)
    given = load_indices(cfg.selection, int(ds.num_train)) if cfg.selection is not None else None
    given_signals = _given_signals(cfg.signals, noisy) if cfg.signals is not None else None
    if resuming and dist.on_main(_resumable_finished, out, cfg, done, identity):
        return _Setup(cfg=cfg, out=out, resuming=True, finished=True, t0=t0)
    if out is not None and dist.is_main():
        open_run_dir(out, cfg, resuming)
    return _Setup(
        cfg=cfg, out=out, resuming=resuming, finished=False, t0=t0, ds=ds, noisy=noisy, rec=rec, x_val=x_val,
        y_val=y_val, given=given, given_signals=given_signals, resolved=resolved, identity=identity,
    )  # fmt: skip


def _resumable_finished(out: Path, cfg: RunConfig, done: str, identity: dict[str, Any]) -> bool:
    """Refuse to resume another run's directory, or one made by other code or defaults; True when the run
    there has finished."""
    check_same_run(out, cfg, identity)
    return (out / done).exists()


def _given_signals(path: str, noisy: np.ndarray) -> Signals:
    """A signals bundle reused from an earlier warm-up; it must describe this run's noisy training set."""
    sig = Signals.load(path)
    if sig.n != noisy.size or not np.array_equal(sig.labels, noisy):
        what = f"{sig.n} examples, this run has {noisy.size}" if sig.n != noisy.size else "its labels differ"
        raise ValueError(
            f"signals file {path} was made for another training set ({what}); the dataset, subset, noise, "
            "validation split and seed must match the run that wrote it"
        )
    return sig


def _start(s: _Setup, progress: Callable[[RunEvent], None] | None) -> tuple[RunState, RunLog]:
    cfg, out, ds = s.cfg, s.out, s.ds
    log = RunLog(out / "run.log" if out is not None else None, progress)
    log.write(f"{'resume' if s.resuming else 'start'} robustprune {__version__}")
    if out is not None and dist.is_main():
        meta = {
            "robustprune_version": __version__,
            # what the result depends on (compared on resume and by a sweep's cache) and what made it
            "identity": s.identity,
            "provenance": {"code": code_identity(), "host": host_identity(cfg.device), "started": now()},
            "inputs_sha256": input_digests(cfg),
            # every value the run uses, method and learner options included, with where it came from
            "resolved": {key: {"value": value, "from": origin} for key, value, origin in s.resolved},
        }
        write_json(out / "config.json", {**cfg.to_dict(), **meta})
    state = RunState.create(cfg, ds, s.noisy, x_val=s.x_val, y_val=s.y_val, out=out, resuming=s.resuming, log=log)
    state.times.update(warmup=0.0, signals=0.0)
    note = f"{ds.describe()}; noise {cfg.noise}, realised {ev.noise_rate(s.noisy, state.true):.4f}"
    log.stage("data", time.perf_counter() - s.t0, note=note)
    return state, log


def run(config: RunConfig | Resolved, *, progress: Callable[[RunEvent], None] | None = None) -> RunResult:
    """Run noise -> warm-up -> signals -> select -> train on the subset -> evaluate (see module docs).

    ``progress`` receives the training engine's :class:`~robustprune.train.ProgressInfo` events (stages
    "warmup" and "train", per step and per epoch), ``select`` events (``step``/``steps`` = done/total) and,
    at the end of every stage ("data", "warmup", "signals", "select", "train", "evaluate"), a
    :class:`~robustprune.rundir.StageDone` with its ``seconds``, ``reused`` and a ``note``. An exception raised by
    ``progress`` stops the run (a later ``resume`` continues it).
    """
    s = _prepare(config, "metrics.json")
    if s.finished:
        return dist.on_main(_finished, s.out, progress)
    state, log = _start(s, progress)
    cfg, out = s.cfg, s.out
    try:
        sig = signals_stage(state, s.given_signals)
        sel = selection_stage(state, sig, s.given)
        learner, history = train_stage(state, sel)
        metrics = evaluate_stage(state, learner, sel, sig, history, s.rec)
        metrics["timings"]["wall"] = round(time.perf_counter() - s.t0, 4)  # this process; + earlier: the run's
        metrics["reused"] = list(state.reused)
        if out is not None and dist.is_main():
            write_json(out / "metrics.json", metrics)
            unlink_if_exists(state.path("train.ckpt"))
        return RunResult(cfg, metrics, sel, sig, out, tuple(state.reused))
    except BaseException as exc:
        log.write(f"stopped: {type(exc).__name__}: {' '.join(str(exc).split())}")
        raise
    finally:
        log.close()


def make_signals(config: RunConfig | Resolved, *, progress: Callable[[RunEvent], None] | None = None) -> Signals:
    """Only the warm-up and the signals pass of :func:`run` (no selection, no training).

    With ``out`` set, the directory receives ``config.json``, ``run.log`` and ``signals.npz`` (finished when
    that exists; ``resume`` continues an interrupted warm-up from its checkpoint). Several runs that share
    :func:`warmup_key` can then pass ``signals=out/signals.npz`` and skip the warm-up; the signals' meta
    records the key.
    """
    given = config.given if isinstance(config, Resolved) else config
    if given.selection is not None or given.signals is not None:
        raise ValueError("make_signals computes a warm-up; drop selection / signals from the config")
    s = _prepare(config, "signals.npz")
    if s.finished:
        return dist.on_main(Signals.load, s.out / "signals.npz")
    state, log = _start(s, progress)
    try:
        return signals_stage(state)
    except BaseException as exc:
        log.write(f"stopped: {type(exc).__name__}: {' '.join(str(exc).split())}")
        raise
    finally:
        log.close()


def _finished(out: Path, progress: Callable[[RunEvent], None] | None) -> RunResult:
    """The result of a finished run directory, read back (``resume`` on a finished run)."""
    metrics = json.loads((out / "metrics.json").read_text())
    cfg = RunConfig.load(out / "config.json")
    stored = out / "signals.npz" if (out / "signals.npz").exists() else cfg.signals
    sig = Signals.load(stored) if stored is not None and Path(stored).exists() else None
    if progress is not None:
        progress(StageDone("evaluate", 0.0, reused=True))
    reused = ("signals", "selection", "train", "evaluate")
    return RunResult(cfg, metrics, Selection.load(out / "selection.npz"), sig, out, reused)
