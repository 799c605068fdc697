"""Prune4ReL: pick the subset that maximises total reduced neighbourhood confidence.

Objective (Park et al., NeurIPS 2023)::

    F(S) = sum_v tanh(NC_v(S) / eta),   NC_v(S) = sum_{x in S} w(v, x) * c_x

with ``w(v, x) = s(v, x) * [s(v, x) > tau]``, ``s = 0.5 + 0.5 * cos`` of the embeddings, and ``c_x`` the
warm-up model's confidence in x (max softmax probability by default).

Two greedy rules are offered:

* ``gain="self"`` (default) is the released rule, bit for bit given the same confidences and
  embeddings: pick ``argmax_i tanh((NC_i + c_i)/eta) - tanh(NC_i/eta)`` (only the example's own term),
  ties to the lowest index, float32 throughout, with the released class-balanced round-robin and its
  1.5x break rule.
* ``gain="exact"`` is the true marginal gain ``sum_{v in N(x)} tanh((NC_v + w_vx c_x)/eta) - tanh(NC_v/eta)``
  with lazy (CELF) evaluation, which is exact because F is monotone submodular; it carries the
  (1 - 1/e) guarantee (without class balance).

Engine: the similarity-threshold graph is built once by blocked matrix products
(:mod:`robustprune.selection.core.graph`); each pick then touches only the picked example's neighbours. The self
rule keeps every example's current gain exactly (recomputed for the neighbours of each pick) in a two-level
block-maximum structure (:mod:`.engines`), so the argmax is the dense rule's argmax exactly; a lazy heap is *not*
used for it because the float32 gain is not monotone in NC at the last bit, which would let stale heap keys
reorder near-ties. ``engine="dense"`` runs the released per-pick similarity column instead (no graph; for
thresholds so low the graph would not fit).

Names: ``conf`` holds the confidences c_x, ``nc`` the neighbourhood confidences NC_v.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robustprune.selection.core.geometry import EMBEDDINGS, auto_tau, coverage, support_scale, transform_embedding
from robustprune.selection.core.graph import (
    SharedBuild,
    SimilarityGraph,
    check_backend,
    choose_backend,
    normalize_rows,
    rescaled_cosine_graph,
    resolve_block_size,
    tile_count,
)
from robustprune.selection.core.rows import is_row_source
from robustprune.selection.methods.prune4rel.engines import TIER, Neighbors, greedy_exact, greedy_self, self_gain
from robustprune.selection.registry import Fact, register
from robustprune.selection.result import MethodOutput

__all__ = ["prune4rel", "prune4rel_auto", "RECOMMENDED", "confidence_scores", "self_gain", "prune4rel_objective"]

#: What a Prune4ReL run reports about its neighbourhoods and its label filter (``prefer="confident"``).
FACTS = (
    Fact("tau", "τ {:.4g}", row="neighbourhoods"),
    Fact("target_degree", " (auto, for mean degree {:.3g})", row="neighbourhoods"),
    Fact("mean_degree", ", mean degree {:.1f}", row="neighbourhoods"),
    Fact("eta", ", η {:.3g}", row="neighbourhoods"),
    Fact("coverage", "; the subset covers {:.1%} of all examples", row="neighbourhoods"),
    Fact("flagged", "{} examples flagged as likely label errors", row="label filter"),
    Fact("topped_up", ", {} of them picked to fill the budget", row="label filter", skip=(0,)),
    Fact("embedding"),
    Fact("gain"),
    Fact("confidence"),
    Fact("prefer"),
)

#: Valid values of ``confidence``.
CONFIDENCES = ("max_prob", "least_confidence", "margin", "entropy", "label_prob")


def confidence_scores(probs: np.ndarray, kind: str = "max_prob") -> np.ndarray:
    """Confidence of the warm-up model in each example; higher = more confident. float32, shape (N,).

    ``kind``: "max_prob" (the released ``LeastConfidence`` option: max softmax probability, the default),
    "margin" (top-1 minus top-2 probability) or "entropy" (the released definition ``-sum p log(p + 1e-6)``,
    kept only for parity: it is *higher* for *less* confident predictions, so it is a poor confidence).
    """
    p = np.asarray(probs, dtype=np.float32)
    if kind in ("max_prob", "least_confidence"):
        return p.max(axis=1)
    if kind == "margin":
        top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        return (top2[:, 1] - top2[:, 0]).astype(np.float32)
    if kind == "entropy":
        return (-(np.log(p + np.float32(1e-6)) * p).sum(axis=1)).astype(np.float32)
    raise ValueError(f"confidence must be 'max_prob', 'margin' or 'entropy', got {kind!r}")


def prune4rel_objective(
    graph: SimilarityGraph, confidences: np.ndarray, selected: np.ndarray, eta: float = 1.0
) -> float:
    """F(S) = sum_v tanh(NC_v(S)/eta) over all examples, in float64, for a set of selected indices."""
    nc = np.zeros(graph.n, dtype=np.float64)
    conf = np.asarray(confidences, dtype=np.float64)
    for p in np.asarray(selected, dtype=np.int64):
        idx, w = graph.row(int(p))
        nc[idx] += w.astype(np.float64) * conf[p]
    return float(np.tanh(nc / eta).sum())


@register(
    "prune4rel",
    kind="greedy",
    requires=("probs", "features"),
    optional=("labels",),
    balance="round_robin",
    default_class_balanced=True,
    description="Prune4ReL: greedy max of total neighbourhood confidence (re-labeling aware; NeurIPS'23)",
    facts=FACTS,
    reads_by_block=("probs",),
)
def prune4rel(
    *,
    probs: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray | None = None,
    budget: int,
    class_balanced: bool = True,
    tau: float | str = 0.95,
    eta: float | str = 1.0,
    confidence: str = "max_prob",
    gain: str = "self",
    embedding: str = "raw",
    target_degree: float | None = None,
    prefer: str = "all",
    balance_by: str = "given",
    engine: str = "auto",
    max_neighbors: int | None = None,
    max_edges: int | None = 200_000_000,
    block_size: int | None = None,
    backend: str = "auto",
    device: str = "auto",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    start: np.ndarray | None = None,
    pool: np.ndarray | None = None,
    shared_build: SharedBuild | None = None,
    parts: int = 1,
    partition: str = "cluster",
    oversample: float = 2.0,
) -> MethodOutput:
    """Prune4ReL selection.

    With every option at its default this is the released rule bit for bit (given the same signals); the
    options after ``gain`` are this package's extensions (see ``docs/results.md`` for what each does).

    Parameters
    ----------
    probs : (N, K) softmax outputs; features : (N, D) embeddings; labels : (N,) given labels (for balance).
    budget : int
    class_balanced : bool
        Released round-robin over the classes (K = number of probability columns) with the 1.5x break rule;
        afterwards picks are global.
    tau : float or "auto"
        Neighbourhood threshold on ``0.5 + 0.5·cos`` (0.95 means cos > 0.9), strict. "auto" picks the τ at
        which the graph's mean degree is ``target_degree`` (:func:`~robustprune.selection.core.geometry.auto_tau`).
    eta : float or "auto"
        tanh temperature, > 0. "auto" sets it to the mean neighbourhood confidence a uniform subset of the
        budget would give an example (:func:`~robustprune.selection.core.geometry.support_scale`).
    confidence : {"max_prob", "margin", "entropy", "label_prob"}
        c(x): the released options, or "label_prob", the probability of the *given* label (a supporter
        counts only as far as the model agrees with its label; needs labels).
    gain : {"self", "exact"}
        Released self-gain rule, or the true marginal gain (lazy greedy).
    embedding : {"raw", "center", "whiten"}
        The space the cosine is taken in (:func:`~robustprune.selection.core.geometry.transform_embedding`).
    target_degree : float, optional
        Mean degree (self included) wanted by ``tau="auto"``; default ``4 · N / budget``, about four
        neighbourhoods' worth of overlap per pick.
    prefer : {"all", "confident"}
        Which examples may be picked first. "confident" picks only examples that confident learning does
        not flag as label errors (:func:`~robustprune.selection.core.confident_learning.label_issue_mask`),
        then, once those run out in a class, the flagged ones; the objective still covers every example.
    balance_by : {"given", "predicted"}
        The classes of the round-robin: the given labels (released) or the warm-up model's predictions.
    engine : {"auto", "graph", "dense"}
        "graph" builds the sparse threshold graph once; "dense" computes one similarity column per pick as
        released (O(budget·N·D)); "auto" uses the graph and falls back to dense (self gain only) when the
        graph would exceed ``max_edges``.
    max_neighbors : int, optional
        Cap each example's neighbour list to its most similar ones (changes the method; off by default).
    max_edges, block_size, device
        Graph-building limits and placement (see ``rescaled_cosine_graph``).
    backend : {"auto", "blocked", "faiss", "faiss-approx"}
        How the graph's pairs are found (``rescaled_cosine_graph``'s option; the faiss ones need
        ``pip install robustprune[faiss]``). "auto" is the blocked build (the reference, and the fastest
        exact build); "faiss" finds the same graph by faiss's exact range search; "faiss-approx" (an IVF
        index, some pairs may be missed) is for millions of examples and is used only when asked for. The
        one used is ``info["graph_backend"]``.
    seed : int
        Seeds the similarity sample of ``tau="auto"`` when N exceeds it and the k-means of
        ``backend="faiss-approx"``; nothing else is random.
    start, pool
        Active learning (``select(..., start=S0, candidates=...)``): the NC of every example starts with the
        support of S0 (``NC_v = Σ_{x∈S0} w(v, x)·c_x``, so both gain rules maximise F(S0 ∪ S) − F(S0)); only
        candidates (``pool``) are picked, and the class round-robin counts only them; the objective still
        covers every example. The "auto" rules size for the final set: ``target_degree`` defaults to
        ``4·N/(|S0| + budget)`` and η to the support of a uniform subset of ``|S0| + budget``. An empty S0 is
        pruning (identical picks).
    shared_build
        Under torchrun, the ranks build the τ-graph together (see
        :class:`~robustprune.selection.core.graph.SharedBuild`).
    parts, partition, oversample
        ``parts > 1``: the partitioned two-round greedy for millions of examples
        (:mod:`~robustprune.selection.core.partition`; needs ``gain="exact"``): the examples split into
        ``parts`` by ``partition`` ("cluster": k-means of the embeddings, "class", "random"), each part's own
        graph and greedy picking ``oversample`` times its share of the budget, then a greedy over the union;
        under torchrun the parts are dealt to the ranks. 1 (default): the one-process greedy above.

    Returns
    -------
    MethodOutput
        Indices in pick order, the gain of each pick, ``scores`` = the confidences. ``info`` has the τ and η
        used, the graph's mean degree and the subset's coverage (share of examples with NC > 0).
    """
    _check_options(tau, eta, gain, engine, embedding, prefer, balance_by, confidence, target_degree)
    check_backend(backend)
    n = probs.shape[0]
    needs_labels = class_balanced and balance_by == "given" or confidence == "label_prob" or prefer != "all"
    if needs_labels and labels is None:
        raise ValueError(
            "labels are needed for class_balanced=True (balance_by='given'), confidence='label_prob' and "
            "prefer='confident': pass labels=... or signals with labels"
        )
    lab = None if labels is None else np.asarray(labels, dtype=np.int64)
    if parts == 1 and is_row_source(probs):  # a memory map or shards: the one-process greedy reads them whole
        probs = np.asarray(probs, dtype=np.float32)
    num_classes = probs.shape[1]
    s0 = None if start is None or not len(start) else np.asarray(start, dtype=np.int64)
    allowed = None
    if pool is not None:
        allowed = np.zeros(n, dtype=bool)
        allowed[np.asarray(pool, dtype=np.int64)] = True
    final = budget + (0 if s0 is None else s0.shape[0])  # the size of the final set S0 ∪ S, for the auto rules
    if parts != 1:  # web scale: the two-round greedy on partitions (methods/prune4rel/partitioned.py)
        from robustprune.selection.methods.prune4rel.partitioned import prune4rel_parts

        return prune4rel_parts(
            lambda p, y: _confidences(p, confidence, y), features, probs, lab, budget=budget,
            class_balanced=class_balanced, balance_by=balance_by,
            parts=parts, partition=partition, oversample=oversample, tau=tau, eta=eta, gain=gain, engine=engine,
            prefer=prefer, embedding=embedding, target_degree=target_degree, max_neighbors=max_neighbors,
            max_edges=max_edges, block_size=block_size, backend=backend, device=device, seed=seed, progress=progress,
            start=s0, pool=pool, shared_build=shared_build,
        )  # fmt: skip
    conf = _confidences(probs, confidence, lab)

    space = _space_and_threshold(
        features, embedding=embedding, tau=tau, target_degree=target_degree, final_size=final, seed=seed, device=device
    )

    # one progress scale for both phases: graph tiles first, then picks
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    tiles = 0
    if engine != "dense":
        from robustprune._device import resolve_device

        dev = resolve_device(device)
        chosen = choose_backend(backend, n, dev, max_neighbors)
        block_size = resolve_block_size(block_size, dev, chosen)
        tiles = tile_count(n, block_size, chosen, max_neighbors)
    graph_progress = greedy_progress = None
    if progress is not None:

        def graph_progress(done: int, _total: int) -> None:
            progress(done, tiles + budget)

        def greedy_progress(done: int, _total: int) -> None:
            progress(tiles + done, tiles + budget)

    t0 = time.perf_counter()
    hoods = _neighbourhoods(
        space.z,
        space.tau,
        engine=engine,
        needs_graph=gain == "exact" or eta == "auto",
        max_neighbors=max_neighbors,
        max_edges=max_edges,
        block_size=block_size,
        device=device,
        progress=graph_progress,
        backend=backend,
        seed=seed,
        shared_build=shared_build,
    )
    if eta == "auto":
        eta = support_scale(hoods.graph, conf, final / n) or 1.0
    eta = float(eta)
    t1 = time.perf_counter()

    penalty = _candidate_tiers(prefer, lab, probs)
    groups = None
    if class_balanced:
        groups = lab if balance_by == "given" else np.asarray(probs).argmax(axis=1).astype(np.int64)
    if gain == "self":
        picks, gains, break_at, covered = greedy_self(
            conf, hoods.neighbors, budget, eta=np.float32(eta), labels=groups, num_classes=num_classes,
            progress=greedy_progress, penalty=penalty, start=s0, allowed=allowed,
        )  # fmt: skip
    else:
        picks, gains, break_at, covered = greedy_exact(
            conf, hoods.graph, budget, eta=eta, labels=groups, num_classes=num_classes, progress=greedy_progress,
            penalty=penalty, start=s0, allowed=allowed,
        )  # fmt: skip
    tiers = {}
    if penalty is not None:  # the flagged examples, and how many of them the budget needed
        tiers = {"flagged": int((penalty > 0).sum()), "topped_up": int((penalty[picks] > 0).sum())}
    info = {
        "engine": hoods.engine,
        **space.facts(),
        **hoods.facts(),
        "eta": eta,
        **tiers,
        "coverage": round(coverage(covered), 4),
        "greedy_seconds": round(time.perf_counter() - t1, 4),
        "balance_break_at": break_at,
        "setup_seconds": round(t1 - t0, 4),
    }
    return MethodOutput(indices=picks, gains=gains, scores=conf, info=info)


@dataclass(frozen=True)
class _Space:
    """The embeddings the cosine is taken on and τ (:func:`_space_and_threshold`), with how they were found."""

    z: np.ndarray
    tau: float
    embedding_seconds: float | None = None  # the transform's time, when the embedding is not "raw"
    target_degree: float | None = None  # tau="auto": the mean degree it aimed at, and its time
    auto_tau_seconds: float | None = None

    def facts(self) -> dict[str, float]:
        """Its entries of the method's ``info``."""
        out = {} if self.embedding_seconds is None else {"embedding_seconds": self.embedding_seconds}
        if self.target_degree is not None:
            out.update(target_degree=self.target_degree, auto_tau_seconds=self.auto_tau_seconds)
        return {**out, "tau": self.tau}


