"""The method registry: a decorator plus a frozen metadata record per method.

A method is a plain function over arrays. Its metadata says which signals it needs, what kind of method it
is, which end of its score it keeps and how it balances classes. The API and the CLI read only this record;
nothing is looked up by ``__dict__``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robustprune._registry import Registry
from robustprune.signals import SIGNAL_NAMES as _SIGNAL_NAMES
from robustprune.signals import SIGNALS

__all__ = ["MethodInfo", "Fact", "register", "unregister", "get_method", "list_methods", "SIGNAL_NAMES", "SIGNAL_HELP"]

#: Every per-example signal a method may ask for, and how each is produced (for error messages): read from
#: the one table of signals, :data:`robustprune.signals.SIGNALS`.
SIGNAL_NAMES = _SIGNAL_NAMES
SIGNAL_HELP = {
    s.name: f"{s.meaning}, shape {s.shape.rsplit(' ', 1)[0]}" + (f", {s.note}" if s.note else "")
    for s in SIGNALS
    if s.method_input
}

KINDS = ("score", "greedy", "sampling")
KEEPS = ("high", "low", "-")
BALANCES = ("proportional", "round_robin", "none")

#: Arguments the API supplies itself; everything else in a method's signature is a user option. ``start`` (the
#: starting set S0, int64 indices, ascending) and ``pool`` (the candidates, int64 indices, ascending) are passed
#: only to methods whose signature accepts them (see :attr:`MethodInfo.honours_start`).
_API_ARGS = frozenset(
    {"budget", "class_balanced", "seed", "progress", "start", "pool", "n", "shared_build", *SIGNAL_NAMES}
)


@dataclass(frozen=True)
class Fact:
    """One fact a method reports about its own run: a key of its ``MethodOutput.info`` (or one of its options),
    recorded in a run's ``metrics.json`` under ``selection`` and printed in the run's summary.

    Attributes
    ----------
    key : str
        The key in the selection's ``params`` (its options and ``info`` together).
    text : str or None
        How the summary prints it: a format of the value, e.g. ``", η {:.3g}"``. The facts of one ``row`` are
        printed one after the other in the order declared; the leading separator (``", "``, ``"; "``, ``" "``)
        of the row's first printed fact is dropped. None: recorded, not printed.
    row : str
        The summary row it belongs to.
    skip : tuple
        Values that are not printed (None always).
    """

    key: str
    text: str | None = None
    row: str = "selection facts"
    skip: tuple[Any, ...] = ()

    def render(self, value: Any) -> str | None:
        """The fact as the summary prints it, or None when it is not printed."""
        if self.text is None or value is None or value in self.skip:
            return None
        return self.text.format(value)


@dataclass(frozen=True)
class MethodInfo:
    """Metadata of one registered selection method.

    Attributes
    ----------
    name : str
        Registry key, lower case with underscores.
    func : callable
        ``kind == "score"``: returns a score per example, shape (N,); the API keeps the ``keep`` end.
        Otherwise: returns a :class:`~robustprune.selection.result.MethodOutput` of exactly ``budget`` indices.
    kind : str
        "score" (rank by a per-example score), "greedy" (sequential picks with gains) or "sampling".
    requires : tuple of str
        Signals that must be present.
    optional : tuple of str
        Signals used when present.
    keep : str
        For score methods, "high" or "low": which end of the score is kept. "-" otherwise.
    balance : str
        How ``class_balanced=True`` allocates the budget: "proportional" (quotas proportional to class
        sizes, the shared budget function), "round_robin" (equal picks per class, Prune4ReL's rule) or
        "none" (not supported).
    default_class_balanced : bool
        Used when the caller passes ``class_balanced=None``.
    description : str
        One line for ``robustprune methods``.
    facts : tuple of Fact
        What the method reports about its run: recorded in ``metrics.json`` and printed in the run summary
        (:meth:`summary_rows`).
    fixed_fraction : float, optional
        The share of examples the method always keeps (``full``: 1.0); sweeps run it at that fraction only.
    reads_by_block : tuple of str
        Signals besides ``features`` that the method takes as a row source (a memory map or the shards of a
        directory, :mod:`robustprune.selection.core.rows`) and reads a block of rows at a time; any other
        signal given as a row source is read whole before the method runs. ``features`` always reach a method
        as given.

    Whether the method needs anything beyond the given labels (:attr:`labels_only`), can share its τ-graph's
    build across torchrun ranks (:attr:`shares_graph`) or honours a starting set (:attr:`honours_start`) is
    read from its signals and its signature, never from a list kept elsewhere.

    Candidates and a starting set (``select(..., candidates=..., start=...)``, for active learning): a method
    declares what it handles by its signature. One that accepts ``start`` honours a starting set S0 (its choice
    depends on what is already chosen, and it starts from S0: :attr:`honours_start`); one that accepts ``pool``
    restricts its picks to the candidates itself, with every signal still over all N examples. A greedy or
    sampling method that accepts ``start`` must accept ``pool``. Score methods never need ``pool`` (the API
    ranks the candidates); a greedy or sampling method without ``pool`` is run on the candidates alone.
    """

    name: str
    func: Callable[..., Any]
    kind: str
    requires: tuple[str, ...]
    optional: tuple[str, ...]
    keep: str
    balance: str
    default_class_balanced: bool
    description: str
    facts: tuple[Fact, ...] = ()
    fixed_fraction: float | None = None
    reads_by_block: tuple[str, ...] = ()

    @property
    def labels_only(self) -> bool:
        """Whether the method reads nothing beyond the given labels (a run then needs no warm-up)."""
        return set(self.requires) | set(self.optional) <= {"labels"}

    def run_facts(self, params: dict[str, Any]) -> dict[str, Any]:
        """The declared :attr:`facts` found in a selection's ``params``."""
        return {f.key: params[f.key] for f in self.facts if f.key in params}

    def summary_rows(self, facts: dict[str, Any]) -> list[tuple[str, str]]:
        """(row name, text) for a run's printed summary, from the recorded facts, rows in declared order."""
        rows: dict[str, str] = {}
        for f in self.facts:
            text = f.render(facts.get(f.key))
            if text is None:
                continue
            rows[f.row] = rows[f.row] + text if f.row in rows else text.lstrip(",; ")
        return list(rows.items())

    @property
    def options(self) -> dict[str, Any]:
        """User-settable keyword options and their defaults (signals and API arguments excluded)."""
        out: dict[str, Any] = {}
        for p in inspect.signature(self.func).parameters.values():
            if p.name in _API_ARGS or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            out[p.name] = None if p.default is inspect.Parameter.empty else p.default
        return out

    def check_options(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` laid over the defaults; the one check of a method's option names (``select``, run
        configs and bench grids all call it)."""
        known = self.options
        unknown = sorted(set(params) - set(known))
        if unknown:
            opts = ", ".join(f"{k}={v!r}" for k, v in known.items()) or "none"
            raise ValueError(f"method {self.name!r} has no option {unknown[0]!r}; its options: {opts}")
        sig = inspect.signature(self.func).parameters
        for key, value in params.items():  # text where the option takes a number (from a CLI --param)
            hint = sig[key].annotation
            hint = hint if isinstance(hint, str) else getattr(hint, "__name__", str(hint))
            if isinstance(value, str) and hint and not any(t in hint for t in ("str", "Literal", "Any", "empty")):
                raise ValueError(f"option {key} of method {self.name!r} takes {hint}, got the text {value!r}")
        return {**known, **params}

    def accepts(self, arg: str) -> bool:
        return arg in inspect.signature(self.func).parameters

    @property
    def shares_graph(self) -> bool:
        """Whether the ranks of a torchrun job can build the method's τ-graph together: its signature accepts
        ``shared_build`` (a :class:`~robustprune.selection.core.graph.SharedBuild`) and hands it to the graph
        builder."""
        return self.accepts("shared_build")

    @property
    def honours_start(self) -> bool:
        """Whether the method takes a starting set S0 into account (its signature accepts ``start``)."""
        return self.accepts("start")


_REGISTRY: Registry[MethodInfo] = Registry("selection method", plural="methods")


def register(
    name: str,
    *,
    kind: str,
    requires: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    keep: str = "-",
    balance: str = "proportional",
    default_class_balanced: bool = False,
    description: str,
    facts: tuple[Fact, ...] = (),
    fixed_fraction: float | None = None,
    reads_by_block: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a selection method under ``name`` (a decorator)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if keep not in KEEPS or (kind == "score") != (keep != "-"):
        raise ValueError("score methods keep 'high' or 'low'; other kinds use '-'")
    if balance not in BALANCES:
        raise ValueError(f"balance must be one of {BALANCES}")
    for s in (*requires, *optional):
        if s not in SIGNAL_NAMES:
            raise ValueError(f"unknown signal {s!r}; known: {SIGNAL_NAMES}")
    for s in reads_by_block:
        if s not in (*requires, *optional):
            raise ValueError(f"reads_by_block names {s!r}, which the method neither requires nor takes")

    def deco(func: Callable[..., Any]) -> Callable[..., Any]:
        params = inspect.signature(func).parameters
        if kind != "score" and "start" in params and "pool" not in params:
            raise ValueError(
                f"method {name!r} accepts start but not pool: a greedy or sampling method that honours a starting "
                "set must restrict its picks to the candidates itself (accept pool=...)"
            )
        _REGISTRY.add(name, MethodInfo(
            name=name,
            func=func,
            kind=kind,
            requires=tuple(requires),
            optional=tuple(optional),
            keep=keep,
            balance=balance,
            default_class_balanced=default_class_balanced,
            description=description,
            facts=tuple(facts),
            fixed_fraction=fixed_fraction,
            reads_by_block=tuple(reads_by_block),
        ))  # fmt: skip
        return func

    return deco


def unregister(name: str) -> None:
    """Remove a registered method (for tests and plug-ins that replace one); unknown names are ignored."""
    _REGISTRY.remove(name)


def get_method(name: str) -> MethodInfo:
    """Look up a registered method by name (case-insensitive, '-' and '_' alike)."""
    return _REGISTRY.get(name)


def list_methods() -> list[str]:
    """Names of every registered method, sorted."""
    return _REGISTRY.names()
