"""Reports of an active-learning sweep (a grid with an ``[al]`` table): per (dataset, noise, learner) block,
the test accuracy of every acquisition method at each labelled-pool size (mean ± std over seeds), the area
under that curve and the final accuracy.

``write_report(DIR)`` comes here for such a sweep and writes ``report.md``, ``results.csv`` (one row per
cell and round), ``results.json`` (every cell with its rounds, and the aggregates) and ``curves.png`` (one
panel per block, mean ± std curve per method). A cell counts once its loop has all the grid's rounds; the
report uses the first ``rounds + 1`` rows of each (a loop run with more rounds is cut to the grid's).
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from robustprune._io import atomic_write_bytes
from robustprune.al import ROUND_KEYS, area_under_curve
from robustprune.bench.expansion import expand
from robustprune.bench.report import (
    block_heading,
    block_of,
    cell_record,
    collect,
    format_hms,
    format_mean_std,
    mean_std,
    method_styles,
    panels,
    read_meta,
    render_counts,
    render_figures,
    render_grid,
    render_methods,
    render_setting,
    report_blocks,
    save_panels,
    write_csv,
    write_report,
)
from robustprune.bench.runner import al_rounds
from robustprune.bench.spec import BenchSpec

__all__ = ["collect_al", "curve_aggregate", "summary_aggregate", "render_al_markdown", "write_al_report"]

CSV_FIELDS = ("dataset", "noise", "learner", "seed", "method", "method_name", "params", *ROUND_KEYS, "auc",
              "final_test_accuracy", "final_labelled", "cell")  # fmt: skip
#: Per-cell values summarised over seeds: (key, column title, higher is better).
SUMMARY = (
    ("auc", "AUC", True),
    ("final_test_accuracy", "final", True),
    ("final_pool_noise_rate", "pool noise rate", False),
    ("final_relabel_accuracy", "re-labeling accuracy", True),
)

Block = tuple[str, str, str]


def collect_al(out: Path, spec: BenchSpec) -> tuple[list[dict[str, Any]], int]:
    """One record per finished active-learning cell (its rounds, AUC, final accuracy, times) and the number
    of cells not finished."""
    al = spec.al_config()
    _groups, cells = expand(spec)
    records, missing = [], 0
    for cell in cells:
        rows = al_rounds(out, cell)
        if rows is None or len(rows) < al.rounds + 1:
            missing += 1
            continue
        rows = rows[: al.rounds + 1]
        labelled = [r["labelled"] for r in rows]
        acc = [r["test_accuracy"] for r in rows]
        records.append({
            **cell_record(cell), "cell": cell.key, "rounds": rows,
            "auc": area_under_curve(labelled, acc), "final_test_accuracy": acc[-1], "final_labelled": labelled[-1],
            "final_pool_noise_rate": rows[-1].get("pool_noise_rate"),
            "final_relabel_accuracy": rows[-1].get("relabel_accuracy"),
            "time_train": sum(float(r.get("train_seconds") or 0.0) for r in rows),
            "time_signals": sum(float(r.get("signals_seconds") or 0.0) for r in rows),
            "time_selection": sum(float(r.get("select_seconds") or 0.0) for r in rows),
        })  # fmt: skip
    return records, missing


def curve_aggregate(records: Sequence[Mapping[str, Any]]) -> dict[tuple, tuple[float, float, int]]:
    """(dataset, noise, learner, method, labelled) -> (mean, std, count) of the test accuracy over seeds."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        for row in r["rounds"]:
            groups[(*block_of(r), r["method"], int(row["labelled"]))].append(row["test_accuracy"])
    return {k: mean_std(v) for k, v in groups.items()}


