"""Benchmark grids: datasets x noise specs x learners x methods x fractions x seeds, from a TOML file or
command-line lists, expanded into warm-up groups and cells.

A TOML config (``configs/*.toml``)::

    datasets = ["fashion-mnist"]
    noises = ["sym:0.4", "asym:0.4"]
    learners = ["sop", "ce"]
    methods = ["prune4rel", "prune4rel_exact", "uniform", "uncertainty"]
    fractions = [0.2, 0.4, 0.6, 0.8]
    seeds = [0, 1]

    [run]                     # options of robustprune run shared by every cell
    subset = 6000
    epochs = 15
    warmup_epochs = 3

    [params.uncertainty]      # method options, for every cell of that method
    kind = "margin"

    [learner_params.sop]      # learner options
    lr_u = 10.0

    [variants.prune4rel_exact]   # a method under another name with its own options
    method = "prune4rel"
    gain = "exact"

    [variants.auto_oof]          # a variant may also set how its signals are made (VARIANT_RUN_OPTIONS):
    method = "prune4rel_auto"    # it then has a warm-up group of its own, and its row sits in the same
    signal_source = "folds:5"    # tables as the methods on the grid's signals

A *group* is one (dataset, noise, learner, seed) and warm-up setting: its warm-up (the signals) is computed
once and shared by every method and fraction of the group. A *cell* is one group x method x fraction:
select, train a fresh learner on the subset, evaluate. The method ``full`` keeps everything, so it has one
cell per group, at fraction 1.

An ``[al]`` table (``initial``, ``n_query``, ``rounds``: :class:`robustprune.al.ALConfig`) makes the grid an
*active-learning* grid: its methods are acquisition functions, it has no fractions and no warm-ups, and a
cell is one group x method: an active-learning loop (:func:`robustprune.al.run_al`) in its own directory::

    methods = ["uniform", "margin", "kcenter_greedy"]

    [al]
    initial = 1000
    n_query = 1000
    rounds = 10

    [variants.margin]
    method = "uncertainty"
    kind = "margin"
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustprune.runconfig import RunConfig, resolve_config, run_options, safe_name, warmup_key
from robustprune.selection.budget import check_fraction

__all__ = [
    "ConfigError", "MethodSpec", "BenchSpec", "Group", "Cell", "load_config", "expand", "RUN_OPTIONS",
    "VARIANT_RUN_OPTIONS",
]  # fmt: skip

#: RunConfig options a grid may set for all cells (``[run]`` table / command-line flags): declared on the
#: fields themselves (``runconfig.opt(..., grid=...)``).
RUN_OPTIONS = run_options(RunConfig)
_TOP_KEYS = ("datasets", "noises", "learners", "methods", "fractions", "seeds", "run", "params",
             "learner_params", "variants", "al")  # fmt: skip


class ConfigError(ValueError):
    """A bad benchmark grid; the message names the config file and line where there is one."""


#: Run options a ``[variants.NAME]`` table may set beside method options: they change only how the signals
#: are made (the warm-up), so a variant with them gets a warm-up group of its own, and the report shows it as
#: a row of the same table (e.g. a method on out-of-sample signals beside the same method on in-sample ones).
VARIANT_RUN_OPTIONS = ("signal_source", "warmup_epochs", "confidence_pass")


@dataclass(frozen=True)
class MethodSpec:
    """A method as a grid names it: ``label`` (shown in tables), the registered ``method`` and options, and
    ``run``: the run options of :data:`VARIANT_RUN_OPTIONS` the variant sets for its own warm-up."""

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchSpec:
    """A benchmark grid and the options shared by all of its cells."""

    datasets: tuple[str, ...]
    noises: tuple[str, ...]
    learners: tuple[str, ...]
    methods: tuple[MethodSpec, ...]
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    run: dict[str, Any] = field(default_factory=dict)
    learner_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str | None = None
    al: dict[str, Any] | None = None  # the [al] table: an active-learning grid (no fractions, no warm-ups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "datasets": list(self.datasets), "noises": list(self.noises), "learners": list(self.learners),
            "methods": [{"label": m.label, "method": m.method, "params": m.params, **({"run": m.run} if m.run else {})}
                        for m in self.methods],
            "fractions": list(self.fractions), "seeds": list(self.seeds), "run": self.run,
            "learner_params": self.learner_params, "source": self.source, "al": self.al,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchSpec:
        methods = tuple(MethodSpec(m["label"], m["method"], dict(m.get("params", {})), dict(m.get("run", {})))
                        for m in d["methods"])  # fmt: skip
        return cls(
            tuple(d["datasets"]), tuple(d["noises"]), tuple(d["learners"]), methods,
            tuple(float(f) for f in d["fractions"]), tuple(int(s) for s in d["seeds"]), dict(d.get("run", {})),
            {k: dict(v) for k, v in d.get("learner_params", {}).items()}, d.get("source"),
            None if d.get("al") is None else dict(d["al"]),
        )  # fmt: skip

    def al_config(self) -> Any:
        """The grid's :class:`~robustprune.al.ALConfig`, or None for a pruning grid."""
        from robustprune.al import ALConfig

        return None if self.al is None else ALConfig(**self.al)


