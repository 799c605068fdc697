"""Imports every module that registers a selection method (the registry loads this lazily)."""

from robustprune.selection import baselines, prune4rel  # noqa: F401
