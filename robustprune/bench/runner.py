"""Run a benchmark grid: one warm-up per group, then every cell, cached on disk and resumable.

Layout of a sweep directory::

    DIR/bench.json                     the grid, the command and the environment of the latest sweep
    DIR/warmup/<group>/signals.npz     one warm-up per (dataset, noise, learner, seed), shared by its cells
    DIR/cells/<group>/<cell>/          a run directory per cell (config.json, selection.npz, metrics.json)
    DIR/report.md, results.csv, results.json, *.png   (robustprune.bench.report)

A cell is finished when its ``metrics.json`` exists; a finished cell is never computed again, an
interrupted one resumes from its checkpoint, and a missing warm-up is computed before its cells.

An active-learning grid (``[al]``) has no warm-ups: each cell directory holds one loop of
:func:`robustprune.al.run_al` (``rounds.json``, ``rounds.csv``, ``pool.npz``, ``curve.png``), finished when
``rounds.json`` has all its rounds; an interrupted loop resumes at its next round.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from robustprune._io import write_json
from robustprune._provenance import code_identity, now
from robustprune._version import __version__
from robustprune.bench.expansion import expand
from robustprune.bench.spec import BenchSpec, Cell, Group
from robustprune.runconfig import RunConfig
from robustprune.rundir import changed_fields, identity_differences, refuse_foreign, run_identity, stored_identity

__all__ = ["BenchEvent", "BenchResult", "run_bench", "cell_dir", "cell_done", "al_rounds", "warmup_dir", "environment"]


@dataclass(kw_only=True)
class BenchEvent:
    """A progress event: ``kind`` is "start", "warmup", "cell", "epoch" or "done"; ``done``/``total`` count
    cells (cached ones included); ``eta`` is the estimated seconds left (None until one cell ran)."""

    kind: str
    label: str
    done: int
    total: int
    eta: float | None = None
    status: str = ""  # "computed", "cached", "failed"
    seconds: float = 0.0
    info: Any = None  # a pipeline ProgressInfo for kind "epoch"


@dataclass
class BenchResult:
    """What :func:`run_bench` did: the cells it computed, found finished, or saw fail (keys)."""

    out: Path
    computed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    warmups_computed: list[str] = field(default_factory=list)
    stale: dict[str, list[str]] = field(default_factory=dict)  # recomputed: made by other code or defaults
    stale_kept: dict[str, list[str]] = field(default_factory=dict)  # kept anyway (reuse_stale)
    seconds: float = 0.0


def warmup_dir(out: Path, group: Group) -> Path:
    return out / "warmup" / group.name


def cell_dir(out: Path, cell: Cell) -> Path:
    return out / "cells" / cell.group.name / cell.name


def al_rounds(out: Path, cell: Cell) -> list[dict[str, Any]] | None:
    """The rows of an active-learning cell's ``rounds.json`` (None when missing or unreadable)."""
    try:
        return json.loads((cell_dir(out, cell) / "rounds.json").read_text())["rounds"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None


def cell_done(out: Path, cell: Cell) -> bool:
    """Whether a cell is finished: its ``metrics.json`` exists, or an active-learning loop has all its rounds."""
    if cell.al is None:
        return (cell_dir(out, cell) / "metrics.json").exists()
    rows = al_rounds(out, cell)
    return rows is not None and len(rows) >= cell.al.rounds + 1


def environment(device: str | None = None) -> dict[str, Any]:
    """Package versions and hardware, for reports."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {
        "robustprune": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
    }  # fmt: skip
    if torch.cuda.is_available():
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return env


# ------------------------------------------------------------------------------------ worker functions

_WORKER_DEVICE: str | None = None


def _init_worker(threads: int, slots: Any) -> None:
    """Pool initializer: a share of the CPU threads and, with several GPUs, one GPU per worker."""
    import torch

    global _WORKER_DEVICE
    torch.set_num_threads(max(1, threads))
    if slots is not None:
        _WORKER_DEVICE = slots.get()


def _with_device(values: dict[str, Any]) -> RunConfig:
    """A job's config from its values, on this worker's GPU where the pool gave it one."""
    config = RunConfig(**values)
    if _WORKER_DEVICE is not None and (config.device is None or config.device.startswith("cuda")):
        config = replace(config, device=_WORKER_DEVICE)
    return config


def _timed(fn: Callable, *args: Any, **kwargs: Any) -> float:
    """The seconds ``fn(*args, **kwargs)`` took."""
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def _do_warmup(config: dict[str, Any], progress: Callable | None = None) -> float:
    from robustprune.pipeline import make_signals

    return _timed(make_signals, _with_device(config), progress=progress)


def _do_cell(config: dict[str, Any], progress: Callable | None = None) -> float:
    from robustprune.pipeline import run

    return _timed(run, _with_device(config), progress=progress)


def _do_al_cell(config: dict[str, Any], al: dict[str, Any], progress: Callable | None = None) -> float:
    from robustprune.al import ALConfig, run_al

    return _timed(run_al, _with_device(config), ALConfig(**al), engine_progress=progress)


# -------------------------------------------------------------------------------------------- sweep


def find_stale(out: Path, groups: list[Group], cells: list[Cell]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Warm-ups (by group name) and cells (by key) in ``out`` whose recorded identity differs from the one the
    grid gives them now (:func:`robustprune.rundir.run_identity`: every resolved value, defaults and dataset
    protocol values included, the input files and the code), each with the reasons; a cell whose warm-up is
    stale is stale too. Directories without a config.json are not stale (nothing was computed there)."""
    warm: dict[str, list[str]] = {}
    for group in groups:
        path = warmup_dir(out, group)
        if (path / "config.json").exists():
            why = _identity_changes(path, _group_config(out, group), warmup_only=True)
            if why:
                warm[group.name] = why
    stale: dict[str, list[str]] = {}
    for cell in cells:
        path = cell_dir(out, cell)
        if not (path / "config.json").exists() and not (path / "al_config.json").exists():
            continue
        if cell.al is not None:
            why = _al_differs(out, cell)
        elif cell.group.name in warm:
            why = ["its warm-up is stale: " + "; ".join(warm[cell.group.name])]
        else:
            why = _identity_changes(path, _cell_config(out, cell))
        if why:
            stale[cell.key] = why
    return warm, stale


def _identity_changes(path: Path, config: RunConfig, *, warmup_only: bool = False) -> list[str]:
    """How the identity recorded in ``path/config.json`` differs from that of ``config`` now."""
    return identity_differences(stored_identity(path), run_identity(config, warmup_only=warmup_only))


def _al_differs(out: Path, cell: Cell) -> list[str]:
    """How an active-learning cell's stored loop differs from the grid's (more or fewer rounds are not a
    difference: a loop is extended, or reported up to the grid's rounds), one phrase each."""
    from robustprune.al import config_record

    path = cell_dir(out, cell) / "al_config.json"
    if not path.exists():
        return []
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    new = config_record(cell.config, cell.al)
    diff = [
        f"{key} differs"
        for part in ("run", "al")
        for key in changed_fields(old.get(part, {}), new[part], ignore=("rounds",))
    ]
    return diff or identity_differences(old.get("identity"), new["identity"])


def _group_config(out: Path, group: Group) -> RunConfig:
    return replace(group.config, out=str(warmup_dir(out, group)), resume=True)


def _cell_config(out: Path, cell: Cell) -> RunConfig:
    if cell.al is not None:  # an active-learning loop trains its own learner every round: no warm-up
        return replace(cell.config, out=str(cell_dir(out, cell)), resume=True)
    signals = str((warmup_dir(out, cell.group) / "signals.npz").resolve())
    return replace(cell.config, out=str(cell_dir(out, cell)), signals=signals, resume=True)


def _cell_job(out: Path, cell: Cell) -> tuple[Callable, tuple]:
    """The worker function of a cell and its picklable arguments (before the progress callback)."""
    config = _cell_config(out, cell).to_dict()
    if cell.al is not None:
        return _do_al_cell, (config, asdict(cell.al))
    return _do_cell, (config,)


LOCK = "bench.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _lock(out: Path) -> Path | None:
    """Take ``out/bench.lock`` (this process's PID and host), or a one-line ValueError while another live
    sweep process holds it; a lock whose process is gone (killed, crashed) is taken over."""
    import socket

    if out.exists() and not out.is_dir():
        return None
    refuse_foreign(out, "bench")
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(path.read_text())
                pid, host = int(held["pid"]), str(held["host"])
            except (OSError, ValueError, KeyError, TypeError):
                pid, host = -1, me["host"]  # unreadable: a writer died mid-write; treat as stale
            if host != me["host"]:
                raise ValueError(f"{out} is locked by a sweep on host {host} (PID {pid}); if none runs there, delete "
                                 f"{path}") from None  # fmt: skip
            if pid > 0 and _alive(pid):
                raise ValueError(f"another robustprune bench (PID {pid}) is running on {out}; wait for it to finish "
                                 "or stop it (a killed sweep's lock is taken over)") from None  # fmt: skip
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me) + "\n")
        return path
    raise ValueError(f"could not take the lock {path}; another sweep is starting on {out}")


