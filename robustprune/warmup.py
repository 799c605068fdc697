"""How a run's signals are made: the warm-up(s), and where the label-aware signals come from.

``RunConfig.signal_source`` (:func:`~robustprune.signals.parse_signal_source`) picks one of:

- ``warmup`` (the released protocol): one warm-up on every training example; ``probs`` and the per-epoch
  signals are its predictions of the examples it trained on (**in-sample**: where it has memorised a wrong
  label, it predicts the wrong label back).
- ``ensemble``: the same warm-up; ``probs`` is the mean of the softmax outputs recorded at every warm-up epoch
  (a temporal ensemble, still in-sample, less memorised than the last epoch alone).
- ``probe:K``: the same warm-up; ``probs`` come from a K-fold cross-fitted linear probe on its features
  (:func:`robustprune.probe.cross_fitted_probe`): out-of-sample for the probe, though the features were
  learnt from every label. Costs seconds.
- ``folds:K``: K warm-ups, each on K-1 stratified folds (:func:`robustprune.probe.stratified_folds` on the
  given labels, seeded by the run's seed), the same schedule and a seed of its own; each example's ``probs``,
  per-epoch signals (a prediction pass over the held-out fold after every warm-up epoch, eval mode, clean
  view) and DeepFool norm come from the fold model that did not train on it (**out-of-sample**). The
  embedding (``features``) must be one space for Prune4ReL's graph and the coverage methods: ``folds:K``
  takes it from a warm-up on every example (K+1 warm-ups), ``folds:K:fold`` from the first fold model
  (K warm-ups).

Under torchrun the K fold warm-ups are independent jobs: when they divide evenly enough over the processes
(at most a quarter of the ranks idle in the last round) each rank trains its folds alone
(:func:`robustprune.distributed.alone`) and the results are exchanged; otherwise every fold trains with all
ranks in turn. Either way the signals equal those of one process (on the same device).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

import robustprune.distributed as dist
import robustprune.evaluate as ev
from robustprune.probe import cross_fitted_probe, stratified_folds
from robustprune.rundir import unlink_if_exists
from robustprune.seeding import derive_seed
from robustprune.signals import SignalSource, parse_signal_source
from robustprune.train.engine import ProgressInfo, rank_key

__all__ = [
    "DEEPFOOL_ATTACK", "deepfool_signal", "confidence_view", "WarmupSignals", "compute_signals", "fold_seed",
    "spread_folds", "remove_checkpoints",
]  # fmt: skip

#: The DeepFool attack of the ``deepfool`` signal, as released.
DEEPFOOL_ATTACK = {"max_iter": 50, "overshoot": 0.0}
#: The per-epoch signals a fold warm-up derives from its held-out predictions.
_DYNAMICS = ("correct", "losses", "margins")


def deepfool_signal(model: torch.nn.Module, data: Any, eval_batch_size: int, rows: Any = None) -> np.ndarray:
    """DeepFool norms of the examples ``rows`` (default: all, (N,)) on the clean view, in the model's
    (normalised) input space. Under torchrun each rank attacks its block of rows and every rank receives all
    of them."""
    from robustprune.train.deepfool import deepfool_norms

    x = data.x if rows is None else data.x[torch.as_tensor(np.asarray(rows), dtype=torch.int64).to(data.x.device)]
    mine = dist.block(int(x.shape[0]))  # this rank's block of rows
    norms, _ = deepfool_norms(model, x[mine], batch_size=min(eval_batch_size, 256), transform=data.clean,
                              **DEEPFOOL_ATTACK)  # fmt: skip
    return dist.all_gather_cat(norms).numpy()


def confidence_view(cfg: Any, data: Any, *keys: int | str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The inputs of a signals pass: the clean view, or (``confidence_pass="strong"``) one seeded strong
    augmentation per example, as released."""
    if cfg.confidence_pass != "strong":
        return data.clean
    seed = derive_seed(cfg.seed, "signals", "strong", *keys, *rank_key(dist.world().rank))
    gen = torch.Generator(device=data.x.device).manual_seed(seed)

    def view(xb: torch.Tensor) -> torch.Tensor:
        return data.strong(xb, gen)

    return view


def fold_seed(seed: int, fold: int) -> int:
    """The training seed of fold model ``fold`` (its own initialisation and batch order)."""
    return derive_seed(seed, "signal-fold", fold)


