"""``select``: the public entry point of the selection layer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from robustprune.selection.budget import resolve_budget, select_by_scores
from robustprune.selection.registry import SIGNAL_HELP, SIGNAL_NAMES, MethodInfo, get_method
from robustprune.selection.result import MethodOutput, Selection
from robustprune.signals import check_signals, example_axis

if TYPE_CHECKING:
    from robustprune.selection.core.graph import SharedBuild

__all__ = ["select"]


def select(
    method: str,
    *,
    labels: Any = None,
    probs: Any = None,
    features: Any = None,
    correct: Any = None,
    losses: Any = None,
    margins: Any = None,
    epoch_probs: Any = None,
    deepfool: Any = None,
    signals: Any = None,
    fraction: float | None = None,
    budget: int | None = None,
    class_balanced: bool | None = None,
    seed: int = 0,
    candidates: Any = None,
    start: Any = None,
    progress: Callable[[int, int], None] | None = None,
    shared_build: SharedBuild | None = None,
    **params: Any,
) -> Selection:
    """Choose a subset of ``budget`` examples (or ``round(fraction * N)``) with a registered method.

    Parameters
    ----------
    method : str
        A name from :func:`robustprune.list_methods`.
    labels : array (N,), optional
        Given (possibly noisy) labels.
    probs : array (N, K), optional
        Softmax outputs of a warmed-up model.
    features : array (N, D), optional
        Embeddings (penultimate layer).
    correct, losses, margins : array (E, N), optional
        Per-epoch training dynamics (forgetting, small-loss/EL2N over epochs, AUM).
    epoch_probs : array (E, N, K), optional
        Per-epoch softmax outputs of the warm-up (TDDS).
    deepfool : array (N,), optional
        DeepFool minimal-perturbation norms under the warmed-up model.
    signals : Signals, optional
        A bundle of the arrays above; arrays passed explicitly take precedence.
    fraction : float in (0, 1], optional
        Share of examples to keep. Exactly one of ``fraction`` and ``budget``.
    budget : int, optional
        Number of examples to keep.
    class_balanced : bool, optional
        Balance the budget over the given labels; ``None`` uses the method's default.
    seed : int
        Seed for methods that draw random numbers. The global RNGs are never touched.
    candidates : array of int indices or boolean mask (N,), optional
        The examples that may be chosen (default: all, or all not in ``start``). Signals stay over all N
        examples, so neighbourhoods, coverage and similarities can use every example; only candidates are
        returned. Score methods rank the candidates' scores (class quotas over the candidates' labels). Greedy
        and sampling methods that accept ``pool`` restrict their picks themselves; the others are run on the
        candidates alone (every signal sliced to them, indices mapped back).
    start : array of int indices or boolean mask (N,), optional
        The starting set S0 of already-chosen (labelled) examples, for active learning; pruning is the case
        of an empty S0. It must be disjoint from ``candidates``; the budget counts only the new picks, which
        never include a member of S0, and may not exceed the number of candidates. Methods that honour S0
        (:attr:`MethodInfo.honours_start`: kcenter_greedy, prune4rel, prune4rel_auto, submodular, cal) choose
        given S0; the others ignore it, and ``params["start_used"]`` says which happened.
    progress : callable (done, total), optional
        Called from long-running methods to report progress.
    shared_build : SharedBuild, optional
        Under torchrun, lets the ranks build the method's τ-graph together (methods with
        :attr:`MethodInfo.shares_graph`; see :class:`~robustprune.selection.core.graph.SharedBuild`). Every
        rank then calls ``select`` with the same arguments; ranks other than 0 raise ``BuildHandedOff`` once
        their part is sent.
    **params
        Method options (see ``robustprune methods`` or ``get_method(name).options``).

    Returns
    -------
    Selection
        Exactly ``budget`` unique indices in pick/rank order, plus scores and gains where defined. With
        ``candidates`` or ``start``, ``params`` also holds ``n_candidates`` and ``n_start`` (counts), and with
        ``start``, ``start_used``: whether the method's choice took S0 into account. The scores of a method
        run on the candidates alone are NaN elsewhere.
    """
    info = get_method(method)
    arrays = _gather(
        info,
        signals,
        labels=labels,
        probs=probs,
        features=features,
        correct=correct,
        losses=losses,
        margins=margins,
        epoch_probs=epoch_probs,
        deepfool=deepfool,
    )
    n = _n_of(arrays)
    pool, s0 = _pool_and_start(n, candidates, start)
    k = resolve_budget(n, fraction, budget, candidates=None if pool is None else int(pool.shape[0]))
    balanced = _class_balanced(info, class_balanced, has_labels="labels" in arrays)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    options = info.check_options(params)

    # a greedy or sampling method that cannot restrict its picks to the candidates runs on them alone
    sliced = pool is not None and info.kind != "score" and not info.accepts("pool")
    call = _call_arguments(
        info,
        _slice(arrays, pool) if sliced else arrays,
        options,
        pool=None if sliced else pool,
        start=s0,
        api={"seed": int(seed), "progress": progress, "shared_build": shared_build, "n": n},
    )

    t0 = time.perf_counter()
    if info.kind == "score":
        out = _run_score_method(info, call, k, n, labels=arrays.get("labels"), balanced=balanced, pool=pool)
    else:
        out = _run_picking_method(info, call, k, balanced)
    elapsed = time.perf_counter() - t0

    indices, scores = np.asarray(out.indices, dtype=np.int64), out.scores
    if sliced:
        indices, scores = _map_back(info.name, indices, scores, pool, k, n)
    weights = None if out.weights is None else np.asarray(out.weights, dtype=np.float64)
    _check_result(info.name, indices, k, n, pool=pool, weights=weights)
    resolved = {**options, **out.info, "budget": k, "class_balanced": balanced, "seed": int(seed)}
    if pool is not None:
        resolved.update(n_candidates=int(pool.shape[0]), n_start=int(s0.shape[0]))
        if start is not None:
            resolved["start_used"] = bool(info.honours_start and not sliced)
    return Selection(
        indices=indices,
        scores=scores,
        gains=None if out.gains is None else np.asarray(out.gains),
        method=info.name,
        params=resolved,
        n=n,
        elapsed=elapsed,
        weights=weights,
    )


def _class_balanced(info: MethodInfo, class_balanced: bool | None, *, has_labels: bool) -> bool:
    """Whether the budget is balanced over the classes: as asked, or the method's default; checked."""
    balanced = info.default_class_balanced if class_balanced is None else bool(class_balanced)
    if balanced and info.balance == "none":
        raise ValueError(f"method {info.name!r} does not support class_balanced=True")
    if balanced and not has_labels:
        raise ValueError("class_balanced=True needs labels: pass labels=... or signals with labels")
    return balanced


