"""Distributed execution: ``torch.distributed`` launched by ``torchrun``, and the few collectives the project needs.

::

    torchrun --standalone --nproc_per_node=2 -m robustprune run --dataset digits ...
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=host:29500 -m robustprune run ...

The process group is initialised from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) by :func:`init` (or lazily by the first :func:`world`): gloo for CPU tensors,
NCCL for CUDA tensors (``"cpu:gloo,cuda:nccl"`` when CUDA is used, so that host-side gathers keep working),
one GPU per process (``cuda:LOCAL_RANK``).

Every function here is a cheap no-op when the world has one process (no torchrun, or ``WORLD_SIZE=1``), so
the single-process code path is unchanged. With more processes, each function is a **collective**: every rank
must call it, in the same order.

Per-example state is indexed by global example index and never padded: :func:`sync_rows` gathers the rows
each rank updated (disjoint across ranks) so that every rank holds the whole state; :func:`block` and
:func:`all_gather_cat` shard an inference pass into contiguous blocks and put the results back in example
order; :func:`on_main` runs a step (a file check, a selection) on rank 0 alone and hands its result, or its
error, to every rank.

**A rank that stops.** When a rank dies (killed, out of memory, crashed) or stops answering, the others must
not wait forever: a collective that loses its connection to a peer (gloo: "Connection closed by peer") or
waits longer than :func:`timeout` seconds (``ROBUSTPRUNE_DIST_TIMEOUT``, default 1800, torch's own default)
raises :class:`PeerFailure`, one line that names the rank which stopped where it can be told. To tell it, each
rank records its process (pid, start time, machine) at :func:`init`, and :func:`leave` leaves a note in the
job's store saying why a rank leaves (done, error, terminated, ...): a peer on the same machine whose process
is gone without a note was killed or crashed. A peer on another machine is named only through its note (or
because the world has two ranks); otherwise the message says that it cannot tell which. ``PeerFailure`` is
not an ``Exception``: like ``KeyboardInterrupt`` it passes the ``except Exception`` fallbacks (a failed sweep
cell, a helper rank's hand-off), since no collective can follow it. Once it was raised every later collective
raises it at once.
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import math
import os
import pickle
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "World", "world", "init", "is_main", "rank_device", "block", "all_gather_cat", "gather_cat", "sync_rows",
    "all_reduce", "broadcast_object", "on_main", "main_only", "barrier", "alone", "owner_of", "PeerFailure",
    "TIMEOUT_ENV",
    "timeout", "peer_errors", "peer_failure", "lost_peer", "leave",
]  # fmt: skip

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` in ``[0, size)``, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_SINGLE = World()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


_ALONE = [0]  # depth of nested alone() blocks


@contextmanager
def alone() -> Iterator[None]:
    """Inside this block the process acts as a world of one: :func:`world` says rank 0 of 1, so training runs
    without DDP on this rank's data only and every collective is a no-op. For independent jobs dealt to the
    ranks (K cross-fitted warm-ups on K processes); the results are exchanged after the block."""
    _ALONE[0] += 1
    try:
        yield
    finally:
        _ALONE[0] -= 1


def owner_of(job: int, w: World | None = None) -> int:
    """The rank that runs independent job ``job`` when jobs are dealt round-robin."""
    w = w or world()
    return job % w.size


def world() -> World:
    """The current world; initialises the process group on first use when torchrun started several processes.
    Inside :func:`alone`, a world of one."""
    if _ALONE[0]:
        return _SINGLE
    if _initialised():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    if _env_int("WORLD_SIZE", 1) <= 1:
        return _SINGLE
    return init()


def init(device: str | torch.device | None = None) -> World:
    """Initialise the default process group from torchrun's environment variables (once).

    ``device`` is the run's device argument: with CUDA (``None``/``"auto"`` on a GPU machine, or ``"cuda"``)
    each process takes ``cuda:LOCAL_RANK`` and the backend is NCCL for CUDA tensors and gloo for CPU ones;
    otherwise gloo. A no-op returning a one-process world when ``WORLD_SIZE`` is unset or 1.
    """
    if _initialised():
        return world()
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return _SINGLE
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run a single process")
    local = _env_int("LOCAL_RANK", 0)
    kind = "cuda" if device is None or str(device) == "auto" else torch.device(device).type
    cuda = kind == "cuda" and torch.cuda.is_available()
    wait = datetime.timedelta(seconds=timeout())
    if cuda:
        torch.cuda.set_device(local % torch.cuda.device_count())
        gpu = torch.device("cuda", torch.cuda.current_device())
        dist.init_process_group(backend="cpu:gloo,cuda:nccl", device_id=gpu, timeout=wait)
    else:
        dist.init_process_group(backend="gloo", timeout=wait)
    _register()
    return world()


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that writes files and prints."""
    return world().rank == 0


