"""A grid's TOML file: reading it, the line a key or value stands on (for errors that name it), and the
command line's values laid over it.

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

An ``[al]`` table (``initial``, ``n_query``, ``rounds``: :class:`robustprune.al.ALConfig`) makes the grid an
*active-learning* grid (:mod:`robustprune.bench.spec`)::

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

import re
import tomllib
from pathlib import Path
from typing import Any

from robustprune.bench.spec import ConfigError

__all__ = ["TOP_KEYS", "GridSource", "line_of", "load_config", "merge"]

#: The keys a grid file may hold at its top level.
TOP_KEYS = ("datasets", "noises", "learners", "methods", "fractions", "seeds", "run", "params",
            "learner_params", "variants", "al")  # fmt: skip


def line_of(text: str, key: str | None, value: Any = None, table: str | None = None) -> int | None:
    """1-based line of ``key`` (inside ``[table]`` when given) or of ``value`` after it, for messages; with
    ``table`` and no ``key``, the table's header line."""
    lines = text.splitlines()
    start = 0
    if table is not None:
        header = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\]")
        start = next((i for i, line in enumerate(lines) if header.match(line)), None)
        if start is None:
            return None
        if key is None:
            return start + 1
    assignment = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    found = next((i for i in range(start, len(lines)) if assignment.match(lines[i])), None)
    if found is None:
        return None if table is None else start + 1
    if value is None:
        return found + 1
    needles = [f'"{value}"', f"'{value}'"] if isinstance(value, str) else [str(value)]
    for i in range(found, len(lines)):
        if any(needle in lines[i] for needle in needles):
            return i + 1
        if i > found and re.match(r"^\s*([A-Za-z_\"'][^=]*=|\[)", lines[i]):
            break  # the next key or table: the value is not on a line of its own
    return found + 1


class GridSource:
    """Where a grid came from: a config file and its text (errors read ``file:line: message``), or the
    command line (``path`` None: plain messages)."""

    def __init__(self, path: str | None, text: str = "") -> None:
        self.path, self.text = path, text

    def error(self, message: str, key: str | None = None, value: Any = None, table: str | None = None) -> ConfigError:
        """A :class:`ConfigError` naming the file and the line of ``key`` / ``value`` / ``[table]``."""
        if self.path is None:
            return ConfigError(message)
        line = line_of(self.text, key, value, table) if (key or table) else None
        return ConfigError(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML grid into the keyword arguments of :func:`robustprune.bench.validate.build_spec`:
    ``data`` (the parsed tables) and ``where`` (its :class:`GridSource`); ``ConfigError`` on bad TOML or an
    unknown top-level key."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    where = GridSource(str(p), text)
    for key in data:
        if key not in TOP_KEYS:
            raise where.error(f"unknown key '{key}'; valid: {', '.join(TOP_KEYS)}", key, table=None)
    return {"data": data, "where": where}


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A config's data with command-line values laid over it (``None`` = not given)."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("run", "al"):
            out[key] = {**(out.get(key) or {}), **value}
        elif key == "params":
            merged = dict(out.get("params") or {})
            for name, opts in value.items():
                merged[name] = {**(merged.get(name) or {}), **opts}
            out["params"] = merged
        else:
            out[key] = value
    return out