def _call_arguments(
    info: MethodInfo,
    arrays: dict[str, np.ndarray],
    options: dict[str, Any],
    *,
    pool: np.ndarray | None,
    start: np.ndarray | None,
    api: dict[str, Any],
) -> dict[str, Any]:
    """The keyword arguments of the method's function (all but ``budget`` and ``class_balanced``): the signals
    it reads, its options, the candidates (``pool``) and the starting set when it accepts them (``pool`` None:
    no candidates were given, or the method runs on them alone), and those of the ``api`` arguments (seed,
    progress, ...) its signature names."""
    call: dict[str, Any] = {s: arrays[s] for s in (*info.requires, *info.optional) if s in arrays}
    call.update(options)
    if pool is not None:
        if info.accepts("pool"):
            call["pool"] = pool
        if info.honours_start:
            call["start"] = start
    call.update({name: value for name, value in api.items() if info.accepts(name)})
    return call


def _run_score_method(
    info: MethodInfo,
    call: dict[str, Any],
    k: int,
    n: int,
    *,
    labels: np.ndarray | None,
    balanced: bool,
    pool: np.ndarray | None,
) -> MethodOutput:
    """A score method's scores, checked, and the ``k`` indices its kept end gives (class quotas when
    ``balanced``; only candidates when ``pool`` is given)."""
    scores = np.asarray(info.func(**call))
    if scores.shape != (n,):
        raise RuntimeError(f"method {info.name} returned scores of shape {scores.shape}, expected ({n},)")
    if np.isnan(scores).any():
        raise ValueError(f"method {info.name} produced NaN scores; check the input signals")
    indices = select_by_scores(scores, k, keep=info.keep, labels=labels, class_balanced=balanced, candidates=pool)
    return MethodOutput(indices=indices, scores=scores)


