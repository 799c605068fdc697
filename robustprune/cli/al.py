"""``robustprune al``: active-learning rounds with any selection method as the acquisition function, into a
directory (rounds.json, rounds.csv, pool.npz, curve.png, al.log)."""

from __future__ import annotations

import inspect
import typing
from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from robustprune.al import ALConfig, default_al_name, run_al
from robustprune.cli._common import (
    ProgressBar,
    fail,
    sigterm_as_interrupt,
    stdout_console,
    stopped,
    user_errors,
)
from robustprune.cli.run import config_parameter, config_values
from robustprune.runconfig import RunConfig, resolve_config

#: RunConfig fields that ``al`` takes from the command line (the rest keep their defaults or protocols).
AL_RUN_FIELDS = (
    "dataset", "data_dir", "dataset_params", "subset", "test_subset", "noise", "noise_seed", "learner",
    "learner_params", "model", "epochs", "batch_size", "lr", "method", "params", "class_balanced", "seed",
    "device", "out", "force", "resume",
)  # fmt: skip
#: The acquisition function when --method is not given: run's, prune4rel_auto. The loop's default oracle is
#: noisy (run's --noise sym:0.4) and its learner SOP+, and there prune4rel_auto had the best area under the
#: learning curve on digits (docs/results.md §5: 46.8 ± 4.0 against 39.8 ± 6.5 for random queries and
#: 34.4 ± 5.3 for margin uncertainty, which is below random there); with a clean oracle and CE margin
#: uncertainty did better (85.6 ± 0.9 against 83.0 ± 1.6).
DEFAULT_METHOD = next(f.default for f in fields(RunConfig) if f.name == "method")
#: al's own help for options whose run help does not fit a loop.
_AL_HELP = {
    "method": (
        "Acquisition method (see: robustprune methods). The default, as in run, suits the default noisy oracle "
        "(--noise sym:0.4) and SOP+: it had the best area under the learning curve on digits (docs/results.md "
        "§5); with a clean oracle (--noise none) and --learner ce, --method uncertainty --param kind=margin did "
        "better."
    ),
    "out": "Loop directory (default: runs/al-<dataset>-<noise>-<learner>-<method>-i<I>q<Q>x<R>-s<S>).",
}


def _parameters() -> list[inspect.Parameter]:
    run_hints, al_hints = typing.get_type_hints(RunConfig), typing.get_type_hints(ALConfig)
    params = []
    for f in fields(RunConfig):
        if f.name in AL_RUN_FIELDS and f.metadata.get("flag") is not None:
            p = config_parameter(f, run_hints)
            if f.name in _AL_HELP:  # the same flag, with help that speaks of the loop
                flag = f.metadata["flag"]
                option = typer.Option(*flag.names, metavar=flag.metavar, help=_AL_HELP[f.name])
                p = p.replace(annotation=Annotated[typing.get_args(p.annotation)[0], option])
            if f.name == "method":
                p = p.replace(default=DEFAULT_METHOD)
            params.append(p)
    params += [config_parameter(f, al_hints) for f in fields(ALConfig)]
    return params


def al_command(**kw: Any) -> None:
    """Active learning under a noisy oracle: train on the labelled pool, evaluate, query --n-query more with
    --method, for --rounds rounds.

    Round 0 labels --initial examples (default --n-query), uniform and class-balanced; the oracle's answers
    carry --noise. Each round trains a fresh learner for --epochs, evaluates it on the test set, and queries
    with the method, the labelled pool given as its starting set. Writes rounds.json / rounds.csv / pool.npz /
    curve.png after every round; --resume continues an interrupted loop at the next round.
    """
    run_kw = {k: kw[k] for k in kw if k in {f.name for f in fields(RunConfig)}}
    values = config_values(RunConfig, run_kw, set(AL_RUN_FIELDS))
    al_kw = {f.name: kw[f.name] for f in fields(ALConfig)}
    with user_errors():
        al = ALConfig(**al_kw)
        cfg = RunConfig(**values)
        if cfg.out is None:
            cfg = replace(cfg, out=str(Path("runs") / default_al_name(resolve_config(cfg), al)))
        con = stdout_console()

        def show(row: dict[str, Any]) -> None:
            bar.line(
                f"{cfg.method}: round {row['round']:>3}  labelled {row['labelled']:>6}  "
                f"test {100 * row['test_accuracy']:5.1f}%  "
                f"pool noise {100 * row['pool_noise_rate']:4.1f}%  re-labeling {100 * row['relabel_accuracy']:5.1f}%"
            )

        try:
            with sigterm_as_interrupt(), ProgressBar(delay=0.5) as bar:
                res = run_al(cfg, al, progress=show)
        except BaseException as exc:  # an interrupt, or under torchrun a rank that stopped: one line
            again = "--resume in place of --force" if cfg.force else "plus --resume"
            stopped(exc, f"continue with the same command {again} (directory {cfg.out})")
            raise
        s = res.summary
        con.print(
            f"final test accuracy {100 * s['final_test_accuracy']:.2f}% with {s['final_labelled']} labelled; "
            f"area under the curve {100 * s['auc']:.2f}%; written to {res.out}"
        )


def _bind() -> Any:
    params = _parameters()

    def command(**kw: Any) -> None:
        if kw.get("rounds") is not None and kw["rounds"] < 1:
            fail("--rounds must be at least 1")
        al_command(**kw)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = al_command.__doc__
    return command


al_cli = _bind()
