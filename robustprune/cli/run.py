"""``robustprune run``: noise -> warm-up -> signals -> select -> train on the subset -> evaluate, into a run
directory (config.json, signals.npz, selection.npz, metrics.json, run.log)."""

import inspect
import time
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
from robustprune.cli.select import parse_params
from robustprune.data import dataset_names_help
from robustprune.explain import explain_config
from robustprune.runconfig import Flag, Resolved, RunConfig, default_run_name, resolve

if TYPE_CHECKING:  # the pipeline, the run directory and the engine import torch: loaded when a run starts
    from robustprune.pipeline import RunResult
    from robustprune.rundir import StageDone
    from robustprune.train.engine import ProgressInfo


def __getattr__(name: str) -> Any:
    """``run``, the pipeline's entry point, imported on first use (it imports torch; ``--help`` needs none)."""
    if name == "run":
        from robustprune.pipeline import run

        globals()["run"] = run
        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_LABELS = {
    "data": "data",
    "warmup": "warm-up",
    "signals": "signals",
    "select": "selection",
    "train": "training",
    "evaluate": "evaluation",
}


class _Bars:
    """``run``'s progress: the pipeline's events (:class:`ProgressInfo`, :class:`StageDone`) on the one
    renderer, :class:`~robustprune.cli._common.ProgressBar`. On a terminal a bar per running stage; otherwise
    one plain line per epoch with the time spent and an estimate of the time left in that stage. A line per
    finished stage either way."""

    def __init__(self, bar: ProgressBar | None = None) -> None:
        self.bar = bar if bar is not None else ProgressBar(delay=0.0)
        self._started: dict[str, tuple[float, int]] = {}  # per stage: when and at which epoch this process began

    def __call__(self, info: "ProgressInfo | StageDone") -> None:
        from robustprune.rundir import StageDone

        label = _LABELS.get(info.stage, info.stage)
        if isinstance(info, StageDone):
            self.bar.remove(info.stage)
            state = "reused" if info.reused else f"{info.seconds:.1f} s"
            self.bar.line(f"{label:<11} {state}" + (f"  {info.note}" if info.note else ""))
            return
        logs = info.logs or {}
        now = time.perf_counter()
        start, first = self._started.setdefault(info.stage, (now, info.epoch))
        epochs = info.stage in ("warmup", "train")
        text = ""
        if info.logs is not None and epochs:
            parts = [f"loss {logs['loss']:.3f}"] if "loss" in logs else []
            parts += [f"{k.removesuffix('_acc')} {100 * v:.1f}%" for k, v in logs.items() if k.endswith("_acc")]
            text = "  ".join(parts)
            if not self.bar.enabled:
                done = info.epoch + 1
                # the pace of the epochs trained here: a resumed stage begins at its checkpoint's epoch
                left = (now - start) / max(done - first, 1) * (info.epochs - done)
                self.bar.line(
                    f"{label:<11} epoch {done}/{info.epochs}  {text}  {now - start:.1f} s, about {left:.0f} s left"
                )
        if epochs:
            frac = 1.0 if info.logs is not None else (info.step / info.steps if info.steps else 0.0)
            self.bar.task(info.stage, label, info.epoch + frac, info.epochs, info=text)
        else:
            self.bar.task(info.stage, label, info.step, max(info.steps, 1))

    def close(self) -> None:
        self.bar.close()


def _method_rows(method: str, facts: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary rows the method's registry entry makes of its recorded facts (none for a selection file)."""
    from robustprune.selection.registry import get_method, list_methods

    return get_method(method).summary_rows(facts) if method in list_methods() else []


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100.0 * v:.1f}%"


#: How the per-example statistics of metrics["sample_state"] are shown (SOP+ u, v; DivideMix clean posterior).
_STATE_NAMES = {"u": "u²", "v": "v²", "clean_prob": "clean posterior"}


