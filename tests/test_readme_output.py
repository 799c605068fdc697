"""The README's default-run output is what the current code prints (on a machine of the documented kind).

The README shows `robustprune run`'s summary on a 2-core AMD EPYC. torch reduces in an order that depends on
the thread count and the CPU's vector units, so the accuracies may differ in the last digit elsewhere; there
the test is skipped, saying why. Time and path lines are left out (they vary by run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from robustprune._provenance import host_identity
from robustprune.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_block() -> list[str]:
    text = README.read_text()
    start = text.index("```\n", text.index("machine, 2026-12-06) and prints:")) + 4
    return text[start : text.index("```", start)].rstrip("\n").splitlines()


def _comparable(lines: list[str]) -> list[str]:
    out, skip = [], False
    for line in lines:
        head = line[:22].strip()
        if head:
            skip = head in ("time", "wrote")
        if not skip:
            out.append(line.rstrip())
    return out


HOST = host_identity("cpu")


@pytest.mark.skipif(
    HOST.get("cpu_count") != 2 or HOST.get("cpu") != "AMD EPYC",
    reason=f"the README's figures are those of 2 threads on an AMD EPYC (here: {HOST})",
)
def test_the_readme_shows_what_the_default_run_prints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()  # other tests may have changed it in this process
    torch.set_num_threads(2)
    try:
        r = CliRunner().invoke(app, ["run"], env={"COLUMNS": "120"})
    finally:
        torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output
    printed = r.stdout.splitlines()
    first = next(i for i, x in enumerate(printed) if x.startswith("data ") and re.search(r"train \d+, test", x))
    assert _comparable(printed[first:]) == _comparable(_readme_block())
