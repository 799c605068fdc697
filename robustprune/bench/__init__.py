"""Benchmark sweeps (``robustprune bench``) and their reports (``robustprune report``)."""

from robustprune.bench.al_report import collect_sweep as collect
from robustprune.bench.al_report import write_sweep_report as write_report
from robustprune.bench.config_file import load_config
from robustprune.bench.expansion import expand
from robustprune.bench.report import aggregate, cost_summary, mean_std
from robustprune.bench.runner import BenchEvent, BenchResult, run_bench
from robustprune.bench.spec import BenchSpec, Cell, ConfigError, Group, MethodSpec
from robustprune.bench.validate import build_spec

__all__ = [
    "BenchSpec", "Cell", "ConfigError", "Group", "MethodSpec", "build_spec", "expand", "load_config",
    "aggregate", "collect", "cost_summary", "mean_std", "write_report", "BenchEvent", "BenchResult", "run_bench",
]  # fmt: skip