def rank_device(device: torch.device) -> torch.device:
    """This process's GPU when ``device`` is CUDA and the world has several processes (``cuda:LOCAL_RANK``
    modulo the visible GPUs), else ``device`` unchanged."""
    w = world()
    if device.type != "cuda" or not w.distributed:
        return device
    return torch.device("cuda", torch.cuda.current_device())


def block(n: int, w: World | None = None) -> slice:
    """This rank's contiguous block of ``n`` rows (sizes differ by at most one; ``slice(0, n)`` alone)."""
    w = w or world()
    return slice(n * w.rank // w.size, n * (w.rank + 1) // w.size)


def _comm_device(t: torch.Tensor) -> torch.device:
    return t.device if t.device.type == "cuda" else torch.device("cpu")


def _padded(t: torch.Tensor, w: World) -> tuple[torch.Tensor, list[int]]:
    """``t`` on the communication device (bool as uint8: gloo has no bool collectives), padded with zero rows
    to the longest of the ranks' blocks, and every rank's length (a collective: every rank calls it)."""
    dev = _comm_device(t)
    x = t.to(dev).contiguous()
    if x.dtype == torch.bool:
        x = x.to(torch.uint8)
    n = torch.tensor([x.shape[0]], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(w.size)]
    with peer_errors():
        dist.all_gather(sizes, n)
    lengths = [int(s) for s in sizes]
    top = max(lengths)
    if x.shape[0] < top:
        x = torch.cat([x, x.new_zeros((top - x.shape[0], *x.shape[1:]))])
    return x, lengths


def _joined(t: torch.Tensor, parts: list[torch.Tensor], lengths: list[int]) -> torch.Tensor:
    """The ranks' padded blocks trimmed to their lengths and concatenated, as ``t``'s dtype and device."""
    out = torch.cat([p[:k] for p, k in zip(parts, lengths, strict=True)])
    return (out.bool() if t.dtype == torch.bool else out).to(t.device)


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``t`` along dim 0 in rank order, on every rank (lengths may differ).

    Pads to the longest block, gathers the lengths, trims; the other dimensions and the dtype must agree.
    With :func:`block` shards this gives the rows back in example order.
    """
    w = world()
    if not w.distributed:
        return t
    x, lengths = _padded(t, w)
    if max(lengths) == 0:  # nothing anywhere (e.g. no rows were trained on)
        return t[:0]
    parts = [torch.empty_like(x) for _ in range(w.size)]
    with peer_errors():
        dist.all_gather(parts, x)
    return _joined(t, parts, lengths)


def gather_cat(t: torch.Tensor, dst: int = 0) -> torch.Tensor:
    """Concatenate every rank's ``t`` along dim 0 in rank order on rank ``dst`` only (lengths may differ); the
    other ranks get an empty tensor. As :func:`all_gather_cat`, but only ``dst`` ever holds the whole."""
    w = world()
    if not w.distributed:
        return t
    x, lengths = _padded(t, w)
    if max(lengths) == 0:
        return t[:0]
    parts = [torch.empty_like(x) for _ in range(w.size)] if w.rank == dst else None
    with peer_errors():
        dist.gather(x, parts, dst=dst)
    return t[:0] if parts is None else _joined(t, parts, lengths)


def sync_rows(state: torch.Tensor, rows: torch.Tensor, *, dim: int = 0) -> None:
    """Make every rank hold every rank's update of ``state``, in place.

    Each rank updated the rows ``rows`` (global example indices along ``dim``, disjoint across ranks) of its
    copy of ``state``; afterwards every copy holds each row as its owning rank left it. A no-op alone.
    """
    if not world().distributed:
        return
    rows = rows.reshape(-1).to(state.device)
    values = state.index_select(dim, rows).movedim(dim, 0)
    all_rows = all_gather_cat(rows)
    all_values = all_gather_cat(values).movedim(0, dim)
    state.index_copy_(dim, all_rows, all_values)


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``t`` reduced over ranks (``"sum"``, ``"mean"``, ``"min"``, ``"max"``), as a new tensor on every rank."""
    w = world()
    if not w.distributed:
        return t
    dev = _comm_device(t)
    x = t.detach().to(dev).clone()
    red = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    with peer_errors():
        dist.all_reduce(x, op=red[op])
    if op == "mean":
        x = x / w.size
    return x.to(t.device)


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` from rank ``src`` on every rank (pickled; tensors should be on the CPU). ``obj`` alone."""
    if not world().distributed:
        return obj
    box = [obj]
    with peer_errors():
        dist.broadcast_object_list(box, src=src, device=torch.device("cpu"))
    return box[0]


class _Failure:
    """An exception raised on rank 0, carried to the other ranks."""

    def __init__(self, exc: BaseException) -> None:
        self.type, self.message = type(exc), str(exc)
        try:
            pickle.dumps(self.type)
        except Exception:  # noqa: BLE001 - a local class cannot travel; say what it was
            self.type, self.message = RuntimeError, f"{type(exc).__name__} on rank 0: {exc}"

    def reraise(self) -> None:
        try:
            exc = self.type(self.message)
        except Exception:  # noqa: BLE001 - an exception class with another constructor
            exc = RuntimeError(f"{self.type.__name__} on rank 0: {self.message}")
        raise exc


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on rank 0 alone, its result handed to every rank; an exception raised there is
    raised on every rank (same type and message where the type allows). Alone: just ``fn(...)``."""
    w = world()
    if not w.distributed:
        return fn(*args, **kwargs)
    if w.is_main:
        try:
            result: Any = fn(*args, **kwargs)
        except Exception as exc:
            broadcast_object(_Failure(exc))
            raise
        return broadcast_object(result)
    result = broadcast_object(None)
    if isinstance(result, _Failure):
        result.reraise()
    return result


def main_only(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)`` on rank 0 alone; its result stays there (None on the other ranks), an exception
    raised there is raised on every rank. For work whose result only rank 0 needs (reading a large file it
    alone uses). Alone: just ``fn(...)``."""
    w = world()
    if not w.distributed:
        return fn(*args, **kwargs)
    if w.is_main:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            broadcast_object(_Failure(exc))
            raise
        broadcast_object(None)
        return result
    failure = broadcast_object(None)
    if isinstance(failure, _Failure):
        failure.reraise()
    return None


def barrier() -> None:
    """Wait for every rank. A no-op alone."""
    if world().distributed:
        with peer_errors():
            dist.barrier()


# ------------------------------------------------------------------------------------- a rank that stops

#: Environment variable: how many seconds a collective waits for the other ranks before the run stops.
TIMEOUT_ENV = "ROBUSTPRUNE_DIST_TIMEOUT"
_DEFAULT_TIMEOUT = 1800.0
#: How long a rank that lost a connection looks for the peer's process to end, or its note to appear.
_SETTLE_SECONDS = 2.0
#: Store key of the note a rank leaves when it leaves the job.
_NOTE_KEY = "robustprune/left/{}"
#: Words of gloo's and NCCL's errors when a peer is gone or does not answer (their errors are RuntimeError).
_COMM_WORDS = ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out waiting",
               "socket timeout", "gloo/transport", "ncclremoteerror", "ncclsystemerror",
               "communicator was aborted", "watchdog caught collective operation timeout")  # fmt: skip
#: How a peer's note reads in a message.
_LEFT_WORDS = {"error": "stopped on an error (its own message says which)", "terminated": "was terminated",
               "interrupted": "was interrupted", "done": "had already finished", "exited": "had exited"}  # fmt: skip


def timeout() -> float:
    """Seconds a collective waits for the other ranks: ``ROBUSTPRUNE_DIST_TIMEOUT`` (a positive number) or
    1800 (torch's own default). It bounds every wait, the other ranks' wait while rank 0 alone selects,
    encodes or writes included, so it must exceed the longest such step of a run."""
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return _DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"environment variable {TIMEOUT_ENV}={value!r} must be a positive number of seconds")
    return seconds


class PeerFailure(BaseException):
    """Another rank of the job stopped, or stopped answering, while this one needed it (see the module docs).

    The message is one line naming that rank where it can be told; ``ranks`` are the ranks found to have
    stopped (empty when not known)."""

    def __init__(self, message: str, ranks: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.ranks = ranks


@dataclass(frozen=True)
class _Proc:
    """A rank's process as :func:`init` recorded it."""

    pid: int
    start: int  # start time, clock ticks after boot (-1: unknown)
    machine: int  # host name, boot and pid namespace, hashed: equal only where the pid means the same process


class _Job:
    """What this rank knows of the job's processes (filled by :func:`init`) and of a failure."""

    rank = 0
    size = 1
    peers: list[_Proc] = []
    machine = 0  # this process's _machine()
    store: Any = None  # the job's key-value store (torchrun's agent holds it), for the notes
    failure: PeerFailure | None = None
    lost = False  # a collective failed: this rank is on its way out
    noted = False


_JOB = _Job()


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of process ``pid`` from ``/proc``; None where there is no such entry."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], int(fields[19])


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _machine() -> int:
    """This process's machine: its host name, boot id and pid namespace, hashed to 56 bits."""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    key = "\0".join([socket.gethostname(), _read("/proc/sys/kernel/random/boot_id"), namespace])
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:7], "big")


def _register() -> None:
    """Record every rank's process (one gather) and keep the job's store for the notes of :func:`leave`."""
    _JOB.rank, _JOB.size, _JOB.machine = dist.get_rank(), dist.get_world_size(), _machine()
    mine = _proc_stat(os.getpid())
    row = torch.tensor([[os.getpid(), -1 if mine is None else mine[1], _JOB.machine]], dtype=torch.int64)
    _JOB.peers = [_Proc(*map(int, r)) for r in all_gather_cat(row).tolist()]
    try:
        from torch.distributed import distributed_c10d

        _JOB.store = distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 - a torch without it: peers are named from their processes alone
        _JOB.store = None
    atexit.register(_at_exit)


def _at_exit() -> None:
    """A rank that ends without :func:`leave` (a library program): its note, and after a lost peer the broken
    group released (left to the interpreter's teardown, gloo may abort the exit)."""
    _note("exited")
    if _JOB.lost and _initialised():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001
            pass


def _alive(rank: int) -> bool | None:
    """Whether ``rank``'s process still runs; None where that cannot be seen (another machine, or no record
    of the processes: a process group that :func:`init` did not make)."""
    if rank >= len(_JOB.peers) or _JOB.peers[rank].machine != _JOB.machine:
        return None
    p = _JOB.peers[rank]
    stat = _proc_stat(p.pid)
    if stat is None:
        if os.path.isdir("/proc/self"):
            return False
        try:  # no /proc: ask the kernel (a zombie counts as running)
            os.kill(p.pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            pass
        return True
    state, start = stat
    return not (state in ("Z", "X") or (p.start >= 0 and start != p.start))


def _note(reason: str) -> None:
    """Leave ``reason`` in the store for the ranks still waiting on this one (once)."""
    if _JOB.noted or _JOB.store is None:
        return
    _JOB.noted = True
    try:
        _JOB.store.set_timeout(datetime.timedelta(seconds=5))
        _JOB.store.set(_NOTE_KEY.format(_JOB.rank), reason)
    except Exception:  # noqa: BLE001 - the store went with its host: the others will say they cannot tell
        _JOB.store = None


def _note_of(rank: int) -> str | None:
    store = _JOB.store
    if store is None:
        return None
    key = _NOTE_KEY.format(rank)
    try:
        return store.get(key).decode() if store.check([key]) else None
    except Exception:  # noqa: BLE001 - the store is gone (it lived in a rank that died)
        _JOB.store = None
        return None


def _ranks(ranks: list[int], n: int) -> str:
    if len(ranks) == 1:
        return f"rank {ranks[0]} of {n}"
    return f"ranks {', '.join(map(str, ranks[:-1]))} and {ranks[-1]} of {n}"


def _diagnose(kind: str, interrupted: bool = False) -> PeerFailure | None:
    """Which rank stopped, after ``kind``: "closed" (a collective's connection to a peer failed), "timeout"
    (a collective waited past :func:`timeout`) or "signal" (this rank was told to stop). ``interrupted``: this
    rank was told to stop (SIGTERM, Ctrl-C); then only a peer that died without a note or stopped on an error
    is a failure, else None: the whole job was stopped."""
    me, n = _JOB.rank, _JOB.size
    peers = [r for r in range(n) if r != me]
    if _JOB.store is not None:
        try:
            _JOB.store.set_timeout(datetime.timedelta(seconds=5))
        except Exception:  # noqa: BLE001
            _JOB.store = None
    settle = time.monotonic() + (_SETTLE_SECONDS if kind == "closed" else 0.0)
    while True:  # a killed peer's connection closes a moment before its process is gone
        alive = {r: _alive(r) for r in peers}
        notes = {r: _note_of(r) for r in peers}
        dead = [r for r in peers if alive[r] is False and notes[r] is None]
        noted = [r for r in peers if notes[r] not in (None, "lost")]
        if dead or noted or time.monotonic() >= settle:
            break
        time.sleep(0.05)
    if dead:
        pids = ", ".join(str(_JOB.peers[r].pid) for r in dead)
        its = "its process" if len(dead) == 1 else "their processes"
        return PeerFailure(f"{_ranks(dead, n)} stopped: {its} (pid {pids}) ended without leaving a note, so "
                           "it was killed or crashed", tuple(dead))  # fmt: skip
    if interrupted:  # peers told to stop as this rank was, or finished, are no failure: only an error is
        noted = [r for r in noted if notes[r] == "error"]
    if noted:
        parts = [f"rank {r} of {n} {_LEFT_WORDS.get(notes[r] or '', 'left')}" for r in noted]
        return PeerFailure("; ".join(parts), tuple(noted))
    if interrupted:
        return None  # the whole job was told to stop, this rank too
    unseen = [r for r in peers if alive[r] is None]
    if n == 2:
        other = peers[0]
        if kind == "timeout":
            still = "; its process is still running" if alive[other] else ""
            return PeerFailure(f"rank {other} of 2 did not answer within {timeout():g} s ({TIMEOUT_ENV}){still}",
                               (other,))  # fmt: skip
        if alive[other]:
            return PeerFailure(f"rank {other} of 2 closed its connection during a collective (its process is "
                               "still running)", (other,))  # fmt: skip
        return PeerFailure(f"rank {other} of 2 stopped or its connection failed during a collective (its "
                           "process cannot be checked from here: another machine)", (other,))  # fmt: skip
    elsewhere = f"; ranks {', '.join(map(str, unseen))} cannot be checked from here" if unseen else ""
    if kind == "timeout":
        return PeerFailure(f"a collective waited more than {timeout():g} s ({TIMEOUT_ENV}) for the other "
                           f"ranks; which of the {n} stopped answering is not known{elsewhere}")  # fmt: skip
    return PeerFailure(f"a connection to another rank failed during a collective; which of the {n} ranks "
                       f"stopped is not known{elsewhere}")  # fmt: skip


def _is_comm_error(exc: BaseException) -> bool:
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in _COMM_WORDS)


def peer_failure(exc: BaseException | None) -> PeerFailure | None:
    """``exc`` as a :class:`PeerFailure` when it tells of a lost peer, else None (always None in one process).

    A lost peer is a communication error of a collective (``exc`` or an exception it arose from), or, for a
    ``KeyboardInterrupt`` (SIGTERM as the command line raises it: torchrun's agent stops the surviving ranks
    that way once one has died), a peer found dead without a note or gone on an error. The first failure
    found is kept: later calls, and every later collective, give the same one."""
    if _JOB.failure is not None:
        return _JOB.failure
    if _JOB.size <= 1:
        if not _initialised() or dist.get_world_size() <= 1:
            return None
        _JOB.rank, _JOB.size = dist.get_rank(), dist.get_world_size()
    chain: list[BaseException] = []
    e = exc
    while e is not None and all(e is not c for c in chain):
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, PeerFailure):
            _JOB.lost, _JOB.failure = True, e
            return e
    comm = next((e for e in chain if _is_comm_error(e)), None)
    interrupted = any(isinstance(e, KeyboardInterrupt) for e in chain)
    if comm is not None:
        _JOB.lost = True
        text = str(comm).lower()
        failure = _diagnose("timeout" if "timed out" in text or "timeout" in text else "closed", interrupted)
    elif interrupted:
        failure = _diagnose("signal", interrupted)
    else:
        return None
    _JOB.lost, _JOB.failure = failure is not None, failure  # (None: the whole job was stopped, this rank too)
    return failure


def lost_peer() -> bool:
    """True once a collective of this rank failed (a peer stopped): the rank is on its way out."""
    return _JOB.lost


@contextmanager
def peer_errors() -> Iterator[None]:
    """Within the block a collective's communication error (gloo's "Connection closed by peer", a timeout,
    also from DDP's gradient all-reduce) is raised as :class:`PeerFailure`; after one, the block raises it at
    once without touching the network. Other errors pass unchanged."""
    if _JOB.failure is not None:
        raise PeerFailure(str(_JOB.failure), _JOB.failure.ranks)
    try:
        yield
    except PeerFailure:
        raise
    except Exception as exc:
        failure = peer_failure(exc)
        if failure is None:
            raise
        raise PeerFailure(str(failure), failure.ranks) from exc


def leave(reason: str) -> None:
    """This rank's last word to the job, then the process group destroyed (a no-op without one): a note why
    it leaves (``"done"``, ``"error"``, ``"terminated"``, ``"interrupted"``; ``"lost"`` after a lost peer)
    for the ranks that may still wait on it, which read it in their :class:`PeerFailure` message."""
    if not _initialised():
        return
    _note("lost" if _JOB.lost else reason)
    try:
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - a group broken by a lost peer: nothing left to release
        pass
