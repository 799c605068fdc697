"""``robustprune methods``: a table of every registered selection method.

The registry is imported when the command runs, not with the command line: registering the methods imports
each method module (with numpy only; torch and scipy load when a method runs)."""

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from robustprune.cli._common import stdout_console, user_errors

if TYPE_CHECKING:
    from robustprune.selection.registry import MethodInfo


def _signals(info: "MethodInfo") -> str:
    parts = list(info.requires) + [f"[{s}]" for s in info.optional]
    return ", ".join(parts) or "-"


def _balance(info: "MethodInfo") -> str:
    if info.balance == "none":
        return "none"
    return f"{info.balance} ({'on' if info.default_class_balanced else 'off'} by default)"


def _options(info: "MethodInfo") -> str:
    return "\n".join(f"{k}={v!r}" for k, v in info.options.items()) or "-"


def _protocol_overrides(info: "MethodInfo") -> str:
    """Which dataset protocols set which of the method's options in ``robustprune run`` / ``bench``."""
    from robustprune.protocols import PROTOCOLS

    by_values: dict[str, list[str]] = {}
    for dataset, proto in PROTOCOLS.items():
        values = proto.method_params.get(info.name)
        if values:
            by_values.setdefault(", ".join(f"{k}={v!r}" for k, v in values.items()), []).append(dataset)
    return "\n".join(f"{v} on {', '.join(ds)}" for v, ds in by_values.items())


def methods_command(
    name: Annotated[
        str | None,
        typer.Argument(metavar="[NAME]", help="Show one method in full: its options and their defaults."),
    ] = None,
) -> None:
    """List the selection methods (signals needed, kept end), or one method's options in full."""
    from robustprune.selection.registry import get_method, list_methods

    with user_errors():
        infos = [get_method(name)] if name else [get_method(n) for n in list_methods()]
    console = stdout_console()
    if not infos:
        console.print("no selection methods are registered")
        return
    if name:
        info = infos[0]
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for key, value in (
            ("name", info.name),
            ("description", info.description),
            ("kind", info.kind),
            ("signals", _signals(info)),
            ("keeps", info.keep),
            ("class balance", _balance(info)),
            ("options", _options(info)),
        ):
            grid.add_row(key, Text(value))
        overrides = _protocol_overrides(info)
        if overrides:
            grid.add_row("dataset protocols", Text(overrides))
        console.print(grid)
        hint = "set options with --param key=value"
        if overrides:
            hint += "; in run and bench the dataset protocols above replace these defaults unless --param sets them"
        console.print(Text(hint))
        return
    table = Table(title="robustprune selection methods", show_lines=False)
    for col in ("name", "kind", "signals", "keeps", "description"):
        table.add_column(col, overflow="fold")
    for info in infos:
        # Text (not markup) so "[features]" is printed literally.
        table.add_row(*(Text(v) for v in (info.name, info.kind, _signals(info), info.keep, info.description)))
    console.print(table)
    console.print(
        Text(
            "signals in [brackets] are optional; keeps = which end of a score method's score is kept; "
            "'robustprune methods NAME' lists a method's options"
        )
    )