def _space_and_threshold(
    features: np.ndarray,
    *,
    embedding: str,
    tau: float | str,
    target_degree: float | None,
    final_size: int,
    seed: int,
    device: str,
) -> _Space:
    """The embeddings the cosine is taken on, and τ (chosen from them when ``tau == "auto"``, for a mean degree
    of ``target_degree``, by default ``4 · N / final_size``)."""
    n = features.shape[0]
    t_embed = time.perf_counter()
    z = transform_embedding(features, embedding)
    embedding_seconds = None if embedding == "raw" else round(time.perf_counter() - t_embed, 4)
    if tau != "auto":
        return _Space(z, float(tau), embedding_seconds)
    t_tau = time.perf_counter()
    deg = float(target_degree) if target_degree is not None else 4.0 * n / max(final_size, 1)
    tau = auto_tau(z, deg, seed=seed, device=device)
    return _Space(z, float(tau), embedding_seconds, round(deg, 3), round(time.perf_counter() - t_tau, 4))


@dataclass(frozen=True)
class _Neighbourhoods:
    """Where each example's neighbours come from (:func:`_neighbourhoods`): the τ-graph, or None for the
    released per-pick similarity column."""

    graph: SimilarityGraph | None
    neighbors: Neighbors

    @property
    def engine(self) -> str:
        """The engine that ran: "graph" or "dense"."""
        return "dense" if self.graph is None else "graph"

    def facts(self) -> dict[str, int | float | str]:
        """Its entries of the method's ``info``: the graph's size, build time and backend (none when dense)."""
        g = self.graph
        if g is None:
            return {}
        return {"n_edges": g.nnz, "mean_degree": round(g.nnz / g.n, 3), "graph_seconds": round(g.build_seconds, 4),
                "graph_backend": g.backend}  # fmt: skip


