"""File helpers every layer may use: atomic writes, JSON artifacts, file digests.

This is the bottom floor of the package: it imports nothing from robustprune, so the selection layer, the
data loaders, training and the pipeline can all write files without importing each other.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "write_json", "file_digest", "load_array", "looks_like_numpy"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    A reader never sees a half-written file, and an interrupted write leaves the previous file in place.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; name a file to write", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file asked for, not the temporary one
        raise OSError(exc.errno, f"cannot write here ({exc.strerror})", str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename != str(path):
            raise OSError(exc.errno, f"cannot write ({exc.strerror})", str(path)) from None
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON (one trailing newline), written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def looks_like_numpy(path: str | os.PathLike) -> bool:
    """Whether the file is what its suffix says: a zip archive for ``.npz``, a ``.npy`` header for ``.npy``
    (numpy's own errors on other bytes speak of pickles; callers say "not a numpy file" instead)."""
    import zipfile

    p = Path(path)
    if p.suffix == ".npz":
        return zipfile.is_zipfile(p)
    with open(p, "rb") as f:
        return f.read(6) == b"\x93NUMPY"


def load_array(path: str | os.PathLike, what: str, key: str | None = None) -> Any:
    """One array from a file, for a user's own inputs: ``.npy`` (memory-mapped, so a large file is read only as
    it is used) or ``.npz`` (the array named ``key``, or its only array). ``what`` names the input in errors
    (one line each: a missing file, another format, an archive without that array)."""
    import zipfile

    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} file {p} does not exist")
    try:
        if p.suffix == ".npy":
            return np.load(p, mmap_mode="r", allow_pickle=False)
        z = np.load(p, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        raise ValueError(f"cannot read {what} file {p}: not a numpy .npy or .npz file") from None
    if not hasattr(z, "files"):
        return z
    with z:
        names = list(z.files)
        name = key if key in names else names[0] if len(names) == 1 else None
        if name is None:
            raise ValueError(f"{what} file {p} holds {names}; it needs an array named {key!r} or a single array")
        return z[name]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
