"""Greedy selection speed: facility location against apricot's lazy greedy, and any method timed by name.

Reached through ``benchmarks/selection_speed.py greedy ...`` (the selection-speed entry point) or directly.

**Facility location vs apricot.** Both maximise f(S) = Σ_i max_{j∈S} s_ij on the SAME similarity matrix, in
this one process: robustprune's complete (``tau=0``) rescaled-cosine graph ``s = ½ + ½·cos`` (float32, exactly
symmetric, self-similarity 1) is handed to apricot densified to float64 with ``metric="precomputed"``. Timed:

- robustprune, **greedy only**: ``SetFunction`` + the lazy (CELF) greedy on the already built graph;
- robustprune, **graph only** and **end to end**: ``select("submodular", features=..., tau=0.0,
  class_balanced=False)`` from the raw features, graph included (its picks must equal the greedy-only run's);
- apricot ``FacilityLocationSelection(k, metric="precomputed", optimizer="lazy").fit(S)``, as a user calls it.
  apricot compiles its numba kernels on *every* ``fit`` (``cache=False``), so a 10-point fit is timed as well:
  ``fit − that`` estimates apricot's greedy without its fixed per-call cost, the strictest comparison;
- apricot **end to end**: the same similarity computed with numpy from the features, plus ``fit``.

Each side runs ``--repeats`` times, alternating, and the best time of each is compared. The objective of both
pick sets is evaluated by one function on the one float64 matrix.

apricot is not a dependency of robustprune: install it in an environment of its own (without it only
robustprune's side runs)::

    python3.11 -m venv /tmp/apricot-venv
    /tmp/apricot-venv/bin/pip install apricot-select numpy scipy scikit-learn typer rich matplotlib
    /tmp/apricot-venv/bin/pip install torch==2.13.0
    /tmp/apricot-venv/bin/pip install --no-deps -e .
    /tmp/apricot-venv/bin/python benchmarks/selection_speed.py greedy

**Any registered method by name** (``--methods``): ``robustprune.select(name, ...)`` on synthetic signals of
the given N and D (whatever the method's registry entry asks for: labels, probs, features, per-epoch
dynamics, ...), best of ``--repeats`` after an untimed warm-up. With ``--methods`` the facility-location
comparison runs only when ``--facility`` is given too (it stores N² similarities). E.g.::

    python benchmarks/selection_speed.py greedy --methods craig,glister --n 50000 --dim 512 --repeats 1
    python benchmarks/selection_speed.py greedy --methods submodular --param optimizer=stochastic
"""

from __future__ import annotations

import argparse
import ast
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

import robustprune as rp
from robustprune.selection.methods.submodular import SetFunction, _graph, _maximise
from robustprune.selection.registry import get_method

APRICOT_SETUP = """apricot is not installed in this environment (it is not a robustprune dependency). To compare, run:
    python3.11 -m venv /tmp/apricot-venv
    /tmp/apricot-venv/bin/pip install apricot-select numpy scipy scikit-learn typer rich matplotlib
    /tmp/apricot-venv/bin/pip install torch==2.13.0
    /tmp/apricot-venv/bin/pip install --no-deps -e .
    /tmp/apricot-venv/bin/python benchmarks/selection_speed.py greedy"""


# --------------------------------------------------------------------------------------------- data