def _neighbourhoods(
    z: np.ndarray,
    tau: float,
    *,
    engine: str,
    needs_graph: bool,
    max_neighbors: int | None,
    max_edges: int | None,
    block_size: int,
    device: str,
    progress: Callable[[int, int], None] | None,
    backend: str = "auto",
    seed: int = 0,
    shared_build: SharedBuild | None = None,
) -> _Neighbourhoods:
    """The τ-graph (engine "graph", or "auto" while it fits ``max_edges``) or the released per-pick column."""
    graph = None
    if engine in ("auto", "graph"):
        try:
            graph = rescaled_cosine_graph(
                z, tau, block_size=block_size, device=device, max_neighbors=max_neighbors, max_edges=max_edges,
                progress=progress, backend=backend, seed=seed, shared=shared_build,
            )  # fmt: skip
        except ValueError as exc:
            if engine == "graph" or needs_graph or "max_edges" not in str(exc):
                raise
    if graph is not None:
        return _Neighbourhoods(graph, graph.row)
    if max_neighbors is not None:
        raise ValueError("max_neighbors needs the graph engine (engine='graph')")
    return _Neighbourhoods(None, _dense_neighbors(z, tau, device))


def _candidate_tiers(prefer: str, labels: np.ndarray | None, probs: np.ndarray) -> np.ndarray | None:
    """With ``prefer="confident"``, a per-example penalty that puts confident learning's flagged examples
    after all the others (the greedy engines' second tier: :data:`TIER` for a flagged example, 0 for the
    others); None otherwise."""
    if prefer != "confident":
        return None
    from robustprune.selection.core.confident_learning import label_issue_mask

    flagged = label_issue_mask(labels, probs)
    return np.where(flagged, np.float32(TIER), np.float32(0.0)).astype(np.float32)


