"""``robustprune methods``: a table of every registered selection method."""

from rich.table import Table
from rich.text import Text

from robustprune.cli._common import stdout_console, user_errors
from robustprune.selection.registry import MethodInfo, get_method, list_methods


def _signals(info: MethodInfo) -> str:
    parts = list(info.requires) + [f"[{s}]" for s in info.optional]
    return ", ".join(parts) or "-"


def _balance(info: MethodInfo) -> str:
    if info.balance == "none":
        return "none"
    return f"{info.balance} ({'on' if info.default_class_balanced else 'off'} by default)"


def _options(info: MethodInfo) -> str:
    return "\n".join(f"{k}={v!r}" for k, v in info.options.items()) or "-"


def methods_command() -> None:
    """List the selection methods: signals they need (optional ones in brackets), kept end, class balance."""
    with user_errors():
        infos = [get_method(name) for name in list_methods()]
    console = stdout_console()
    if not infos:
        console.print("no selection methods are registered")
        return
    table = Table(title="robustprune selection methods", show_lines=False)
    for col in ("name", "kind", "signals", "keeps", "class balance", "options", "description"):
        table.add_column(col, overflow="fold")
    for info in infos:
        # Text (not markup) so "[features]" and option reprs are printed literally.
        table.add_row(
            *(
                Text(v)
                for v in (
                    info.name,
                    info.kind,
                    _signals(info),
                    info.keep,
                    _balance(info),
                    _options(info),
                    info.description,
                )
            )
        )
    console.print(table)
    console.print(
        Text(
            "signals in [brackets] are optional; keeps = which end of a score method's score is "
            "kept; options are set with --param key=value"
        )
    )
