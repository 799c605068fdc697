"""``robustprune bench`` (a sweep over datasets x noise x learners x methods x fractions x seeds, or an
active-learning grid of acquisition methods) and ``robustprune report`` (its Markdown / CSV / JSON / PNG
report)."""

import inspect
import shlex
import sys
import time
import typing
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from robustprune.cli._common import (
    ProgressBar,
    fail,
    parse_key_values,
    sigterm_as_interrupt,
    stdout_console,
    stopped,
    user_errors,
)
from robustprune.cli.run import config_parameter, config_values
from robustprune.data import dataset_names_help
from robustprune.runconfig import RunConfig, run_options


def _split(text: str | None, flag: str, kind: type = str) -> list | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        fail(f"{flag} is empty")
    if kind is str:
        return items
    try:
        values = [kind(t) for t in items]
    except ValueError:
        fail(f"{flag} must be a comma-separated list of {'numbers' if kind is float else 'integers'}, got {text!r}")
    if flag == "--fraction":  # the grid's own check names no flag: the same rule, in the command's words
        from robustprune.selection.budget import check_fraction

        for f in values:
            try:
                check_fraction(f)
            except ValueError:
                fail(f"--fraction {f:g} is outside (0, 1] (the share of examples kept)")
    return values


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "remaining: estimating"
    s = int(seconds)
    return f"remaining ~{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"remaining ~{s // 60}m{s % 60:02d}s"


class _BenchBars:
    """``bench``'s progress on the one renderer (:class:`~robustprune.cli._common.ProgressBar`): a line per
    finished warm-up or cell (with the sweep's elapsed and remaining time when there is no terminal), an
    overall bar and, for ``--jobs 1``, a bar for the running stage."""

    def __init__(self, bar: ProgressBar | None = None) -> None:
        self.bar = bar if bar is not None else ProgressBar(delay=0.0)
        self.stage_name = ""
        self.t0 = time.perf_counter()

    def __call__(self, ev: Any) -> None:
        if ev.kind in ("warmup", "cell"):
            line = f"{'warm-up' if ev.kind == 'warmup' else 'cell'} {ev.label}: {ev.status}"
            if ev.seconds:
                line += f" in {ev.seconds:.1f} s"
            line += f"  [{ev.done}/{ev.total} cells"
            if not self.bar.enabled:  # piped: the bar's elapsed and remaining time go on the line instead
                from robustprune.bench.report import format_hms

                line += f", {format_hms(time.perf_counter() - self.t0)} elapsed, {_eta(ev.eta)}"
            self.bar.line(line + "]")
            if self.stage_name:
                self.bar.remove("stage")
                self.stage_name = ""
        self.bar.task("sweep", "sweep", ev.done, max(ev.total, 1), info=_eta(ev.eta))
        info = ev.info if ev.kind == "epoch" else None
        if info is not None and info.stage in ("warmup", "train") and hasattr(info, "epochs"):  # not a stage end
            if self.stage_name != info.stage:
                self.bar.remove("stage")
                self.stage_name = info.stage
            frac = 1.0 if info.logs is not None else (info.step / info.steps if info.steps else 0.0)
            label = "warm-up" if info.stage == "warmup" else "training"
            self.bar.task("stage", label, info.epoch + frac, max(info.epochs, 1))

    def close(self) -> None:
        self.bar.close()


#: RunConfig fields an active-learning loop does not use (no warm-up, no fraction, its own prediction pass).
_NOT_IN_AL = frozenset({"fraction", "warmup_epochs", "selection", "signals", "extra_signals", "confidence_pass"})


def _print_dry_run(spec: Any) -> None:
    """``bench --dry-run``: the grid's size and the first cell's resolved values with their origins."""
    from robustprune.bench.expansion import expand
    from robustprune.bench.spec import RUN_OPTIONS
    from robustprune.explain import explain_config

    groups, cells = expand(spec)
    con = stdout_console()
    al = spec.al_config()
    if al is not None:
        loops = f"{len(cells)} loop{'s' * (len(cells) != 1)}"
        con.print(
            Text(
                f"active learning: {loops} (initial {al.initial_size}, {al.n_query} queried per round, "
                f"{al.rounds} rounds), no warm-ups; the first loop, {cells[0].key}:"
            )
        )
    else:
        con.print(Text(f"{len(groups)} warm-up groups, {len(cells)} cells; the first cell, {cells[0].key}:"))
    grid_fields = {"dataset", "noise", "learner", "method", "fraction", "seed"} | set(spec.run) & set(RUN_OPTIONS)
    table = Table.grid(padding=(0, 2))
    for _ in range(3):
        table.add_column()
    for key, value, origin in explain_config(cells[0].raw, grid_fields):
        if al is not None and key in _NOT_IN_AL:
            continue
        origin = "grid (config file or flag)" if origin == "given" else origin
        table.add_row(Text(key), Text(repr(value) if isinstance(value, str) else str(value)), Text(origin))
    con.print(table)
    con.print(Text("dry run: nothing was run or written"))


def _bench(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", metavar="FILE.toml", help="Grid in a TOML file (see configs/).")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "--datasets",
            "-d",
            metavar="A,B",
            help=f"Datasets, comma-separated: {dataset_names_help()}. Default as run: digits.",
        ),
    ] = None,
    noise: Annotated[
        str | None, typer.Option("--noise", "--noises", metavar="A,B", help="Noise specs (default as run: sym:0.4).")
    ] = None,
    learners: Annotated[
        str | None, typer.Option("--learner", "--learners", metavar="A,B", help="Learners, e.g. sop,ce (default sop).")
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option("--method", "--methods", "-m", metavar="A,B", help="Selection methods (default prune4rel_auto)."),
    ] = None,
    fractions: Annotated[
        str | None,
        typer.Option("--fraction", "--fractions", metavar="F,G", help="Kept fractions, e.g. 0.2,0.4 (default 0.5)."),
    ] = None,
    seeds: Annotated[
        str | None, typer.Option("--seed", "--seeds", metavar="S,T", help="Seeds, e.g. 0,1 (default 0).")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="METHOD.KEY=VALUE", help="Method option, e.g. uncertainty.kind=margin."),
    ] = None,
    al: Annotated[
        bool,
        typer.Option(
            "--al",
            help="Active-learning grid (the \\[al] table): methods are acquisition functions, each cell a loop of "
            "robustprune al; no fractions. Implied by any --al-* option.",
        ),
    ] = False,
    jobs: Annotated[
        int,
        typer.Option("--jobs", "-j", metavar="N", help="Cells run in parallel processes (one GPU each where several)."),
    ] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="DIR", help="Sweep directory.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute every cell of the sweep directory.")] = False,
    reuse_stale: Annotated[
        bool,
        typer.Option(
            "--reuse-stale",
            help="Keep finished cells made by other code or defaults (the report marks them) instead of "
            "recomputing them.",
        ),
    ] = False,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Skip the PNG figures.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the grid and every value of its first cell with its origin; run nothing."
        ),
    ] = False,
    al_values: dict[str, Any] | None = None,
    **run_flags: Any,
) -> None:
    """Run a grid of datasets x noise x learners x methods x fractions x seeds and write a report.

    The warm-up (signals) runs once per (dataset, noise, learner, seed) and is shared by every method and
    fraction; every finished cell is cached in DIR, so an interrupted sweep continues where it stopped and
    a rerun skips finished work. Writes DIR/report.md, results.csv, results.json and PNG figures.

    With --al (or an \\[al] table, or any --al-* option) the grid is one of active learning: each cell is a
    loop of robustprune al (acquisition method x seed x noise x learner), and the report has the learning
    curves (mean ± std per method), their areas and the final accuracies, and curves.png.
    """
    if out is None and not dry_run:
        fail("--out DIR is required (the sweep directory)")
    if jobs < 1:
        fail(f"--jobs must be at least 1, got {jobs}")
    # the grid's shared run options: run's own flags, for every field a grid may set (RUN_OPTIONS)
    run_opts = {k: v for k, v in config_values(RunConfig, run_flags, set(run_flags)).items() if v not in (None, {})}
    overrides = {
        "datasets": _split(dataset, "--dataset"), "noises": _split(noise, "--noise"),
        "learners": _split(learners, "--learner"), "methods": _split(methods, "--method"),
        "fractions": _split(fractions, "--fraction", float), "seeds": _split(seeds, "--seed", int),
        "params": parse_key_values(param, "--param", "uncertainty.kind=margin", dotted=True) or None,
        "run": run_opts or None,
        "al": _al_overrides(al, al_values),
    }  # fmt: skip
    with user_errors():
        spec = _grid(config, overrides)
        if dry_run:
            _print_dry_run(spec)
            return
        _sweep(spec, out, jobs, force, no_figures, reuse_stale)