def spread_folds(folds: int, world_size: int) -> bool:
    """Whether K fold warm-ups are dealt to the ranks (each trains alone) rather than trained by all ranks in
    turn: when the last round leaves at most a quarter of the work idle, ceil(K/W) <= 1.25·K/W."""
    return world_size > 1 and math.ceil(folds / world_size) <= 1.25 * folds / world_size


@dataclass
class WarmupSignals:
    """What :func:`compute_signals` returns: the arrays of a :class:`~robustprune.signals.Signals` bundle
    (all but the labels), metadata and the time spent."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    warmup_seconds: float = 0.0
    signals_seconds: float = 0.0
    warmup_test_accuracy: float | None = None


def compute_signals(state: Any, extra: tuple[str, ...]) -> WarmupSignals:
    """The signals of the run ``r`` (a :class:`robustprune.stages.RunState`) from its ``signal_source``,
    with the on-demand signals ``extra`` (``epoch_probs``, ``deepfool``)."""
    src = parse_signal_source(state.cfg.signal_source)
    if src.kind == "encoder":
        return _encoder_signals(state, src, extra)
    if state.cfg.warmup_epochs == 0 and src.kind != "warmup":
        raise ValueError(
            f"signal_source {src} needs a warm-up; set warmup_epochs to at least 1, or signal_source to warmup "
            "(the predictions of the untrained network)"
        )
    if src.kind == "folds":
        return _fold_signals(state, src, extra)
    return _full_signals(state, src, extra)


def remove_checkpoints(state: Any) -> None:
    """Delete the warm-up checkpoints of ``r`` once its signals are written."""
    unlink_if_exists(state.path("warmup.ckpt"))
    if state.out is not None:
        for p in state.out.glob("warmup-fold*.ckpt"):
            unlink_if_exists(p)


# ------------------------------------------------------------------------------------- one warm-up


def _full_warmup(state: Any, *, record: bool, record_probs: bool) -> tuple[Any, Any, float]:
    """The warm-up on every training example (learner, its dynamics recorder or None, seconds)."""
    from robustprune.train import DynamicsRecorder

    cfg = state.cfg
    learner = state.new_learner()
    recorder = DynamicsRecorder(probs=record_probs) if record and cfg.warmup_epochs else None
    res = learner.warmup(
        state.data, epochs=cfg.warmup_epochs, callbacks=[recorder] if recorder is not None else [],
        progress=state.log.progress, checkpoint=state.path("warmup.ckpt"), resume=state.resuming,
    )  # fmt: skip
    seconds = float(sum(h["seconds"] for h in res.history))  # the epochs before a resume included
    state.earlier += float(sum(h["seconds"] for h in res.history[: res.resumed_from or 0]))
    return learner, recorder, seconds


def _full_signals(state: Any, src: SignalSource, extra: tuple[str, ...]) -> WarmupSignals:
    from robustprune.train import predict

    cfg, data, tc = state.cfg, state.data, state.train_config
    learner, recorder, seconds = _full_warmup(state, record=True, record_probs="epoch_probs" in extra or
                                              src.kind == "ensemble")  # fmt: skip
    state.log.stage("warmup", seconds)
    t0 = time.perf_counter()
    probs, feats = predict(learner.scoring_model, data.x, tc.eval_batch_size, transform=confidence_view(cfg, data),
                           amp=tc.amp)  # fmt: skip
    warm_acc = ev.accuracy(learner.predict(state.ds.x_test, transform=data.clean)[0], state.ds.y_test)
    arrays: dict[str, np.ndarray] = {"probs": probs.numpy(), "features": feats.numpy()}
    if "deepfool" in extra:
        arrays["deepfool"] = deepfool_signal(learner.scoring_model, data, tc.eval_batch_size)
    if recorder is not None:
        arrays.update(recorder.signals_kwargs())
    meta: dict[str, Any] = {"signal_source": str(src), "out_of_sample": False}
    if src.kind == "ensemble":
        ens = arrays["epoch_probs"].astype(np.float32).mean(0)
        arrays["probs"] = ens / ens.sum(1, keepdims=True)
        if "epoch_probs" not in extra:
            del arrays["epoch_probs"]
        meta["ensemble_epochs"] = int(cfg.warmup_epochs)
    elif src.kind == "probe":
        meta.update(_probe(state, src, arrays))
        meta["out_of_sample"] = True
    meta["agreement_with_given_labels"] = float(np.mean(arrays["probs"].argmax(1) == state.noisy))
    return WarmupSignals(arrays, meta, seconds, time.perf_counter() - t0, warm_acc)


def _encoder_signals(state: Any, src: SignalSource, extra: tuple[str, ...]) -> WarmupSignals:
    """No warm-up: a pretrained encoder embeds the training images, and a cross-fitted probe on those
    embeddings gives ``probs`` (:mod:`robustprune.encoders`)."""
    from robustprune.encoders import encode_images

    if extra:
        raise ValueError(
            f"signal_source {src} trains no network, so it has no {', '.join(extra)} (recorded during a warm-up); "
            "use a method that needs only probs and features, or a warm-up signal source"
        )

    def on_progress(done: int, total: int) -> None:
        state.log.progress(ProgressInfo("encode", 0, 1, done, total))

    t0 = time.perf_counter()
    feats, facts = dist.on_main(encode_images, state.data.x.cpu(), src.encoder, progress=on_progress)
    seconds = time.perf_counter() - t0
    state.log.stage("encode", seconds, note=f"{src.encoder}, {facts['image_size']} px, cached: {facts['cached']}")
    t1 = time.perf_counter()
    arrays: dict[str, np.ndarray] = {"features": feats}
    meta: dict[str, Any] = {"signal_source": str(src), "out_of_sample": True, "encoder": facts}
    meta.update(_probe(state, src, arrays))
    meta["agreement_with_given_labels"] = float(np.mean(arrays["probs"].argmax(1) == state.noisy))
    return WarmupSignals(arrays, meta, seconds, time.perf_counter() - t1, None)


def _probe(state: Any, src: SignalSource, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Set ``arrays["probs"]`` to a cross-fitted probe's on ``arrays["features"]`` (replacing the warm-up's
    in-sample predictions, when there are any); its facts."""

    def on_progress(done: int, total: int) -> None:
        state.log.progress(ProgressInfo("probe", 0, 1, done, total))

    facts: dict[str, Any] = {}
    if "probs" in arrays:
        facts["in_sample_agreement_with_given_labels"] = float(np.mean(arrays["probs"].argmax(1) == state.noisy))
    res = dist.on_main(cross_fitted_probe, arrays["features"], state.noisy, num_classes=state.data.num_classes,
                       folds=src.folds, seed=state.cfg.seed, progress=on_progress)  # fmt: skip
    arrays["probs"] = res.probs
    facts["probe"] = {"folds": src.folds, "l2": res.l2, "seconds": round(res.seconds, 4),
                      "inner_log_loss": {f"{k:g}": v for k, v in res.inner_losses.items()}}  # fmt: skip
    return facts