def _confidences(probs: np.ndarray, kind: str, labels: np.ndarray | None) -> np.ndarray:
    """c_x of every row of ``probs`` (in memory) by ``kind``; ``labels`` the rows' given labels."""
    if kind == "label_prob":
        p = np.asarray(probs, dtype=np.float32)
        return np.take_along_axis(p, labels[:, None], axis=1)[:, 0].copy()
    conf = confidence_scores(probs, kind)
    if kind != "entropy" and conf.min() < 0:  # pragma: no cover - probs are validated to [0, 1]
        raise ValueError("confidences must be non-negative")
    return conf


def _check_options(
    tau: float | str,
    eta: float | str,
    gain: str,
    engine: str,
    embedding: str,
    prefer: str,
    balance_by: str,
    confidence: str,
    target_degree: float | None,
) -> None:
    for name, value in (("tau", tau), ("eta", eta)):
        if value == "auto":
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number or 'auto', got {value!r}") from None
        if name == "tau" and (not math.isfinite(v) or v < 0 or v > 1):
            raise ValueError(
                f"tau must be in [0, 1] (a threshold on the similarity 0.5+0.5*cos, which lies in [0, 1]; tau 1 "
                f"leaves every example without a neighbour) or 'auto', got {v:g}"
            )
        if name == "eta" and (not math.isfinite(v) or v <= 0):
            raise ValueError(f"eta must be a positive number or 'auto', got {v}")
    if gain not in ("self", "exact"):
        raise ValueError(f"gain must be 'self' (released rule) or 'exact' (true marginal gain), got {gain!r}")
    if engine not in ("auto", "graph", "dense"):
        raise ValueError(f"engine must be 'auto', 'graph' or 'dense', got {engine!r}")
    if engine == "dense" and (gain == "exact" or eta == "auto"):
        raise ValueError("gain='exact' and eta='auto' need the graph engine (engine='graph' or 'auto')")
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    if prefer not in ("all", "confident"):
        raise ValueError(f"prefer must be 'all' or 'confident', got {prefer!r}")
    if balance_by not in ("given", "predicted"):
        raise ValueError(f"balance_by must be 'given' or 'predicted', got {balance_by!r}")
    if confidence not in CONFIDENCES:
        raise ValueError(f"confidence must be one of {CONFIDENCES}, got {confidence!r}")
    if target_degree is not None and (not math.isfinite(float(target_degree)) or float(target_degree) < 1):
        raise ValueError(f"target_degree must be a number >= 1 (self included), got {target_degree}")


