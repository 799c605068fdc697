"""``robustprune run``: noise -> warm-up -> signals -> select -> train on the subset -> evaluate, into a run
directory (config.json, signals.npz, selection.npz, metrics.json, run.log)."""

import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from robustprune.cli._common import (
    Terminated,
    fail,
    interrupt_code,
    parse_key_values,
    sigterm_as_interrupt,
    stderr_console,
    stdout_console,
    user_errors,
)
from robustprune.cli.select import parse_params
from robustprune.data import dataset_names_help
from robustprune.pipeline import RunResult, run
from robustprune.runconfig import RunConfig, default_run_name, explain_config, protocol_for, resolve_config
from robustprune.rundir import ARTIFACTS, StageDone
from robustprune.train.engine import DivergenceError, ProgressInfo

_LABELS = {
    "data": "data",
    "warmup": "warm-up",
    "signals": "signals",
    "select": "selection",
    "train": "training",
    "evaluate": "evaluation",
}


class _Bars:
    """Progress on stderr, fed by the pipeline's ProgressInfo events: rich bars on a terminal; otherwise (output
    piped to a file, CI, a cluster job) one plain line per epoch with the time spent and an estimate of the
    time left in that stage, and one per finished stage."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console if console is not None else stderr_console()
        self.enabled = console is not None or self.console.is_terminal
        self._progress: Progress | None = None
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}

    def _bar(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description:<11}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        return self._progress

    def __call__(self, info: ProgressInfo | StageDone) -> None:
        label = _LABELS.get(info.stage, info.stage)
        if isinstance(info, StageDone):
            self._done(info, label)
            return
        logs = info.logs or {}
        if not self.enabled:
            self._plain(info, label, logs)
            return
        bar = self._bar()
        if info.stage not in self._tasks:
            total = info.epochs if info.stage in ("warmup", "train") else max(info.steps, 1)
            self._tasks[info.stage] = bar.add_task(label, total=total, info="")
        task = self._tasks[info.stage]
        if info.stage in ("warmup", "train"):
            frac = 1.0 if info.logs is not None else (info.step / info.steps if info.steps else 0.0)
            text = ""
            if info.logs is not None:
                parts = [f"loss {logs['loss']:.3f}"] if "loss" in logs else []
                accs = [(k.removesuffix("_acc"), v) for k, v in logs.items() if k.endswith("_acc")]
                parts += [f"{k} {100 * v:.1f}%" for k, v in accs]
                text = "  ".join(parts)
            bar.update(task, completed=info.epoch + frac, **({"info": text} if text else {}))
        else:
            bar.update(task, completed=info.step, total=max(info.steps, 1))

    def _plain(self, info: ProgressInfo, label: str, logs: dict[str, Any]) -> None:
        now = time.perf_counter()
        start = self._started.setdefault(info.stage, now)
        if info.logs is not None and info.stage in ("warmup", "train"):
            done = info.epoch + 1
            left = (now - start) / done * (info.epochs - done)
            parts = [f"loss {logs['loss']:.3f}"] if "loss" in logs else []
            parts += [f"{k.removesuffix('_acc')} {100 * v:.1f}%" for k, v in logs.items() if k.endswith("_acc")]
            self.console.print(Text(f"{label:<11} epoch {done}/{info.epochs}  {'  '.join(parts)}  "
                                    f"{now - start:.1f} s, about {left:.0f} s left"), soft_wrap=True)  # fmt: skip

    def _done(self, ev: StageDone, label: str) -> None:
        if ev.stage in self._tasks and self._progress is not None:
            self._progress.remove_task(self._tasks.pop(ev.stage))
        state = "reused" if ev.reused else f"{ev.seconds:.1f} s"
        note = f"  {ev.note}" if ev.note else ""
        target = self._progress.console if self._progress is not None else self.console
        target.print(Text(f"{label:<11} {state}{note}"), soft_wrap=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100.0 * v:.1f}%"


#: How the per-example statistics of metrics["sample_state"] are shown (SOP+ u, v; DivideMix clean posterior).
_STATE_NAMES = {"u": "u²", "v": "v²", "clean_prob": "clean posterior"}


def _summary(result: RunResult, model_note: str = "") -> None:
    m = result.metrics
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()

    def row(name: str, value: str) -> None:
        grid.add_row(name, Text(value))

    val = f", validation {m['num_val']}" if m.get("num_val") else ""
    row("data", f"{m['dataset']}: train {m['num_train']}{val}, test {m['num_test']}")
    row("noise", f"{m['noise']} ({_pct(m['noise_rate'])} of training labels wrong)")
    row("learner", f"{m['learner']} on {m['model']}{model_note}, warm-up {m['warmup_epochs']} + {m['epochs']} epochs")
    row("selection", f"{m['method']}: {m['budget']} of {m['num_train']} ({_pct(m['fraction'])})")
    facts = m.get("selection") or {}
    if "tau" in facts:
        hood = f"τ {facts['tau']:.4g}"
        if facts.get("target_degree") is not None:
            hood += f" (auto, for mean degree {facts['target_degree']:.3g})"
        if facts.get("mean_degree") is not None:
            hood += f", mean degree {facts['mean_degree']:.1f}"
        hood += f", η {facts['eta']:.3g}"
        if facts.get("coverage") is not None:
            hood += f"; the subset covers {_pct(facts['coverage'])} of all examples"
        row("neighbourhoods", hood)
    if facts.get("flagged") is not None:
        topped = f", {facts['topped_up']} of them picked to fill the budget" if facts.get("topped_up") else ""
        row("label filter", f"{facts['flagged']} examples flagged as likely label errors{topped}")
    acc = f"{_pct(m['test_accuracy'])} (last epoch)"
    if m.get("best_epoch") is not None:
        acc += f"; {_pct(m['test_accuracy_at_best_val'])} at epoch {m['best_epoch']} (best on validation)"
    row("test accuracy", acc)
    if m.get("warmup_test_accuracy") is not None:
        row("after warm-up", f"{_pct(m['warmup_test_accuracy'])} test accuracy (full noisy set)")
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
    row("time", f"warm-up {t.get('warmup', 0):.1f} s, selection {t.get('selection', 0):.2f} s, "
        f"training {t.get('train', 0):.1f} s, all {t.get('wall', t.get('total', 0)):.1f} s")  # fmt: skip
    if result.reused:
        row("reused", ", ".join(result.reused))
    if result.out is not None:
        files = [a for a in ARTIFACTS if (result.out / a).exists() and not a.endswith(".ckpt")]
        row("wrote", f"{result.out}/ ({', '.join(files)})")
    stdout_console().print(grid)


#: run_command's parameters that set a RunConfig field of another name.
_PARAM_FIELDS = {"data_param": "dataset_params", "learner_param": "learner_params", "param": "params"}


def _given(ctx: typer.Context | None, cfg: RunConfig) -> set[str]:
    """The RunConfig fields set on the command line (the rest come from defaults and protocols)."""
    if ctx is None:
        return set()
    names = {f.name for f in fields(RunConfig)}
    given = set()
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name == "COMMANDLINE":
            name = _PARAM_FIELDS.get(param.name, param.name)
            if name in names:
                given.add(name)
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


def _default_out(cfg: RunConfig) -> Path:
    """``runs/<name>``, under the same rule as an explicit ``--out``: a run found there is not redone
    unless ``--force``, and ``--resume`` continues it."""
    return Path("runs") / default_run_name(resolve_config(cfg))


_HELP = {
    "dataset": f"Dataset: {dataset_names_help()}; digits needs no files.",
    "data_dir": "Folder holding the dataset files.",
    "data_param": "Dataset loader option KEY=VALUE (repeatable), e.g. cifar_n=FILE (CIFAR-N labels).",
    "subset": "Use a fixed seeded stratified subset of N training examples (CPU-sized runs).",
    "test_subset": "Evaluate on a fixed stratified subset of N test examples.",
    "noise": "Label noise: none, sym:R, asym:R, asym-pairs:R, instance:R, matrix:FILE, human[:NAME].",
    "learner": "Re-labeling learner: ce, sop (SOP+), dividemix, elr.",
    "learner_param": "Learner option KEY=VALUE (repeatable), e.g. lr_u=1 (defaults: the dataset protocol).",
    "model": "Network: mlp, lenet, small_cnn, preact_resnet18, resnet18/34/50 (default: the dataset's).",
    "method": "Selection method (see: robustprune methods).",
    "param": "Method option KEY=VALUE (repeatable), e.g. tau=0.95; see robustprune methods NAME.",
    "fraction": f"Share of training examples kept, in (0, 1] (default {RunConfig().fraction}).",
    "class_balanced": "Balance the budget over given labels (default: the method's).",
    "selection": "Train on a subset chosen elsewhere: a select .npz, or .npy/.txt indices into the run's "
    "training set. Skips warm-up and selection.",
    "signals": "Reuse the signals.npz of an earlier run on the same training set (same dataset, subset, "
    "noise and seed) instead of a new warm-up.",
    "warmup_epochs": "Warm-up epochs on the full noisy set before selection (default: the dataset's).",
    "epochs": "Training epochs on the subset, also the cosine schedule length (default: the dataset's).",
    "batch_size": "Batch size (default 128).",
    "lr": "SGD learning rate (default: the dataset's).",
    "confidence_pass": "Inputs of the signals pass: clean, or strong (one strong augmentation per example, "
    "as released).",
    "val_fraction": "Hold out this share of the training set (given labels) to pick the best epoch; "
    "0 reports the last epoch only.",
    "eval_every": "Evaluate test (and validation) accuracy every E epochs; the last epoch always.",
    "seed": "Seed of the noise, the selection and training.",
    "device": "cpu or cuda (default: cuda when available).",
    "out": "Run directory (default: runs/<dataset>-<noise>-<learner>-<method>-f<F>-s<S>).",
    "force": "Redo a run found in the run directory (its files are replaced).",
    "resume": "Continue an interrupted run in the run directory; finished stages are reused.",
    "dry_run": "Print every value the run would use and where it comes from (flag, dataset protocol, method "
    "or learner default), then stop without running.",
}


def run_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d", metavar="NAME", help=_HELP["dataset"])] = "digits",
    data_dir: Annotated[Path | None, typer.Option(metavar="DIR", help=_HELP["data_dir"])] = None,
    data_param: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE", help=_HELP["data_param"])] = None,
    subset: Annotated[int | None, typer.Option(metavar="N", help=_HELP["subset"])] = None,
    test_subset: Annotated[int | None, typer.Option(metavar="N", help=_HELP["test_subset"])] = None,
    noise: Annotated[str, typer.Option(metavar="SPEC", help=_HELP["noise"])] = "sym:0.4",
    learner: Annotated[str, typer.Option("--learner", "-l", metavar="NAME", help=_HELP["learner"])] = "sop",
    learner_param: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE", help=_HELP["learner_param"])] = None,
    model: Annotated[str | None, typer.Option(metavar="NAME", help=_HELP["model"])] = None,
    method: Annotated[str, typer.Option("--method", "-m", metavar="NAME", help=_HELP["method"])] = "prune4rel_auto",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", metavar="KEY=VALUE", help=_HELP["param"])] = None,
    fraction: Annotated[float | None, typer.Option("--fraction", "-f", metavar="F", help=_HELP["fraction"])] = None,
    class_balanced: Annotated[
        bool | None, typer.Option("--class-balanced/--no-class-balanced", help=_HELP["class_balanced"])
    ] = None,
    selection: Annotated[Path | None, typer.Option(metavar="FILE", help=_HELP["selection"])] = None,
    signals: Annotated[Path | None, typer.Option(metavar="FILE", help=_HELP["signals"])] = None,
    warmup_epochs: Annotated[int | None, typer.Option(metavar="E", help=_HELP["warmup_epochs"])] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", "-e", metavar="E", help=_HELP["epochs"])] = None,
    batch_size: Annotated[int | None, typer.Option(metavar="B", help=_HELP["batch_size"])] = None,
    lr: Annotated[float | None, typer.Option(metavar="LR", help=_HELP["lr"])] = None,
    confidence_pass: Annotated[str, typer.Option(metavar="VIEW", help=_HELP["confidence_pass"])] = "clean",
    val_fraction: Annotated[float, typer.Option(metavar="F", help=_HELP["val_fraction"])] = 0.0,
    eval_every: Annotated[int, typer.Option(metavar="E", help=_HELP["eval_every"])] = 1,
    seed: Annotated[int, typer.Option("--seed", "-s", metavar="S", help=_HELP["seed"])] = 0,
    device: Annotated[str | None, typer.Option(metavar="DEV", help=_HELP["device"])] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="DIR", help=_HELP["out"])] = None,
    force: Annotated[bool, typer.Option("--force", help=_HELP["force"])] = False,
    resume: Annotated[bool, typer.Option("--resume", help=_HELP["resume"])] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=_HELP["dry_run"])] = False,
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Train a noise-robust learner on a pruned subset and evaluate it, end to end.

    Noise -> the learner's warm-up on the full noisy set -> signals -> selection -> a fresh learner on the
    subset -> test accuracy, re-labeling accuracy, subset noise rate, class counts and times. With no
    arguments: digits, 40% symmetric noise, SOP+ on an MLP, prune4rel_auto keeping half (seconds on a
    2-core CPU).
    """
    if selection is not None and fraction is not None:
        fail("give --fraction or --selection, not both (a selection file fixes the subset)")
    params = parse_params(param)
    lparams = parse_key_values(learner_param, "--learner-param", "lr_u=1")
    dparams = parse_key_values(data_param, "--data-param", "cifar_n=CIFAR-10_human.pt")
    with user_errors():
        cfg = RunConfig(
            dataset=dataset, data_dir=None if data_dir is None else str(data_dir), dataset_params=dparams,
            subset=subset,
            test_subset=test_subset, noise=noise, learner=learner, learner_params=lparams, model=model,
            method=method, params=params,
            fraction=fraction if fraction is not None or selection else RunConfig().fraction,
            class_balanced=class_balanced, selection=None if selection is None else str(selection),
            signals=None if signals is None else str(signals),
            warmup_epochs=warmup_epochs, epochs=epochs, batch_size=batch_size, lr=lr,
            confidence_pass=confidence_pass, val_fraction=val_fraction, eval_every=eval_every, seed=seed,
            device=device, force=force, resume=resume,
        )  # fmt: skip
        if dry_run:
            _print_resolved(cfg, _given(ctx, cfg))
            return
        target = out if out is not None else _default_out(cfg)
        cfg = replace(cfg, out=str(target))
        bars = _Bars()
        try:
            with sigterm_as_interrupt():
                result = run(cfg, progress=bars)
        except DivergenceError as exc:
            bars.close()
            fail(f"{exc} (then rerun with --force)", 1)
        except KeyboardInterrupt as exc:
            bars.close()
            what = "terminated" if isinstance(exc, Terminated) else "interrupted"
            fail(f"{what}; continue with the same command plus --resume (run directory {target})", interrupt_code(exc))
        finally:
            bars.close()
        proto = protocol_for(cfg.dataset)
        note = ""
        if model is None and proto.cpu_model is not None and result.metrics.get("model") == proto.cpu_model:
            note = f" (this dataset's CPU default; {proto.model} elsewhere, or pass --model)"
    _summary(result, note)