def summary_aggregate(records: Sequence[Mapping[str, Any]], key: str) -> dict[tuple, tuple[float, float, int]]:
    """(dataset, noise, learner, method) -> (mean, std, count) of a per-cell value over seeds."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        if r.get(key) is not None:
            groups[(*block_of(r), r["method"])].append(r[key])
    return {k: mean_std(v) for k, v in groups.items()}


def _table(methods: Sequence[str], columns: Sequence[tuple[str, Callable[[str], Any], bool]]) -> str:
    """A Markdown table of methods x columns (title, method -> (mean, std, n) or None, higher is better) in
    %, the best mean of each column in bold."""
    lines = ["| method | " + " | ".join(t for t, _, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    best = []
    for _, get, higher in columns:
        vals = [round(100 * a[0], 1) for a in map(get, methods) if a is not None and a[2] > 0]
        best.append((max(vals) if higher else min(vals)) if vals else None)
    for m in methods:
        row = []
        for (_, get, _), b in zip(columns, best, strict=True):
            a = get(m)
            if a is None or a[2] == 0:
                row.append("–")
                continue
            text = format_mean_std(*a)
            row.append(f"**{text}**" if round(100 * a[0], 1) == b else text)
        if any(entry != "–" for entry in row):
            lines.append(f"| {m} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def render_al_markdown(
    meta: Mapping[str, Any], records: Sequence[Mapping[str, Any]], missing: int, figures: Sequence[tuple[str, str]] = ()
) -> str:
    """The report: setting, cost, then per block the learning-curve table (accuracy at each labelled-pool
    size, AUC, final accuracy) and the labelled pool after the last round."""
    spec = BenchSpec.from_dict(meta["spec"])
    al = spec.al_config()
    methods = [m.label for m in spec.methods]
    out = io.StringIO()
    w = out.write
    w("# Active-learning report\n\n")
    render_setting(w, meta)
    render_grid(w, spec, f"acquisition methods {', '.join(methods)}")
    final = al.initial_size + al.rounds * al.n_query
    w(
        f"- active learning: {al.initial_size} examples labelled at random (class-balanced) in round 0, then "
        f"{al.n_query} queried per round for {al.rounds} rounds ({final} labelled at the end); a fresh learner "
        "trains on the labelled pool every round; the oracle answers with the noisy labels of the noise spec\n"
    )
    render_methods(w, spec)
    render_counts(w, meta, records, missing)
    w(
        "\nValues are percentages, mean ± sample standard deviation over seeds (one value: that seed only); "
        "the best mean of each column is in bold. The numbered columns are the test accuracy (last epoch) of "
        "the learner trained on that many labelled examples; AUC is the area under that curve divided by its "
        "range (the mean accuracy over the labelled range); final is the accuracy after the last round.\n"
    )
    if records:
        train = sum(r["time_train"] for r in records)
        sig = sum(r["time_signals"] for r in records)
        sel = sum(r["time_selection"] for r in records)
        w("\n## Compute cost\n\n| part | time |\n|---|---:|\n")
        w(f"| training + evaluation ({len(records)} loops) | {format_hms(train)} |\n")
        w(f"| predictions for the queries | {format_hms(sig)} |\n")
        w(f"| selection (queries) | {format_hms(sel)} |\n")
        w(f"| **total** | **{format_hms(train + sig + sel)}** |\n")
    curve = curve_aggregate(records)
    summaries = {key: summary_aggregate(records, key) for key, _, _ in SUMMARY}
    blocks = report_blocks(spec, records)

    def summary_column(key: str, title: str, higher: bool, block: Block) -> tuple[str, Callable, bool]:
        return (title, lambda m: summaries[key].get((*block, m)), higher)

    w("\n## Test accuracy by labelled examples, area under the curve and final accuracy\n")
    for block in blocks:
        sizes = sorted({k[4] for k in curve if k[:3] == block})
        columns = [(f"{n:,}", lambda m, n=n, b=block: curve.get((*b, m, n)), True) for n in sizes]
        columns += [summary_column(k, t, h, block) for k, t, h in SUMMARY[:2]]
        w(block_heading(records, block) + _table(methods, columns) + "\n")
    w(
        "\n## Labelled pool after the last round\n\nShare of the labelled pool whose oracle label is wrong, and "
        "share of it the last learner predicts correctly (re-labeling accuracy); the lowest noise rate and the "
        "highest re-labeling accuracy are in bold.\n"
    )
    for block in blocks:
        columns = [summary_column(k, t, h, block) for k, t, h in SUMMARY[2:]]
        w(block_heading(records, block) + _table(methods, columns) + "\n")
    render_figures(w, figures)
    return out.getvalue()


def _figure(out: Path, spec: BenchSpec, records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """curves.png: test accuracy vs labelled examples, mean ± std band per method, one panel per block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m.label for m in spec.methods]
    colours, markers = method_styles(plt, methods)
    curve = curve_aggregate(records)
    blocks = report_blocks(spec, records)
    fig, axes = panels(plt, len(blocks))
    for ax, block in zip(axes.flat, blocks, strict=False):
        for m in methods:
            pts = sorted((k[4], v) for k, v in curve.items() if k[:3] == block and k[3] == m)
            if not pts:
                continue
            xs = [x for x, _ in pts]
            ys = [100 * v[0] for _, v in pts]
            sd = [100 * v[1] for _, v in pts]
            width = 2.5 if m.startswith("prune4rel") else 1.4
            ax.plot(xs, ys, marker=markers[m], color=colours[m], linewidth=width, markersize=4, label=m)
            ax.fill_between(xs, [y - s for y, s in zip(ys, sd, strict=True)],
                            [y + s for y, s in zip(ys, sd, strict=True)], color=colours[m], alpha=0.15)  # fmt: skip
        ax.set_title(f"{block[0]}, noise {block[1]}, {block[2]}")
        ax.set_xlabel("labelled examples")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    save_panels(plt, fig, axes, len(blocks), out / "curves.png")
    return [("curves.png", "test accuracy vs. labelled examples per acquisition method (mean ± std over seeds)")]