def _al_overrides(al: bool, values: dict[str, Any] | None) -> dict[str, Any] | None:
    """The [al] values the command line gives (an empty table for --al alone; None: not an AL grid here)."""
    given = {k: v for k, v in (values or {}).items() if v is not None}
    return given if given or al else None


def _grid(config: Path | None, overrides: dict[str, Any]) -> Any:
    """The grid: a config file with the command line's values laid over it, or the command line alone (each
    axis not given defaulting to robustprune run's default; robustprune al's method for an active-learning grid)."""
    from robustprune.bench import build_spec, load_config
    from robustprune.bench.config_file import merge

    if config is not None:
        loaded = load_config(config)
        return build_spec(merge(loaded["data"], overrides), loaded["where"])
    base = RunConfig()
    defaults = {"datasets": base.dataset, "noises": base.noise, "learners": base.learner, "methods": base.method,
                "fractions": base.fraction, "seeds": base.seed}  # fmt: skip
    if overrides.get("al") is not None:  # an active-learning grid queries by rounds, not by fractions
        from robustprune.cli.al import DEFAULT_METHOD

        del defaults["fractions"]
        defaults["methods"] = DEFAULT_METHOD  # as robustprune al
    for key, value in defaults.items():
        if overrides[key] is None:
            overrides[key] = [value]
    return build_spec(merge({}, overrides))


