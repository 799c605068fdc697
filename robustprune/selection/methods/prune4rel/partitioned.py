"""Prune4ReL on partitions (``parts=P > 1``): the two-round greedy of
:mod:`robustprune.selection.core.partition` with Prune4ReL's exact gain.

Each part builds the τ-graph of its own rows (the same builder and backends as one process), runs the exact
gain ``Σ_{v∈N(x)} tanh((NC_v + w c_x)/η) − tanh(NC_v/η)`` by lazy greedy with its class quotas times
``oversample``, and keeps only its picks and their gains; its graph is freed before the next part is read.
Round 2 merges the parts' sequences under the final class quotas: the class counts of the released
round-robin up to its 1.5x break rule, as one process takes them, then the picks after the break from any
class (:func:`~robustprune.selection.core.partition.released_quotas`). Features may be a row source (a memmap or
:class:`~robustprune.selection.core.rows.ShardedRows`): only one part's rows are in memory at a time, as
float32 in the embedding space.

τ comes from one sampled block of the similarity of all rows (as ``tau="auto"`` in one process). With
``eta="auto"`` every part gets the η of its own graph (the mean neighbourhood confidence a uniform subset of
the budget's share gives its examples), so the objective of round 2 is ``Σ_i Σ_{v∈V_i} tanh(NC_v/η_i)``; with a
numeric η all parts share it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np

from robustprune.selection.core.geometry import support_scale
from robustprune.selection.core.graph import BuildHandedOff, SharedBuild, rescaled_cosine_graph
from robustprune.selection.core.partition import (
    assign_parts,
    check_partition,
    embedding_map,
    gather_sequences,
    merge_rounds,
    owned_parts,
    quota_lazy_greedy,
    released_quotas,
    round_one_quotas,
    sampled_tau,
    split_quotas,
)
from robustprune.selection.core.rows import argmax_rows, chunks, read_rows
from robustprune.selection.methods.prune4rel.engines import exact_gain
from robustprune.selection.result import MethodOutput

__all__ = ["prune4rel_parts", "part_greedy"]


def part_greedy(
    z: np.ndarray,
    c: np.ndarray,
    labels: np.ndarray,
    quotas: np.ndarray,
    *,
    tau: float,
    eta: float | str,
    fraction: float,
    graph_options: dict,
    then: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Round 1 on one part: its τ-graph, its η, and the exact-gain lazy greedy under ``quotas`` (per class),
    then ``then`` picks from any class. ``z``: the part's rows in the embedding space; ``c``, ``labels``:
    theirs. Returns positions into the part, their gains, and facts (edges, η, seconds)."""
    t0 = time.perf_counter()
    graph = rescaled_cosine_graph(z, tau, **graph_options)
    e = (support_scale(graph, c, fraction) or 1.0) if eta == "auto" else float(eta)
    fresh, add, g0, nc = exact_gain(c, graph, e)
    picks, gains = quota_lazy_greedy(g0, fresh, add, labels, quotas, then=then)
    facts = {"edges": graph.nnz, "eta": e, "seconds": time.perf_counter() - t0, "covered": int((nc > 0).sum())}
    return picks, gains, facts


