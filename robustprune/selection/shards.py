"""Signals from a directory of shards, for inputs that do not fit in memory.

Layout (what ``robustprune select --signals DIR`` reads)::

    DIR/part-00000.npz   labels, probs, features (and any other signal) of rows 0 .. n0-1
    DIR/part-00001.npz   the same arrays for the next rows
    ...

Shards are taken in the order of their names, each holding one consecutive row range of every array (a
signal with the example axis second, as ``correct`` (E, N), is split along that axis). Instead of, or beside,
a member of the ``.npz``, an array may be its own file ``part-00000.<name>.npy`` (e.g. embeddings written
by another tool as ``part-00000.features.npy``). :func:`save_shards` writes the layout.

``features`` and ``probs`` (:data:`ON_DISK`) are never read whole: ``.npy`` files and members of uncompressed
``.npz`` files (``np.savez``) are memory-mapped, members of compressed ones (``np.savez_compressed``) are
decompressed one shard at a time when their rows are asked for; the rows are checked block by block
(features: finite, same columns and dtype, float16 kept; probs: as a signals file checks them). The other
arrays (N labels, ...) are concatenated in memory and checked as a signals file is. The result is a
:class:`ShardedSignals`, which :func:`~robustprune.selection.api.select` takes as ``signals=``; the
partitioned greedy (``prune4rel_auto --param parts=P``) then reads one part's rows of both at a time, and any
method that does not read ``probs`` by blocks (``reads_by_block`` in its registry entry) gets them read
whole.
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from robustprune.selection.core.rows import ShardedRows, check_signal_rows
from robustprune.signals import SIGNALS, check_signals, example_axis

__all__ = ["ShardedSignals", "load_shards", "save_shards", "SHARD_PATTERN"]

#: Shard file names: ``part-<digits>.npz`` or ``part-<digits>.<signal>.npy``.
SHARD_PATTERN = re.compile(r"^(part-\d+)(?:\.npz|\.([a-z_]+)\.npy)$")

_NAMES = tuple(s.name for s in SIGNALS if s.name != "meta_json")

#: The arrays that stay on disk (memory-mapped, read by blocks of rows); the others are read into memory.
ON_DISK = ("features", "probs")


class ShardedSignals:
    """Signals whose ``features`` and ``probs`` stay on disk (:class:`~robustprune.selection.core.rows.ShardedRows`);
    the other arrays are in memory. Offers what the selection API and the command line read of a
    :class:`~robustprune.signals.Signals`: the arrays by name, ``n``, ``num_classes``, ``true_labels``."""

    def __init__(self, arrays: dict[str, Any], source: Path, shards: list[tuple[str, int, int]] | None = None) -> None:
        self._arrays = arrays
        self.source = source
        #: (stem, first row, end row) of every shard in order, e.g. ("part-00000", 0, 1000000)
        self.shards: list[tuple[str, int, int]] = list(shards or [])
        self.meta: dict[str, Any] = {"shards": str(source)}

    def __getattr__(self, name: str) -> Any:
        if name in _NAMES:
            return self._arrays.get(name)
        raise AttributeError(name)

    @property
    def n(self) -> int:
        return int(self._arrays["labels"].shape[0])

    @property
    def num_classes(self) -> int:
        if self._arrays.get("probs") is not None:
            return int(self._arrays["probs"].shape[1])
        top = int(self._arrays["labels"].max())
        if self._arrays.get("true_labels") is not None:
            top = max(top, int(self._arrays["true_labels"].max()))
        return top + 1

    def available(self) -> tuple[str, ...]:
        return tuple(k for k in _NAMES if k in self._arrays)

    def arrays(self) -> dict[str, Any]:
        return {k: self._arrays[k] for k in self.available()}

    def save(self, path: str | os.PathLike) -> Path:
        raise ValueError("sharded signals are not written back as one file; select from the directory itself")


class _CompressedMember:
    """A member of a compressed ``.npz`` that is decompressed when its rows are first asked for (the last one
    read of each array name is kept)."""

    _last: dict[str, tuple[int, np.ndarray]] = {}

    def __init__(self, path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.key, self.shape, self.dtype, self.ndim = path, key, shape, dtype, len(shape)

    def __getitem__(self, idx: Any) -> np.ndarray:
        cache = _CompressedMember._last.get(self.key)
        if cache is None or cache[0] != id(self):
            with np.load(self.path) as z:
                _CompressedMember._last[self.key] = cache = (id(self), z[self.key])
        return cache[1][idx]


def _member(path: Path, key: str) -> np.ndarray | _CompressedMember:
    """Array ``key`` of the ``.npz`` at ``path`` without reading it: a memory map where it is stored
    uncompressed, else a member decompressed on demand."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{key}.npy")
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            header = f.tell() if info.compress_type == zipfile.ZIP_STORED else None
    if header is None or fortran:
        return _CompressedMember(path, key, shape, dtype)
    with open(path, "rb") as raw:  # the member's data start: its local header, name and extra field first
        raw.seek(info.header_offset)
        local = raw.read(30)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
    offset = info.header_offset + 30 + name_len + extra_len + header
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def _shards(path: Path, only: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
    """Shard stem -> signal name -> its array (features and probs lazily, the others read); with ``only``, just
    those signals."""
    found: dict[str, dict[str, Any]] = {}
    for f in sorted(path.iterdir()):
        m = SHARD_PATTERN.match(f.name)
        if not m:
            continue
        stem, name = m.group(1), m.group(2)
        arrays = found.setdefault(stem, {})
        try:
            if name is not None:
                if name not in _NAMES:
                    raise ValueError(f"shard file {f} names an unknown signal {name!r}; known: {', '.join(_NAMES)}")
                if only is None or name in only:
                    arrays[name] = np.load(f, mmap_mode="r") if name in ON_DISK else np.load(f)
                continue
            with np.load(f) as z:
                keys = [k for k in z.files if k not in ("schema_version", "meta_json")]
                unknown = sorted(set(keys) - set(_NAMES))
                if unknown:
                    raise ValueError(f"shard {f} has unknown arrays {unknown}; known keys: {', '.join(_NAMES)}")
                keys = [k for k in keys if only is None or k in only]
                for k in keys:
                    if k not in ON_DISK:
                        arrays[k] = z[k]
            for k in ON_DISK:
                if k in keys:
                    arrays[k] = _member(f, k)
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"cannot read shard {f}: {exc}") from None
    return found


