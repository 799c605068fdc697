"""Reports of a sweep directory: Markdown tables (mean ± std over seeds), CSV / JSON of every cell, figures
and the compute-cost accounting.

``write_report(DIR)`` reads ``DIR/bench.json`` and every finished cell under ``DIR/cells`` and writes
``report.md``, ``results.csv``, ``results.json``, ``accuracy.png``, ``relabel.png`` and
``class_histogram.png`` into ``DIR``. Incomplete sweeps are reported as far as they got (missing cells are
counted in the report). An active-learning sweep gets its own report (:mod:`robustprune.bench.al_report`):
learning curves, their areas and the final accuracies.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustprune._io import atomic_write_bytes
from robustprune._provenance import short_code
from robustprune.bench.expansion import expand
from robustprune.bench.runner import cell_dir
from robustprune.bench.spec import BenchSpec, Cell

__all__ = [
    "collect", "aggregate", "mean_std", "render_markdown", "write_report", "cost_summary", "METRICS", "VAL_METRIC",
    "chosen_on_validation", "report_metrics",
]  # fmt: skip

#: Metrics tabulated per block: (key, title, higher is better).
METRICS = (
    ("test_accuracy", "Test accuracy (last epoch)", True),
    ("relabel_accuracy", "Re-labeling accuracy (share of the subset the learner predicts correctly)", True),
    ("subset_noise_rate", "Noise rate inside the subset (given label wrong)", False),
)
#: The metric a sweep takes decisions on, when its cells hold a validation split (``[run] val_fraction``).
VAL_METRIC = (
    "val_accuracy",
    "Validation accuracy (last epoch, on a split of the training set with its noisy labels; options are chosen "
    "on this table, never on test accuracy)",
    True,
)
CSV_FIELDS = (
    "dataset", "noise", "learner", "seed", "method", "method_name", "params", "signal_source", "fraction",
    "budget", "num_train", "num_val", "val_accuracy",
    "test_accuracy", "test_accuracy_at_best_val", "relabel_accuracy", "relabel_accuracy_all",
    "subset_noise_rate", "subset_noise_worst_class", "noise_rate", "warmup_test_accuracy",
    "signals_fit_wrong_labels", "signals_agreement", "learner_state", "time_warmup", "time_signals", "time_selection",
    "time_train", "time_evaluate", "cell", "code", "computed_at", "host", "gpu", "stale",
)  # fmt: skip


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(vals)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(vals) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return mean, sd, n


def read_meta(out: Path) -> tuple[dict[str, Any], BenchSpec]:
    """A sweep directory's ``bench.json`` and its grid."""
    meta_path = out / "bench.json"
    if not meta_path.is_file():
        raise ValueError(f"{out} is not a sweep directory (no bench.json; run robustprune bench --out {out})")
    try:
        meta = json.loads(meta_path.read_text())
        return meta, BenchSpec.from_dict(meta["spec"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read {meta_path}: {exc}") from None


def cell_record(cell: Cell) -> dict[str, Any]:
    """The fields that name a cell in a record: its block, seed and method (label, registered name, options)."""
    group = cell.group
    return {
        "dataset": group.dataset, "noise": group.noise, "learner": group.learner, "seed": group.seed,
        "method": cell.method.label, "method_name": cell.method.method,
        "params": json.dumps(cell.method.params, sort_keys=True),
    }  # fmt: skip


def block_of(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """The report block of a record: (dataset, noise, learner); seeds are aggregated."""
    return (record["dataset"], record["noise"], record["learner"])


def collect(out: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """A pruning sweep's ``bench.json``, one record per finished cell, and the number of cells not finished
    (:func:`robustprune.bench.al_report.collect_sweep` also reads active-learning sweeps)."""
    out = Path(out).expanduser()
    meta, spec = read_meta(out)
    _groups, cells = expand(spec)
    records, missing = [], 0
    fits: dict[str, float | None] = {}
    for cell in cells:
        path = cell_dir(out, cell) / "metrics.json"
        if not path.is_file():
            missing += 1
            continue
        metrics = _cell_metrics(path, meta)
        timings = metrics.get("timings", {})
        class_noise = [r for r in metrics.get("class_noise_rates") or [] if r is not None]
        prov = metrics.get("provenance") or {}
        host = prov.get("host") or {}
        records.append({
            **cell_record(cell), "signal_source": cell.config.signal_source,
            "fraction": cell.fraction, "budget": metrics.get("budget"), "num_train": metrics.get("num_train"),
            "num_val": metrics.get("num_val"), "val_accuracy": metrics.get("val_accuracy_last"),
            "test_accuracy": metrics.get("test_accuracy"),
            "test_accuracy_at_best_val": metrics.get("test_accuracy_at_best_val"),
            "relabel_accuracy": metrics.get("relabel_accuracy"),
            "relabel_accuracy_all": metrics.get("relabel_accuracy_all"),
            "subset_noise_rate": metrics.get("subset_noise_rate"),
            "subset_noise_worst_class": max(class_noise) if class_noise else None,
            "noise_rate": metrics.get("noise_rate"), "warmup_test_accuracy": metrics.get("warmup_test_accuracy"),
            "signals_fit_wrong_labels": _fit_wrong_labels(path.parent, fits),
            "signals_agreement": (metrics.get("signals") or {}).get("agreement_with_given_labels"),
            "learner_state": json.dumps(metrics.get("sample_state") or {}, sort_keys=True),
            "time_warmup": timings.get("warmup", 0.0), "time_signals": timings.get("signals", 0.0),
            "time_selection": timings.get("selection", 0.0), "time_train": timings.get("train", 0.0),
            "time_evaluate": timings.get("evaluate", 0.0), "cell": cell.key,
            "class_counts": metrics.get("class_counts"), "class_counts_true": metrics.get("class_counts_true"),
            "warmup_group": cell.group.name, "warmup_tag": cell.group.tag,
            "code": short_code(prov.get("code")), "computed_at": prov.get("computed_at"),
            "host": f"{host.get('cpu', '?')}, {host.get('torch_threads', '?')} threads" if host else None,
            "gpu": host.get("gpu"), "stale": "; ".join((meta.get("stale_kept") or {}).get(cell.key, [])) or None,
        })  # fmt: skip
    return meta, records, missing


def _cell_metrics(path: Path, meta: Mapping[str, Any]) -> dict[str, Any]:
    """A finished cell's ``metrics.json``; a file that is not a JSON object (truncated, not text, edited) is a
    ValueError naming it and how to recompute that cell (a sweep never recomputes a cell that has one)."""
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
        why = None if isinstance(m, dict) else f"it holds a JSON {type(m).__name__}, not the cell's metrics"
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8 text
        why = " ".join(str(exc).split()) or type(exc).__name__
    if why is None:
        return m
    command = meta.get("command") or "robustprune bench"
    raise ValueError(
        f"cannot read the cell metrics {path} ({why}); delete its cell directory {path.parent} and run the "
        f"sweep's command ({command}) again, which recomputes that cell and keeps the others"
    )


def _fit_wrong_labels(cell: Path, cache: dict[str, float | None]) -> float | None:
    """Share of the wrongly labelled training examples whose signals predict the given (wrong) label: how far
    the signals a cell was selected from believe the noise (read from its signals file, which holds the true
    labels when the dataset's noise was injected; None when it does not or is gone)."""
    try:
        config = json.loads((cell / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not JSON, or not text: the figure is left out
        return None
    src = config.get("signals") if isinstance(config, dict) else None
    if not src:
        return None
    parts = Path(src).parts
    if not Path(src).is_file() and "warmup" in parts:  # the sweep directory was moved: look inside it
        src = str(cell.parents[2].joinpath(*parts[len(parts) - 1 - parts[::-1].index("warmup") :]))
    if src not in cache:
        cache[src] = None
        try:
            with np.load(src) as z:
                if "true_labels" in z and "probs" in z and "labels" in z:
                    wrong = z["labels"] != z["true_labels"]
                    if wrong.any():
                        pred = z["probs"][wrong].argmax(1)
                        cache[src] = float((pred == z["labels"][wrong]).mean())
        except (OSError, ValueError, KeyError):
            pass
    return cache[src]


def aggregate(records: Iterable[Mapping[str, Any]], key: str) -> dict[tuple, tuple[float, float, int]]:
    """(dataset, noise, learner, method, fraction) -> (mean, std, count) of ``key`` over seeds."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        if r.get(key) is not None:
            groups[(*block_of(r), r["method"], float(r["fraction"]))].append(r[key])
    return {k: mean_std(v) for k, v in groups.items()}


def format_mean_std(m: float, sd: float, n: int) -> str:
    if n == 0 or math.isnan(m):
        return "–"
    return f"{100 * m:.1f}" if n == 1 else f"{100 * m:.1f} ± {100 * sd:.1f}"


def chosen_on_validation(records: Iterable[Mapping[str, Any]]) -> dict[tuple, str]:
    """(dataset, noise, learner, fraction) -> the method with the highest mean validation accuracy there (ties:
    the first in the grid's order of the records); empty when no cell has a validation split."""
    agg = aggregate(records, "val_accuracy")
    best: dict[tuple, tuple[float, str]] = {}
    for (d, n, lr, m, f), (mean, _sd, count) in agg.items():
        if count and not math.isnan(mean) and ((d, n, lr, f) not in best or mean > best[(d, n, lr, f)][0]):
            best[(d, n, lr, f)] = (mean, m)
    return {k: v[1] for k, v in best.items()}


def render_table(
    agg: Mapping[tuple, tuple[float, float, int]],
    block: tuple[str, str, str],
    methods: Sequence[str],
    fractions: Sequence[float],
    higher_better: bool,
    chosen: Mapping[tuple, str] | None = None,
    seeds: int | None = None,
    stale: Mapping[tuple, bool] | None = None,
) -> str:
    """A Markdown table: methods × fractions of ``mean ± std`` (in %). The best of each column is in bold, and
    so is every other method within the larger of the two standard deviations of it (:func:`leaders`: a
    difference inside the seeds' spread is a tie). With ``chosen`` ((*block, fraction) -> method) that
    method's cell is marked † (chosen on validation); a cell over another number of seeds than ``seeds``
    shows its count (n=K); a ``stale`` cell (made by other code or defaults, kept) is marked ‡."""
    fr = sorted(set(fractions))
    lines = ["| method | " + " | ".join(f"{f:g}" for f in fr) + " |", "|---|" + "---:|" * len(fr)]
    bold = {f: leaders({m: agg[(*block, m, f)] for m in methods if (*block, m, f) in agg}, higher_better) for f in fr}
    for m in methods:
        row = []
        for f in fr:
            a = agg.get((*block, m, f))
            if a is None or a[2] == 0:
                row.append("–")
                continue
            text = format_mean_std(*a)
            text = f"**{text}**" if m in bold[f] else text
            if seeds is not None and a[2] != seeds:
                text += f" (n={a[2]})"
            if stale and stale.get((*block, m, f)):
                text += " ‡"
            row.append(text + " †" if chosen and chosen.get((*block, f)) == m else text)
        if any(entry != "–" for entry in row):
            lines.append(f"| {m} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def leaders(stats: Mapping[str, tuple[float, float, int]], higher_better: bool = True) -> set[str]:
    """The methods marked best in a column: the best mean, and every method whose mean is within the larger of
    its own and the best's standard deviation of it (a difference inside the seeds' spread is a tie; with one
    seed, only equal means tie)."""
    ok = {m: v for m, v in stats.items() if v[2] > 0 and not math.isnan(v[0])}
    if not ok:
        return set()
    sign = 1.0 if higher_better else -1.0
    top = max(ok, key=lambda m: sign * ok[m][0])
    m0, sd0 = ok[top][0], ok[top][1]
    return {m for m, (mean, sd, _n) in ok.items() if sign * (m0 - mean) <= max(sd0, sd) + 1e-12}


def cost_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Compute time split into warm-up (counted once per shared warm-up), selection and training, and what
    re-running the warm-up for every cell (the released scripts' way) would have cost."""
    warm_by_group: dict[str, float] = {}
    for r in records:
        warm_by_group[r["warmup_group"]] = float(r["time_warmup"]) + float(r["time_signals"])
    warm_once = sum(warm_by_group.values())
    warm_per_cell = sum(float(r["time_warmup"]) + float(r["time_signals"]) for r in records)
    selection = sum(float(r["time_selection"]) for r in records)
    train = sum(float(r["time_train"]) + float(r["time_evaluate"]) for r in records)
    return {
        "warmup": warm_once, "selection": selection, "train": train, "total": warm_once + selection + train,
        "warmup_per_cell": warm_per_cell, "saved": warm_per_cell - warm_once,
        "total_per_cell_warmup": warm_per_cell + selection + train, "warmups": len(warm_by_group),
        "cells": len(records),
    }  # fmt: skip


def warmup_costs(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, int, float, float | None]]:
    """Per warm-up setting (the grid's, then each variant's own: ``signal_source``, ``warmup_epochs``, ...):
    the number of warm-ups, their mean time (warm-up + signals, seconds) and that mean over the grid's own
    warm-up's (None when the grid's setting has no cell)."""
    per_group: dict[str, tuple[str, float]] = {}
    for r in records:
        per_group[r["warmup_group"]] = (r.get("warmup_tag") or "", float(r["time_warmup"]) + float(r["time_signals"]))
    by_tag: dict[str, list[float]] = defaultdict(list)
    for tag, seconds in per_group.values():
        by_tag[tag].append(seconds)
    base = sum(by_tag[""]) / len(by_tag[""]) if by_tag.get("") else None
    rows = []
    for tag in sorted(by_tag, key=lambda t: (t != "", t)):
        mean = sum(by_tag[tag]) / len(by_tag[tag])
        rows.append((tag, len(by_tag[tag]), mean, None if not base else mean / base))
    return rows


def format_hms(seconds: float) -> str:
    """``1h 02m 03s`` / ``2m 03s``."""
    s = int(round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def render_setting(w: Any, meta: Mapping[str, Any]) -> None:
    """The report's opening lines: command, versions, hardware, times (``w`` writes text)."""
    env = meta.get("environment", {})
    if meta.get("command"):
        w(f"Command: `{meta['command']}`\n\n")
    w(
        f"- robustprune {env.get('robustprune', '?')}, torch {env.get('torch', '?')}, Python {env.get('python', '?')}"
        f", {env.get('platform', '?')}\n"
    )
    hw = f"{env.get('cpu', '?')}, {env.get('cpu_count', '?')} CPU cores"
    if env.get("gpus"):
        hw += ", GPUs: " + ", ".join(env["gpus"])
    w(f"- hardware: {hw}; jobs: {meta.get('jobs', 1)}\n")
    w(f"- started {meta.get('started', '?')}, finished {meta.get('finished', 'not yet')}\n")


def render_methods(w: Any, spec: BenchSpec) -> None:
    """The shared run options, each method's options, and where each method's signals came from."""
    from robustprune.runconfig import RunConfig
    from robustprune.signals import parse_signal_source

    run_opts = ", ".join(f"{k}={v}" for k, v in sorted(spec.run.items())) or "dataset protocol defaults"
    w(f"- shared run options: {run_opts}\n")
    for m in spec.methods:
        if m.params or m.label != m.method or m.run:
            opts = ", ".join(f"{k}={v}" for k, v in {**m.params, **m.run}.items()) or "defaults"
            w(f"- method `{m.label}` = {m.method} ({opts})\n")
    base = parse_signal_source(spec.run.get("signal_source", RunConfig().signal_source))

    def kind(src: Any) -> str:
        return f"`{src}` ({'out-of-sample' if src.out_of_sample else 'in-sample'})"

    own = [f"`{m.label}` {kind(parse_signal_source(m.run['signal_source']))}" for m in spec.methods
           if "signal_source" in m.run and parse_signal_source(m.run["signal_source"]) != base]  # fmt: skip
    w(f"- signals: {kind(base)}" + (f"; except {', '.join(own)}" if own else "") + "\n")
    val = spec.run.get("val_fraction") or 0
    if val:
        w(f"- decisions: on validation accuracy (a {100 * float(val):g}% split of the training set with its noisy "
          "labels; † marks the method it chooses in each column); test accuracy is never used to choose\n")  # fmt: skip
    else:
        w("- decisions: this sweep has no validation split ([run] val_fraction), so it cannot choose options "
          "without the test set; read its tables as evidence, not as a choice\n")  # fmt: skip


def render_provenance(w: Any, meta: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> None:
    """Which code computed the cells, on which hosts and when; whether this report was rendered from cells an
    earlier sweep computed; the stale cells kept with ``--reuse-stale``."""
    from robustprune._provenance import now

    w("\n## Provenance\n\n")
    by_code: dict[str, list[str]] = defaultdict(list)
    for r in records:
        by_code[r.get("code") or "unknown"].append(r.get("computed_at") or "")
    w("| code | cells | computed |\n|---|---:|---|\n")
    for code, dates in sorted(by_code.items(), key=lambda kv: min(kv[1])):
        known = sorted(d for d in dates if d)
        span = f"{known[0]} – {known[-1]}" if known else "not recorded (an older robustprune)"
        w(f"| {code} | {len(dates)} | {span} |\n")
    hosts = sorted({r["host"] for r in records if r.get("host")} | {r["gpu"] for r in records if r.get("gpu")})
    if hosts:
        w(f"\nHosts: {'; '.join(hosts)}.\n")
    dates = sorted(r["computed_at"] for r in records if r.get("computed_at"))
    started = meta.get("started_at") or _iso(meta.get("started"))
    none_now = meta.get("computed") == 0 if "computed" in meta else bool(dates and started and dates[-1] < started)
    if dates and none_now:
        w(f"\nThis report was rendered on {now()} from cells computed earlier (the last on {dates[-1]}); the sweep "
          f"that wrote it ({meta.get('started')}) computed none of them.\n")  # fmt: skip
    elif not dates:
        w("\nNo cell records when it was computed: they were made by an older robustprune.\n")
    kept = meta.get("stale_kept") or {}
    if kept:
        w(f"\n‡ {len(kept)} cells were made by other code or defaults and kept with --reuse-stale:\n\n")
        for key, why in sorted(kept.items())[:20]:
            w(f"- {key}: {'; '.join(why[:3])}\n")


def _iso(stamp: Any) -> str | None:
    """bench.json's ``started`` (``2026-12-06 02:04:27 UTC``) as ISO 8601 (``2026-12-06T02:04:27Z``)."""
    if not isinstance(stamp, str) or len(stamp) < 19:
        return None
    return stamp[:10] + "T" + stamp[11:19] + "Z"


def report_blocks(spec: BenchSpec, records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """The (dataset, noise, learner) blocks with records, in the grid's dataset order."""
    return sorted(
        {block_of(r) for r in records},
        key=lambda b: (spec.datasets.index(b[0]) if b[0] in spec.datasets else 99, b[1], b[2]),
    )


def render_markdown(
    meta: Mapping[str, Any], records: Sequence[Mapping[str, Any]], missing: int, figures: Sequence[tuple[str, str]] = ()
) -> str:
    """The report: setting, cost accounting, then per (dataset, noise, learner) the three tables."""
    spec = BenchSpec.from_dict(meta["spec"])
    methods = [m.label for m in spec.methods]
    fractions = sorted({float(r["fraction"]) for r in records} | set(spec.fractions))
    out = io.StringIO()
    w = out.write
    w("# Benchmark report\n\n")
    render_setting(w, meta)
    render_grid(w, spec, f"fractions {', '.join(f'{f:g}' for f in spec.fractions)}")
    render_methods(w, spec)
    render_counts(w, meta, records, missing)
    w(
        "\nValues are percentages, mean ± sample standard deviation over seeds (one value: that seed only); "
        "the best mean of each column is in bold (lowest for the subset noise rate), and so is every mean within "
        "the larger standard deviation of it (a tie). Test accuracy is that of the last epoch.\n"
    )
    if records:
        render_provenance(w, meta, records)
    if records:
        cost = cost_summary(records)
        w("\n## Compute cost\n\n")
        w("| part | time |\n|---|---:|\n")
        w(f"| warm-up + signals ({cost['warmups']} shared warm-ups) | {format_hms(cost['warmup'])} |\n")
        w(f"| selection ({cost['cells']} cells) | {format_hms(cost['selection'])} |\n")
        w(f"| training + evaluation ({cost['cells']} cells) | {format_hms(cost['train'])} |\n")
        w(f"| **total** | **{format_hms(cost['total'])}** |\n\n")
        share = cost["saved"] / cost["total_per_cell_warmup"] if cost["total_per_cell_warmup"] else 0.0
        w(
            f"Re-running the warm-up for every cell, as the released scripts do, would have cost "
            f"{format_hms(cost['total_per_cell_warmup'])}; sharing it saved {format_hms(cost['saved'])} "
            f"({100 * share:.0f}% of that).\n"
        )
        costs = warmup_costs(records)
        if len(costs) > 1:
            w(
                "\nWarm-up cost by how the signals are made (warm-up + signals passes, per warm-up; the grid's own "
                "setting first):\n\n"
            )
            w("| warm-up setting | warm-ups | mean time | × the grid's |\n|---|---:|---:|---:|\n")
            for tag, count, mean, ratio in costs:
                name = tag or "the grid's"
                times = "–" if ratio is None else f"{ratio:.2f}"
                w(f"| {name} | {count} | {mean:.1f} s | {times} |\n")
    blocks = report_blocks(spec, records)
    chosen = chosen_on_validation(records)
    for key, title, higher in report_metrics(records):
        agg = aggregate(records, key)
        w(f"\n## {title}\n")
        if key == "test_accuracy" and chosen:
            w("\n† the method with the best mean validation accuracy in that column (the choice a user makes "
              "without the test set).\n")  # fmt: skip
        for block in blocks:
            w(block_heading(records, block))
            marks = chosen if key == "test_accuracy" else None
            stale = {(*block_of(r), r["method"], float(r["fraction"])): True for r in records if r.get("stale")}
            w(render_table(agg, block, methods, fractions, higher, marks, len(spec.seeds), stale) + "\n")
    render_figures(w, figures)
    return out.getvalue()


def render_grid(w: Any, spec: BenchSpec, last: str) -> None:
    """The grid's line: its datasets, noise specs, learners and seeds, then ``last`` (its fractions, or its
    acquisition methods)."""
    w(
        f"- grid: datasets {', '.join(spec.datasets)}; noise {', '.join(spec.noises)}; learners "
        f"{', '.join(spec.learners)}; seeds {', '.join(map(str, spec.seeds))}; {last}\n"
    )


def render_counts(w: Any, meta: Mapping[str, Any], records: Sequence[Mapping[str, Any]], missing: int) -> None:
    """How many cells finished, did not, and failed."""
    w(f"- cells finished: {len(records)}; not finished: {missing}\n")
    if meta.get("failed"):
        w(f"- failed cells: {len(meta['failed'])} (see bench.json)\n")


def block_heading(records: Sequence[Mapping[str, Any]], block: tuple[str, str, str]) -> str:
    """A block's heading, with the seeds its records come from."""
    seeds = sorted({r["seed"] for r in records if block_of(r) == block})
    return f"\n### {block[0]}, noise {block[1]}, learner {block[2]} (seeds {', '.join(map(str, seeds))})\n\n"


def render_figures(w: Any, figures: Sequence[tuple[str, str]]) -> None:
    """The figures section: each file with its caption (nothing when there are none)."""
    if figures:
        w("\n## Figures\n\n")
        for name, caption in figures:
            w(f"![{caption}]({name})\n\n*{caption}*\n\n")


def report_metrics(records: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, str, bool], ...]:
    """The tabulated metrics: validation accuracy first when the cells hold a validation split, then
    :data:`METRICS`."""
    has_val = any(r.get("val_accuracy") is not None for r in records)
    return ((VAL_METRIC,) if has_val else ()) + METRICS


def write_csv(path: Path, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """``rows`` as CSV with the columns ``fields`` (other keys left out), written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_bytes(path, buf.getvalue().encode())


def _figures(out: Path, spec: BenchSpec, records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """accuracy.png, relabel.png (metric vs fraction per method, one panel per block) and
    class_histogram.png (true-class counts of each method's subset at the smallest fraction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    blocks = sorted({block_of(r) for r in records})
    methods = [m.label for m in spec.methods]
    colours, markers = method_styles(plt, methods)
    for key, fname, label in (("test_accuracy", "accuracy.png", "test accuracy"),
                              ("relabel_accuracy", "relabel.png", "re-labeling accuracy")):  # fmt: skip
        agg = aggregate(records, key)
        fig, axes = panels(plt, len(blocks))
        for ax, block in zip(axes.flat, blocks, strict=False):
            for m in methods:
                pts = sorted((f, v) for (d, n, lr, mm, f), v in agg.items() if (d, n, lr) == block and mm == m)
                if not pts:
                    continue
                xs = [f for f, _ in pts]
                ys = [100 * v[0] for _, v in pts]
                es = [100 * v[1] for _, v in pts]
                style = {"linewidth": 2.5} if m.startswith("prune4rel") else {"linewidth": 1.2}
                if len(pts) == 1 and xs[0] >= 1.0:  # all data (the "full" method): a reference line
                    ax.axhline(ys[0], linestyle="--", color="gray", label=f"{m} (all data)")
                else:  # one kept fraction plots as a point with its error bar
                    ax.errorbar(xs, ys, yerr=es, marker=markers[m], color=colours[m], capsize=2, label=m, **style)
            ax.set_title(f"{block[0]}, {block[1]}, {block[2]}")
            ax.set_xlabel("fraction kept")
            ax.set_ylabel(f"{label} (%)")
            ax.grid(alpha=0.3)
        save_panels(plt, fig, axes, len(blocks), out / fname)
        made.append((fname, f"{label} vs. fraction kept, per method (mean ± std over seeds)"))
    if blocks:
        made += _class_histogram(plt, out, records, blocks[0], colours)
    return made


def panels(plt: Any, count: int) -> tuple[Any, Any]:
    """A figure of ``count`` panels, two a row."""
    ncol = min(count, 2)
    nrow = math.ceil(count / ncol)
    return plt.subplots(nrow, ncol, figsize=(6.5 * ncol, 4.2 * nrow), squeeze=False)


def save_panels(plt: Any, fig: Any, axes: Any, count: int, path: Path) -> None:
    """Blank the panels after the first ``count``, put the legend on the first, write ``path`` and close."""
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def method_styles(plt: Any, methods: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """One fixed colour and marker per method across panels and figures (tab10 alone repeats after 10)."""
    palette = plt.get_cmap("tab20").colors
    colours = {m: palette[(2 * i) % 20 + (2 * i) // 20 % 2] for i, m in enumerate(methods)}
    markers = {m: "os^Dv<>PXph*"[i % 12] for i, m in enumerate(methods)}
    return colours, markers


def _class_histogram(plt: Any, out: Path, records: Sequence[Mapping[str, Any]], block: tuple, colours: dict) -> list:
    """class_histogram.png: true-class counts of each method's subset at the smallest fraction (first block
    and seed); nothing when the records hold no true classes."""
    rows = [r for r in records if block_of(r) == block and r["class_counts_true"]]
    if not rows:
        return []
    seed = min(r["seed"] for r in rows)
    fmin = min(r["fraction"] for r in rows)
    rows = [r for r in rows if r["seed"] == seed and r["fraction"] == fmin]
    k = len(rows[0]["class_counts_true"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * k + 3), 4.0))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        ax.bar([j + i * width for j in range(k)], r["class_counts_true"], width=width, label=r["method"],
               color=colours.get(r["method"]))  # fmt: skip
    ax.set_xticks([j + 0.4 - width / 2 for j in range(k)], [str(j) for j in range(k)])
    ax.set_xlabel("true class")
    ax.set_ylabel("examples selected")
    ax.set_title(f"{block[0]}, {block[1]}, {block[2]}: fraction {fmin:g}, seed {seed}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "class_histogram.png", dpi=110)
    plt.close(fig)
    what = f"true-class histogram of each method's subset at fraction {fmin:g} ({block[0]}, {block[1]}, {block[2]}, "
    return [("class_histogram.png", what + f"seed {seed})")]


def write_report(out: str | Path, *, figures: bool = True) -> Path:
    """Write report.md, results.csv, results.json and the figures of the pruning sweep ``out``
    (:func:`robustprune.bench.al_report.write_sweep_report` also writes active-learning sweeps')."""
    out = Path(out).expanduser()
    meta, records, missing = collect(out)
    spec = BenchSpec.from_dict(meta["spec"])
    figs = _figures(out, spec, records) if figures and records else []
    write_csv(out / "results.csv", CSV_FIELDS, records)
    payload = {
        "command": meta.get("command"), "environment": meta.get("environment"), "spec": meta["spec"],
        "missing": missing, "failed": meta.get("failed", {}),
        "cost": cost_summary(records) if records else None, "cells": records,
        "aggregate": {key: [{"dataset": k[0], "noise": k[1], "learner": k[2], "method": k[3], "fraction": k[4],
                             "mean": v[0], "std": v[1], "n": v[2]} for k, v in aggregate(records, key).items()]
                      for key, _, _ in report_metrics(records)},
        "chosen_on_validation": [{"dataset": k[0], "noise": k[1], "learner": k[2], "fraction": k[3], "method": m}
                                 for k, m in chosen_on_validation(records).items()],
    }  # fmt: skip
    atomic_write_bytes(out / "results.json", (json.dumps(payload, indent=2, default=float) + "\n").encode())
    path = out / "report.md"
    atomic_write_bytes(path, render_markdown(meta, records, missing, figs).encode())
    return path
