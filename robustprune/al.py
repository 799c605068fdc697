"""Active learning: query rounds with any selection method as the acquisition function, under a noisy oracle.

Round 0 labels ``initial`` examples, drawn uniformly at random and class-balanced over the oracle's labels.
Every round then

1. trains a fresh learner on the labelled pool (``epochs``, the run's learner, model and optimiser);
2. evaluates it on the test set and on the pool (re-labeling accuracy: its prediction equals the true label);
3. predicts every training example (probabilities and embeddings on the clean view, and DeepFool norms when
   the method asks for them); for methods over training dynamics, step 1 also predicted every example at the
   end of each epoch (``dynamics_epochs`` of them, evenly spread), see below;
4. queries ``n_query`` unlabelled examples with :func:`robustprune.select`, the labelled pool given as the
   starting set (methods whose choice depends on what is already chosen take it into account) and the
   unlabelled examples as the candidates.

The oracle answers with the dataset's labels after the run's label noise (a noisy oracle); the true labels are
kept for evaluation only. The selection sees, as ``labels``, the oracle's answers on the pool and the
learner's predicted class elsewhere (a pseudo-label, as gradient-embedding acquisition uses): an unlabelled
example has no given label. Training-dynamics signals (per-epoch correctness, losses, margins and
probabilities, for forgetting, aum, dynamic_uncertainty, tdds) come from those per-epoch prediction passes
(:class:`~robustprune.train.recorders.EpochPredictions`: eval mode, clean view, every example) measured against
the same labels: an unlabelled example's trajectory is how the model's belief about its pseudo-label evolved
while it trained on the pool. The passes cost one inference over the training set per recorded epoch and are
made only for such methods.

Under ``torchrun`` every rank trains its shard of each epoch (DDP) and predicts its block of rows; rank 0
alone reads and writes the loop's files and runs the selection, whose picks every rank receives (for
Prune4ReL the ranks build its τ-graph together, as in ``run``).

After every round, ``rounds.json`` / ``rounds.csv`` (one row per round), ``pool.npz`` (labelled indices and the
round that added each) and ``curve.png`` are rewritten atomically; ``resume`` continues at the next round with
the same queries an uninterrupted loop makes (every random choice derives from (seed, round)).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

import robustprune.evaluate as ev
from robustprune._io import atomic_write_bytes, write_json
from robustprune._version import __version__
from robustprune.runconfig import Flag, RunConfig, resolve_config
from robustprune.seeding import derive_seed

__all__ = [
    "ALConfig",
    "ALResult",
    "run_al",
    "config_record",
    "area_under_curve",
    "DYNAMICS_SIGNALS",
    "ROUND_KEYS",
    "default_al_name",
]

#: Signals recorded while training; the loop supplies them from per-epoch prediction passes.
DYNAMICS_SIGNALS = ("correct", "losses", "margins", "epoch_probs")
#: Columns of rounds.csv.
ROUND_KEYS = (
    "round", "labelled", "test_accuracy", "pool_noise_rate", "relabel_accuracy", "queried", "queried_noise_rate",
    "train_seconds", "signals_seconds", "select_seconds",
)  # fmt: skip

_SECTION = "active learning"


def _al_opt(default: Any, help: str, flag: Flag) -> Any:
    return field(default=default, metadata={"section": _SECTION, "help": help, "flag": flag, "grid": True})


@dataclass(frozen=True)
class ALConfig:
    """The loop's own settings; the data, noise, learner, model, training and method come from a
    :class:`~robustprune.runconfig.RunConfig`."""

    initial: int | None = _al_opt(
        None, "Examples labelled in round 0, uniform, class-balanced (default: --n-query).", Flag(("--initial",), "N")
    )
    n_query: int = _al_opt(100, "Examples queried per round.", Flag(("--n-query",), "N"))
    rounds: int = _al_opt(5, "Query rounds after round 0 (each trains once more).", Flag(("--rounds",), "R"))
    dynamics_epochs: int | None = _al_opt(
        None,
        "Methods over training dynamics: predict every example after this many epochs per round, evenly spread, "
        "the last included (default: every epoch).",
        Flag(("--dynamics-epochs",), "E"),
    )

    def __post_init__(self) -> None:
        for name in ("n_query", "rounds"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {v!r}")
        if self.initial is not None and (not isinstance(self.initial, int) or self.initial < 2):
            raise ValueError(f"initial must be an integer of at least 2, got {self.initial!r}")
        d = self.dynamics_epochs
        if d is not None and (not isinstance(d, int) or isinstance(d, bool) or d < 1):
            raise ValueError(f"dynamics-epochs must be a positive integer, got {d!r}")

    @property
    def initial_size(self) -> int:
        return self.n_query if self.initial is None else self.initial


@dataclass
class ALResult:
    """What :func:`run_al` returns: one row per round (as in ``rounds.json``) and the labelled pool."""

    config: RunConfig
    al: ALConfig
    rows: list[dict[str, Any]]
    pool: np.ndarray  # labelled indices, in the order they were added
    added_in: np.ndarray  # the round whose query added each (0 = the initial draw)
    out: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def default_al_name(cfg: RunConfig, al: ALConfig) -> str:
    """A directory name from the loop's main choices, e.g. ``al-digits-sym0.4-sop-uncertainty-i100q100x5-s0``."""
    from robustprune.runconfig import safe_name

    what = f"i{al.initial_size}q{al.n_query}x{al.rounds}"
    return safe_name(f"al-{cfg.dataset}-{cfg.noise}-{cfg.learner}-{cfg.method}-{what}-s{cfg.seed}")


