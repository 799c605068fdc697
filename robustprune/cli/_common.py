"""Helpers shared by every subcommand: the error boundary, consoles, a lazy progress bar.

Every subcommand runs its library calls inside :func:`user_errors`. Bad input raises ``ValueError`` /
``TypeError`` / ``OSError`` in the library; here it becomes one line ``error: ...`` on stderr and exit code 2,
with no traceback unless the global ``--debug`` option was given. An interrupt (Ctrl-C, SIGTERM) or, under
torchrun, a rank that stopped (:class:`robustprune.distributed.PeerFailure`) ends a long command through
:func:`stopped`: one line saying what happened and how to continue.
"""

from __future__ import annotations

import io
import keyword
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = [
    "STATE",
    "USAGE_ERROR",
    "fail",
    "user_errors",
    "stdout_console",
    "stderr_console",
    "ProgressBar",
    "selection_path",
    "refuse_overwrite",
    "Terminated",
    "sigterm_as_interrupt",
    "interrupt_code",
    "stopped",
    "parse_value",
    "parse_key_values",
]

#: Exit code for bad usage or bad input (the shell convention click also uses).
USAGE_ERROR = 2
#: Exit code for a missing optional dependency or another environment problem.
ENV_ERROR = 1
#: Exit code when another rank of a torchrun job stopped.
PEER_LOST = 1


@dataclass
class CliState:
    """Global options, set by the top-level callback on every invocation."""

    debug: bool = False


STATE = CliState()


class _StripTrailing(io.TextIOBase):
    """A text stream that drops the spaces rich pads lines with before writing them on (for pipes)."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.out.write(line.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.out.write(self.pending.rstrip())
            self.pending = ""
        self.out.flush()


def stdout_console() -> Console:
    """A console on the current ``sys.stdout`` (created per call so test runners' stream swaps work).

    On a terminal it wraps to the terminal's width; piped or redirected it never wraps a value (no width
    limit) and writes no trailing spaces, so the output can be read by tools and by eye alike."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console(highlight=False, soft_wrap=False)
    return Console(file=_StripTrailing(sys.stdout), highlight=False, soft_wrap=False, width=10_000,
                   force_terminal=False, color_system=None)  # fmt: skip


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        msg = f"{exc.filename}: {exc.strerror}"
    else:
        msg = str(exc)
    msg = " ".join(msg.split())
    return msg or type(exc).__name__


#: The library's messages name Python arguments; on the command line the same advice names the flags.
_FLAG_NAMES = (
    (re.compile(r"--force \(force=True\)"), "--force"),
    (re.compile(r"--resume \(resume=True\)"), "--resume"),
    (re.compile(r"\bforce=True\b"), "--force"),
    (re.compile(r"\bresume=True\b"), "--resume"),
    (re.compile(r"\bdownload=True\b"), "--data-param download=true"),
    (re.compile(r"\bdata_dir=(?=[\s,;)]|$)"), "--data-dir"),
    (re.compile(r"\bdata_dir\b"), "--data-dir"),
    (re.compile(r"\bpath= \("), "--data-param path=FILE ("),
    (re.compile(r"\bchoose another out\b"), "choose another --out"),
)


#: The budget function's messages (``fraction must be in (0, 1]``, ``budget (N) exceeds ...``) in the words of
#: a command that has the flag: reworded only where the user gave it (``user_errors("--fraction")``).
_OPTION_WORDS = {
    "--fraction": (
        (re.compile(r"^fraction must be\b"), "--fraction must be"),
        (re.compile(r"\bor fraction=1\b"), "or --fraction 1"),
    ),
    "--budget": (
        (re.compile(r"^budget must be\b"), "--budget must be"),
        (re.compile(r"^budget \((\d+)\) exceeds\b"), r"--budget \1 exceeds"),
    ),
}


def cli_words(message: str, options: tuple[str, ...] = ()) -> str:
    """``message`` with the Python argument names of the library replaced by the CLI's flags (``options``:
    the command's flags among :data:`_OPTION_WORDS`, e.g. ``--fraction``)."""
    for pattern, flag in _FLAG_NAMES + tuple(p for o in options for p in _OPTION_WORDS[o]):
        message = pattern.sub(flag, message)
    return message


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Print ``error: message`` on stderr (one line) and exit with ``code``."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors(*options: str) -> Iterator[None]:
    """Turn library input errors into a one-line message and a non-zero exit (re-raise with ``--debug``).

    ``options``: the command's flags whose library names the message should name instead (``"--fraction"``,
    ``"--budget"``)."""
    try:
        yield
    except (ValueError, TypeError, OSError) as exc:
        if STATE.debug:
            raise
        fail(cli_words(_one_line(exc), options), USAGE_ERROR)
    except ImportError as exc:
        if STATE.debug:
            raise
        fail(_one_line(exc), ENV_ERROR)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``timeout``, ``kill`` and job schedulers send), raised where Ctrl-C would be."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM stops the work as Ctrl-C does: checkpoints are kept and the command prints
    how to continue, instead of the process dying silently."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if not _peer_lost():  # else torchrun's agent stopping the survivors: this rank is already on its way out
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:  # (after a lost peer, a SIGTERM must not cut the one line this rank is about to print)
        signal.signal(signal.SIGTERM, signal.SIG_IGN if _peer_lost() else previous)


def _peer_lost() -> bool:
    dist = sys.modules.get("robustprune.distributed")  # (not imported: no process group, nothing lost)
    return dist is not None and dist.lost_peer()


