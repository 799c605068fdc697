"""Where every value of a run comes from: given, the dataset protocol, a method's or learner's default, or
RunConfig's default (``run --dry-run``, ``bench --dry-run`` and ``config.json``'s ``resolved``)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from robustprune.protocols import protocol_for
from robustprune.runconfig import RunConfig, resolve_config, tabular_data

__all__ = ["explain_config"]

#: RunConfig fields whose ``None`` the dataset protocol fills.
_FROM_PROTOCOL = ("model", "epochs", "warmup_epochs", "batch_size", "lr")


def explain_config(
    config: RunConfig, given: set[str] | frozenset[str] | None = None, *, resolved: RunConfig | None = None
) -> list[tuple[str, Any, str]]:
    """Every value a run will use, with where it came from, as ``(key, value, origin)`` rows.

    ``given`` names the fields the user set by a flag or a config file (None: those that differ from
    RunConfig's defaults); method and learner options count as given when they are in ``config.params`` /
    ``config.learner_params``. The other origins are the dataset protocol, the method's or the learner's own
    default, and RunConfig's default. Method and learner options are listed in full, defaults included, so
    nothing a run depends on is hidden. ``resolved`` saves resolving ``config`` again.
    """
    from dataclasses import MISSING

    from robustprune.selection.registry import get_method
    from robustprune.train.learners import get_learner_class

    c = resolved if resolved is not None else resolve_config(config)
    proto = protocol_for(config.dataset, tabular=tabular_data(config))
    if given is None:  # not told: a field counts as given where it differs from RunConfig's default
        default = type(config)()
        given = {f.name for f in fields(config) if getattr(config, f.name) != getattr(default, f.name)}
    rows: list[tuple[str, Any, str]] = []
    for f in fields(type(config)):
        if f.name in ("params", "learner_params", "out", "force", "resume"):
            continue
        value = getattr(c, f.name)
        if f.name in given:
            origin = "given"
        elif f.name in _FROM_PROTOCOL and getattr(config, f.name) is None:
            origin = "dataset protocol"
            if f.name == "model" and proto.cpu_model is not None and value == proto.cpu_model != proto.model:
                origin = f"dataset protocol (CPU default; {proto.model} on a GPU)"
        elif f.name == "device" and config.device is None:
            origin = "auto (CUDA when available)"
        elif f.name == "noise_seed" and config.noise_seed is None:
            origin = "seed"
        else:
            origin = "default"
        rows.append((f.name, value, origin))
    learner = get_learner_class(c.learner)
    for f in fields(learner.Options):
        if f.name in config.learner_params:
            value, origin = config.learner_params[f.name], "given"
        elif f.name in c.learner_params:
            value, origin = c.learner_params[f.name], "dataset protocol"
        else:
            value = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            origin = f"{learner.name} default"
        rows.append((f"learner_params.{f.name}", value, origin))
    if c.selection is None:
        info = get_method(c.method)
        for key, default in info.options.items():
            if key in config.params:
                rows.append((f"params.{key}", config.params[key], "given"))
            elif key in c.params:
                rows.append((f"params.{key}", c.params[key], "dataset protocol"))
            else:
                rows.append((f"params.{key}", default, f"{info.name} default"))
    return rows
