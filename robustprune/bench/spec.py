"""What a benchmark grid is: its methods (:class:`MethodSpec`), the grid itself (:class:`BenchSpec`), and the
two units a sweep works in, :class:`Group` and :class:`Cell`.

A grid is datasets x noise specs x learners x methods x fractions x seeds, with run options shared by all of
its cells. A *group* is one (dataset, noise, learner, seed) and warm-up setting: its warm-up (the signals) is
computed once and shared by every method and fraction of the group. A *cell* is one group x method x
fraction: select, train a fresh learner on the subset, evaluate. The method ``full`` keeps everything, so it
has one cell per group, at fraction 1.

An *active-learning* grid (an ``[al]`` table: :class:`robustprune.al.ALConfig`) has acquisition functions for
methods, no fractions and no warm-ups: a cell is one group x method, an active-learning loop
(:func:`robustprune.al.run_al`) in its own directory.

A grid is read from a TOML file by :mod:`robustprune.bench.config_file`, checked by
:mod:`robustprune.bench.validate` and expanded into groups and cells by :mod:`robustprune.bench.expansion`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robustprune.runconfig import RunConfig, run_options, safe_name

__all__ = ["ConfigError", "RUN_OPTIONS", "VARIANT_RUN_OPTIONS", "MethodSpec", "BenchSpec", "Group", "Cell"]


class ConfigError(ValueError):
    """A bad benchmark grid; the message names the config file and line where there is one."""


#: RunConfig options a grid may set for all cells (``[run]`` table / command-line flags): declared on the
#: fields themselves (``runconfig.opt(..., grid=...)``).
RUN_OPTIONS = run_options(RunConfig)

#: Run options a ``[variants.NAME]`` table may set beside method options: they change only how the signals
#: are made (the warm-up), so a variant with them gets a warm-up group of its own, and the report shows it as
#: a row of the same table (e.g. a method on out-of-sample signals beside the same method on in-sample ones).
VARIANT_RUN_OPTIONS = ("signal_source", "warmup_epochs", "confidence_pass")


@dataclass(frozen=True, kw_only=True)
class MethodSpec:
    """A method as a grid names it: ``label`` (shown in tables), the registered ``method`` and options, and
    ``run``: the run options of :data:`VARIANT_RUN_OPTIONS` the variant sets for its own warm-up."""

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
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
    source: str | None = None  # the config file the grid was read from
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
    def from_dict(cls, data: dict[str, Any]) -> BenchSpec:
        methods = tuple(
            MethodSpec(label=m["label"], method=m["method"], params=dict(m.get("params", {})),
                       run=dict(m.get("run", {})))
            for m in data["methods"]
        )  # fmt: skip
        return cls(
            datasets=tuple(data["datasets"]), noises=tuple(data["noises"]), learners=tuple(data["learners"]),
            methods=methods, fractions=tuple(float(f) for f in data["fractions"]),
            seeds=tuple(int(s) for s in data["seeds"]), run=dict(data.get("run", {})),
            learner_params={k: dict(v) for k, v in data.get("learner_params", {}).items()},
            source=data.get("source"), al=None if data.get("al") is None else dict(data["al"]),
        )  # fmt: skip

    def al_config(self) -> Any:
        """The grid's :class:`~robustprune.al.ALConfig`, or None for a pruning grid."""
        from robustprune.al import ALConfig

        return None if self.al is None else ALConfig(**self.al)


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
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
        """The cell's identity in a sweep: ``<group name>/<cell name>``, its directory under ``cells/``."""
        return f"{self.group.name}/{self.name}"