@dataclass(frozen=True)
class Group:
    """One (dataset, noise, learner, seed): one warm-up shared by its cells."""

    dataset: str
    noise: str
    learner: str
    seed: int
    config: RunConfig  # resolved; method / fraction are those of the group's first cell
    tag: str = ""  # the run options of a variant with a warm-up of its own, e.g. "signal_source-folds5"

    @property
    def name(self) -> str:
        tag = f"_{self.tag}" if self.tag else ""
        return safe_name(f"{self.dataset}_{self.noise}_{self.learner}_s{self.seed}{tag}")

    @property
    def block(self) -> tuple[str, str, str]:
        """The report block (seeds are aggregated)."""
        return (self.dataset, self.noise, self.learner)


@dataclass(frozen=True)
class Cell:
    """One group x method x fraction; in an active-learning grid, one group x method (``al`` set, fraction 1)."""

    group: Group
    method: MethodSpec
    fraction: float
    config: RunConfig  # resolved, without out / signals
    raw: RunConfig | None = None  # as the grid gave it, before the dataset protocol filled it in
    al: Any = None  # the ALConfig of an active-learning cell

    @property
    def name(self) -> str:
        if self.al is not None:
            return safe_name(self.method.label)
        return safe_name(f"{self.method.label}_f{self.fraction:g}")

    @property
    def key(self) -> str:
        return f"{self.group.name}/{self.name}"


# -------------------------------------------------------------------------------------------- parsing


def _line_of(text: str, key: str, value: Any = None, table: str | None = None) -> int | None:
    """1-based line of ``key`` (inside ``[table]`` when given) or of ``value`` after it, for messages."""
    lines = text.splitlines()
    start = 0
    if table is not None:
        header = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\]")
        start = next((i for i, ln in enumerate(lines) if header.match(ln)), None)
        if start is None:
            return None
        if key is None:
            return start + 1
    pat = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    found = next((i for i in range(start, len(lines)) if pat.match(lines[i])), None)
    if found is None:
        return None if table is None else start + 1
    if value is None:
        return found + 1
    needles = [f'"{value}"', f"'{value}'"] if isinstance(value, str) else [str(value)]
    for i in range(found, len(lines)):
        if any(n in lines[i] for n in needles):
            return i + 1
        if i > found and re.match(r"^\s*([A-Za-z_\"'][^=]*=|\[)", lines[i]):
            break
    return found + 1