def run_bench(
    spec: BenchSpec,
    out: str | Path,
    *,
    jobs: int = 1,
    force: bool = False,
    reuse_stale: bool = False,
    command: str | None = None,
    progress: Callable[[BenchEvent], None] | None = None,
) -> BenchResult:
    """Run every cell of ``spec`` into ``out`` (see the module docs); finished cells are skipped.

    A cell or warm-up found in ``out`` whose identity (every resolved value, defaults included; its input files;
    the code) differs from the grid's now is stale: it is recomputed, and ``BenchResult.stale`` says which and
    why; with ``reuse_stale`` finished stale cells are kept instead (``stale_kept``, marked in the report).

    ``jobs > 1`` runs independent work in that many processes (each with a share of the CPU threads, and
    one GPU each where there are several). A cell that fails is recorded in the result and the sweep goes
    on; a rerun retries it.
    """
    import robustprune.distributed as dist

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    world = dist.world()  # under torchrun: every rank runs every cell together, rank 0 alone writes
    if world.distributed and jobs > 1:
        raise ValueError(f"under torchrun the {world.size} processes run each cell together; drop --jobs (got {jobs})")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file; give a directory for the sweep")
    groups, cells = expand(spec)
    started = time.time()
    meta = {
        "spec": spec.to_dict(), "command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "started_at": now(), "code": code_identity(),
        "environment": environment(), "jobs": jobs, "world_size": world.size,
    }  # fmt: skip
    lock = dist.on_main(_lock, out)  # one sweep process per directory (its --jobs workers are its children)
    try:
        # rank 0 prepares the directory and says what is left; every rank then works through the same list
        done, warm, stale, kept = dist.on_main(_prepare, out, groups, cells, force, reuse_stale, meta)
        sweep = _Sweep(out, groups, cells, jobs, progress, done=done, warm=warm)
        sweep.result.stale, sweep.result.stale_kept = stale, kept
        sweep.emit("start", str(out), status=f"{len(sweep.result.cached)} cached")
        if jobs == 1:
            sweep.run_sequential()
        else:
            sweep.run_parallel(spec)
    finally:
        if lock is not None:
            lock.unlink(missing_ok=True)
    result = sweep.result
    result.seconds = time.time() - started
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    meta["finished_at"] = now()
    meta["computed"] = len(result.computed)
    meta["seconds"] = round(result.seconds, 2)
    meta["failed"] = result.failed
    if dist.is_main():
        write_json(out / "bench.json", meta)
    sweep.emit("done", str(out))
    return result