def _initial_pool(noisy: np.ndarray, size: int, seed: int) -> np.ndarray:
    from robustprune.selection.api import select

    sel = select("uniform", labels=noisy, budget=size, class_balanced=True, seed=derive_seed(seed, "al", "initial"))
    return np.asarray(sel.indices, dtype=np.int64)


def _state_paths(out: Path) -> dict[str, Path]:
    return {k: out / f for k, f in (("rounds", "rounds.json"), ("csv", "rounds.csv"), ("pool", "pool.npz"),
                                     ("config", "al_config.json"), ("curve", "curve.png"))}  # fmt: skip


#: RunConfig fields that play no part in an active-learning loop (runtime, or how a pruning run's warm-up makes
#: its signals: each round's model predicts the unlabelled pool, which it never trained on).
_NOT_AL = ("out", "resume", "force", "device", "eval_batch_size", "signal_source")


def config_record(cfg: RunConfig, al: ALConfig) -> dict[str, Any]:
    """What a loop depends on: its run and AL settings as given, and its identity (every resolved value,
    defaults included, and the code; :func:`robustprune.rundir.run_identity`), compared on resume."""
    from robustprune.rundir import run_identity

    run = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_AL}
    ident = run_identity(cfg)
    ident["resolved"] = {k: v for k, v in ident["resolved"].items() if k not in _NOT_AL}
    return {"run": json.loads(json.dumps(run, default=str)), "al": asdict(al), "identity": ident}


def _load_state(out: Path, cfg: RunConfig, al: ALConfig, resume: bool, force: bool):
    from robustprune.rundir import changed_fields, identity_differences

    p = _state_paths(out)
    if not p["rounds"].exists() and not p["pool"].exists():
        return [], None, None
    if force:
        return [], None, None
    if not resume:
        raise ValueError(f"{out} holds an active-learning loop; pass --resume to continue it or --force to redo it")
    stored = json.loads(p["config"].read_text()) if p["config"].exists() else {}
    mine = config_record(cfg, al)
    for part in ("run", "al"):
        # a loop may be extended by more rounds
        diff = changed_fields(stored.get(part, {}), mine[part], ignore=("rounds",) if part == "al" else ())
        if diff:
            raise ValueError(f"{out} was made with other settings ({', '.join(diff)} differ); pass --force to redo it")
    why = identity_differences(stored.get("identity"), mine["identity"])
    if why:
        raise ValueError(
            f"{out} was made by other code or defaults ({'; '.join(why[:3])}{'; ...' if len(why) > 3 else ''}); "
            "pass --force to redo it"
        )
    rows = json.loads(p["rounds"].read_text())["rounds"] if p["rounds"].exists() else []
    if not p["pool"].exists():
        return [], None, None
    with np.load(p["pool"]) as z:
        pool, added = z["indices"].astype(np.int64), z["round"].astype(np.int64)
    keep = added <= len(rows)  # a query saved before its round's row was: redo that round
    return rows, pool[keep], added[keep]


def _write_state(out: Path, rows: list[dict], pool: np.ndarray, added: np.ndarray, summary: dict) -> None:
    p = _state_paths(out)
    buf = io.BytesIO()
    np.savez(buf, indices=pool, round=added)
    atomic_write_bytes(p["pool"], buf.getvalue())  # first the pool, then the rows that account for it
    write_json(p["rounds"], {"robustprune_version": __version__, "rounds": rows, "summary": summary})
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=list(ROUND_KEYS), extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow(row)
    atomic_write_bytes(p["csv"], text.getvalue().encode())
    _plot_curve(p["curve"], rows)


