"""Checking a grid: every name (dataset, noise spec, learner, method), option and value of a config file's
tables or of the command line, before anything runs; :func:`build_spec` returns the :class:`BenchSpec`.

Errors are :class:`~robustprune.bench.spec.ConfigError`; for a config file they name its file and line
(:class:`~robustprune.bench.config_file.GridSource`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from robustprune.bench.config_file import GridSource
from robustprune.bench.expansion import expand
from robustprune.bench.spec import RUN_OPTIONS, VARIANT_RUN_OPTIONS, BenchSpec, ConfigError, MethodSpec
from robustprune.runconfig import RunConfig
from robustprune.selection.budget import check_fraction

__all__ = ["build_spec"]


def build_spec(data: dict[str, Any], where: GridSource | None = None) -> BenchSpec:
    """Check a grid (names, options, values) and return the :class:`BenchSpec`."""
    from robustprune.data import get_dataset_info, list_datasets
    from robustprune.noise import parse_noise
    from robustprune.train.learners import get_learner_class, list_learners

    where = where or GridSource(None)
    datasets = _as_list(where, "datasets", data.get("datasets"), str)
    _check_each(where, "datasets", datasets, get_dataset_info,
                lambda name, _exc: f"unknown dataset '{name}'; known: {', '.join(list_datasets())}")  # fmt: skip
    noises = _as_list(where, "noises", data.get("noises"), str)
    _check_each(where, "noises", noises, parse_noise, lambda spec, exc: f"bad noise spec '{spec}': {exc}")
    learners = _as_list(where, "learners", data.get("learners"), str)
    _check_each(where, "learners", learners, get_learner_class,
                lambda name, _exc: f"unknown learner '{name}'; known: {', '.join(list_learners())}")  # fmt: skip
    al = _al_table(data, where)
    if al is not None and data.get("fractions") is not None:
        raise where.error(
            "'fractions' does not apply to an active-learning grid (each round queries [al] n_query examples); "
            "drop it or the [al] table",
            "fractions",
        )
    fractions = [] if al is not None else _as_list(where, "fractions", data.get("fractions"), float)
    _check_each(where, "fractions", fractions, check_fraction, lambda f, _exc: f"fraction {f:g} is outside (0, 1]")
    seeds = _as_list(where, "seeds", data.get("seeds", [0]), int)

    methods = _method_specs(data, where)
    run = dict(data.get("run", {}) or {})
    for key in run:
        if key not in RUN_OPTIONS:
            raise where.error(f"unknown run option '{key}'; valid: {', '.join(RUN_OPTIONS)}", key, table="run")
    if al is not None:
        _check_al(al, methods, run, where)
    learner_params = {k: dict(v or {}) for k, v in (data.get("learner_params", {}) or {}).items()}
    spec = BenchSpec(
        datasets=tuple(datasets), noises=tuple(noises), learners=tuple(learners), methods=tuple(methods),
        fractions=tuple(fractions), seeds=tuple(seeds), run=run, learner_params=learner_params,
        source=where.path, al=al,
    )  # fmt: skip
    try:
        expand(spec)  # every cell's config resolves (learner options, models, option values)
    except ConfigError:
        raise
    except ValueError as exc:
        raise where.error(str(exc)) from None
    return spec


def _as_list(where: GridSource, key: str, value: Any, kind: type, *, required: bool = True) -> list:
    """``value`` (a list, or one item) as a list of ``kind`` values, each once; ints count as floats."""
    if value is None:
        if required:
            raise where.error(f"the grid needs '{key}' (a list)")
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if kind is float and isinstance(item, int) and not isinstance(item, bool):
            item = float(item)
        if not isinstance(item, kind) or isinstance(item, bool):
            raise where.error(f"'{key}' must hold {kind.__name__} values, got {item!r}", key, item)
        out.append(item)
    if not out:
        raise where.error(f"'{key}' is empty", key)
    if len(set(out)) != len(out):
        dup = next(item for item in out if out.count(item) > 1)
        raise where.error(f"'{key}' lists {dup!r} twice", key, dup)
    return out


def _check_each(
    where: GridSource,
    key: str,
    values: Sequence[Any],
    check: Callable[[Any], Any],
    message: Callable[[Any, ValueError], str],
) -> None:
    """``check`` every value of the list ``key``; the first ValueError becomes ``message(value, error)`` at
    that value's line."""
    for value in values:
        try:
            check(value)
        except ValueError as exc:
            raise where.error(message(value, exc), key, value) from None


