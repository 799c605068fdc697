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
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "World", "world", "init", "is_main", "rank_device", "block", "all_gather_cat", "sync_rows", "all_reduce",
    "broadcast_object", "on_main", "main_only", "barrier", "alone", "owner_of",
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
    if cuda:
        torch.cuda.set_device(local % torch.cuda.device_count())
        gpu = torch.device("cuda", torch.cuda.current_device())
        dist.init_process_group(backend="cpu:gloo,cuda:nccl", device_id=gpu)
    else:
        dist.init_process_group(backend="gloo")
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


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``t`` along dim 0 in rank order, on every rank (lengths may differ).

    Pads to the longest block, gathers the lengths, trims; the other dimensions and the dtype must agree.
    With :func:`block` shards this gives the rows back in example order.
    """
    w = world()
    if not w.distributed:
        return t
    dev = _comm_device(t)
    x = t.to(dev).contiguous()
    wide = x.dtype == torch.bool
    if wide:  # gloo has no bool collectives
        x = x.to(torch.uint8)
    n = torch.tensor([x.shape[0]], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(w.size)]
    dist.all_gather(sizes, n)
    lengths = [int(s) for s in sizes]
    top = max(lengths)
    if top == 0:  # nothing anywhere (e.g. no rows were trained on)
        return t[:0]
    if x.shape[0] < top:
        x = torch.cat([x, x.new_zeros((top - x.shape[0], *x.shape[1:]))])
    parts = [torch.empty_like(x) for _ in range(w.size)]
    dist.all_gather(parts, x)
    out = torch.cat([p[:k] for p, k in zip(parts, lengths, strict=True)])
    if wide:
        out = out.bool()
    return out.to(t.device)


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
    dist.all_reduce(x, op=red[op])
    if op == "mean":
        x = x / w.size
    return x.to(t.device)


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` from rank ``src`` on every rank (pickled; tensors should be on the CPU). ``obj`` alone."""
    if not world().distributed:
        return obj
    box = [obj]
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
        dist.barrier()