def _rows(agg: Mapping[tuple, tuple[float, float, int]], names: Sequence[str]) -> list[dict[str, Any]]:
    return [{**dict(zip(names, k, strict=True)), "mean": v[0], "std": v[1], "n": v[2]} for k, v in agg.items()]


def write_al_report(
    out: Path,
    meta: Mapping[str, Any],
    spec: BenchSpec,
    records: Sequence[Mapping[str, Any]],
    missing: int,
    *,
    figures: bool = True,
) -> Path:
    """Write report.md, results.csv, results.json and curves.png of an active-learning sweep into ``out``."""
    figs = _figure(out, spec, records) if figures and records else []
    write_csv(out / "results.csv", CSV_FIELDS, ({**r, **row} for r in records for row in r["rounds"]))
    block = ("dataset", "noise", "learner", "method")
    payload = {
        "command": meta.get("command"), "environment": meta.get("environment"), "spec": meta["spec"],
        "missing": missing, "failed": meta.get("failed", {}), "cells": list(records),
        "aggregate": {
            "curve": _rows(curve_aggregate(records), (*block, "labelled")),
            **{key: _rows(summary_aggregate(records, key), block) for key, _, _ in SUMMARY},
        },
    }  # fmt: skip
    atomic_write_bytes(out / "results.json", (json.dumps(payload, indent=2, default=float) + "\n").encode())
    path = out / "report.md"
    atomic_write_bytes(path, render_al_markdown(meta, records, missing, figs).encode())
    return path


def collect_sweep(out: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """:func:`~robustprune.bench.report.collect` for any sweep: an active-learning sweep's records are its
    cells' rounds (:func:`collect_al`)."""
    out = Path(out).expanduser()
    meta, spec = read_meta(out)
    if spec.al is not None:
        return (meta, *collect_al(out, spec))
    return collect(out)


def write_sweep_report(out: str | Path, *, figures: bool = True) -> Path:
    """The report of any sweep directory: :func:`write_al_report` for an active-learning sweep, else
    :func:`~robustprune.bench.report.write_report`."""
    out = Path(out).expanduser()
    meta, spec = read_meta(out)
    if spec.al is None:
        return write_report(out, figures=figures)
    records, missing = collect_al(out, spec)
    return write_al_report(out, meta, spec, records, missing, figures=figures)
