"""Tables of the README that are made from the code: they must be what the code makes today."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import robustprune as rp
from robustprune.signals import SIGNAL_NAMES, SIGNALS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from signals_table import signals_table  # noqa: E402


def test_the_readmes_signal_table_is_made_from_the_signal_table():
    assert signals_table() in (ROOT / "README.md").read_text(), "run benchmarks/signals_table.py into the README"


def test_select_takes_every_method_signal_by_name_and_nothing_else():
    params = inspect.signature(rp.select).parameters
    assert [p for p in params if p in {s.name for s in SIGNALS}] == list(SIGNAL_NAMES)
    assert "true_labels" not in params  # carried by a bundle, never given to a method
