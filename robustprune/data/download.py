"""Opt-in downloads with checksum verification.

Nothing downloads unless a loader is called with ``download=True``. Every file is fetched to a temporary
name, checked against its published MD5 or SHA-256, and only then renamed into place; a mismatch deletes the
partial file and raises. Tests replace :func:`fetch_url` (the only function that touches the network).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

from robustprune._io import file_digest

__all__ = ["fetch_url", "file_digest", "download_file", "extract_tar"]


def fetch_url(url: str, dest: Path, *, timeout: float = 60.0) -> None:
    """Stream ``url`` into the file ``dest`` (overwritten). The single point of network access."""
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as f:  # noqa: S310
        shutil.copyfileobj(resp, f, length=1 << 20)


def _verify(path: Path, md5: str | None, sha256: str | None) -> str | None:
    """None when the file matches every given checksum, else a description of the first mismatch."""
    for algo, want in (("sha256", sha256), ("md5", md5)):
        if want:
            got = file_digest(path, algo)
            if got.lower() != want.lower():
                return f"{algo} {got}, expected {want}"
    return None


def download_file(url: str, dest: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right checksum is already there.

    At least one of ``md5`` / ``sha256`` is required. Raises ``ValueError`` on a checksum mismatch (the
    partial download is removed) and ``OSError`` when the fetch fails.
    """
    if not md5 and not sha256:
        raise ValueError(f"download of {url} needs an md5 or sha256 checksum to verify it")
    dest = Path(dest)
    if dest.is_file() and _verify(dest, md5, sha256) is None:
        return dest
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]  # deepest first
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    done = False
    try:
        try:
            fetch_url(url, tmp)
        except OSError as exc:  # URLError, timeouts, refused connections
            reason = getattr(exc, "reason", None) or exc.strerror or exc
            raise OSError(f"could not download {url}: {reason}") from exc
        bad = _verify(tmp, md5, sha256)
        if bad is not None:
            raise ValueError(
                f"checksum mismatch for {dest.name} from {url}: got {bad}; the download is corrupt or the "
                "mirror changed, retry or fetch the file by hand"
            )
        os.replace(tmp, dest)
        done = True
    finally:
        if tmp.exists():
            tmp.unlink()
        if not done:  # leave no empty dataset folder behind
            for folder in created:
                try:
                    folder.rmdir()
                except OSError:
                    break
    return dest


def extract_tar(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract a (gzipped) tar archive into ``dest``, refusing links and paths outside ``dest``."""
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