def prune4rel_parts(
    confidences: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    features: object,
    probs: object,
    labels: np.ndarray | None,
    *,
    budget: int,
    class_balanced: bool,
    balance_by: str,
    parts: int,
    partition: str,
    oversample: float,
    tau: float | str,
    eta: float | str,
    gain: str,
    engine: str,
    prefer: str,
    embedding: str,
    target_degree: float | None,
    max_neighbors: int | None,
    max_edges: int | None,
    block_size: int | None,
    backend: str,
    device: str,
    seed: int,
    progress: Callable[[int, int], None] | None,
    start: np.ndarray | None,
    pool: np.ndarray | None,
    shared_build: SharedBuild | None,
) -> MethodOutput:
    """Prune4ReL's selection by the partitioned two-round greedy (``prune4rel(..., parts=P)``, P > 1).

    ``confidences(probs_rows, labels_rows)``: the confidences c_x of some rows from their probabilities and given
    labels; ``probs`` may be a row source (a memory map, the shards of a directory), read one part's rows at a
    time: a rank reads the probabilities of its own parts only (and, with ``balance_by="predicted"``, scans
    every row once for the classes). The other arguments are :func:`prune4rel`'s. Under torchrun with a
    :class:`~robustprune.selection.core.graph.SharedBuild` the parts are dealt to the ranks; rank 0 returns the
    selection (its ``scores``, the confidences of every example, read block by block) and the other ranks
    raise ``BuildHandedOff`` once their picks are sent.
    """
    parts, partition, oversample = check_partition(parts, partition, oversample)
    if gain != "exact":
        raise ValueError("parts > 1 runs the exact-gain greedy on each part: use gain='exact' (prune4rel_auto's)")
    if prefer != "all" or engine == "dense":
        raise ValueError("parts > 1 supports prefer='all' and the graph engine only")
    if (start is not None and len(start)) or pool is not None:
        raise ValueError("parts > 1 does not take candidates or a starting set (active learning); use parts=1")
    import robustprune.distributed as dist

    sharing = shared_build is not None and shared_build.active
    info: dict = {"engine": engine}  # this function's own facts, returned in the MethodOutput
    t0 = time.perf_counter()
    with contextlib.nullcontext() if sharing else dist.alone():
        n = int(features.shape[0])  # type: ignore[attr-defined]
        fmap = embedding_map(features, embedding)
        if tau == "auto":
            deg = float(target_degree) if target_degree is not None else 4.0 * n / max(budget, 1)
            tau = sampled_tau(features, fmap, deg, seed=seed, device=device)
            info["target_degree"] = round(deg, 3)
        tau = float(tau)
        if class_balanced:
            groups = labels if balance_by == "given" else argmax_rows(probs)
            k = int(probs.shape[1])  # type: ignore[attr-defined]
        else:
            groups, k = np.zeros(n, dtype=np.int64), 1
        part, pfacts = assign_parts(partition, n, parts, seed=seed, labels=groups if class_balanced else labels,
                                    source=features, fmap=fmap, device=device)  # fmt: skip
        counts = np.bincount(part.astype(np.int64) * k + groups, minlength=parts * k).reshape(parts, k)
        # the released schedule: round-robin class counts up to its 1.5x break, then `rest` picks from any class
        quotas, rest = released_quotas(counts.sum(axis=0), budget)
        first = round_one_quotas(split_quotas(quotas, counts), counts, oversample)
        sizes = counts.sum(axis=1)
        then = (
            np.ceil(oversample * rest * sizes / max(n, 1) - 1e-9).astype(np.int64)
            if rest
            else np.zeros(parts, np.int64)
        )
        t_setup = time.perf_counter()
        graph_options = dict(block_size=block_size, device=device, max_neighbors=max_neighbors, max_edges=max_edges,
                             backend=backend, seed=seed)  # fmt: skip
        seqs, facts = {}, {}
        mine = owned_parts(parts, sharing)
        for done, i in enumerate(mine, 1):
            rows = np.flatnonzero(part == i)
            if rows.size == 0:  # a part with no rows (more parts than clusters or rows)
                seqs[i] = (rows, np.empty(0), rows)
                facts[i] = {"edges": 0, "eta": float(eta) if eta != "auto" else 1.0}
                continue
            z = fmap(read_rows(features, rows))
            picks, gains, facts[i] = part_greedy(
                z,
                confidences(read_rows(probs, rows), None if labels is None else labels[rows]),
                groups[rows],
                first[i],
                tau=tau,
                eta=eta,
                fraction=budget / n,
                graph_options=graph_options,
                then=int(then[i]),
            )
            del z
            seqs[i] = (rows[picks], gains, groups[rows[picks]])
            if progress is not None:
                progress(done, len(mine) + 1)
        part_of, index, gains, cls = gather_sequences(seqs, sharing)
        table = _gather_facts(facts, sharing)
    if sharing:
        shared_build.done = True
        if not dist.is_main():
            raise BuildHandedOff
    t_round1 = time.perf_counter()
    picks, gains = merge_rounds(part_of, index, gains, cls, quotas, rest)
    if progress is not None:
        progress(len(mine) + 1, len(mine) + 1)
    sizes = np.bincount(part, minlength=parts)
    etas = table[:, 1]
    info.update(
        engine="graph", tau=tau, eta=float(np.average(etas, weights=np.maximum(sizes, 1))),
        n_edges=int(table[:, 0].sum()), mean_degree=round(float(table[:, 0].sum()) / n, 3),
        parts=parts, partition=partition, oversample=oversample, part_rows=[int(sizes.min()), int(sizes.max())],
        eta_parts=[float(etas.min()), float(etas.max())], round1_picks=int(index.shape[0]),
        setup_seconds=round(t_setup - t0, 4), round1_seconds=round(t_round1 - t_setup, 4),
        greedy_seconds=round(time.perf_counter() - t_round1, 4), world=dist.world().size if sharing else 1,
        **pfacts,
    )  # fmt: skip
    return MethodOutput(indices=picks, gains=gains, scores=_all_confidences(confidences, probs, labels), info=info)


def _all_confidences(confidences: Callable, probs: object, labels: np.ndarray | None) -> np.ndarray:
    """c_x of every example, from ``probs`` read by blocks (float32, (N,))."""
    n = int(probs.shape[0])  # type: ignore[attr-defined]
    out = np.empty(n, dtype=np.float32)
    for a, b in chunks(n):
        out[a:b] = confidences(np.asarray(read_rows(probs, slice(a, b)), dtype=np.float32),
                               None if labels is None else labels[a:b])  # fmt: skip
    return out


def _gather_facts(facts: dict[int, dict], sharing: bool) -> np.ndarray:
    """(edges, η) of every part, in part order, on every rank."""
    mine = sorted(facts)
    rows = np.array([[i, facts[i]["edges"], facts[i]["eta"]] for i in mine], dtype=np.float64).reshape(-1, 3)
    import robustprune.distributed as dist

    if sharing and dist.world().distributed:
        import torch

        rows = dist.all_gather_cat(torch.from_numpy(rows)).numpy()
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    return rows[:, 1:]