def _plot_curve(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["labelled"] for r in rows], [100 * r["test_accuracy"] for r in rows], marker="o")
    ax.set_xlabel("labelled examples")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def area_under_curve(labelled: list[float], accuracy: list[float]) -> float:
    """Mean accuracy over the labelled-pool range (trapezoidal area divided by the range; the accuracy
    itself when there is one point)."""
    x, y = np.asarray(labelled, dtype=np.float64), np.asarray(accuracy, dtype=np.float64)
    if x.size < 2 or x[-1] == x[0]:
        return float(y.mean()) if y.size else float("nan")
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def _summary(rows: list[dict]) -> dict[str, Any]:
    if not rows:
        return {}
    return {
        "final_test_accuracy": rows[-1]["test_accuracy"],
        "final_labelled": rows[-1]["labelled"],
        "auc": area_under_curve([r["labelled"] for r in rows], [r["test_accuracy"] for r in rows]),
    }


def run_al(
    config: RunConfig,
    al: ALConfig,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    engine_progress: Callable[[Any], None] | None = None,
) -> ALResult:
    """Run the active-learning loop (see the module docs); ``progress`` receives each finished round's row
    (on rank 0 under torchrun)."""
    import robustprune.distributed as dist
    from robustprune.rundir import RunLog
    from robustprune.selection.registry import get_method
    from robustprune.stages import RunState, load_run_data

    cfg = resolve_config(config)
    get_method(cfg.method)  # an unknown method fails before any data is read
    dist.init(cfg.device)  # a no-op unless torchrun started several processes
    main = dist.is_main()
    out = Path(config.out).expanduser() if config.out is not None else None
    ds, noisy, _rec, x_val, y_val = load_run_data(cfg)
    n = int(ds.num_train)
    total = al.initial_size + al.rounds * al.n_query
    if total > n:
        raise ValueError(
            f"n-query ({al.n_query}) x rounds ({al.rounds}) + initial ({al.initial_size}) = {total} exceeds the "
            f"{n} training examples; lower --n-query, --rounds or --initial"
        )
    rows: list[dict[str, Any]] = []
    pool = added = None
    if out is not None:
        rows, pool, added = dist.on_main(_open_state, out, cfg, al, bool(config.resume), bool(config.force))
    if pool is None:
        rows = []
        pool = _initial_pool(noisy, al.initial_size, cfg.seed)
        added = np.zeros(pool.shape[0], dtype=np.int64)
    log = RunLog(out / "al.log" if out is not None else None, engine_progress)
    state = RunState.create(cfg, ds, noisy, x_val=x_val, y_val=y_val, out=out, resuming=False, log=log)
    wanted = _method_signals(cfg.method)
    try:
        for round_no in range(len(rows), al.rounds + 1):
            row, queried = _round(state, al, pool, round_no, wanted, engine_progress)
            if queried is not None:
                pool = np.concatenate([pool, queried])
                added = np.concatenate([added, np.full(queried.shape[0], round_no + 1, dtype=np.int64)])
            rows.append(row)
            log.write(
                f"round {round_no}: {row['labelled']} labelled, test accuracy {row['test_accuracy']:.4f}, "
                f"pool noise {row['pool_noise_rate']:.4f}"
            )
            if out is not None and main:
                _write_state(out, rows, pool, added, _summary(rows))
            if progress is not None and main:
                progress(row)
    finally:
        log.close()
    # the last round queries nothing: the pool is what it trained on
    return ALResult(cfg, al, rows, pool, added, out, _summary(rows))


