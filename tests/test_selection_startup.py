"""Importing the selection layer needs numpy only: registering the methods (and reading their names, options and
descriptions, as ``robustprune methods`` does) imports neither torch nor scipy; a method imports them when it
runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "scipy")


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def _heavy_line() -> str:
    return f"print('HEAVY', sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))\n"


def test_the_selection_layer_registers_its_methods_with_numpy_only():
    out = _run(
        "import sys\n"
        "import robustprune.selection as s\n"
        "import robustprune.selection.api\n"
        "names = s.registry.list_methods()\n"
        "assert 'prune4rel' in names and 'craig' in names and len(names) > 20, names\n"
        "for name in names:\n"
        "    info = s.registry.get_method(name)\n"
        "    info.options, info.description, info.facts, info.shares_graph, info.honours_start\n"
        "    info.check_options({})\n" + _heavy_line()
    )
    assert out.splitlines()[-1] == "HEAVY []", out[-500:]


@pytest.mark.parametrize("argv", [["methods"], ["methods", "prune4rel"], ["methods", "craig"]])
def test_the_methods_command_starts_without_torch(argv):
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['robustprune', *{argv!r}]\n"
        "try:\n    runpy.run_module('robustprune', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n" + _heavy_line()
    )
    out = _run(code)
    assert argv[-1] in out if len(argv) > 1 else "prune4rel_auto" in out, out[-2000:]
    assert out.splitlines()[-1] == "HEAVY []", out[-500:]


def test_a_method_imports_torch_when_it_runs():
    out = _run(
        "import sys\n"
        "import numpy as np\n"
        "from robustprune.selection.api import select\n"
        "rng = np.random.default_rng(0)\n"
        "p = rng.dirichlet(np.ones(3), 40).astype(np.float32)\n"
        "sel = select('prune4rel', labels=rng.integers(0, 3, 40), probs=p, features=rng.normal(size=(40, 5)),"
        " budget=8)\n"
        "assert sel.indices.shape == (8,)\n" + _heavy_line()
    )
    assert out.splitlines()[-1] == "HEAVY ['scipy', 'torch']", out[-500:]