def _run_picking_method(info: MethodInfo, call: dict[str, Any], k: int, balanced: bool) -> MethodOutput:
    """A greedy or sampling method's own ``k`` picks (it balances the classes itself when it accepts
    ``class_balanced``)."""
    if info.accepts("class_balanced"):
        call = {**call, "class_balanced": balanced}
    out = info.func(budget=k, **call)
    if not isinstance(out, MethodOutput):
        raise RuntimeError(f"method {info.name} must return a MethodOutput")
    return out


def _map_back(
    name: str, indices: np.ndarray, scores: np.ndarray | None, pool: np.ndarray, k: int, n: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The result of a method run on the candidates alone, over all ``n`` examples: its indices (positions
    among the candidates, checked) mapped to example indices, and its per-candidate scores spread over all
    examples (NaN for the others)."""
    _check_result(name, indices, k, pool.shape[0])
    indices = pool[indices]
    if scores is not None and np.ndim(scores) == 1 and np.shape(scores)[0] == pool.shape[0]:
        full = np.full(n, np.nan)
        full[pool] = scores
        scores = full
    return indices, scores


def _index_set(value: Any, n: int, name: str) -> np.ndarray:
    """Example indices (ascending int64) from an index array or a boolean mask of length ``n``, checked."""
    a = np.asarray(value)
    if a.dtype == bool:
        if a.shape != (n,):
            raise ValueError(f"{name} as a boolean mask must have shape ({n},), got {a.shape}")
        return np.flatnonzero(a).astype(np.int64)
    if a.ndim == 1 and a.size == 0:
        return np.empty(0, dtype=np.int64)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(
            f"{name} must be a 1-D array of example indices or a boolean mask of length {n}, got {a.dtype} {a.shape}"
        )
    a = np.sort(a.astype(np.int64))
    if a[0] < 0 or a[-1] >= n:
        bad = int(a[0] if a[0] < 0 else a[-1])
        raise ValueError(f"{name} has index {bad} outside [0, {n})")
    dup = a[1:][a[1:] == a[:-1]]
    if dup.size:
        raise ValueError(f"{name} holds duplicate index {int(dup[0])}")
    return a


def _pool_and_start(n: int, candidates: Any, start: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The candidates and the starting set as ascending indices; (None, None) when neither is given."""
    if candidates is None and start is None:
        return None, None
    s0 = np.empty(0, dtype=np.int64) if start is None else _index_set(start, n, "start")
    if candidates is None:
        keep = np.ones(n, dtype=bool)
        keep[s0] = False
        return np.flatnonzero(keep).astype(np.int64), s0
    pool = _index_set(candidates, n, "candidates")
    both = np.intersect1d(pool, s0, assume_unique=True)
    if both.size:
        raise ValueError(
            f"start and candidates must be disjoint: {both.size} example(s) are in both (e.g. index {int(both[0])}); "
            "a member of the starting set is already chosen and cannot be picked again"
        )
    return pool, s0


def _slice(arrays: dict[str, np.ndarray], pool: np.ndarray) -> dict[str, np.ndarray]:
    return {name: np.take(v, pool, axis=example_axis(name)) for name, v in arrays.items()}


def _gather(info: MethodInfo, signals: Any, **explicit: Any) -> dict[str, np.ndarray]:
    """The signals the method reads (and the labels whenever given: for class balance and N), validated once by
    :func:`~robustprune.signals.check_signals`; arrays of a :class:`~robustprune.signals.Signals` bundle were
    checked when it was made and are only compared with the others."""
    raw: dict[str, Any] = {}
    if signals is not None:
        if not hasattr(signals, "arrays"):
            raise TypeError("signals must be a robustprune.Signals (use Signals.load(path) for a file)")
        raw.update(signals.arrays())
    given = {k: v for k, v in explicit.items() if v is not None}
    raw.update(given)
    missing = [s for s in info.requires if s not in raw]
    if missing:
        s = missing[0]
        raise ValueError(
            f"method {info.name!r} needs the signal {s!r} ({SIGNAL_HELP[s]}); give a signals file that "
            f"has the array {s!r} (robustprune run writes one after warm-up) or pass {s}=... in Python"
        )
    wanted = {*info.requires, *info.optional, "labels"}
    use = [s for s in SIGNAL_NAMES if s in raw and s in wanted]
    if not use:  # a method that reads no signal (uniform, full): the first one given tells N
        use = [s for s in SIGNAL_NAMES if s in raw][:1]
    if not use:
        raise ValueError("pass at least labels (or another signal) so the number of examples is known")
    from robustprune.selection.core.rows import is_row_source

    # a memmap or shards: features, and what the method reads by blocks, are not read whole; any other row
    # source (the probs of a shard directory for a method that reads them whole) is read here
    by_block = {"features", *info.reads_by_block}
    lazy = [s for s in use if s in by_block and is_row_source(raw[s])]
    for s in use:
        if s not in lazy and is_row_source(raw[s]):
            raw[s] = np.asarray(raw[s])
    out = check_signals({s: raw[s] for s in use if s not in lazy}, trusted=set(use) - set(given))
    return _with_row_sources(out, {s: raw[s] for s in lazy}, set(given)) if lazy else out


def _with_row_sources(checked: dict[str, Any], lazy: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """``checked`` with the row sources added in the signals' order, each checked block by block (unless it
    came from a bundle, checked when made) against the others' number of examples (and ``probs`` against the
    labels' classes)."""
    from robustprune.selection.core.rows import check_signal_rows

    n = _n_of(checked) if checked else None
    for s, v in lazy.items():
        if s in given:
            lazy[s] = check_signal_rows(v, s, n, labels={"labels": checked.get("labels")})
    return {s: checked.get(s, lazy.get(s)) for s in SIGNAL_NAMES if s in checked or s in lazy}


def _n_of(arrays: dict[str, np.ndarray]) -> int:
    name = next(iter(arrays))  # _gather guarantees one signal
    return int(arrays[name].shape[example_axis(name)])


def _check_result(
    name: str,
    indices: np.ndarray,
    k: int,
    n: int,
    *,
    pool: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> None:
    """``k`` unique indices in ``[0, n)``, all of them candidates (``pool``), and ``k`` positive finite
    ``weights`` when the method gives weights."""
    if indices.ndim != 1 or indices.shape[0] != k:
        raise RuntimeError(f"method {name} returned {indices.shape} indices, expected exactly {k}")
    if k and (indices.min() < 0 or indices.max() >= n):
        raise RuntimeError(f"method {name} returned an index outside [0, {n})")
    if np.unique(indices).shape[0] != k:
        raise RuntimeError(f"method {name} returned duplicate indices")
    if pool is not None and not np.isin(indices, pool).all():
        raise RuntimeError(f"method {name} returned an index that is not a candidate")
    if weights is not None and (weights.shape != (k,) or not np.isfinite(weights).all() or (weights <= 0).any()):
        raise RuntimeError(f"method {name} returned weights that are not {k} positive finite numbers")