# ------------------------------------------------------------------------------------ fold warm-ups


def _fold_job(
    state: Any, k: int, fold: np.ndarray, keys: tuple[str, ...], *, deepfool: bool, features: bool, writer: bool
) -> dict:
    """Fold model ``k``: warm up on the other folds, predict the held-out fold (probabilities, per-epoch
    log-probabilities, DeepFool norms) and, with ``features``, embed every example. Only the ``writer`` (rank
    0 of the job) keeps a checkpoint in the run directory."""
    from robustprune.train import predict
    from robustprune.train.recorders import EpochPredictions, dynamics_from_log_probs

    cfg, data, tc = state.cfg, state.data, state.train_config
    t0 = time.perf_counter()
    held = np.flatnonzero(fold == k)
    held_t = torch.from_numpy(held).to(data.x.device)
    learner = state.new_learner(seed=fold_seed(cfg.seed, k))
    snaps = EpochPredictions(data.x[held_t], transform=data.clean)
    folds = int(fold.max()) + 1

    def on_progress(info: ProgressInfo) -> None:
        state.log.progress(replace(info, stage=f"warmup fold {k + 1}/{folds}"))

    res = learner.warmup(
        data, np.flatnonzero(fold != k), epochs=cfg.warmup_epochs, callbacks=[snaps], progress=on_progress,
        checkpoint=state.path(f"warmup-fold{k}.ckpt") if writer else None, resume=state.resuming,
    )  # fmt: skip
    probs, _ = predict(learner.scoring_model, data.x[held_t], tc.eval_batch_size,
                       transform=confidence_view(cfg, data, "fold", k), amp=tc.amp)  # fmt: skip
    out: dict[str, Any] = {
        "fold": k, "rows": held, "probs": probs.numpy(),
        "dynamics": dynamics_from_log_probs(snaps.log_probs, state.noisy[held], keys),
        "test_accuracy": ev.accuracy(learner.predict(state.ds.x_test, transform=data.clean)[0], state.ds.y_test),
        "train_seconds": float(sum(h["seconds"] for h in res.history)),
    }  # fmt: skip
    if deepfool:
        out["deepfool"] = deepfool_signal(learner.scoring_model, data, tc.eval_batch_size, rows=held)
    if features:
        out["features"] = predict(learner.scoring_model, data.x, tc.eval_batch_size, transform=data.clean,
                                  amp=tc.amp)[1].numpy()  # fmt: skip
    out["seconds"] = time.perf_counter() - t0
    return out


