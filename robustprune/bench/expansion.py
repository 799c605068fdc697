"""Expanding a grid into groups and cells (:mod:`robustprune.bench.spec`), each cell with its resolved
:class:`~robustprune.runconfig.RunConfig`, in a stable order: group by group, method by method, fraction by
fraction. A cell's key (group name / cell name) is its identity in a sweep directory."""

from __future__ import annotations

import json
from itertools import product
from typing import Any

from robustprune.bench.spec import RUN_OPTIONS, VARIANT_RUN_OPTIONS, BenchSpec, Cell, ConfigError, Group, MethodSpec
from robustprune.runconfig import RunConfig, resolve_config, safe_name, warmup_key

__all__ = ["expand"]


def expand(spec: BenchSpec) -> tuple[list[Group], list[Cell]]:
    """Groups and cells, in a stable order: group by group, method by method.

    In a pruning grid a group is one warm-up: the cells of a (dataset, noise, learner, seed) that agree on
    the warm-up settings (:func:`robustprune.runconfig.warmup_key`) share one, and a variant with run options
    of its own gets a group of its own. An active-learning grid has no warm-ups: a group per (dataset, noise,
    learner, seed), for naming only, and a cell per group x method (at fraction 1)."""
    al = spec.al_config()
    grid_options = {k: v for k, v in spec.run.items() if k in RUN_OPTIONS}
    if al is None:
        # a group's one warm-up computes the on-demand signals (epoch_probs, deepfool) that any method needs
        grid_options["extra_signals"] = _on_demand(spec, grid_options.get("extra_signals", ()))
    groups: list[Group] = []
    cells: list[Cell] = []
    for dataset, noise, learner, seed in product(spec.datasets, spec.noises, spec.learners, spec.seeds):
        by_warmup: dict[str, Group] = {}  # one group per distinct warm-up key
        for method in spec.methods:
            # an active-learning loop has no warm-up: a variant's run options play no part in it
            options = grid_options if al is not None else {**grid_options, **method.run}
            for fraction in _fractions(spec, method, al):
                # an active-learning loop queries by rounds: its config keeps RunConfig's default fraction
                kept = {} if al is not None else {"fraction": fraction}
                raw = RunConfig(
                    dataset=dataset, noise=noise, learner=learner,
                    learner_params=dict(spec.learner_params.get(learner, {})), method=method.method,
                    params=dict(method.params), seed=seed, **kept, **options,
                )  # fmt: skip
                config = resolve_config(raw)
                warmup = "" if al is not None else json.dumps(warmup_key(config), sort_keys=True)
                group = by_warmup.get(warmup)
                if group is None:
                    tag = "" if al is not None else _variant_tag(method.run, grid_options)
                    group = Group(dataset=config.dataset, noise=config.noise, learner=config.learner, seed=seed,
                                  config=config, tag=tag)  # fmt: skip
                    if any(g.name == group.name for g in by_warmup.values()):
                        raise ConfigError(
                            f"variants with run options {method.run} and others share the warm-up name "
                            f"{group.name} but not its settings; give them the same run options"
                        )
                    by_warmup[warmup] = group
                    groups.append(group)
                cells.append(Cell(group=group, method=method, fraction=fraction, config=config, raw=raw, al=al))
    _check_unique_keys(cells)
    return groups, cells


def _fractions(spec: BenchSpec, method: MethodSpec, al: Any) -> tuple[float, ...]:
    """The fractions of a method's cells: the grid's, or the one its method fixes (``full``: 1); an
    active-learning grid has one cell per method, recorded at fraction 1."""
    from robustprune.selection.registry import get_method

    if al is not None:
        return (1.0,)
    fixed = get_method(method.method).fixed_fraction
    return spec.fractions if fixed is None else (fixed,)


def _on_demand(spec: BenchSpec, given: Any) -> Any:
    """The grid's ``extra_signals`` plus every on-demand signal one of its methods requires or uses."""
    from robustprune.selection.registry import get_method
    from robustprune.signals import ON_DEMAND_SIGNALS

    if isinstance(given, str) or not isinstance(given, (list, tuple)):
        return given  # RunConfig names the problem
    wanted = set()
    for method in spec.methods:
        info = get_method(method.method)
        wanted.update(info.requires, info.optional)
    return tuple(given) + tuple(s for s in ON_DEMAND_SIGNALS if s in wanted and s not in given)


def _variant_tag(run: dict[str, Any], grid_options: dict[str, Any]) -> str:
    """The part of a warm-up group's name that a variant's own run options add (empty for the grid's)."""
    from robustprune.signals import parse_signal_source

    parts = []
    for key in VARIANT_RUN_OPTIONS:
        if key not in run:
            continue
        mine, grid = run[key], grid_options.get(key, getattr(RunConfig, key, None))
        if key == "signal_source":
            mine = str(parse_signal_source(mine))
            grid = str(parse_signal_source(grid if grid is not None else "warmup"))
        if mine != grid:
            parts.append(f"{key}-{mine}")
    return safe_name("_".join(parts))


def _check_unique_keys(cells: list[Cell]) -> None:
    keys = [cell.key for cell in cells]
    if len(set(keys)) != len(keys):
        dup = next(key for key in keys if keys.count(key) > 1)
        raise ConfigError(f"two cells share the name {dup}; give the methods distinct labels")
