"""``robustprune al``: active-learning rounds with any selection method as the acquisition function, into a
directory (rounds.json, rounds.csv, pool.npz, curve.png, al.log)."""

from __future__ import annotations

import inspect
import typing
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

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
#: The acquisition function when --method is not given: uncertainty sampling (the method authors' example).
DEFAULT_METHOD = "uncertainty"


def _parameters() -> list[inspect.Parameter]:
    run_hints, al_hints = typing.get_type_hints(RunConfig), typing.get_type_hints(ALConfig)
    params = []
    for f in fields(RunConfig):
        if f.name in AL_RUN_FIELDS and f.metadata.get("flag") is not None:
            p = config_parameter(f, run_hints)
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