def interrupt_code(exc: KeyboardInterrupt) -> int:
    """The shell's exit status for a stop by SIGTERM (143) or SIGINT (130)."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def stopped(exc: BaseException, advice: str) -> None:
    """For ``except BaseException`` around a long command: when ``exc`` is an interrupt or a lost torchrun peer,
    end the command with one line ``error: WHAT; ADVICE`` (``advice``: how to continue) and the exit code that
    says so; return otherwise (the caller re-raises).

    A lost peer is :class:`robustprune.distributed.PeerFailure`, a collective's communication error, or a
    SIGTERM that torchrun's agent sent because a peer died (the line names the peer, not the SIGTERM); with
    ``--debug`` it is re-raised with its traceback."""
    dist = sys.modules.get("robustprune.distributed")
    failure = dist.peer_failure(exc) if dist is not None else None
    if failure is not None:
        if STATE.debug:
            raise exc
        fail(f"{failure}; {advice}", PEER_LOST)
    if isinstance(exc, KeyboardInterrupt):
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        fail(f"{what}; {advice}", interrupt_code(exc))


def parse_value(text: str) -> Any:
    """A KEY=VALUE value: int, then float, then true/false, then none/null, else the string itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_key_values(
    items: list[str] | None,
    flag: str,
    example: str,
    *,
    reserved: dict[str, str] | None = None,
    dotted: bool = False,
) -> dict[str, Any]:
    """The one parser of repeated ``KEY=VALUE`` options (``--param``, ``--learner-param``, ``--data-param``).

    Keys are Python identifiers (``-`` read as ``_``); values go through :func:`parse_value`. With ``dotted``
    each key is ``NAME.KEY`` and the result is ``{NAME: {KEY: value}}`` (bench's per-method options).
    ``reserved`` maps keys that belong to another flag to the hint naming it. Any malformed item, or a key
    given twice, is a one-line usage error.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        lhs, sep, value = item.partition("=")
        name, dot, key = lhs.strip().partition(".") if dotted else ("", "", lhs.strip())
        key = key.replace("-", "_")
        if not sep or (dotted and (not dot or not name)) or not key.isidentifier() or keyword.iskeyword(key):
            form = "name.key=value" if dotted else "key=value"
            fail(f"bad {flag} {item!r}: expected {form} with a Python identifier as key, e.g. {flag} {example}")
        if reserved and key in reserved:
            fail(f"bad {flag} {item!r}: {key!r} is not a method option; {reserved[key]}")
        target = out.setdefault(name, {}) if dotted else out
        if key in target:
            fail(f"{flag} {lhs.strip()!r} is given twice")
        target[key] = parse_value(value)
    return out


def selection_path(out: Path) -> Path:
    """The ``.npz`` path :meth:`robustprune.Selection.save` writes for ``out`` (a folder is refused: the file
    would land beside it, not in it)."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name the file to write, e.g. --out {out / 'selection.npz'}")
    if out.suffix == ".npz":
        return out
    return out.with_suffix(out.suffix + ".npz") if out.suffix else out.with_suffix(".npz")


def refuse_overwrite(paths: list[Path], force: bool) -> None:
    """Exit with a usage error if any of ``paths`` exists and ``force`` is not set."""
    if force:
        return
    for p in paths:
        if os.path.lexists(p):
            fail(f"{p} already exists; pass --force to overwrite it or choose another path")


class ProgressBar:
    """The one progress renderer of the command line, on stderr.

    On a terminal it draws rich bars (one per named task, removed when done) below printed lines; nothing is
    drawn for work that finishes within ``delay`` seconds. Elsewhere (output piped to a file, CI, a cluster
    job) bars are off and :meth:`line` prints plain lines. Called as ``bar(done, total)`` it is the
    ``progress`` callback of a single task named ``description`` (what ``select`` passes to a method);
    ``run`` and ``bench`` translate their events into :meth:`task` and :meth:`line` calls.
    """

    def __init__(self, description: str = "", *, delay: float = 0.5, console: Console | None = None) -> None:
        self.description = description
        self.delay = delay
        self.console = console if console is not None else stderr_console()
        self.enabled = console is not None or self.console.is_terminal
        self._t0 = time.perf_counter()
        self._progress: Progress | None = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> ProgressBar:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def __call__(self, done: int, total: int) -> None:
        self.task(self.description, self.description, done, total, final=done >= total)

    def task(
        self, key: str, description: str, completed: float, total: float, *, info: str = "", final: bool = False
    ) -> None:
        """Show (or move) the bar ``key``; a bar that would appear already finished, or before ``delay``
        seconds of work, is not drawn."""
        if not self.enabled:
            return
        if self._progress is None:
            if final or time.perf_counter() - self._t0 < self.delay:
                return
            self._progress = Progress(
                TextColumn("{task.description:<11}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        if key not in self._tasks:  # created at ``completed`` (a resumed stage), which is not progress made now
            self._tasks[key] = self._progress.add_task(description, total=max(total, 1), completed=completed, info="")
        fields = {"info": info} if info else {}
        self._progress.update(self._tasks[key], completed=completed, total=max(total, 1), **fields)

    def remove(self, key: str) -> None:
        """Take the bar ``key`` away (its work is done)."""
        if key in self._tasks and self._progress is not None:
            self._progress.remove_task(self._tasks.pop(key))

    def line(self, text: str) -> None:
        """A line above the bars (or a plain line when there are none)."""
        target = self._progress.console if self._progress is not None else self.console
        target.print(Text(text), soft_wrap=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
