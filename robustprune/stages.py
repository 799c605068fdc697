"""The stages of a run, over its shared state (:class:`RunState`): load the data and the noise, the
warm-up's signals, the selection, training on the subset, and the evaluation. :mod:`robustprune.pipeline`
orchestrates them and writes ``config.json`` and ``metrics.json``; the signals stage writes ``signals.npz``, the
selection stage ``selection.npz``, training its checkpoint, and every stage logs its end.

Under torchrun every rank runs every stage: training and the prediction passes are sharded across ranks
(the results gathered in example order), the selection runs on rank 0 and is handed to the others, and rank 0
alone reads stored artifacts and writes files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import numpy as np
import torch

import robustprune.distributed as dist
import robustprune.evaluate as ev
from robustprune._provenance import code_identity, host_identity, now
from robustprune._version import __version__
from robustprune.runconfig import RunConfig, warmup_key
from robustprune.rundir import RunLog
from robustprune.seeding import derive_seed
from robustprune.selection.result import Selection, load_weights
from robustprune.signals import Signals
from robustprune.train.engine import ProgressInfo

if TYPE_CHECKING:  # annotations only: the stages import these lazily
    from robustprune.data import ArrayDataset
    from robustprune.noise import NoiseRecord
    from robustprune.selection.core.graph import SharedBuild
    from robustprune.train import Learner, TrainConfig, TrainData

__all__ = [
    "RunState",
    "RunMetrics",
    "load_run_data",
    "signals_stage",
    "selection_stage",
    "train_stage",
    "evaluate_stage",
]


@dataclass(kw_only=True)
class RunState:
    """The state shared by the stages of one run (made by :meth:`create`)."""

    cfg: RunConfig
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
    #: Seconds of ``times`` spent before this process: stages and epochs finished before a resume, and signals
    #: reused from an earlier warm-up (``timings.earlier`` in metrics.json; the run's whole time is
    #: ``wall`` + ``earlier``).
    earlier: float = 0.0

    @classmethod
    def create(
        cls,
        cfg: RunConfig,
        ds: ArrayDataset,
        noisy: np.ndarray,
        *,
        x_val: torch.Tensor | None,
        y_val: np.ndarray | None,
        out: Path | None,
        resuming: bool,
        log: RunLog,
    ) -> RunState:
        """The state of a run of the resolved ``cfg`` on ``ds`` with the given ``noisy`` labels: its training data
        on the device and its training schedule, decided here for every kind of run (``run``, ``al``)."""
        from robustprune.train import TrainConfig, TrainData

        train_config = TrainConfig(
            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=float(cfg.lr), seed=cfg.seed, device=cfg.device,
            eval_batch_size=cfg.eval_batch_size,
        )  # fmt: skip
        return cls(
            cfg=cfg, ds=ds, data=TrainData.from_dataset(ds, labels=noisy, device=cfg.device), noisy=noisy,
            true=ds.y_train.numpy(), x_val=x_val, y_val=y_val, train_config=train_config, out=out,
            resuming=resuming, log=log,
        )  # fmt: skip

    @property
    def n(self) -> int:
        return int(self.data.num_samples)

    def path(self, name: str) -> Path | None:
        return None if self.out is None else self.out / name

    def new_learner(self, seed: int | None = None) -> Learner:
        """A fresh learner for this run (``seed`` replaces the run's training seed, e.g. for a fold model)."""
        from dataclasses import replace

        from robustprune.models import build_model
        from robustprune.train import build_learner

        cfg, ds = self.cfg, self.ds
        tc = self.train_config if seed is None else replace(self.train_config, seed=int(seed))
        shape = ds.input_shape
        chans, size = (shape[0], shape[1]) if ds.is_image else (shape[0], 1)

        def model_fn() -> torch.nn.Module:
            return build_model(cfg.model, ds.num_classes, in_channels=chans, image_size=size)

        return build_learner(cfg.learner, model_fn, ds.num_classes, self.n, tc, **cfg.learner_params)


def load_run_data(
    cfg: RunConfig,
) -> tuple[ArrayDataset, np.ndarray, NoiseRecord, torch.Tensor | None, np.ndarray | None]:
    """Dataset (after subset, minus validation), noisy labels, noise record, validation inputs and labels."""
    from robustprune.data import stratified_split
    from robustprune.noise import apply_noise

    ds = _load_dataset(cfg)
    noisy, rec = apply_noise(
        ds.y_train.numpy(),
        cfg.noise,
        num_classes=ds.num_classes,
        seed=cfg.noise_seed,
        dataset=ds.name,
        features=ds.x_train if cfg.noise.startswith("instance") else None,
        human_labels=ds.label_sets or None,
    )
    if int(noisy.max()) >= ds.num_classes:
        raise ValueError(f"noisy labels reach class {int(noisy.max())} but {ds.name} has {ds.num_classes}")
    if cfg.val_fraction == 0:
        return ds, noisy, rec, None, None
    tr, va = stratified_split(noisy, cfg.val_fraction, seed=derive_seed(cfg.seed, "val") % 2**32)
    x_val, y_val = ds.x_train[va], noisy[va]
    ds = ds.select_train(tr, note=f"minus a validation split of {va.size}")
    return ds, noisy[tr], rec, x_val, y_val


def _load_dataset(cfg: RunConfig) -> ArrayDataset:
    from robustprune.data import load_dataset

    return load_dataset(cfg.dataset, cfg.data_dir, subset=cfg.subset, test_subset=cfg.test_subset, **cfg.dataset_params)


def on_demand_signals(cfg: RunConfig) -> tuple[str, ...]:
    """The on-demand signals (:data:`~robustprune.signals.ON_DEMAND_SIGNALS`) a run computes: those its method
    requires or uses, plus the config's ``extra_signals``."""
    from robustprune.selection.registry import get_method
    from robustprune.signals import ON_DEMAND_SIGNALS

    wanted = set(cfg.extra_signals)
    if cfg.selection is None:
        info = get_method(cfg.method)
        wanted.update(info.requires, info.optional)
    return tuple(s for s in ON_DEMAND_SIGNALS if s in wanted)


def signals_stage(state: RunState, given: Signals | None = None) -> Signals | None:
    """The run's signals, and the one place that decides where they come from: none when a selection file fixes
    the subset; ``given``, an earlier warm-up's bundle (``cfg.signals``, loaded and checked by the caller); a
    resumed run's own signals.npz; or the warm-up(s) and signals passes of :mod:`robustprune.warmup`. The
    per-epoch probabilities and the DeepFool norms are computed only when :func:`on_demand_signals` asks."""
    from robustprune.selection.registry import get_method
    from robustprune.warmup import DEEPFOOL_ATTACK, compute_signals, remove_checkpoints

    cfg, path = state.cfg, state.path("signals.npz")
    if cfg.selection is not None:
        return None
    if given is not None:
        return reuse_signals(state, given, note=f"signals from {cfg.signals}")
    if state.resuming and dist.on_main(path.exists):
        return dist.main_only(_stored_signals, state, path)  # only rank 0 selects, so only it needs them
    extra = on_demand_signals(cfg)
    if cfg.warmup_epochs == 0 and get_method(cfg.method).labels_only and not extra:
        return _labels_only_signals(state, path)
    if "epoch_probs" in extra and cfg.warmup_epochs == 0:
        raise ValueError("epoch_probs are recorded during the warm-up; set warmup_epochs to at least 1 (tdds: 3)")
    if str(cfg.signal_source).startswith("encoder") and cfg.selection is None:
        trained = sorted(set(get_method(cfg.method).requires) - {"labels", "probs", "features"})
        if trained:
            raise ValueError(
                f"method {cfg.method!r} needs {', '.join(trained)}, recorded while a network trains; signal_source "
                f"{cfg.signal_source} trains no network (use a warm-up signal source for this method)"
            )
    ws = compute_signals(state, extra)
    state.times["warmup"], state.times["signals"] = ws.warmup_seconds, ws.signals_seconds
    meta = _signals_meta(
        cfg, warmup_epochs=cfg.warmup_epochs, confidence_pass=cfg.confidence_pass,
        warmup_seconds=state.times["warmup"], signals_seconds=state.times["signals"],
        warmup_test_accuracy=ws.warmup_test_accuracy, on_demand_signals=list(extra), **ws.meta,
        provenance={"code": code_identity(), "host": host_identity(cfg.device), "computed_at": now()},
    )  # fmt: skip
    if "deepfool" in extra:
        meta["deepfool"] = {**DEEPFOOL_ATTACK, "view": "clean", "norm": "l2, not squared"}
    sig = Signals(labels=state.noisy, true_labels=state.true, meta=meta, **ws.arrays)
    if path is not None and dist.is_main():
        sig.save(path)
        remove_checkpoints(state)
    acc = ws.warmup_test_accuracy
    note = (f"warm-up test accuracy {acc:.4f}; " if acc is not None else "no warm-up; ") + \
        f"signals {ws.meta.get('signal_source')}"  # fmt: skip
    state.log.stage("signals", state.times["signals"], note=note)
    return sig


def _stored_signals(state: RunState, path: Path) -> Signals:
    """The signals.npz of an interrupted run, reused on resume (it must match the run's labels)."""
    from robustprune.warmup import remove_checkpoints

    sig = Signals.load(path)
    if sig.n != state.n or not np.array_equal(sig.labels, state.noisy):
        raise ValueError(f"{path} does not match this run's training labels; pass --force to redo the run")
    remove_checkpoints(state)  # left over when a run stopped right after writing the signals
    return reuse_signals(state, sig)


def reuse_signals(state: RunState, sig: Signals, note: str = "") -> Signals:
    """Account for signals computed earlier (a resumed run's signals.npz, or an earlier warm-up's bundle):
    their warm-up and signal times are reported, not spent again, and counted as time before this process."""
    state.times["warmup"] = float(sig.meta.get("warmup_seconds", 0.0))
    state.times["signals"] = float(sig.meta.get("signals_seconds", 0.0))
    state.earlier += state.times["warmup"] + state.times["signals"]
    state.reused.append("signals")
    state.log.stage("warmup", state.times["warmup"], reused=True, note=note)
    state.log.stage("signals", state.times["signals"], reused=True)
    return sig


def _signals_meta(cfg: RunConfig, **facts: Any) -> dict[str, Any]:
    """The meta of a signals bundle: the run it describes (dataset, noise, learner, model, seed, warm-up key)
    and what made it (``facts``)."""
    return {
        "dataset": cfg.dataset, "noise": cfg.noise, "learner": cfg.learner, "model": cfg.model, "seed": cfg.seed,
        "warmup_key": warmup_key(cfg), **facts,
    }  # fmt: skip


def _labels_only_signals(state: RunState, path: Path | None) -> Signals:
    """Nothing to learn from an untrained network: a labels-only bundle, no prediction pass."""
    cfg = state.cfg
    meta = _signals_meta(cfg, warmup_epochs=0, warmup_seconds=0.0, signals_seconds=0.0, warmup_test_accuracy=None)
    sig = Signals(labels=state.noisy, true_labels=state.true, meta=meta)
    if path is not None and dist.is_main():
        sig.save(path)
    state.log.stage("warmup", 0.0)
    state.log.stage("signals", 0.0, note="labels only (no warm-up, method needs no predictions)")
    return sig


T = TypeVar("T")


def selection_stage(state: RunState, sig: Signals | None, given: tuple[np.ndarray, str] | None) -> Selection:
    """The subset: stored selection.npz, the given selection file, or the configured method (on rank 0, which
    hands it to the other ranks under torchrun; see :func:`shared_graph_selection` for the graph methods)."""
    if given is not None or not dist.world().distributed:
        return dist.on_main(_selection, state, sig, given)
    stored = dist.on_main(lambda: bool(state.resuming and state.path("selection.npz").exists()))
    everywhere = int(dist.all_reduce(torch.tensor([0 if sig is None else 1]), "min")[0]) == 1
    return shared_graph_selection(
        state.cfg.method,
        lambda shared: _selection(state, sig, given, shared),
        lambda shared: _method_selection(state, sig, shared),
        everywhere and not stored,
    )


def shared_graph_selection(
    method: str,
    main: Callable[[SharedBuild | None], T],
    helper: Callable[[SharedBuild | None], Any],
    join: bool,
) -> T:
    """``main(shared)`` on rank 0, its result (or error) handed to every rank.

    Under torchrun, for a method that can share its τ-graph's build (:attr:`MethodInfo.shares_graph`) and when
    ``join`` says that every rank holds the inputs, each rank makes a
    :class:`~robustprune.selection.core.graph.SharedBuild` and the other ranks run ``helper(shared)`` (the same
    selection, writing nothing) meanwhile: the graph's tiles are dealt to the ranks and gathered on rank 0,
    which alone goes on to the greedy; the helpers stop once their tiles are sent (or, when the method ends up
    without a graph, finish a selection whose result is dropped). ``join`` must be the same on every rank.
    Otherwise ``shared`` is None.
    """
    from robustprune.selection.core.graph import SharedBuild
    from robustprune.selection.registry import get_method

    if not (join and dist.world().distributed and get_method(method).shares_graph):
        return dist.on_main(main, None)
    shared = SharedBuild()
    if not dist.is_main():
        try:
            helper(shared)
        except Exception:  # noqa: BLE001 - BuildHandedOff (its tiles went to rank 0), or an error rank 0
            pass  # meets as well and hands to every rank just below
    return dist.on_main(main, shared)


def _selection(
    state: RunState, sig: Signals | None, given: tuple[np.ndarray, str] | None, shared: SharedBuild | None = None
) -> Selection:

    cfg, path = state.cfg, state.path("selection.npz")
    if state.resuming and path.exists():
        sel = Selection.load(path)
        if sel.n != state.n:
            raise ValueError(f"{path} was made from {sel.n} examples, not {state.n}; pass --force to redo the run")
        state.reused.append("selection")
        state.earlier += sel.elapsed
        state.log.stage("select", sel.elapsed, reused=True)
        return sel
    t0 = time.perf_counter()
    if given is not None:
        idx, origin = given
        params = {"source": cfg.selection}
        weights = load_weights(cfg.selection) if cfg.params.get("weighted", True) is not False else None
        sel = Selection(idx, None, None, origin, params, state.n, elapsed=time.perf_counter() - t0, weights=weights)
    else:
        sel = _method_selection(state, sig, shared)
    if path is not None:
        sel.save(path)
    state.log.stage("select", sel.elapsed, note=f"{sel.method}: {sel.budget} of {state.n}")
    return sel


def _method_selection(state: RunState, sig: Signals | None, shared: SharedBuild | None = None) -> Selection:
    """The configured method on the signals (every rank runs this with its ``shared`` graph build)."""
    from robustprune.selection.api import select

    def on_progress(done: int, total: int) -> None:
        state.log.progress(ProgressInfo("select", 0, 1, done, total))

    cfg = state.cfg
    return select(
        cfg.method, signals=sig, fraction=cfg.fraction, class_balanced=cfg.class_balanced, seed=cfg.seed,
        progress=on_progress, shared_build=shared, **cfg.params,
    )  # fmt: skip


def train_stage(state: RunState, sel: Selection) -> tuple[Learner, list[dict[str, Any]]]:
    """A fresh learner trained on the subset, with test (and validation) accuracy per epoch."""
    from robustprune.train import EvalAccuracy

    cfg, data = state.cfg, state.data
    learner = state.new_learner()
    evals = [EvalAccuracy(state.ds.x_test, state.ds.y_test, transform=data.clean, every=cfg.eval_every, key="test_acc")]
    if state.x_val is not None:
        evals.append(EvalAccuracy(state.x_val, state.y_val, transform=data.clean, every=cfg.eval_every, key="val_acc"))
    res = learner.fit(
        data,
        sel.indices,
        epochs=cfg.epochs,
        callbacks=evals,
        progress=state.log.progress,
        checkpoint=state.path("train.ckpt"),
        resume=state.resuming,
        weights=sel.weights,
    )
    state.times["train"] = float(sum(h["seconds"] for h in res.history))  # the epochs before a resume included
    state.earlier += float(sum(h["seconds"] for h in res.history[: res.resumed_from or 0]))
    note = "" if res.resumed_from is None else f"resumed after epoch {res.resumed_from}"
    state.log.stage("train", state.times["train"], note=note)
    return learner, res.history


class RunMetrics(TypedDict, total=False):
    """What ``metrics.json`` holds (the dict :func:`evaluate_stage` returns): the one declaration of its keys,
    which the run summary, the sweep's reports and tests read. Fractions are in [0, 1]."""

    # accuracy over training (evaluate.summarize_history)
    epochs: int  # trained on the subset
    test_accuracy: float  # last epoch
    best_epoch: int | None  # the epoch of the best validation accuracy (with val_fraction > 0)
    val_accuracy: float | None
    val_accuracy_last: float | None
    test_accuracy_at_best_val: float | None
    # the subset (evaluate.subset_report)
    budget: int
    fraction: float
    class_counts: list[int]  # per given class
    class_counts_true: list[int] | None
    noise_rate: float | None  # the whole training set's
    subset_noise_rate: float | None
    class_noise_rates: list[float | None] | None  # per given class, in the subset
    relabel_accuracy: float | None  # the final model's predictions vs the true labels, on the subset
    relabel_accuracy_all: float | None  # the same on every training example
    # the run
    method: str
    learner: str
    model: str
    dataset: str
    noise: str
    seed: int
    num_train: int
    num_test: int
    num_val: int
    warmup_epochs: int
    warmup_test_accuracy: float | None
    signals: dict[str, Any] | None  # where the signals came from (_signal_facts)
    selection: dict[str, Any]  # the method's declared facts and the subset's weights (_selection_facts)
    timings: dict[str, float]  # seconds per stage; "wall" (this process), "earlier" (before a resume)
    sample_state: dict[str, dict[str, float | None]]  # the learner's per-example statistics (_state_summary)
    noise_record: dict[str, Any]
    history: list[dict[str, Any]]  # one row per epoch
    reused: list[str]  # stages read back from the run directory
    robustprune_version: str
    provenance: dict[str, Any]  # code, host, date


def evaluate_stage(
    state: RunState, learner: Learner, sel: Selection, sig: Signals | None, history: list, rec: NoiseRecord
) -> RunMetrics:
    """metrics.json: accuracies, re-labeling accuracy, noise rates, class counts, times, history."""
    cfg = state.cfg
    t0 = time.perf_counter()
    train_probs, _ = learner.predict(state.data.x, transform=state.data.clean)
    k = state.ds.num_classes
    report = ev.subset_report(sel.indices, state.noisy, true_labels=state.true, predictions=train_probs, num_classes=k)
    summary = ev.summarize_history(history)
    times = state.times
    times["selection"] = sel.elapsed
    times["evaluate"] = time.perf_counter() - t0
    times["total"] = sum(times[s] for s in ("warmup", "signals", "selection", "train", "evaluate"))
    times["earlier"] = state.earlier
    metrics = {
        **summary,
        **report,
        "method": sel.method,
        "learner": cfg.learner,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "noise": cfg.noise,
        "seed": cfg.seed,
        "num_train": state.n,
        "num_test": state.ds.num_test,
        "num_val": 0 if state.x_val is None else int(state.x_val.shape[0]),
        "warmup_epochs": cfg.warmup_epochs,
        "warmup_test_accuracy": None if sig is None else sig.meta.get("warmup_test_accuracy"),
        "signals": _signal_facts(sig),
        "selection": _selection_facts(sel),
        "timings": {key: round(v, 4) for key, v in times.items()},
        "sample_state": _state_summary(learner, sel.indices, state.noisy, state.true),
        "noise_record": rec.to_dict(),
        "history": history,
        "robustprune_version": __version__,
        "provenance": {"code": code_identity(), "host": host_identity(cfg.device), "computed_at": now()},
    }
    metrics = json.loads(json.dumps(metrics, default=float))
    acc, rel = summary["test_accuracy"], report["relabel_accuracy"]
    state.log.stage("evaluate", times["evaluate"], note=f"test accuracy {acc:.4f}, re-labeling accuracy {rel:.4f}")
    return metrics


def _signal_facts(sig: Signals | None) -> dict[str, Any] | None:
    """Where the signals came from (in-sample or out-of-sample), and how often they agree with the given
    labels (a warm-up that memorised the noise agrees with nearly all of them)."""
    if sig is None:
        return None
    meta = sig.meta
    facts = {k: meta[k] for k in ("signal_source", "out_of_sample", "agreement_with_given_labels",
                                  "in_sample_agreement_with_given_labels") if k in meta}  # fmt: skip
    if "folds" in meta:
        facts["folds"] = {
            k: meta["folds"][k] for k in ("k", "features", "ranks", "test_accuracy") if k in meta["folds"]
        }
    if "probe" in meta:
        facts["probe"] = {k: meta["probe"][k] for k in ("folds", "l2")}
    if "encoder" in meta:
        facts["encoder"] = dict(meta["encoder"])
    return facts or None


def _selection_facts(sel: Selection) -> dict[str, Any]:
    """The facts the method declares in its registry entry (:attr:`MethodInfo.facts`: Prune4ReL's τ, η, degree,
    coverage, ...), and the per-example weights the subset is trained with."""
    from robustprune.selection.registry import get_method, list_methods

    facts = get_method(sel.method).run_facts(sel.params) if sel.method in list_methods() else {}
    if sel.weights is not None:  # trained with per-example loss weights (craig, gradmatch)
        w = sel.weights
        facts["weights"] = {"min": float(w.min()), "max": float(w.max()), "mean": float(w.mean())}
    return facts


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
