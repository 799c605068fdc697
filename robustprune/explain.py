"""Where every value of a run comes from, as rows for ``run --dry-run``, ``bench --dry-run`` and
``config.json``'s ``resolved``. The origins are decided by :func:`robustprune.runconfig.resolve`, once; this
module only lays them out."""

from __future__ import annotations

from typing import Any

from robustprune.runconfig import Resolved, RunConfig, resolve

__all__ = ["explain_config"]


def explain_config(
    config: RunConfig, given: set[str] | frozenset[str] | None = None, *, resolved: Resolved | None = None
) -> list[tuple[str, Any, str]]:
    """Every value a run will use, with where it came from, as ``(key, value, origin)`` rows (method and learner
    options in full, defaults included, so nothing a run depends on is hidden). ``given`` names the fields the
    user set (None: those that differ from RunConfig's defaults); ``resolved`` saves resolving again."""
    return (resolved if resolved is not None else resolve(config, given)).rows()