class _Where:
    """Builds ``file:line: message`` errors for a config file (plain messages for command-line grids)."""

    def __init__(self, path: str | None, text: str = "") -> None:
        self.path, self.text = path, text

    def error(self, message: str, key: str | None = None, value: Any = None, table: str | None = None):
        if self.path is None:
            return ConfigError(message)
        line = _line_of(self.text, key, value, table) if (key or table) else None
        return ConfigError(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")


def _as_list(where: _Where, key: str, value: Any, kind: type, *, required: bool = True) -> list:
    if value is None:
        if required:
            raise where.error(f"the grid needs '{key}' (a list)")
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or isinstance(v, bool):
            raise where.error(f"'{key}' must hold {kind.__name__} values, got {v!r}", key, v)
        out.append(v)
    if not out:
        raise where.error(f"'{key}' is empty", key)
    if len(set(out)) != len(out):
        dup = next(v for v in out if out.count(v) > 1)
        raise where.error(f"'{key}' lists {dup!r} twice", key, dup)
    return out


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML grid into the keyword arguments of :func:`build_spec` (``ConfigError`` on bad TOML)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    where = _Where(str(p), text)
    for key in data:
        if key not in _TOP_KEYS:
            raise where.error(f"unknown key '{key}'; valid: {', '.join(_TOP_KEYS)}", key, table=None)
    return {"data": data, "where": where}


def build_spec(data: dict[str, Any], where: _Where | None = None) -> BenchSpec:
    """Check a grid (names, options, values) and return the :class:`BenchSpec`."""
    from robustprune.data import get_dataset_info, list_datasets
    from robustprune.noise import parse_noise
    from robustprune.train.learners import get_learner_class, list_learners

    where = where or _Where(None)
    datasets = _as_list(where, "datasets", data.get("datasets"), str)
    for d in datasets:
        try:
            get_dataset_info(d)
        except ValueError:
            raise where.error(f"unknown dataset '{d}'; known: {', '.join(list_datasets())}", "datasets", d) from None
    noises = _as_list(where, "noises", data.get("noises"), str)
    for s in noises:
        try:
            parse_noise(s)
        except ValueError as exc:
            raise where.error(f"bad noise spec '{s}': {exc}", "noises", s) from None
    learners = _as_list(where, "learners", data.get("learners"), str)
    for name in learners:
        try:
            get_learner_class(name)
        except ValueError:
            known = ", ".join(list_learners())
            raise where.error(f"unknown learner '{name}'; known: {known}", "learners", name) from None
    al = _al_table(data, where)
    if al is not None and data.get("fractions") is not None:
        raise where.error(
            "'fractions' does not apply to an active-learning grid (each round queries [al] n_query examples); "
            "drop it or the [al] table",
            "fractions",
        )
    fractions = [] if al is not None else _as_list(where, "fractions", data.get("fractions"), float)
    for f in fractions:
        try:
            check_fraction(f)
        except ValueError:
            raise where.error(f"fraction {f:g} is outside (0, 1]", "fractions", f) from None
    seeds = _as_list(where, "seeds", data.get("seeds", [0]), int)

    methods = _method_specs(data, where)
    run = dict(data.get("run", {}) or {})
    for k in run:
        if k not in RUN_OPTIONS:
            raise where.error(f"unknown run option '{k}'; valid: {', '.join(RUN_OPTIONS)}", k, table="run")
    if al is not None:
        _check_al(al, methods, run, where)
    lparams = {k: dict(v or {}) for k, v in (data.get("learner_params", {}) or {}).items()}
    spec = BenchSpec(
        tuple(datasets), tuple(noises), tuple(learners), tuple(methods), tuple(fractions), tuple(seeds), run,
        lparams, where.path, al,
    )  # fmt: skip
    try:
        expand(spec)  # every cell's config resolves (learner options, models, option values)
    except ConfigError:
        raise
    except ValueError as exc:
        raise where.error(str(exc)) from None
    return spec


def _al_table(data: dict[str, Any], where: _Where) -> dict[str, Any] | None:
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


def _check_al(al: dict[str, Any], methods: list[MethodSpec], run: dict[str, Any], where: _Where) -> None:
    """An active-learning grid's methods must query something (not a method that keeps every example, as
    'full'), and its pool must fit a given subset."""
    from robustprune.al import ALConfig
    from robustprune.selection.registry import get_method

    for m in methods:
        info = get_method(m.method)
        if info.fixed_fraction == 1.0:
            raise where.error(
                f"method {info.name!r} keeps every example and queries nothing; an active-learning grid's methods "
                "are acquisition functions",
                "methods",
                m.label,
            )
    cfg = ALConfig(**al)
    total = cfg.initial_size + cfg.rounds * cfg.n_query
    subset = run.get("subset")
    if isinstance(subset, int) and not isinstance(subset, bool) and total > subset:
        raise where.error(
            f"[al] initial ({cfg.initial_size}) + n_query ({cfg.n_query}) x rounds ({cfg.rounds}) = {total} "
            f"exceeds the subset of {subset} training examples",
            "rounds" if "rounds" in al else None,
            table="al",
        )


def _method_specs(data: dict[str, Any], where: _Where) -> list[MethodSpec]:
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
            v = dict(variants[label]) if isinstance(variants[label], dict) else None
            if v is None or "method" not in v:
                raise where.error(f"variant '{label}' needs a 'method' key", None, table=f"variants.{label}")
            base, opts, table = str(v.pop("method")), v, f"variants.{label}"
            run = {k: opts.pop(k) for k in VARIANT_RUN_OPTIONS if k in opts}
            for k, value in run.items():
                try:
                    RunConfig(**{k: value})
                except (ValueError, TypeError) as exc:
                    raise where.error(f"variant '{label}': {exc}", k, table=table) from None
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
        methods.append(MethodSpec(label, info.name, opts, run))
    for name in params:
        if name not in [m.label for m in methods]:
            raise where.error(f"[params.{name}] names a method that is not in 'methods'", None, table=f"params.{name}")
    return methods


# ------------------------------------------------------------------------------------------ expansion


def _on_demand(spec: BenchSpec, given: Any) -> Any:
    """The grid's ``extra_signals`` plus every on-demand signal one of its methods requires or uses."""
    from robustprune.selection.registry import get_method
    from robustprune.signals import ON_DEMAND_SIGNALS

    if isinstance(given, str) or not isinstance(given, (list, tuple)):
        return given  # RunConfig names the problem
    wanted = set()
    for m in spec.methods:
        info = get_method(m.method)
        wanted.update(info.requires, info.optional)
    return tuple(given) + tuple(s for s in ON_DEMAND_SIGNALS if s in wanted and s not in given)


def expand(spec: BenchSpec) -> tuple[list[Group], list[Cell]]:
    """Groups (one warm-up each) and cells, in a stable order: group by group, method by method."""
    from robustprune.selection.registry import get_method

    groups: list[Group] = []
    cells: list[Cell] = []
    base = {k: v for k, v in spec.run.items() if k in RUN_OPTIONS}
    al = spec.al_config()
    if al is not None:
        return _expand_al(spec, base, al)
    # a group's one warm-up computes the on-demand signals (epoch_probs, deepfool) that any of its methods needs
    base["extra_signals"] = _on_demand(spec, base.get("extra_signals", ()))
    for dataset in spec.datasets:
        for noise in spec.noises:
            for learner in spec.learners:
                for seed in spec.seeds:
                    by_key: dict[str, Group] = {}  # one warm-up per distinct warm-up key
                    for m in spec.methods:
                        fixed = get_method(m.method).fixed_fraction
                        fracs = spec.fractions if fixed is None else (fixed,)
                        for f in fracs:
                            cfg = RunConfig(
                                dataset=dataset, noise=noise, learner=learner,
                                learner_params=dict(spec.learner_params.get(learner, {})), method=m.method,
                                params=dict(m.params), fraction=f, seed=seed, **{**base, **m.run},
                            )  # fmt: skip
                            raw, cfg = cfg, resolve_config(cfg)
                            key = json.dumps(warmup_key(cfg), sort_keys=True)
                            group = by_key.get(key)
                            if group is None:
                                tag = _variant_tag(m.run, base)
                                group = Group(cfg.dataset, cfg.noise, cfg.learner, seed, cfg, tag)
                                if any(g.name == group.name for g in by_key.values()):
                                    raise ConfigError(
                                        f"variants with run options {m.run} and others share the warm-up name "
                                        f"{group.name} but not its settings; give them the same run options"
                                    )
                                by_key[key] = group
                                groups.append(group)
                            cells.append(Cell(group, m, f, cfg, raw))
    _check_unique(cells)
    return groups, cells


def _variant_tag(run: dict[str, Any], base: dict[str, Any]) -> str:
    """The part of a warm-up group's name that a variant's own run options add (empty for the grid's)."""
    from robustprune.signals import parse_signal_source

    parts = []
    for k in VARIANT_RUN_OPTIONS:
        if k not in run:
            continue
        v, b = run[k], base.get(k, getattr(RunConfig, k, None))
        if k == "signal_source":
            v, b = str(parse_signal_source(v)), str(parse_signal_source(b if b is not None else "warmup"))
        if v != b:
            parts.append(f"{k}-{v}")
    return safe_name("_".join(parts))


def _check_unique(cells: list[Cell]) -> None:
    names = [c.key for c in cells]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"two cells share the name {dup}; give the methods distinct labels")


