"""End-to-end runs: noise -> warm-up -> signals -> select -> fresh learner on the subset -> evaluate.

::

    from robustprune.pipeline import run
    from robustprune.runconfig import RunConfig
    result = run(RunConfig(dataset="digits", noise="sym:0.4", learner="sop", method="prune4rel_auto",
                           fraction=0.5, out="runs/demo"))
    result.metrics["test_accuracy"], result.metrics["relabel_accuracy"]

Every field of :class:`~robustprune.runconfig.RunConfig` has a default; ``None`` means "from the dataset's
protocol" (:data:`robustprune.runconfig.PROTOCOLS`: the Prune4ReL scripts' settings for CIFAR, CPU-sized ones
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

import robustprune.evaluate as ev
from robustprune._io import write_json
from robustprune._version import __version__
from robustprune.runconfig import RunConfig, explain_config, resolve_config, warmup_key
from robustprune.rundir import (
    RunEvent,
    RunLog,
    StageDone,
    check_run_dir,
    check_same_run,
    input_digests,
    open_run_dir,
    unlink_if_exists,
)
from robustprune.seeding import derive_seed
from robustprune.selection.base import Selection, load_indices
from robustprune.signals import Signals
from robustprune.train.engine import ProgressInfo

if TYPE_CHECKING:  # annotations only: the stages import these lazily
    from robustprune.data import ArrayDataset
    from robustprune.noise import NoiseRecord
    from robustprune.train import Learner, TrainConfig, TrainData

__all__ = ["RunResult", "run", "make_signals"]


@dataclass
class RunResult:
    """What :func:`run` returns: the resolved config, metrics (as in ``metrics.json``) and artifacts."""

    config: RunConfig
    metrics: dict[str, Any]
    selection: Selection
    signals: Signals | None = None
    out: Path | None = None
    reused: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------- run


@dataclass
class _Run:
    """The state shared by the stages of one run."""

    c: RunConfig
    ds: ArrayDataset  # without the validation examples
    data: TrainData  # on the device
    noisy: np.ndarray
    true: np.ndarray
    x_val: torch.Tensor | None
    y_val: np.ndarray | None
    train_config: TrainConfig
    out: Path | None
    resuming: bool
    log: RunLog
    times: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.data.num_samples)

    def path(self, name: str) -> Path | None:
        return None if self.out is None else self.out / name

    def new_learner(self) -> Learner:
        from robustprune.models import build_model
        from robustprune.train import build_learner

        c, ds = self.c, self.ds
        shape = ds.input_shape
        chans, size = (shape[0], shape[1]) if ds.is_image else (shape[0], 1)

        def model_fn() -> torch.nn.Module:
            return build_model(c.model, ds.num_classes, in_channels=chans, image_size=size)

        return build_learner(c.learner, model_fn, ds.num_classes, self.n, self.train_config, **c.learner_params)


def _load(c: RunConfig) -> tuple[ArrayDataset, np.ndarray, NoiseRecord, torch.Tensor | None, np.ndarray | None]:
    """Dataset (after subset, minus validation), noisy labels, noise record, validation inputs and labels."""
    from robustprune.data import stratified_split
    from robustprune.noise import apply_noise

    ds = _load_dataset(c)
    noisy, rec = apply_noise(
        ds.y_train.numpy(),
        c.noise,
        num_classes=ds.num_classes,
        seed=c.noise_seed,
        dataset=ds.name,
        features=ds.x_train if c.noise.startswith("instance") else None,
        human_labels=ds.label_sets or None,
    )
    if int(noisy.max()) >= ds.num_classes:
        raise ValueError(f"noisy labels reach class {int(noisy.max())} but {ds.name} has {ds.num_classes}")
    if c.val_fraction == 0:
        return ds, noisy, rec, None, None
    tr, va = stratified_split(noisy, c.val_fraction, seed=derive_seed(c.seed, "val") % 2**32)
    x_val, y_val = ds.x_train[va], noisy[va]
    ds = ds.select_train(tr, note=f"minus a validation split of {va.size}")
    return ds, noisy[tr], rec, x_val, y_val


def _load_dataset(c: RunConfig) -> ArrayDataset:
    from robustprune.data import load_dataset

    return load_dataset(c.dataset, c.data_dir, subset=c.subset, test_subset=c.test_subset, **c.dataset_params)


def _labels_only(method: str) -> bool:
    """Whether ``method`` uses nothing beyond the given labels."""
    return method in ("full", "uniform")


def _signals(r: _Run) -> Signals:
    """Warm-up on the full noisy training set, then one prediction pass (or the stored signals.npz)."""
    from robustprune.train import DynamicsRecorder, predict

    c, data, path = r.c, r.data, r.path("signals.npz")
    if r.resuming and path.exists():
        sig = Signals.load(path)
        if sig.n != r.n or not np.array_equal(sig.labels, r.noisy):
            raise ValueError(f"{path} does not match this run's training labels; pass --force to redo the run")
        r.times["warmup"] = float(sig.meta.get("warmup_seconds", 0.0))
        r.times["signals"] = float(sig.meta.get("signals_seconds", 0.0))
        r.reused.append("signals")
        unlink_if_exists(r.path("warmup.ckpt"))  # left over when a run stopped right after writing the signals
        r.log.stage("warmup", r.times["warmup"], reused=True)
        r.log.stage("signals", r.times["signals"], reused=True)
        return sig
    if c.warmup_epochs == 0 and _labels_only(c.method):
        # Nothing to learn from an untrained network: a labels-only bundle, no prediction pass.
        meta = {
            "dataset": c.dataset, "noise": c.noise, "learner": c.learner, "model": c.model, "seed": c.seed,
            "warmup_epochs": 0, "warmup_seconds": 0.0, "signals_seconds": 0.0, "warmup_test_accuracy": None,
            "warmup_key": warmup_key(c),
        }  # fmt: skip
        sig = Signals(labels=r.noisy, true_labels=r.true, meta=meta)
        if path is not None:
            sig.save(path)
        r.log.stage("warmup", 0.0)
        r.log.stage("signals", 0.0, note="labels only (no warm-up, method needs no predictions)")
        return sig
    learner = r.new_learner()
    recorder = DynamicsRecorder()
    res = learner.warmup(
        data,
        epochs=c.warmup_epochs,
        callbacks=[recorder] if c.warmup_epochs else [],
        progress=r.log.progress,
        checkpoint=r.path("warmup.ckpt"),
        resume=r.resuming,
    )
    r.times["warmup"] = float(sum(h["seconds"] for h in res.history))
    r.log.stage("warmup", r.times["warmup"])
    t0 = time.perf_counter()
    view = data.clean
    if c.confidence_pass == "strong":  # the release: one random strong augmentation per example
        gen = torch.Generator(device=data.x.device).manual_seed(derive_seed(c.seed, "signals", "strong"))

        def view(xb: torch.Tensor) -> torch.Tensor:
            return data.strong(xb, gen)

    tc = r.train_config
    probs, feats = predict(learner.scoring_model, data.x, tc.eval_batch_size, transform=view, amp=tc.amp)
    warm_acc = ev.accuracy(learner.predict(r.ds.x_test, transform=data.clean)[0], r.ds.y_test)
    r.times["signals"] = time.perf_counter() - t0
    meta = {
        "dataset": c.dataset, "noise": c.noise, "learner": c.learner, "model": c.model, "seed": c.seed,
        "warmup_epochs": c.warmup_epochs, "confidence_pass": c.confidence_pass,
        "warmup_seconds": r.times["warmup"], "signals_seconds": r.times["signals"],
        "warmup_test_accuracy": warm_acc, "warmup_key": warmup_key(c),
    }  # fmt: skip
    dyn = recorder.signals_kwargs() if c.warmup_epochs else {}
    sig = Signals(labels=r.noisy, probs=probs.numpy(), features=feats.numpy(), true_labels=r.true, meta=meta, **dyn)
    if path is not None:
        sig.save(path)
        unlink_if_exists(r.path("warmup.ckpt"))
    r.log.stage("signals", r.times["signals"], note=f"warm-up test accuracy {warm_acc:.4f}")
    return sig


def _selection(r: _Run, sig: Signals | None, given: tuple[np.ndarray, str] | None) -> Selection:
    """The subset: stored selection.npz, the given selection file, or the configured method."""
    from robustprune.selection.api import select

    c, path = r.c, r.path("selection.npz")
    if r.resuming and path.exists():
        sel = Selection.load(path)
        if sel.n != r.n:
            raise ValueError(f"{path} was made from {sel.n} examples, not {r.n}; pass --force to redo the run")
        r.reused.append("selection")
        r.log.stage("select", sel.elapsed, reused=True)
        return sel
    t0 = time.perf_counter()
    if given is not None:
        idx, origin = given
        params = {"source": c.selection}
        sel = Selection(idx, None, None, origin, params, r.n, elapsed=time.perf_counter() - t0)
    else:

        def on_progress(done: int, total: int) -> None:
            r.log.progress(ProgressInfo("select", 0, 1, done, total))

        sel = select(
            c.method,
            signals=sig,
            fraction=c.fraction,
            class_balanced=c.class_balanced,
            seed=c.seed,
            progress=on_progress,
            **c.params,
        )
    if path is not None:
        sel.save(path)
    r.log.stage("select", sel.elapsed, note=f"{sel.method}: {sel.budget} of {r.n}")
    return sel


def _train(r: _Run, sel: Selection) -> tuple[Learner, list[dict[str, Any]]]:
    """A fresh learner trained on the subset, with test (and validation) accuracy per epoch."""
    from robustprune.train import EvalAccuracy

    c, data = r.c, r.data
    learner = r.new_learner()
    evals = [EvalAccuracy(r.ds.x_test, r.ds.y_test, transform=data.clean, every=c.eval_every, key="test_acc")]
    if r.x_val is not None:
        evals.append(EvalAccuracy(r.x_val, r.y_val, transform=data.clean, every=c.eval_every, key="val_acc"))
    res = learner.fit(
        data,
        sel.indices,
        epochs=c.epochs,
        callbacks=evals,
        progress=r.log.progress,
        checkpoint=r.path("train.ckpt"),
        resume=r.resuming,
    )
    r.times["train"] = float(sum(h["seconds"] for h in res.history))
    note = "" if res.resumed_from is None else f"resumed after epoch {res.resumed_from}"
    r.log.stage("train", r.times["train"], note=note)
    return learner, res.history


def _evaluate(r: _Run, learner: Learner, sel: Selection, sig: Signals | None, history: list, rec: NoiseRecord) -> dict:
    """metrics.json: accuracies, re-labeling accuracy, noise rates, class counts, times, history."""
    c = r.c
    t0 = time.perf_counter()
    train_probs, _ = learner.predict(r.data.x, transform=r.data.clean)
    k = r.ds.num_classes
    report = ev.subset_report(sel.indices, r.noisy, true_labels=r.true, predictions=train_probs, num_classes=k)
    summary = ev.summarize_history(history)
    times = r.times
    times["selection"] = sel.elapsed
    times["evaluate"] = time.perf_counter() - t0
    times["total"] = sum(times[s] for s in ("warmup", "signals", "selection", "train", "evaluate"))
    metrics = {
        **summary,
        **report,
        "method": sel.method,
        "learner": c.learner,
        "model": c.model,
        "dataset": c.dataset,
        "noise": c.noise,
        "seed": c.seed,
        "num_train": r.n,
        "num_test": r.ds.num_test,
        "num_val": 0 if r.x_val is None else int(r.x_val.shape[0]),
        "warmup_epochs": c.warmup_epochs,
        "warmup_test_accuracy": None if sig is None else sig.meta.get("warmup_test_accuracy"),
        "selection": _selection_facts(sel),
        "timings": {key: round(v, 4) for key, v in times.items()},
        "sample_state": _state_summary(learner, sel.indices, r.noisy, r.true),
        "noise_record": rec.to_dict(),
        "history": history,
        "robustprune_version": __version__,
    }
    metrics = json.loads(json.dumps(metrics, default=float))
    acc, rel = summary["test_accuracy"], report["relabel_accuracy"]
    r.log.stage("evaluate", times["evaluate"], note=f"test accuracy {acc:.4f}, re-labeling accuracy {rel:.4f}")
    return metrics


#: Facts a method reports about its own run that a reader of the results wants beside the accuracy.
_SELECTION_FACTS = ("tau", "target_degree", "eta", "mean_degree", "coverage", "flagged", "topped_up", "embedding",
                    "gain", "confidence", "candidates")  # fmt: skip


def _selection_facts(sel: Selection) -> dict[str, Any]:
    """The chosen neighbourhood threshold, temperature, graph degree, coverage etc. of the selection."""
    return {k: sel.params[k] for k in _SELECTION_FACTS if k in sel.params}


def _state_summary(learner: Learner, indices: np.ndarray, noisy: np.ndarray, true: np.ndarray | None) -> dict:
    """The learner's per-example statistics (:meth:`sample_stats`) averaged over the subset, split by whether
    the given label is wrong or right. For SOP+, a large ``u`` on wrong labels and a small one on right labels
    means the learner is discounting the wrong ones; for DivideMix, ``clean_prob`` should be low on wrong labels.
    """
    out: dict[str, dict[str, float | None]] = {}
    idx = np.asarray(indices, dtype=np.int64)
    wrong = None if true is None else noisy[idx] != true[idx]

    def mean(values: np.ndarray) -> float | None:
        values = values[~np.isnan(values)]
        return float(values.mean()) if values.size else None

    for name, t in learner.sample_stats().items():
        values = t.detach().to("cpu", torch.float64).numpy()[idx]
        entry = {"all": mean(values)}
        if wrong is not None:
            entry["wrong_label"], entry["right_label"] = mean(values[wrong]), mean(values[~wrong])
        out[name] = entry
    return out


@dataclass
class _Setup:
    """What :func:`_prepare` hands to :func:`run` and :func:`make_signals`."""

    c: RunConfig
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


def _prepare(config: RunConfig, done: str) -> _Setup:
    """Resolve the config, check the run directory and load the data, the noise and any given selection or
    signals file; nothing is written here, so bad input leaves an existing directory untouched."""
    c = resolve_config(config)  # once; names and options fail here, before any data is read
    out = Path(config.out).expanduser() if config.out is not None else None
    resuming = check_run_dir(out, config, done) if out is not None else False
    t0 = time.perf_counter()
    ds, noisy, rec, x_val, y_val = _load(c)
    given = load_indices(c.selection, int(ds.num_train)) if c.selection is not None else None
    given_signals = _given_signals(c.signals, noisy) if c.signals is not None else None
    if resuming:
        check_same_run(out, c)
        if (out / done).exists():
            return _Setup(c, out, True, True, t0)
    if out is not None:
        open_run_dir(out, c, resuming)
    resolved = explain_config(config, resolved=c)
    return _Setup(c, out, resuming, False, t0, ds, noisy, rec, x_val, y_val, given, given_signals, resolved)


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


def _start(s: _Setup, progress: Callable[[RunEvent], None] | None) -> tuple[_Run, RunLog]:
    from robustprune.train import TrainConfig, TrainData

    c, out, ds = s.c, s.out, s.ds
    log = RunLog(out / "run.log" if out is not None else None, progress)
    log.write(f"{'resume' if s.resuming else 'start'} robustprune {__version__}")
    if out is not None:
        meta = {
            "robustprune_version": __version__,
            "inputs_sha256": input_digests(c),
            # every value the run uses, method and learner options included, with where it came from
            "resolved": {key: {"value": value, "from": origin} for key, value, origin in s.resolved},
        }
        write_json(out / "config.json", {**c.to_dict(), **meta})
    data = TrainData.from_dataset(ds, labels=s.noisy, device=c.device)
    tc = TrainConfig(
        epochs=c.epochs,
        batch_size=c.batch_size,
        lr=float(c.lr),
        seed=c.seed,
        device=c.device,
        eval_batch_size=c.eval_batch_size,
    )
    true = ds.y_train.numpy()
    r = _Run(c, ds, data, s.noisy, true, s.x_val, s.y_val, tc, out, s.resuming, log)
    r.times.update(warmup=0.0, signals=0.0)
    note = f"{ds.describe()}; noise {c.noise}, realised {ev.noise_rate(s.noisy, true):.4f}"
    log.stage("data", time.perf_counter() - s.t0, note=note)
    return r, log


def _reuse_signals(r: _Run, sig: Signals) -> Signals:
    """Account for a given signals bundle: its warm-up and signal times are reported, not spent again."""
    r.times["warmup"] = float(sig.meta.get("warmup_seconds", 0.0))
    r.times["signals"] = float(sig.meta.get("signals_seconds", 0.0))
    r.reused.append("signals")
    r.log.stage("warmup", r.times["warmup"], reused=True, note=f"signals from {r.c.signals}")
    r.log.stage("signals", r.times["signals"], reused=True)
    return sig


def run(config: RunConfig, *, progress: Callable[[RunEvent], None] | None = None) -> RunResult:
    """Run noise -> warm-up -> signals -> select -> train on the subset -> evaluate (see module docs).

    ``progress`` receives the training engine's :class:`~robustprune.train.ProgressInfo` events (stages
    "warmup" and "train", per step and per epoch), ``select`` events (``step``/``steps`` = done/total) and,
    at the end of every stage ("data", "warmup", "signals", "select", "train", "evaluate"), a
    :class:`~robustprune.rundir.StageDone` with its ``seconds``, ``reused`` and a ``note``. An exception raised by
    ``progress`` stops the run (a later ``resume`` continues it).
    """
    s = _prepare(config, "metrics.json")
    if s.finished:
        return _finished(s.out, progress)
    r, log = _start(s, progress)
    c, out = s.c, s.out
    try:
        if c.selection is not None:
            sig = None
        elif s.given_signals is not None:
            sig = _reuse_signals(r, s.given_signals)
        else:
            sig = _signals(r)
        sel = _selection(r, sig, s.given)
        learner, history = _train(r, sel)
        metrics = _evaluate(r, learner, sel, sig, history, s.rec)
        metrics["timings"]["wall"] = round(time.perf_counter() - s.t0, 4)
        metrics["reused"] = list(r.reused)
        if out is not None:
            write_json(out / "metrics.json", metrics)
            unlink_if_exists(r.path("train.ckpt"))
        return RunResult(c, metrics, sel, sig, out, tuple(r.reused))
    except BaseException as exc:
        log.write(f"stopped: {type(exc).__name__}: {' '.join(str(exc).split())}")
        raise
    finally:
        log.close()


def make_signals(config: RunConfig, *, progress: Callable[[RunEvent], None] | None = None) -> Signals:
    """Only the warm-up and the signals pass of :func:`run` (no selection, no training).

    With ``out`` set, the directory receives ``config.json``, ``run.log`` and ``signals.npz`` (finished when
    that exists; ``resume`` continues an interrupted warm-up from its checkpoint). Several runs that share
    :func:`warmup_key` can then pass ``signals=out/signals.npz`` and skip the warm-up; the signals' meta
    records the key.
    """
    if config.selection is not None or config.signals is not None:
        raise ValueError("make_signals computes a warm-up; drop selection / signals from the config")
    s = _prepare(config, "signals.npz")
    if s.finished:
        return Signals.load(s.out / "signals.npz")
    r, log = _start(s, progress)
    try:
        return _signals(r)
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
