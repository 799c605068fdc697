"""Run directories: what a run writes, the checks before it writes, resume, input digests and the run log.

A run directory holds :data:`ARTIFACTS`. :func:`check_run_dir` decides, before anything is written, whether an
earlier run there is refused, redone (``force``) or resumed (``resume``); :func:`check_same_run` refuses to
resume a directory whose stored config differs (input files compared by content through
:func:`cached_file_digest`); :func:`changed_fields` is the one comparison of a stored config with a new one;
:class:`RunLog` appends to ``run.log`` and forwards progress events.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import robustprune.distributed as dist
from robustprune._io import file_digest
from robustprune._provenance import source_digest
from robustprune.runconfig import RunConfig
from robustprune.train.engine import ProgressInfo

__all__ = [
    "ARTIFACTS", "INPUT_FILES", "RunLog", "StageDone", "RunEvent", "check_run_dir", "open_run_dir", "check_same_run",
    "cached_file_digest", "input_digests", "unlink_if_exists", "run_identity", "identity_differences",
    "stored_identity", "changed_fields",
]  # fmt: skip

#: Files a run directory may hold (``force`` removes exactly these).
ARTIFACTS = ("config.json", "signals.npz", "selection.npz", "selection.npz.json", "metrics.json", "run.log",
             "warmup.ckpt", "train.ckpt")  # fmt: skip


@dataclass(frozen=True)
class StageDone:
    """A progress event of its own type: a run's stage ("data", "warmup", "signals", "select", "train",
    "evaluate") has finished, in ``seconds``, or was ``reused`` from an earlier run; ``note`` says what came
    out (for example the warm-up's test accuracy)."""

    stage: str
    seconds: float
    reused: bool = False
    note: str = ""


#: What a run's progress callback receives: the training engine's per-step / per-epoch events and the
#: pipeline's stage ends.
RunEvent = ProgressInfo | StageDone


class RunLog:
    """Appends lines to ``run.log`` and forwards progress events to the caller's callback; under torchrun on
    rank 0 only (the other ranks' logs are silent)."""

    def __init__(self, path: Path | None, progress: Callable[[RunEvent], None] | None) -> None:
        if not dist.is_main():
            path = progress = None
        self._fh = open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115
        self._progress = progress

    def write(self, message: str) -> None:
        if self._fh is not None:
            self._fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self._fh.flush()

    def progress(self, info: ProgressInfo) -> None:
        if info.logs is not None:
            items = " ".join(f"{k} {v:.4g}" for k, v in info.logs.items()
                             if k not in ("epoch", "steps") and isinstance(v, float))  # fmt: skip
            self.write(f"{info.stage} epoch {info.epoch + 1}/{info.epochs} {items}")
        if self._progress is not None:
            self._progress(info)

    def stage(self, name: str, seconds: float, *, reused: bool = False, note: str = "") -> None:
        self.write(f"{name} {'reused' if reused else 'done'} in {seconds:.2f} s{' ' + note if note else ''}")
        if self._progress is not None:
            self._progress(StageDone(name, seconds, reused, note))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


#: The files that mark a directory as made by one tool: a sweep, an active-learning loop or a single run.
DIRECTORY_KINDS = (
    ("bench", "robustprune bench sweep", ("bench.json",)),
    ("al", "robustprune al loop", ("al_config.json", "rounds.json")),
    ("run", "robustprune run", ("config.json", "metrics.json", "selection.npz")),
)


def directory_kind(out: Path) -> tuple[str, str] | None:
    """Which tool made ``out`` (its kind and the file that says so), or None for a new or foreign folder."""
    for kind, _what, markers in DIRECTORY_KINDS:
        for m in markers:
            if (out / m).is_file():
                return kind, m
    return None


def refuse_foreign(out: Path, mine: str) -> None:
    """A one-line ValueError when ``out`` was made by another tool than ``mine`` ("run", "al", "bench"):
    its files would be mixed with theirs (--force redoes a tool's own directory, never another's)."""
    found = directory_kind(out) if out.is_dir() else None
    if found is not None and found[0] != mine:
        what = dict((k, w) for k, w, _m in DIRECTORY_KINDS)
        raise ValueError(
            f"{out} holds a {what[found[0]]} ({found[1]}), not a {what[mine]}; choose another --out "
            "(--force redoes a directory of the same kind only)"
        )


def check_run_dir(out: Path, config: RunConfig, done: str = "metrics.json") -> bool:
    """Check the run directory (nothing is changed yet); True when an earlier run there is to be resumed.
    ``done`` is the file whose presence marks the run as finished."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file; give a directory for the run")
    refuse_foreign(out, "run")
    present = [out / a for a in ARTIFACTS if (out / a).exists()]
    if not present or config.force:
        return False
    if not config.resume:
        state = "a finished" if (out / done).exists() else "an unfinished"
        verb = "read it back" if state == "a finished" else "continue it"
        hint = f"pass --resume (resume=True) to {verb}, or "
        raise ValueError(f"{out} holds {state} run; {hint}pass --force (force=True) to redo it, or choose another out")
    if not (out / "config.json").exists():
        raise ValueError(f"{out} holds run files but no config.json; pass --force (force=True) to start over")
    return True


def open_run_dir(out: Path, config: RunConfig, resuming: bool) -> None:
    """Create the run directory; with ``force`` (and not resuming) remove an earlier run's files."""
    out.mkdir(parents=True, exist_ok=True)
    if config.force and not resuming:
        for a in ARTIFACTS:
            unlink_if_exists(out / a)


def run_identity(config: RunConfig, *, warmup_only: bool = False, resolved: list | None = None) -> dict[str, Any]:
    """Everything that can change the result of the run ``config``: every resolved value (method and learner options
    with their defaults and the dataset protocol's values included; runtime fields excluded), the digests of
    its input files, and the code (:func:`robustprune._provenance.source_digest`). ``warmup_only``: only what
    a warm-up depends on (the warm-up fields and the learner's options), for a shared warm-up's directory.
    ``resolved`` saves resolving ``config`` again (:func:`robustprune.explain.explain_config` rows)."""
    from robustprune.explain import explain_config
    from robustprune.runconfig import RUNTIME_FIELDS, WARMUP_FIELDS

    rows = resolved if resolved is not None else explain_config(config)
    skip = set(RUNTIME_FIELDS) | set(INPUT_FILES)

    def wanted(key: str) -> bool:
        if key in skip:
            return False
        return not warmup_only or key in WARMUP_FIELDS or key.startswith("learner_params.")

    values = json.loads(json.dumps({k: v for k, v, _ in rows if wanted(k)}, default=str))
    inputs = {} if warmup_only else input_digests(config)
    return {"resolved": values, "inputs": inputs, "code": source_digest()}


def stored_identity(out: Path) -> dict[str, Any] | None:
    """The identity recorded in ``out/config.json`` (None when there is none or it cannot be read)."""
    try:
        return json.loads((out / "config.json").read_text()).get("identity")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def changed_fields(
    old: Mapping[str, Any], new: Mapping[str, Any], *, ignore: Collection[str] = (), unset: Any = None
) -> list[str]:
    """The fields whose values differ between a stored config (or record) ``old`` and a new one, sorted; a
    field one side lacks holds ``unset`` there. Every comparison of a stored config with a new one goes
    through here: resuming a run (:func:`check_same_run`), run identities (:func:`identity_differences`) and a
    sweep's active-learning cells."""
    return sorted(
        key for key in set(old) | set(new) if key not in ignore and old.get(key, unset) != new.get(key, unset)
    )


def identity_differences(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """What differs between two run identities, one short phrase each (empty: the same run)."""
    if not old:
        return ["no identity recorded (made by an older robustprune)"]
    unset = "<unset>"
    resolved_old, resolved_new = old.get("resolved", {}), new.get("resolved", {})
    out = [
        f"{key} {resolved_old.get(key, unset)!r} -> {resolved_new.get(key, unset)!r}"
        for key in changed_fields(resolved_old, resolved_new, unset=unset)
    ]
    out += [f"{key} file changed" for key in changed_fields(old.get("inputs", {}), new.get("inputs", {}))]
    if old.get("code") != new.get("code"):
        out.append(f"code changed (source {str(old.get('code'))[:8]} -> {str(new.get('code'))[:8]})")
    return out


def check_same_run(out: Path, config: RunConfig, identity: dict[str, Any] | None = None) -> None:
    """Refuse to resume a run directory whose stored config differs from ``config`` (runtime fields aside), or
    whose recorded identity (:func:`run_identity`: defaults, protocol values, inputs, code) differs from
    ``identity`` when that is given.

    Input files (``signals``, ``selection``) are compared by content where the stored config recorded a
    digest, so a run (or a whole sweep) that was moved to another directory still resumes.
    """
    stored = json.loads((out / "config.json").read_text())
    old = RunConfig.from_dict(stored).fingerprint()
    new = config.fingerprint()
    digests = stored.get("inputs_sha256") or {}
    same_content = [
        key
        for key in INPUT_FILES
        if key in digests and new.get(key) is not None and digests[key] == cached_file_digest(new[key])
    ]
    diff = changed_fields(old, new, ignore=same_content)
    if diff:
        raise ValueError(
            f"cannot resume {out}: its run differs in {', '.join(diff)}; pass --force to redo it or choose another out"
        )
    if identity is not None:
        why = identity_differences(stored.get("identity"), identity)
        if why:
            raise ValueError(
                f"cannot resume {out}: it was made by other code or defaults ({'; '.join(why[:3])}"
                f"{'; ...' if len(why) > 3 else ''}); pass --force to redo it or choose another out"
            )


#: RunConfig fields naming input files; config.json records their SHA-256 under ``inputs_sha256``.
INPUT_FILES = ("signals", "selection")


def cached_file_digest(path: str | Path) -> str | None:
    """SHA-256 of a file's bytes, or None when it cannot be read.

    Cached per process by (path, size, modification time): the cells of a sweep share one signals file.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        try:
            digest = file_digest(path)
        except OSError:
            return None
        if len(_DIGESTS) > 64:
            _DIGESTS.clear()
        _DIGESTS[key] = digest
    return _DIGESTS[key]


_DIGESTS: dict[tuple[str, int, int], str] = {}


def input_digests(config: RunConfig) -> dict[str, str]:
    """SHA-256 of each input file ``config`` names (:data:`INPUT_FILES`) that can be read."""
    found = {k: cached_file_digest(getattr(config, k)) for k in INPUT_FILES if getattr(config, k) is not None}
    return {k: v for k, v in found.items() if v is not None}


def unlink_if_exists(path: Path | None) -> None:
    if path is not None and path.exists():
        path.unlink()
