"""The names that lived here, kept for the importers outside ``bench/`` until they import from where each
part now lives:

- :mod:`robustprune.bench.spec`: the types (:class:`MethodSpec`, :class:`BenchSpec`, :class:`Group`,
  :class:`Cell`), :class:`ConfigError`, :data:`RUN_OPTIONS` and :data:`VARIANT_RUN_OPTIONS`;
- :mod:`robustprune.bench.config_file`: reading a TOML grid with the line numbers its errors name
  (:func:`load_config`) and the command line's values laid over it (:func:`merge`);
- :mod:`robustprune.bench.validate`: checking a grid (:func:`build_spec`);
- :mod:`robustprune.bench.expansion`: a grid into groups and cells (:func:`expand`).
"""

from robustprune.bench.config_file import load_config, merge
from robustprune.bench.expansion import expand
from robustprune.bench.spec import (
    RUN_OPTIONS,
    VARIANT_RUN_OPTIONS,
    BenchSpec,
    Cell,
    ConfigError,
    Group,
    MethodSpec,
)
from robustprune.bench.validate import build_spec

__all__ = [
    "ConfigError", "MethodSpec", "BenchSpec", "Group", "Cell", "load_config", "expand", "RUN_OPTIONS",
    "VARIANT_RUN_OPTIONS", "build_spec", "merge",
]  # fmt: skip