def _summary(result: "RunResult", model_note: str = "") -> None:
    from robustprune.rundir import ARTIFACTS

    m = result.metrics
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()

    def row(name: str, value: str) -> None:
        grid.add_row(name, Text(value))

    val = f", validation {m['num_val']}" if m.get("num_val") else ""
    row("data", f"{m['dataset']}: train {m['num_train']}{val}, test {m['num_test']}")
    row("noise", f"{m['noise']} ({_pct(m['noise_rate'])} of training labels wrong)")
    src = str((m.get("signals") or {}).get("signal_source") or "")
    warm = "no warm-up (a pretrained encoder)" if src.startswith("encoder:") else f"warm-up {m['warmup_epochs']}"
    row("learner", f"{m['learner']} on {m['model']}{model_note}, {warm} + {m['epochs']} epochs")
    row("selection", f"{m['method']}: {m['budget']} of {m['num_train']} ({_pct(m['fraction'])})")
    for name, text in _method_rows(m["method"], m.get("selection") or {}):
        row(name, text)
    acc = f"{_pct(m['test_accuracy'])} (last epoch)"
    if m.get("best_epoch") is not None:
        acc += f"; {_pct(m['test_accuracy_at_best_val'])} at epoch {m['best_epoch']} (best on validation)"
    row("test accuracy", acc)
    sig = m.get("signals") or {}
    if m.get("warmup_test_accuracy") is not None:
        folds = sig.get("folds") or {}
        which = "full noisy set"
        if folds and folds.get("features") == "fold 0 model":
            which = f"mean of {folds['k']} fold models, each on {folds['k'] - 1}/{folds['k']} of the noisy set"
        row("after warm-up", f"{_pct(m['warmup_test_accuracy'])} test accuracy ({which})")
    if sig.get("signal_source") is not None and sig.get("agreement_with_given_labels") is not None:
        kind = "out-of-sample" if sig.get("out_of_sample") else "in-sample"
        text = f"{sig['signal_source']} ({kind}); predictions agree with {_pct(sig['agreement_with_given_labels'])}"
        text += " of the given labels"
        if sig.get("in_sample_agreement_with_given_labels") is not None:
            text += f" (the warm-up's own: {_pct(sig['in_sample_agreement_with_given_labels'])})"
        row("signals", text)
    rel, rel_all = _pct(m["relabel_accuracy"]), _pct(m["relabel_accuracy_all"])
    row("re-labeling accuracy", f"{rel} of the subset, {rel_all} of all training examples")
    noise = f"{_pct(m['subset_noise_rate'])} vs {_pct(m['noise_rate'])} overall"
    per_class = [v for v in m.get("class_noise_rates") or [] if v is not None]
    if per_class:
        noise += f"; per given class {_pct(min(per_class))}-{_pct(max(per_class))}"
    row("noise in subset", noise)
    state = [
        f"{_STATE_NAMES.get(k, k)} {st['wrong_label']:.2f} (wrong labels) vs {st['right_label']:.2f} (right)"
        for k, st in (m.get("sample_state") or {}).items()
        if st.get("wrong_label") is not None and st.get("right_label") is not None
    ]
    if state:
        row("per-example state", "; ".join(state))
    counts = m["class_counts"]
    if len(counts) <= 20:
        row("classes (given)", " ".join(f"{k}:{v}" for k, v in enumerate(counts)))
    else:
        row("classes (given)", f"{sum(1 for v in counts if v)}/{len(counts)} covered, min {min(counts)}, "
            f"max {max(counts)}")  # fmt: skip
    t = m["timings"]
    wall = t.get("wall", t.get("total", 0))
    earlier = t.get("earlier", 0.0)  # stages and epochs done before a resume, or reused signals
    first = "encoding" if src.startswith("encoder:") else "warm-up"
    whole = f"all {wall + earlier:.1f} s" + (
        f" ({wall:.1f} s in this process, {earlier:.1f} s before it)" if earlier else ""
    )
    row("time", f"{first} {t.get('warmup', 0):.1f} s, signals {t.get('signals', 0):.1f} s, selection "
        f"{t.get('selection', 0):.2f} s, training {t.get('train', 0):.1f} s, {whole}")  # fmt: skip
    if result.reused:
        row("reused", ", ".join(result.reused))
    if result.out is not None:
        files = [a for a in ARTIFACTS if (result.out / a).exists() and not a.endswith(".ckpt")]
        row("wrote", f"{result.out}/ ({', '.join(files)})")
    stdout_console().print(grid)


def _given(ctx: typer.Context | None, config_cls: type[RunConfig]) -> set[str]:
    """The RunConfig fields set on the command line (the rest come from defaults and protocols)."""
    if ctx is None:
        return set()
    names = {f.name for f in fields(config_cls)}
    given = set()
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name == "COMMANDLINE" and param.name in names:
            given.add(param.name)
    return given


def _print_resolved(cfg: RunConfig, given: set[str]) -> None:
    """``run --dry-run``: every value the run would use and where it comes from; nothing is run or written."""
    grid = Table.grid(padding=(0, 2))
    for col in ("key", "value", "from"):
        grid.add_column(style="bold" if col == "key" else None)
    for key, value, origin in explain_config(cfg, given):
        grid.add_row(key, Text(repr(value) if isinstance(value, str) else str(value)), Text(origin))
    con = stdout_console()
    con.print(grid)
    con.print(Text("dry run: nothing was run or written; drop --dry-run to run it"))


def _default_out(resolved: RunConfig) -> Path:
    """``runs/<name>`` of a resolved config, under the same rule as an explicit ``--out``: a run found there is
    not redone unless ``--force``, and ``--resume`` continues it."""
    return Path("runs") / default_run_name(resolved)


# ------------------------------------------------------------------ the command, derived from RunConfig's fields

_DRY_RUN_HELP = (
    "Print every value the run would use and where it comes from (flag, dataset protocol, method or learner "
    "default), then stop without running."
)