def _sweep(spec: Any, out: Path, jobs: int, force: bool, no_figures: bool, reuse_stale: bool = False) -> None:
    """Run the sweep with progress, write its report, and say what came out (a non-zero exit if cells failed)."""
    from robustprune.bench import run_bench, write_report

    command = "robustprune " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    bars = _BenchBars()
    t0 = time.perf_counter()
    try:
        with sigterm_as_interrupt():
            result = run_bench(spec, out, jobs=jobs, force=force, reuse_stale=reuse_stale, command=command,
                               progress=bars)  # fmt: skip
    except BaseException as exc:  # an interrupt, or under torchrun a rank that stopped: one line
        bars.close()
        stopped(exc, f"run the same command again to continue (finished cells are kept in {out})")
        raise
    finally:
        bars.close()
    import robustprune.distributed as dist

    report = dist.on_main(write_report, out, figures=not no_figures)  # under torchrun: rank 0 writes
    con = stdout_console()
    con.print(
        f"{len(result.computed)} cells computed, {len(result.cached)} reused, {len(result.failed)} failed "
        f"in {time.perf_counter() - t0:.1f} s; report: {report}"
    )
    stale = (("recomputed (made by other code or defaults)", result.stale),
             ("kept although made by other code or defaults (--reuse-stale)", result.stale_kept))  # fmt: skip
    for what, items in stale:
        if items:
            con.print(Text(f"{len(items)} stale cells or warm-ups {what}:"))
            for key, why in list(items.items())[:3]:
                con.print(Text(f"  {key}: {'; '.join(why[:3])}{'; ...' if len(why) > 3 else ''}"))
    if result.failed:
        for key, msg in list(result.failed.items())[:5]:
            con.print(Text(f"  failed {key}: {msg}"))
        fail(f"{len(result.failed)} cells failed (rerun the command to retry them)", 1)


def report_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A robustprune bench --out directory.")],
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Skip the PNG figures.")] = False,
) -> None:
    """Write report.md, results.csv, results.json and figures for a sweep directory (also unfinished)."""
    from robustprune.bench import write_report

    with user_errors():
        path = write_report(run_dir, figures=not no_figures)
    stdout_console().print(f"wrote {path}")


def _build_bench_command() -> Any:
    """``_bench`` with one more option per RunConfig field a grid may set, declared by the field itself
    (the same flag, help text and parsing as ``robustprune run``; unset = taken from the config file)."""
    hints = typing.get_type_hints(RunConfig)
    grid_fields = [f for f in fields(RunConfig) if f.name in run_options(RunConfig) and f.metadata.get("flag")]
    extra = [config_parameter(f, hints, unset=True) for f in grid_fields]
    own = [p for p in inspect.signature(_bench, eval_str=True).parameters.values()
           if p.kind != p.VAR_KEYWORD and p.name != "al_values"]  # fmt: skip
    al_params = _al_parameters()
    params = own + al_params + extra

    def bench_command(**kw: Any) -> None:
        run_flags = {f.name: kw.pop(f.name) for f in grid_fields}
        al_values = {p.name.removeprefix("al_"): kw.pop(p.name) for p in al_params}
        _bench(**kw, al_values=al_values, **run_flags)

    bench_command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    bench_command.__annotations__ = {p.name: p.annotation for p in params}
    bench_command.__doc__ = _bench.__doc__
    return bench_command


def _al_parameters() -> list[inspect.Parameter]:
    """``--al-initial``, ``--al-n-query``, ``--al-rounds``: robustprune al's options (declared on ALConfig's
    fields) under an ``--al-`` prefix, unset = taken from the config file's [al] table."""
    from robustprune.al import ALConfig

    hints = typing.get_type_hints(ALConfig)
    params = []
    for f in fields(ALConfig):
        flag = f.metadata["flag"]
        names = tuple("--al-" + n.removeprefix("--") for n in flag.names if n.startswith("--"))
        text = f.metadata["help"].replace("--n-query", "--al-n-query")
        option = typer.Option(*names, metavar=flag.metavar, help=f"{text.rstrip('.')} (the \\[al] table's {f.name}).")
        annotation = Annotated[hints[f.name] | None, option]
        params.append(inspect.Parameter(f"al_{f.name}", inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=annotation))  # fmt: skip
    return params


bench_command = _build_bench_command()