def _round(
    state: Any,
    al: ALConfig,
    pool: np.ndarray,
    round_no: int,
    wanted: tuple[str, ...],
    engine_progress: Callable[[Any], None] | None,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """One round of the loop: a fresh learner trained on the labelled ``pool``, evaluated, and (except in the
    last round) its signals and the method's query of ``al.n_query`` new examples. Returns the round's row and
    the queried indices (None in the last round)."""
    from robustprune.stages import shared_graph_selection
    from robustprune.train import predict
    from robustprune.warmup import deepfool_signal

    cfg, ds, data, noisy, true = state.cfg, state.ds, state.data, state.noisy, state.true
    eval_batch = state.train_config.eval_batch_size
    querying = round_no < al.rounds
    dynamics = tuple(k for k in wanted if k in DYNAMICS_SIGNALS)
    t0 = time.perf_counter()
    learner = state.new_learner()
    recorder = None
    if dynamics and querying:
        from robustprune.train.recorders import EpochPredictions

        recorder = EpochPredictions(count=al.dynamics_epochs)
    learner.fit(data, pool, epochs=cfg.epochs, progress=engine_progress, callbacks=[recorder] if recorder else [])
    train_s = time.perf_counter() - t0
    test_acc = ev.accuracy(learner.predict(ds.x_test, transform=data.clean)[0], ds.y_test)
    t1 = time.perf_counter()
    probs, feats = predict(learner.scoring_model, data.x, eval_batch, transform=data.clean)
    probs_np = probs.numpy()
    pred = probs_np.argmax(1)
    report = ev.subset_report(pool, noisy, true_labels=true, predictions=pred, num_classes=ds.num_classes)
    row: dict[str, Any] = {
        "round": round_no,
        "labelled": int(pool.shape[0]),
        "test_accuracy": float(test_acc),
        "pool_noise_rate": report["subset_noise_rate"],
        "relabel_accuracy": report["relabel_accuracy"],
        "class_counts": report["class_counts"],
        "train_seconds": round(train_s, 4),
    }
    if not querying:  # the last round queries nothing: the pool is what it trained on
        return row, None
    labels = pred.astype(np.int64)
    labels[pool] = noisy[pool]  # the oracle's answers where we have them
    extra: dict[str, Any] = {}
    if "deepfool" in wanted:
        extra["deepfool"] = deepfool_signal(learner.scoring_model, data, eval_batch)
    if recorder is not None:
        from robustprune.train.recorders import dynamics_from_log_probs

        extra.update(dynamics_from_log_probs(recorder.log_probs, labels, dynamics))
        row["dynamics_epochs"] = len(recorder.epochs)
    row["signals_seconds"] = round(time.perf_counter() - t1, 4)
    query = functools.partial(_query, cfg, labels, probs_np, feats.numpy(), extra, pool, state.n, al.n_query, round_no)
    # rank 0 queries; for the τ-graph methods the other ranks help build the graph
    sel = shared_graph_selection(cfg.method, query, query, True)
    queried = np.asarray(sel.indices, dtype=np.int64)
    row["queried"] = int(queried.shape[0])
    row["queried_noise_rate"] = float(np.mean(noisy[queried] != true[queried]))
    row["select_seconds"] = round(sel.elapsed, 4)
    row["start_used"] = sel.params.get("start_used", True)
    if "graph_backend" in sel.params:  # Prune4ReL: how its τ-graph was built
        row["graph_backend"] = sel.params["graph_backend"]
    return row, queried


def _open_state(out: Path, cfg: RunConfig, al: ALConfig, resume: bool, force: bool):
    """The stored rounds and pool (or nothing), after checking they belong to this loop; records the config."""
    from robustprune.rundir import refuse_foreign

    refuse_foreign(out, "al")
    state = _load_state(out, cfg, al, resume, force)
    out.mkdir(parents=True, exist_ok=True)
    write_json(_state_paths(out)["config"], config_record(cfg, al))
    return state


def _query(
    cfg: RunConfig,
    labels,
    probs,
    feats,
    extra,
    pool: np.ndarray,
    n: int,
    n_query: int,
    round_no: int,
    shared_build=None,
):
    """One round's acquisition: ``n_query`` picks among the unlabelled examples, the pool as the start
    (``shared_build``: the ranks' shared τ-graph build under torchrun)."""
    from robustprune.selection.api import select
    from robustprune.signals import Signals

    sig = Signals(labels=labels, probs=probs, features=feats, **extra)
    free = np.setdiff1d(np.arange(n), pool)
    sel = select(cfg.method, signals=sig, budget=n_query, candidates=free, start=pool,
                 class_balanced=cfg.class_balanced, seed=derive_seed(cfg.seed, "al", round_no),
                 shared_build=shared_build, **cfg.params)  # fmt: skip
    q = np.asarray(sel.indices, dtype=np.int64)
    if np.intersect1d(q, pool).size or np.unique(q).size != q.size:
        raise RuntimeError(f"method {cfg.method} queried a labelled or repeated example")
    return sel


def _method_signals(method: str) -> tuple[str, ...]:
    from robustprune.selection.registry import get_method

    info = get_method(method)
    return (*info.requires, *info.optional)


def al_fields() -> tuple[str, ...]:
    """Names of :class:`ALConfig`'s fields (its command-line options)."""
    return tuple(f.name for f in fields(ALConfig))