def _expand_al(spec: BenchSpec, base: dict[str, Any], al: Any) -> tuple[list[Group], list[Cell]]:
    """An active-learning grid: a group per (dataset, noise, learner, seed) for naming only (no warm-up), a
    cell per group x method."""
    groups: list[Group] = []
    cells: list[Cell] = []
    for dataset in spec.datasets:
        for noise in spec.noises:
            for learner in spec.learners:
                for seed in spec.seeds:
                    group: Group | None = None
                    for m in spec.methods:
                        cfg = RunConfig(
                            dataset=dataset, noise=noise, learner=learner,
                            learner_params=dict(spec.learner_params.get(learner, {})), method=m.method,
                            params=dict(m.params), seed=seed, **base,
                        )  # fmt: skip
                        raw, cfg = cfg, resolve_config(cfg)
                        if group is None:
                            group = Group(cfg.dataset, cfg.noise, cfg.learner, seed, cfg)
                            groups.append(group)
                        cells.append(Cell(group, m, 1.0, cfg, raw, al))
    _check_unique(cells)
    return groups, cells


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A config's data with command-line values laid over it (``None`` = not given)."""
    out = dict(base)
    for k, v in overrides.items():
        if v is None:
            continue
        if k in ("run", "al"):
            out[k] = {**(out.get(k) or {}), **v}
        elif k == "params":
            merged = dict(out.get("params") or {})
            for name, opts in v.items():
                merged[name] = {**(merged.get(name) or {}), **opts}
            out["params"] = merged
        else:
            out[k] = v
    return out