def _prepare(
    out: Path, groups: list[Group], cells: list[Cell], force: bool, reuse_stale: bool, meta: dict
) -> tuple[list, list, dict, dict]:
    """Clear (``force``) or check the sweep directory: stale warm-ups and cells (:func:`find_stale`) are
    removed to be recomputed, or, with ``reuse_stale``, finished ones are kept (and reported as stale); write
    bench.json. Returns which cells are finished, which groups have their warm-up signals, the stale cells
    and warm-ups to recompute, and those kept."""
    if force and out.exists():
        for sub in ("warmup", "cells"):
            shutil.rmtree(out / sub, ignore_errors=True)
    warm, stale = find_stale(out, groups, cells) if out.exists() else ({}, {})
    kept: dict[str, list[str]] = {}
    if reuse_stale:  # finished cells stay (marked in the report); unfinished ones and their warm-ups are redone
        for cell in cells:
            if cell.key in stale and cell_done(out, cell):
                kept[cell.key] = stale.pop(cell.key)
        needed = {cell.group.name for cell in cells if cell.key in stale or not cell_done(out, cell)}
        warm = {name: why for name, why in warm.items() if name in needed}
    for group in groups:
        if group.name in warm:
            shutil.rmtree(warmup_dir(out, group), ignore_errors=True)
    for cell in cells:
        if cell.key in stale:
            shutil.rmtree(cell_dir(out, cell), ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    recomputed = {**{f"warmup/{k}": v for k, v in warm.items()}, **stale}
    meta["stale_recomputed"], meta["stale_kept"] = recomputed, kept
    write_json(out / "bench.json", meta)
    done = [cell_done(out, cell) for cell in cells]
    return done, [(warmup_dir(out, group) / "signals.npz").exists() for group in groups], recomputed, kept


def _call(fn: Callable, *args: Any) -> tuple[Any, BaseException | None]:
    """``fn(*args)``; an ordinary exception is returned (the sweep goes on), an interrupt propagates."""
    try:
        return fn(*args), None
    except Exception as exc:
        return None, exc


class _Sweep:
    """The state of one sweep: what is cached, pending and failed, the remaining-time estimate, the events;
    and the two ways to work through it (one process, or a pool)."""

    def __init__(
        self,
        out: Path,
        groups: list[Group],
        cells: list[Cell],
        jobs: int,
        progress: Callable | None,
        *,
        done: list[bool],
        warm: list[bool],
    ):
        self.out, self.groups, self.jobs, self.progress = out, groups, jobs, progress
        self.result = BenchResult(out)
        self.total = len(cells)
        self.pending: dict[str, list[Cell]] = {group.name: [] for group in groups}
        self.done = 0
        has_signals = {group.name: signals for group, signals in zip(groups, warm, strict=True)}
        for cell, finished in zip(cells, done, strict=True):
            if finished:
                self.result.cached.append(cell.key)
                self.done += 1
            else:
                self.pending[cell.group.name].append(cell)
        no_warmup = {cell.group.name for cell in cells if cell.al is not None}  # active-learning groups
        self.need_warmup = [
            group
            for group in groups
            if self.pending[group.name] and group.name not in no_warmup and not has_signals[group.name]
        ]
        # remaining-time estimate: cell time scales with the kept fraction; warm-ups by their own mean
        self.cell_rate: list[tuple[float, float]] = []  # (seconds, fraction) of cells computed now
        self.warm_times: list[float] = []
        self.warmed: set[str] = set()

    def eta(self) -> float | None:
        if not self.cell_rate:
            return None
        per_frac = sum(s for s, _ in self.cell_rate) / max(sum(f for _, f in self.cell_rate), 1e-9)
        left = sum(cell.fraction for pending in self.pending.values() for cell in pending) * per_frac
        mean_warm = sum(self.warm_times) / len(self.warm_times) if self.warm_times else 0.0
        left += sum(1 for group in self.need_warmup if group.name not in self.warmed) * mean_warm
        return left / self.jobs

    def emit(self, kind: str, label: str, **kw: Any) -> None:
        if self.progress is not None:
            self.progress(BenchEvent(kind=kind, label=label, done=self.done, total=self.total, eta=self.eta(), **kw))

    def epoch_event(self, info: Any) -> None:
        self.emit("epoch", "", info=info)

    def warmup_finished(self, group: Group, seconds: float | None, exc: BaseException | None) -> bool:
        self.warmed.add(group.name)
        if exc is not None:
            msg = _message(exc)
            for cell in self.pending[group.name]:
                self.result.failed[cell.key] = f"warm-up failed: {msg}"
                self.done += 1
            self.pending[group.name] = []
            self.emit("warmup", group.name, status="failed")
            return False
        self.warm_times.append(seconds)
        self.result.warmups_computed.append(group.name)
        self.emit("warmup", group.name, status="computed", seconds=seconds)
        return True

    def cell_finished(self, cell: Cell, seconds: float | None, exc: BaseException | None) -> None:
        self.pending[cell.group.name].remove(cell)
        self.done += 1
        if exc is not None:
            self.result.failed[cell.key] = _message(exc)
            self.emit("cell", cell.key, status="failed")
        else:
            self.cell_rate.append((seconds, cell.fraction))
            self.result.computed.append(cell.key)
            self.emit("cell", cell.key, status="computed", seconds=seconds)

    def run_sequential(self) -> None:
        """``jobs=1``: group by group in this process, with per-epoch progress."""
        for group in self.groups:
            if not self.pending[group.name]:
                continue
            if group in self.need_warmup:
                seconds, exc = _call(_do_warmup, _group_config(self.out, group).to_dict(), self.epoch_event)
                if not self.warmup_finished(group, seconds, exc):
                    continue
            for cell in list(self.pending[group.name]):
                fn, args = _cell_job(self.out, cell)
                seconds, exc = _call(fn, *args, self.epoch_event)
                self.cell_finished(cell, seconds, exc)

    def run_parallel(self, spec: BenchSpec) -> None:
        """``jobs>1``: a process pool; a group's cells are queued as soon as its warm-up is done."""
        import multiprocessing as mp

        import torch

        ctx = mp.get_context("spawn")
        slots = None
        ngpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if ngpu > 1 and str(spec.run.get("device") or "cuda").startswith("cuda"):
            slots = ctx.Queue()
            for i in range(self.jobs):
                slots.put(f"cuda:{i % ngpu}")
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx, initializer=_init_worker,
                                   initargs=(threads, slots))  # fmt: skip
        running: dict[Future, tuple[str, Any]] = {}

        def submit_cells(group: Group) -> None:
            for cell in self.pending[group.name]:
                fn, args = _cell_job(self.out, cell)
                running[pool.submit(fn, *args)] = ("cell", cell)

        try:
            for group in self.groups:
                if not self.pending[group.name]:
                    continue
                if group in self.need_warmup:
                    running[pool.submit(_do_warmup, _group_config(self.out, group).to_dict())] = ("warmup", group)
                else:
                    submit_cells(group)
            while running:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    kind, item = running.pop(fut)
                    exc = fut.exception()
                    seconds = None if exc is not None else fut.result()
                    if kind == "warmup":
                        if self.warmup_finished(item, seconds, exc):
                            submit_cells(item)
                    else:
                        self.cell_finished(item, seconds, exc)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def _message(exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, (ValueError, RuntimeError)):
        msg = f"{type(exc).__name__}: {msg} ({''.join(traceback.format_exception_only(exc)).strip()})"
    return msg