def _fold_signals(state: Any, src: SignalSource, extra: tuple[str, ...]) -> WarmupSignals:
    from robustprune.train import predict

    cfg, data, tc = state.cfg, state.data, state.train_config
    n, k_folds = state.n, src.folds
    fold = stratified_folds(state.noisy, k_folds, cfg.seed)
    keys = _DYNAMICS + (("epoch_probs",) if "epoch_probs" in extra else ())
    seconds, warm_acc, feats = 0.0, None, None
    if src.features == "full":  # the embedding space: a warm-up on every example
        learner, _, seconds = _full_warmup(state, record=False, record_probs=False)
        feats = predict(learner.scoring_model, data.x, tc.eval_batch_size, transform=data.clean, amp=tc.amp)[1]
        feats = feats.numpy()
        warm_acc = ev.accuracy(learner.predict(state.ds.x_test, transform=data.clean)[0], state.ds.y_test)
        del learner
    w = dist.world()
    spread = spread_folds(k_folds, w.size)
    results: list[dict | None] = [None] * k_folds
    t0 = time.perf_counter()
    writer = dist.is_main()  # rank 0 alone writes into the run directory, inside alone() blocks too
    for k in range(k_folds):
        job = {"deepfool": "deepfool" in extra, "features": src.features == "fold" and k == 0, "writer": writer}
        if not spread:
            results[k] = _fold_job(state, k, fold, keys, **job)
        elif dist.owner_of(k, w) == w.rank:
            with dist.alone():
                results[k] = _fold_job(state, k, fold, keys, **job)
    if spread:
        results = [dist.broadcast_object(results[k], src=dist.owner_of(k, w)) for k in range(k_folds)]
    fold_wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    probs = np.zeros((n, results[0]["probs"].shape[1]), dtype=np.float32)
    dyn: dict[str, np.ndarray] = {}
    df = np.zeros(n, dtype=np.float32) if "deepfool" in extra else None
    for res in results:
        rows = res["rows"]
        probs[rows] = res["probs"]
        for key, a in res["dynamics"].items():
            if key not in dyn:
                dyn[key] = np.zeros((a.shape[0], n, *a.shape[2:]), dtype=a.dtype)
            dyn[key][:, rows] = a
        if df is not None:
            df[rows] = res["deepfool"]
    if feats is None:
        feats = results[0]["features"]
    arrays: dict[str, np.ndarray] = {"probs": probs, "features": feats, **dyn}
    if df is not None:
        arrays["deepfool"] = df
    fold_acc = [float(res["test_accuracy"]) for res in results]
    if warm_acc is None:
        warm_acc = float(np.mean(fold_acc))
    fold_seconds = [round(float(res["seconds"]), 4) for res in results]
    meta = {
        "signal_source": str(src), "out_of_sample": True,
        "folds": {"k": k_folds, "sizes": np.bincount(fold, minlength=k_folds).tolist(), "test_accuracy": fold_acc,
                  "seconds": fold_seconds, "wall_seconds": round(fold_wall, 4),
                  "ranks": "dealt to ranks" if spread else ("all ranks per fold" if w.distributed else "one process"),
                  "features": "a warm-up on every example" if src.features == "full" else "fold 0 model",
                  "dynamics": "held-out predictions after every warm-up epoch (eval mode, clean view)"},
        "full_warmup_seconds": round(seconds, 4),
        "agreement_with_given_labels": float(np.mean(probs.argmax(1) == state.noisy)),
    }  # fmt: skip
    total = seconds + sum(float(res["seconds"]) for res in results)
    state.log.stage("warmup", total, note=f"{k_folds} fold warm-ups" + (" + 1 on every example" if seconds else ""))
    return WarmupSignals(arrays, meta, total, time.perf_counter() - t1, warm_acc)
