"""Row sources: per-example arrays read a block of rows at a time instead of all at once.

A selection method normally gets ``features`` as one in-memory (N, D) array. For inputs that do not fit in
memory it can get a *row source* instead: a ``numpy.memmap`` (a ``.npy`` file opened with
``np.load(path, mmap_mode="r")``) or a :class:`ShardedRows`, the rows of several such arrays (one row range
each, e.g. the shards of a directory, :mod:`robustprune.selection.shards`) seen as one array. Both keep their
dtype (float16 stays float16) and read only the rows asked for. The partitioned greedy
(:mod:`robustprune.selection.core.partition`) reads them part by part, and ``probs`` too for a method that
declares it (``reads_by_block`` in its registry entry); any other method that converts them with
``np.asarray`` reads every row (:meth:`ShardedRows.__array__`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

__all__ = [
    "CHUNK", "ShardedRows", "is_row_source", "chunks", "read_rows", "argmax_rows", "map_blocks", "check_rows",
    "check_signal_rows",
]  # fmt: skip

#: Rows per block when a source is scanned (64k rows of 64 float32 values: 16 MB).
CHUNK = 1 << 16


class ShardedRows:
    """Several 2-D arrays with the same columns and dtype, stacked by rows, read lazily.

    ``pieces`` are numpy arrays or memory maps (one row range each, in order). Indexing with an int, a slice
    or an array of row indices returns an in-memory ``ndarray`` of just those rows (in the order asked for);
    ``np.asarray(rows)`` reads every row.
    """

    def __init__(self, pieces: Sequence[np.ndarray]) -> None:
        if not pieces:
            raise ValueError("ShardedRows needs at least one piece")
        cols = {p.shape[1:] for p in pieces}
        dtypes = {np.dtype(p.dtype) for p in pieces}
        if any(p.ndim != 2 for p in pieces) or len(cols) != 1:
            raise ValueError(f"every piece must be 2-D with the same columns, got shapes {[p.shape for p in pieces]}")
        if len(dtypes) != 1:
            raise ValueError(f"every piece must have the same dtype, got {sorted(str(d) for d in dtypes)}")
        self.pieces = list(pieces)
        self.offsets = np.concatenate([[0], np.cumsum([p.shape[0] for p in pieces])]).astype(np.int64)
        self.shape = (int(self.offsets[-1]), int(pieces[0].shape[1]))
        self.dtype = dtypes.pop()
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ShardedRows(shape={self.shape}, dtype={self.dtype}, pieces={len(self.pieces)})"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[np.arange(self.shape[0])]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):
            rows = self[key[0]]
            return rows[(slice(None), *key[1:])]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self.shape[0] if int(key) < 0 else 0)
            return self[np.array([i])][0]
        if isinstance(key, slice):
            key = np.arange(self.shape[0])[key]
        idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        out = np.empty((idx.shape[0], self.shape[1]), dtype=self.dtype)
        piece = np.searchsorted(self.offsets, idx, side="right") - 1
        for p in np.unique(piece):
            at = np.flatnonzero(piece == p)
            out[at] = self.pieces[int(p)][idx[at] - self.offsets[p]]
        return out


def _ranks() -> bool:
    """Whether several torchrun processes scan together (torch is imported only then)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return False
    import robustprune.distributed as dist

    return dist.world().distributed


def is_row_source(x: object) -> bool:
    """Whether ``x`` is read row block by row block rather than held in memory (a memmap or ShardedRows)."""
    return isinstance(x, (ShardedRows, np.memmap))