def blobs(n: int, dim: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: ``clusters`` centres N(0, 2²) in ``dim`` dimensions, unit noise; float32 features and
    each point's cluster."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.normal(size=(clusters, dim))
    assign = rng.integers(0, clusters, n)
    x = (centres[assign] + rng.normal(size=(n, dim))).astype(np.float32)
    return x, assign


def synthetic_signals(
    n: int, dim: int, classes: int, epochs: int, seed: int, wanted: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """The signals named in ``wanted`` for N examples of D-dimensional blob features: labels with 20%
    symmetric noise, softmax probs from logits favouring the true class, and per-epoch dynamics of a model
    that grows more confident epoch by epoch. Raises for a signal it cannot make (add a generator here)."""
    rng = np.random.default_rng(seed + 1)
    x, assign = blobs(n, dim, max(classes, 4 * classes), seed)
    true = assign % classes
    labels = np.where(rng.random(n) < 0.2, rng.integers(0, classes, n), true)
    logits0 = rng.normal(size=(n, classes)).astype(np.float32)
    boost = rng.uniform(0.0, 5.0, n).astype(np.float32)

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

    def epoch_logits() -> np.ndarray:  # (E, N, K): the true class gains weight epoch by epoch
        ramp = np.linspace(0.2, 1.0, epochs, dtype=np.float32)[:, None]
        out = np.repeat(logits0[None], epochs, axis=0) + rng.normal(scale=0.5, size=(epochs, n, classes)).astype(
            np.float32
        )
        out[:, np.arange(n), true] += ramp * boost[None, :]
        return out

    cache: dict[str, np.ndarray] = {}

    def dyn_logits() -> np.ndarray:
        if "logits" not in cache:
            cache["logits"] = epoch_logits()
        return cache["logits"]

    def margins() -> np.ndarray:
        z = dyn_logits()
        given = z[:, np.arange(n), labels]
        other = z.copy()
        other[:, np.arange(n), labels] = -np.inf
        return (given - other.max(axis=2)).astype(np.float32)

    logits = logits0.copy()
    logits[np.arange(n), true] += boost
    makers: dict[str, Callable[[], np.ndarray]] = {
        "labels": lambda: labels.astype(np.int64),
        "probs": lambda: softmax(logits),
        "features": lambda: x,
        "correct": lambda: dyn_logits().argmax(axis=2) == labels[None, :],
        "losses": lambda: -np.log(np.maximum(softmax(dyn_logits())[:, np.arange(n), labels], 1e-12)),
        "margins": margins,
        "epoch_probs": lambda: softmax(dyn_logits()),
        "deepfool": lambda: rng.gamma(2.0, 0.5, n).astype(np.float32),
    }
    missing = [s for s in wanted if s not in makers]
    if missing:
        raise ValueError(f"no synthetic generator for signal(s) {missing}: add one to synthetic_signals()")
    return {s: makers[s]() for s in wanted}


# ------------------------------------------------------------------------------- timing any method


def time_method(
    name: str,
    *,
    n: int,
    dim: int,
    budget: int,
    classes: int = 10,
    epochs: int = 10,
    seed: int = 0,
    class_balanced: bool | None = None,
    **params: object,
) -> tuple[float, rp.Selection]:
    """Time ``robustprune.select(name, ...)`` on synthetic signals of N examples and D feature dimensions
    (every signal the method requires or uses, see :func:`synthetic_signals`). Signal generation is not
    timed. Returns (seconds, selection)."""
    info = get_method(name)
    signals = synthetic_signals(n, dim, classes, epochs, seed, (*info.requires, *info.optional))
    t0 = time.perf_counter()
    sel = rp.select(name, **signals, budget=budget, class_balanced=class_balanced, seed=seed, **params)
    return time.perf_counter() - t0, sel


def run_methods(args: argparse.Namespace) -> None:
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    params = dict(_parse_param(p) for p in args.param)
    budget = int(round(args.fraction * args.n))
    balanced = {"on": True, "off": False, "default": None}[args.balanced]
    print(
        f"\nmethods by name: N={args.n} D={args.dim} K={args.classes} epochs={args.epochs} budget={budget} "
        f"class_balanced={args.balanced} options={params or '-'}"
    )
    for name in names:
        kw = dict(classes=args.classes, epochs=args.epochs, seed=args.seed, class_balanced=balanced, **params)
        small = min(args.n, 500)
        time_method(name, n=small, dim=args.dim, budget=max(1, small // 10), **kw)  # warm-up: first-call costs
        runs = []
        for _ in range(args.repeats):
            seconds, sel = time_method(name, n=args.n, dim=args.dim, budget=budget, **kw)
            runs.append(seconds)
        best = min(runs)
        print(
            f"  {sel.method:<24} {best:9.3f} s  ({budget:,} picks, {budget / max(best, 1e-9):,.0f} picks/s; "
            f"runs {_fmt(runs)})"
        )


def _parse_param(text: str) -> tuple[str, object]:
    key, _, raw = text.partition("=")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare string such as optimizer=lazy
    return key.strip(), value


# ------------------------------------------------------------------------ facility location vs apricot


def facility_value(s: np.ndarray, picks: np.ndarray) -> float:
    """f(S) = Σ_i max_{j∈S} s_ij on the dense float64 matrix, the one function that scores both sides."""
    best = np.zeros(s.shape[0])
    for j in np.asarray(picks):
        np.maximum(best, s[:, j], out=best)
    return float(best.sum())


def numpy_similarity(x: np.ndarray) -> np.ndarray:
    """What an apricot user would compute for ``metric='precomputed'``: ½ + ½·cos, float64 for ``fit``."""
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    return (0.5 + 0.5 * (z @ z.T)).astype(np.float64)


def facility_location(args: argparse.Namespace) -> None:
    x, _ = blobs(args.n, args.dim, args.clusters, args.seed)
    k = args.picks
    try:
        from apricot import FacilityLocationSelection  # optional: not a robustprune dependency
    except ImportError:
        FacilityLocationSelection = None
        if not args.skip_apricot:
            print(APRICOT_SETUP)
    use_apricot = FacilityLocationSelection is not None and not args.skip_apricot
    print(
        f"\nfacility location: N={args.n} D={args.dim} blobs={args.clusters} picks={k} lazy greedy, all pairs "
        f"(tau=0), best of {args.repeats}; apricot: {_apricot_version() if use_apricot else 'not run'}"
    )

    t_graph, t_greedy, t_e2e, t_ap, t_ap_e2e = [], [], [], [], []
    picks = sel_picks = ap_picks = None
    s = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        graph = _graph(x, 0.0, 50, args.device, args.seed)
        t_graph.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        picks, _gains = _maximise(SetFunction(graph, "facility_location"), args.n, k, "lazy", args.seed)
        t_greedy.append(time.perf_counter() - t0)
        if s is None:  # the one matrix both sides see, and the objective is scored on
            s = graph.weights.astype(np.float64).reshape(args.n, args.n)
            if graph.nnz != args.n * args.n:
                raise RuntimeError("the tau=0 graph is not complete; the dense comparison needs every pair")
        del graph

        t0 = time.perf_counter()
        sel = rp.select("submodular", features=x, budget=k, class_balanced=False, function="facility_location",
                        optimizer="lazy", tau=0.0, device=args.device, seed=args.seed)  # fmt: skip
        t_e2e.append(time.perf_counter() - t0)
        sel_picks = sel.indices

        if use_apricot:
            t0 = time.perf_counter()
            ap = FacilityLocationSelection(k, metric="precomputed", optimizer="lazy").fit(s)
            t_ap.append(time.perf_counter() - t0)
            ap_picks = np.asarray(ap.ranking)
            t0 = time.perf_counter()
            s_np = numpy_similarity(x)
            FacilityLocationSelection(k, metric="precomputed", optimizer="lazy").fit(s_np)
            t_ap_e2e.append(time.perf_counter() - t0)
            del s_np

    g, gr, e2e = min(t_graph), min(t_greedy), min(t_e2e)
    f_ours = facility_value(s, picks)
    print(f"  robustprune greedy only (graph built):   {gr:8.3f} s   runs {_fmt(t_greedy)}")
    print(f"  robustprune graph only (tau=0, dense):   {g:8.3f} s   runs {_fmt(t_graph)}")
    print(f"  robustprune end to end (select, graph):  {e2e:8.3f} s   runs {_fmt(t_e2e)}")
    print(f"  select() picks == greedy-only picks: {np.array_equal(sel_picks, picks)}")
    print(f"  f(S) robustprune: {f_ours:.6f}")
    if not use_apricot:
        return

    t0 = time.perf_counter()
    FacilityLocationSelection(1, metric="precomputed", optimizer="lazy").fit(s[:10, :10].copy())
    fixed = time.perf_counter() - t0
    ap_t, ap_e2e = min(t_ap), min(t_ap_e2e)
    f_ap = facility_value(s, ap_picks)
    same_order = int(np.argmax(np.append(picks != ap_picks, True)))
    print(f"  apricot fit (precomputed S):             {ap_t:8.3f} s   runs {_fmt(t_ap)}")
    print(f"  apricot fixed cost per fit (10 points):  {fixed:8.3f} s   (numba compiles its kernels on every fit)")
    print(f"  apricot fit minus fixed cost:            {ap_t - fixed:8.3f} s")
    print(f"  apricot end to end (numpy S + fit):      {ap_e2e:8.3f} s   runs {_fmt(t_ap_e2e)}")
    print(f"  f(S) apricot:     {f_ap:.6f}")
    print(
        f"  objective ratio robustprune/apricot: {f_ours / f_ap:.9f} (difference {f_ours - f_ap:.3g}); same pick "
        f"set: {set(picks.tolist()) == set(ap_picks.tolist())}; same order for the first {same_order} picks"
    )
    if same_order < k:  # first divergence: both picks' marginal gains after the common prefix
        base = facility_value(s, picks[:same_order])
        ours_g = facility_value(s, picks[: same_order + 1]) - base
        ap_g = facility_value(s, np.append(picks[:same_order], ap_picks[same_order])) - base
        print(
            f"  at pick {same_order + 1}: robustprune takes {picks[same_order]} (gain {ours_g:.9g}), apricot "
            f"{ap_picks[same_order]} (gain {ap_g:.9g}){': a tie' if ours_g == ap_g else ''}"
        )
    print(
        f"  speed-up (apricot time / robustprune time): greedy vs fit {ap_t / gr:.2f}x; greedy vs fit minus "
        f"fixed cost {(ap_t - fixed) / gr:.2f}x; end to end {ap_e2e / e2e:.2f}x"
    )


def _apricot_version() -> str:
    from importlib.metadata import version

    import numba

    return f"apricot-select {version('apricot-select')} (numba {numba.__version__})"


def _fmt(ts: list[float]) -> str:
    return " ".join(f"{t:.3f}" for t in ts)


# ------------------------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="selection_speed.py greedy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=5_000, help="examples (default 5,000)")
    ap.add_argument("--dim", type=int, default=64, help="feature dimension D (default 64)")
    ap.add_argument("--clusters", type=int, default=50, help="Gaussian blobs of the facility-location data")
    ap.add_argument("--picks", type=int, default=500, help="facility-location budget (default 500)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per side, alternating; best is kept")
    ap.add_argument("--skip-apricot", action="store_true", help="no apricot run even when it is installed")
    ap.add_argument("--facility", action="store_true", help="with --methods, run the facility-location comparison too")
    ap.add_argument("--methods", default="", help="comma-separated registered method names to time by name")
    ap.add_argument("--fraction", type=float, default=0.1, help="budget of --methods as a share of N")
    ap.add_argument("--classes", type=int, default=10, help="classes of the --methods signals")
    ap.add_argument("--epochs", type=int, default=10, help="epochs of the --methods per-epoch signals")
    ap.add_argument("--balanced", choices=("default", "on", "off"), default="default", help="class_balanced")
    ap.add_argument("--param", action="append", default=[], help="KEY=VALUE method option for --methods")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    print(
        f"robustprune {rp.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    )
    if args.facility or not args.methods:
        facility_location(args)
    if args.methods:
        run_methods(args)


if __name__ == "__main__":
    main()