def _al_table(data: dict[str, Any], where: GridSource) -> dict[str, Any] | None:
    """The ``[al]`` table checked key by key (None: a pruning grid)."""
    from robustprune.al import ALConfig, al_fields

    table = data.get("al")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise where.error(f"'al' must be a table ([al] with {', '.join(al_fields())}), got {table!r}", "al")
    for key, value in table.items():
        if key not in al_fields():
            raise where.error(f"unknown [al] key '{key}'; valid: {', '.join(al_fields())}", key, table="al")
        try:
            ALConfig(**{key: value})
        except ValueError as exc:
            raise where.error(f"bad [al] value {key} = {value!r}: {exc}", key, table="al") from None
    return dict(table)


def _check_al(al: dict[str, Any], methods: list[MethodSpec], run: dict[str, Any], where: GridSource) -> None:
    """An active-learning grid's methods must query something (not a method that keeps every example, as
    'full'), and its pool must fit a given subset."""
    from robustprune.al import ALConfig
    from robustprune.selection.registry import get_method

    for method in methods:
        info = get_method(method.method)
        if info.fixed_fraction == 1.0:
            raise where.error(
                f"method {info.name!r} keeps every example and queries nothing; an active-learning grid's methods "
                "are acquisition functions",
                "methods",
                method.label,
            )
    al_config = ALConfig(**al)
    total = al_config.initial_size + al_config.rounds * al_config.n_query
    subset = run.get("subset")
    if isinstance(subset, int) and not isinstance(subset, bool) and total > subset:
        raise where.error(
            f"[al] initial ({al_config.initial_size}) + n_query ({al_config.n_query}) x rounds ({al_config.rounds}) "
            f"= {total} exceeds the subset of {subset} training examples",
            "rounds" if "rounds" in al else None,
            table="al",
        )


def _method_specs(data: dict[str, Any], where: GridSource) -> list[MethodSpec]:
    """The grid's methods: registered names with their ``[params.NAME]``, or ``[variants.NAME]`` tables (a
    method under another name with its own options); every name and option checked."""
    from robustprune.selection.registry import get_method, list_methods

    variants = data.get("variants", {}) or {}
    params = data.get("params", {}) or {}
    if not isinstance(variants, dict) or not isinstance(params, dict):
        bad = "variants" if not isinstance(variants, dict) else "params"
        raise where.error(f"'{bad}' must be a table", bad)
    methods: list[MethodSpec] = []
    for label in _as_list(where, "methods", data.get("methods"), str):
        run: dict[str, Any] = {}
        if label in variants:
            variant = dict(variants[label]) if isinstance(variants[label], dict) else None
            if variant is None or "method" not in variant:
                raise where.error(f"variant '{label}' needs a 'method' key", None, table=f"variants.{label}")
            base, opts, table = str(variant.pop("method")), variant, f"variants.{label}"
            run = {k: opts.pop(k) for k in VARIANT_RUN_OPTIONS if k in opts}
            for key, value in run.items():
                try:
                    RunConfig(**{key: value})
                except (ValueError, TypeError) as exc:
                    raise where.error(f"variant '{label}': {exc}", key, table=table) from None
        else:
            base, opts, table = label, dict(params.get(label, {}) or {}), f"params.{label}"
        try:
            info = get_method(base)
        except (ValueError, KeyError):
            raise where.error(
                f"unknown method '{base}'; known: {', '.join(list_methods())} (or a [variants.NAME] table)",
                "methods" if label == base else "method",
                base,
                table=None if label == base else table,
            ) from None
        try:
            info.check_options(opts)
        except ValueError as exc:
            bad = next(k for k in opts if k not in info.options)
            raise where.error(str(exc), bad, table=table) from None
        methods.append(MethodSpec(label=label, method=info.name, params=opts, run=run))
    for name in params:
        if name not in [m.label for m in methods]:
            raise where.error(f"[params.{name}] names a method that is not in 'methods'", None, table=f"params.{name}")
    return methods