def _dense_neighbors(features: np.ndarray, tau: float, device: str) -> Neighbors:
    """The released per-pick similarity column: all j with 0.5 + 0.5·cos(z_j, z_p) > tau."""
    import torch

    from robustprune._device import resolve_device

    dev = resolve_device(device)
    z = normalize_rows(features, dev)
    tau32 = torch.tensor(tau, dtype=torch.float32, device=dev)

    def neighbors(p: int) -> tuple[np.ndarray, np.ndarray]:
        s = z @ z[p]
        s.mul_(0.5).add_(0.5)
        s[p] = 1.0
        idx = (s > tau32).nonzero().squeeze(1)
        return idx.cpu().numpy(), s[idx].cpu().numpy()

    return neighbors


#: The configuration the lever study recommends (docs/results.md, section 3): prune4rel_auto's defaults.
RECOMMENDED = {"tau": "auto", "eta": "auto", "confidence": "label_prob", "gain": "exact", "embedding": "whiten"}


def _with_defaults(func: Callable[..., MethodOutput], name: str, doc: str, **defaults: object):
    """``func`` under another name with other defaults; its signature (what the registry, ``methods NAME`` and
    the option checks read) is ``func``'s with those defaults, so the two never drift apart."""
    sig = inspect.signature(func)
    params = [p.replace(default=defaults[p.name]) if p.name in defaults else p for p in sig.parameters.values()]

    def method(**kwargs: object) -> MethodOutput:
        return func(**{**defaults, **kwargs})

    method.__name__ = method.__qualname__ = name
    method.__doc__ = doc
    method.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return method


prune4rel_auto = register(
    "prune4rel_auto",
    kind="greedy",
    requires=("probs", "features", "labels"),
    balance="round_robin",
    default_class_balanced=True,
    description="Prune4ReL, robust setting: auto tau/eta, whitened space, exact gain, label-aware confidence",
    facts=FACTS,
    reads_by_block=("probs",),
)(
    _with_defaults(
        prune4rel,
        "prune4rel_auto",
        """Prune4ReL with the configuration this package recommends (see ``docs/results.md``, section 3).

    The same objective and options as :func:`prune4rel`, with other defaults (:data:`RECOMMENDED`): the
    neighbourhood threshold τ chosen from the data for a mean degree of ``4·N/budget`` in the whitened
    embedding space, η set to the support a uniform subset would give, the true marginal gain, and the
    probability of the *given* label as the confidence, so that a supporter counts only as far as the warm-up
    model agrees with its label.
    """,
        **RECOMMENDED,
    )
)