def config_parameter(f: Any, hints: dict[str, Any], *, unset: bool = False) -> inspect.Parameter:
    """The typer option of one RunConfig field, from the field's own declaration (``runconfig.opt``).

    With ``unset`` the option defaults to None ("not given"), for commands that lay given values over
    others (bench over a config file's ``[run]`` table)."""
    flag: Flag = f.metadata["flag"]
    default = f.default if f.default is not MISSING else None
    text = f.metadata["help"].format(datasets=dataset_names_help(), default=default)
    kind = flag.kind
    if kind in ("pairs", "params"):
        annotation, default = list[str] | None, None
    elif kind == "path":
        annotation, default = Path | None, None
    elif kind == "switch":
        annotation = bool
    elif kind == "toggle":
        annotation = bool | None
    elif kind == "unless_selection":  # unset: the field's default, unless a selection file fixes the subset
        annotation, default = hints[f.name], None
    else:
        annotation = hints[f.name]
    if unset:
        annotation, default = annotation | None, None
    option = typer.Option(*flag.names, metavar=flag.metavar, help=text)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, option])  # fmt: skip


def config_values(config_cls: type[RunConfig], kw: dict[str, Any], names: set[str] | None = None) -> dict[str, Any]:
    """RunConfig keyword arguments from a command's parsed options (only ``names`` when given)."""
    values: dict[str, Any] = {}
    for f in fields(config_cls):
        flag = f.metadata.get("flag")
        if flag is None or (names is not None and f.name not in names):
            continue
        v = kw[f.name]
        if flag.kind == "params":
            v = parse_params(v)
        elif flag.kind == "pairs":
            v = parse_key_values(v, flag.names[0], flag.example)
        elif flag.kind == "path":
            v = None if v is None else str(v)
        elif flag.kind == "unless_selection" and v is None and kw.get("selection") is None:
            v = f.default
        values[f.name] = v
    return values


def build_run_command(config_cls: type[RunConfig] = RunConfig) -> Any:
    """``robustprune run`` for ``config_cls``: one option per field that declares a flag, with the field's help
    text and default; a field added to RunConfig (or a subclass) with ``opt(..., Flag(...))`` appears here,
    in bench's ``[run]`` table and in the fingerprint without another edit."""
    hints = typing.get_type_hints(config_cls)
    params = [config_parameter(f, hints) for f in fields(config_cls) if f.metadata.get("flag") is not None]
    params.append(
        inspect.Parameter(
            "dry_run",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, typer.Option("--dry-run", help=_DRY_RUN_HELP)],
        )
    )
    params.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=typer.Context))

    def run_command(**kw: Any) -> None:
        ctx, dry_run = kw.pop("ctx"), kw.pop("dry_run")
        if kw.get("selection") is not None and kw.get("fraction") is not None:
            fail("give --fraction or --selection, not both (a selection file fixes the subset)")
        values = config_values(config_cls, kw)
        with user_errors("--fraction"):
            cfg = config_cls(**values)
            if dry_run:
                _print_resolved(cfg, _given(ctx, config_cls))
                return
            _run_and_report(resolve(cfg, _given(ctx, config_cls) if ctx is not None else None))

    run_command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run_command.__annotations__ = {p.name: p.annotation for p in params}
    run_command.__doc__ = """Train a noise-robust learner on a pruned subset and evaluate it, end to end.

    Noise -> the learner's warm-up on the full noisy set -> signals -> selection -> a fresh learner on the
    subset -> test accuracy, re-labeling accuracy, subset noise rate, class counts and times. With no
    arguments: digits, 40% symmetric noise, SOP+ on an MLP, prune4rel_auto keeping half (seconds on a
    2-core CPU).
    """
    return run_command


def _run_and_report(res: Resolved) -> None:
    """Run the config resolved once (the directory name, the run and the summary's model note all read it)."""
    from robustprune.train.engine import DivergenceError

    cfg = res.given
    target = Path(cfg.out) if cfg.out is not None else _default_out(res.config)
    res = res.with_runtime(out=str(target))
    run = globals().get("run") or __getattr__("run")  # (a test may have replaced it)
    bars = _Bars()
    try:
        with sigterm_as_interrupt():
            result = run(res, progress=bars)
    except DivergenceError as exc:
        bars.close()
        fail(f"{exc} (then rerun with --force)", 1)
    except BaseException as exc:  # an interrupt, or under torchrun a rank that stopped: one line
        bars.close()
        again = "--resume in place of --force" if cfg.force else "plus --resume"
        stopped(exc, f"continue with the same command {again} (run directory {target})")
        raise
    finally:
        bars.close()
    note = ""
    model_origin = res.origins.get("model", "")
    if model_origin.startswith("dataset protocol (CPU default"):  # "...; <model> on a GPU)"
        elsewhere = model_origin.split("; ", 1)[1].split(" on a GPU", 1)[0]
        note = f" (this dataset's CPU default; {elsewhere} elsewhere, or pass --model)"
    _summary(result, note)


run_command = build_run_command()
