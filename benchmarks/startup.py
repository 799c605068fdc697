"""Start-up time of the command line: the wall time of ``robustprune --version``, ``--help``, ``run --help`` and
``methods``, next to ``python -c pass`` (the interpreter alone) measured the same way, in this one process.

    python benchmarks/startup.py                 # 7 runs each, the median
    python benchmarks/startup.py --repeats 15 --all   # every subcommand's --help too

Each command runs as ``python -m robustprune ...`` (what the ``robustprune`` script and torchrun run) with
this checkout first on ``PYTHONPATH``, its output discarded; the runs of all commands are interleaved, so
that a machine busy with other work slows them alike. Printed per command: the median and the fastest wall
time, the median as a multiple of ``python -c pass``'s, and whether the command imported torch (read once
from ``python -X importtime``). Without a bytecode cache (``PYTHONDONTWRITEBYTECODE``) Python compiles every
module of the checkout on every start; a first untimed run of each command writes the cache under a
temporary ``PYTHONPYCACHEPREFIX`` so that the figures are those of an installed package.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = (["--version"], ["--help"], ["run", "--help"], ["methods"])
HELPS = (["select", "--help"], ["signals", "--help"], ["al", "--help"], ["bench", "--help"],
         ["methods", "--help"], ["report", "--help"])  # fmt: skip


def _env(cache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONPYCACHEPREFIX"] = cache
    env.pop("COLUMNS", None)
    return env


def _argv(args: list[str] | None) -> list[str]:
    return [sys.executable, "-c", "pass"] if args is None else [sys.executable, "-m", "robustprune", *args]


def _once(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def _imports_torch(argv: list[str], env: dict[str, str]) -> bool:
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env, capture_output=True, text=True)
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in done.stderr.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed runs of each command (default 7)")
    ap.add_argument("--all", action="store_true", help="every subcommand's --help too")
    a = ap.parse_args()
    if a.repeats < 1:
        ap.error("--repeats must be at least 1")
    commands: list[list[str] | None] = [None, *COMMANDS, *(HELPS if a.all else ())]
    with tempfile.TemporaryDirectory(prefix="rp-pycache-") as cache:
        env = _env(cache)
        for args in commands:  # untimed: writes the bytecode cache
            _once(_argv(args), env)
        times: list[list[float]] = [[] for _ in commands]
        for _ in range(a.repeats):
            for i, args in enumerate(commands):
                times[i].append(_once(_argv(args), env))
        torch_used = [False if args is None else _imports_torch(_argv(args), env) for args in commands]
    ref = statistics.median(times[0])
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{a.repeats} runs each, median (fastest)")  # fmt: skip
    print(f"{'command':<28} {'median':>8} {'fastest':>8} {'x python -c pass':>17}  torch")
    for args, ts, tor in zip(commands, times, torch_used, strict=True):
        name = "python -c pass" if args is None else "robustprune " + " ".join(args)
        med = statistics.median(ts)
        print(f"{name:<28} {med:>7.3f}s {min(ts):>7.3f}s {med / ref:>16.1f}x  {'yes' if tor else 'no'}")


if __name__ == "__main__":
    main()
