"""Provenance: which code computed a result, on which host, and when.

:func:`code_identity` names the code: the package version, the git commit and whether the work tree is dirty
(in a git checkout), and ``source_sha256``, a digest of the package's source that ignores comments,
docstrings and formatting (each module's syntax tree, docstrings removed). The digest is what decides
whether a cached result was computed by the same code: it is the same for every copy of the same code,
installed or checked out, and changes with any change that can change a result (modules that only present
results, :data:`PRESENTATION_ONLY`, are left out). :func:`host_identity` names
the machine (CPU and GPU models, core and thread counts) and :func:`now` the time, for reports.
"""

from __future__ import annotations

import ast
import hashlib
import os
import platform
import subprocess
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from robustprune._version import __version__

__all__ = ["code_identity", "source_digest", "host_identity", "now", "short_code"]

_PACKAGE = Path(__file__).resolve().parent


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


#: Modules that only present results (the command line, report rendering): a change to them cannot change a
#: computed number, so they are left out of :func:`source_digest` and do not make cached cells stale.
PRESENTATION_ONLY = ("cli/", "__main__.py", "bench/report.py", "bench/al_report.py")


@lru_cache(maxsize=4)
def source_digest(package: str | None = None) -> str:
    """SHA-256 over the package's modules (relative path and docstring-free syntax tree of each ``.py``),
    :data:`PRESENTATION_ONLY` modules excepted."""
    root = Path(package) if package is not None else _PACKAGE
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel or rel.startswith(PRESENTATION_ONLY):
            continue
        try:
            tree = _strip_docstrings(ast.parse(path.read_text(encoding="utf-8")))
            text = ast.dump(tree, include_attributes=False)
        except (OSError, SyntaxError, UnicodeDecodeError):
            text = path.read_bytes().hex() if path.exists() else ""
        h.update(rel.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_PACKAGE.parent), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def _git_state() -> tuple[str | None, bool | None]:
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != _PACKAGE.parent:
        return None, None  # an installed copy, or a package inside someone else's repository
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def code_identity() -> dict[str, Any]:
    """``version``, ``commit`` and ``dirty`` (None outside a git checkout of robustprune), ``source_sha256``."""
    commit, dirty = _git_state()
    return {"version": __version__, "commit": commit, "dirty": dirty, "source_sha256": source_digest()}


def short_code(identity: dict[str, Any] | None) -> str:
    """One line for a code identity: ``0.1.0 @ 1a2b3c4 (dirty), source 5d6e7f8a``."""
    if not identity:
        return "unknown (made by an older robustprune)"
    text = str(identity.get("version", "?"))
    if identity.get("commit"):
        text += f" @ {identity['commit'][:7]}" + (" (dirty)" if identity.get("dirty") else "")
    src = identity.get("source_sha256")
    return text + (f", source {src[:8]}" if src else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_identity(device: str | None = None) -> dict[str, Any]:
    """The host: CPU model, cores, torch threads, and the GPU when ``device`` is CUDA."""
    import torch

    host: dict[str, Any] = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        host["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return host


def now() -> str:
    """The current time, ISO 8601 in UTC (``2026-12-06T02:04:27Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