def load_shards(
    path: str | os.PathLike, *, only: Collection[str] | None = None, check_on_disk: bool = True
) -> ShardedSignals:
    """The signals of the shard directory ``path`` (layout in the module docstring), checked; ``features`` and
    ``probs`` stay on disk.

    ``only``: read just these signals (``labels`` always), e.g. ``("labels", "features")`` for a probe that will
    replace the shards' probabilities. ``check_on_disk=False`` skips the block-by-block pass over ``features``
    and ``probs`` (their shapes and dtypes are still checked), for a caller that checks the rows as it reads
    them."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory of shards (part-00000.npz, part-00001.npz, ...)")
    shards = _shards(path, None if only is None else {"labels", *only})
    if not shards:
        raise ValueError(
            f"cannot read signals file {path}: a directory, and it holds no shards (files part-00000.npz, "
            "part-00001.npz, ... or part-00000.<signal>.npy)"
        )
    names = set().union(*(set(a) for a in shards.values()))
    for stem, arrays in shards.items():
        missing = sorted(names - set(arrays))
        if missing:
            raise ValueError(f"shard {stem} in {path} lacks {missing} (every shard must hold the same arrays)")
    if "labels" not in names:
        raise ValueError(f"the shards in {path} have no 'labels' array (found: {sorted(names)})")
    out: dict[str, Any] = {}
    for name in _NAMES:
        if name not in names:
            continue
        pieces = [shards[s][name] for s in sorted(shards)]
        if name in ON_DISK:
            out[name] = _stack(pieces, name, path)
        else:
            out[name] = np.concatenate([np.asarray(p) for p in pieces], axis=example_axis(name))
    checked = check_signals({k: v for k, v in out.items() if k not in ON_DISK})
    n = int(checked["labels"].shape[0])
    labels = {lab: checked[lab] for lab in ("labels", "true_labels") if lab in checked}
    for name in ON_DISK:
        if name in out:
            checked[name] = check_signal_rows(out[name], name, n, labels=labels, scan=check_on_disk)
    sizes = [int(np.shape(shards[s]["labels"])[0]) for s in sorted(shards)]
    ends = np.cumsum(sizes).tolist()
    ranges = [(s, e - m, e) for s, m, e in zip(sorted(shards), sizes, ends, strict=True)]
    return ShardedSignals({k: checked[k] for k in _NAMES if k in checked}, path, ranges)


def _stack(pieces: list[Any], name: str, path: Path) -> ShardedRows:
    """The shards' pieces of the on-disk array ``name`` as one row source; a one-line error for pieces that do
    not stack (other columns or dtype)."""
    try:
        return ShardedRows(pieces)
    except ValueError as exc:
        raise ValueError(f"the shards in {path} do not stack for {name!r}: {exc}") from None


def save_shards(path: str | os.PathLike, rows_per_shard: int, *, compress: bool = False, **arrays: Any) -> list[Path]:
    """Write ``arrays`` (signals by name, e.g. ``labels=``, ``probs=``, ``features=``) as shards of
    ``rows_per_shard`` examples each into the directory ``path`` (created); returns the files written."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if "labels" not in arrays:
        raise ValueError("save_shards needs labels=...")
    n = int(np.shape(arrays["labels"])[0])
    written = []
    for j, a in enumerate(range(0, n, rows_per_shard)):
        b = min(n, a + rows_per_shard)
        part = {k: np.take(np.asarray(v), np.arange(a, b), axis=example_axis(k)) for k, v in arrays.items()}
        f = path / f"part-{j:05d}.npz"
        (np.savez_compressed if compress else np.savez)(f, **part)
        written.append(f)
    return written