def chunks(n: int, size: int | None = None) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of at most ``size`` rows (default :data:`CHUNK`) covering
    ``[0, n)``."""
    size = CHUNK if size is None else size
    for a in range(0, n, size):
        yield a, min(n, a + size)


def read_rows(source: object, idx: np.ndarray | slice) -> np.ndarray:
    """The rows ``idx`` (ascending indices or a slice) of ``source`` as an in-memory array of its dtype."""
    rows = source[idx]  # type: ignore[index]
    return np.asarray(rows)


def argmax_rows(source: object) -> np.ndarray:
    """The column of the largest value in every row of ``source`` (the predicted class of ``probs``), read by
    blocks. int64, shape (N,)."""
    n = int(source.shape[0])  # type: ignore[attr-defined]
    out = np.empty(n, dtype=np.int64)
    for a, b in chunks(n):
        out[a:b] = read_rows(source, slice(a, b)).argmax(axis=1)
    return out


def map_blocks(n: int, fn: Callable[[int, int], np.ndarray], dtype: type, block: int) -> list[np.ndarray]:
    """``fn(a, b)`` (a 1-D array of ``dtype``) for every block ``[a, b)`` of ``block`` rows, in block order.
    Under torchrun block j is computed by rank ``j mod size`` and the results are gathered, so every rank gets
    the same list, equal to the one-process list (the scans of the partitioned greedy, and the checks of
    :func:`check_rows`)."""
    import robustprune.distributed as dist

    blocks = list(chunks(n, block))
    w = dist.world()
    if not w.distributed:
        return [np.asarray(fn(a, b), dtype=dtype).reshape(-1) for a, b in blocks]
    import torch

    mine = [j for j in range(len(blocks)) if j % w.size == w.rank]
    outs = [np.asarray(fn(*blocks[j]), dtype=dtype).reshape(-1) for j in mine]
    flat = np.concatenate(outs) if outs else np.empty(0, dtype)
    ids = dist.all_gather_cat(torch.tensor(mine, dtype=torch.int64)).numpy()
    sizes = dist.all_gather_cat(torch.tensor([o.size for o in outs], dtype=torch.int64)).numpy()
    values = dist.all_gather_cat(torch.from_numpy(flat)).numpy()
    out: list[np.ndarray] = [np.empty(0, dtype)] * len(blocks)
    at = np.concatenate([[0], np.cumsum(sizes)])
    for j, a, b in zip(ids, at[:-1], at[1:], strict=True):
        out[int(j)] = values[a:b]
    return out


def check_rows(
    source: object,
    name: str = "features",
    n: int | None = None,
    *,
    each: Callable[[np.ndarray, int], object] | None = None,
    scan: bool = True,
) -> object:
    """Check a row source block by block (2-D, floating or integer, finite; ``n`` rows when given) without
    holding more than one block; returns it unchanged. ``each(block, first_row)``, when given, checks every block
    instead of the finiteness check (e.g. ``check_probs``). Under torchrun the blocks are dealt to the ranks,
    and every rank raises the error of the first bad block. ``scan=False`` checks the shape and dtype only (for a
    caller that checks the rows as it reads them)."""
    shape = getattr(source, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"{name} must have shape (N, D), got {shape}")
    if n is not None and shape[0] != n:
        raise ValueError(f"{name} has {shape[0]} rows but the other signals have {n}")
    if shape[1] < 1:
        raise ValueError(f"{name} has zero columns")
    dt = np.dtype(getattr(source, "dtype", np.float32))
    if not (np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {dt}")
    if not scan or (each is None and not np.issubdtype(dt, np.floating)):
        return source

    def check(a: int, b: int) -> None:
        block = read_rows(source, slice(a, b))
        if each is not None:
            each(block, a)
            return
        ok = np.isfinite(block)
        if not ok.all():
            bad = a + int(np.argwhere(~ok)[0, 0])
            what = "NaN" if np.isnan(block[bad - a]).any() else "infinity"
            raise ValueError(f"{name} contains {what} (first at row {bad}); clean or drop those rows first")

    if not _ranks():
        for a, b in chunks(int(shape[0])):
            check(a, b)
        return source

    # under torchrun the blocks are dealt to the ranks (map_blocks); every rank learns which blocks failed and
    # checks the first of them itself, so that every rank raises the same error
    def failed(a: int, b: int) -> np.ndarray:
        try:
            check(a, b)
        except ValueError:
            return np.array([1], dtype=np.int8)
        return np.array([0], dtype=np.int8)

    flags = np.concatenate(map_blocks(int(shape[0]), failed, np.int8, block=CHUNK))
    if flags.any():
        first = int(np.argmax(flags)) * CHUNK
        check(first, min(int(shape[0]), first + CHUNK))
    return source


def check_signal_rows(
    source: object, name: str, n: int | None, *, labels: dict[str, np.ndarray] | None = None, scan: bool = True
) -> object:
    """A signal kept as a row source, checked by blocks (:func:`check_rows`): ``probs`` as a signals file checks
    them (in [0, 1], rows summing to 1), and each array of ``labels`` (e.g. ``{"labels": y}``) below their
    number of classes; any other signal (``features``) finite. Returns the source unchanged."""
    if name != "probs":
        return check_rows(source, name, n, scan=scan)
    from robustprune._validation import check_probs

    check_rows(source, name, n, each=lambda block, first: check_probs(block, first_row=first), scan=scan)
    k = int(source.shape[1])  # type: ignore[attr-defined]
    for lab, y in (labels or {}).items():
        if y is not None and y.size and int(y.max()) >= k:
            raise ValueError(f"{lab} must be < the number of classes ({k}) given by probs, found {int(y.max())}")
    return source
