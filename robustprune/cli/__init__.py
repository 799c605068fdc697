"""The ``robustprune`` command line: one subcommand per module, each only parses, calls the library and
writes artifacts.

Errors in the input give one line ``error: ...`` on stderr and exit code 2; ``robustprune --debug ...``
shows the traceback instead.
"""

from typing import Annotated

import typer
import typer.core

from robustprune._version import __version__
from robustprune.cli._common import STATE
from robustprune.cli.al import al_cli
from robustprune.cli.bench import bench_command, report_command
from robustprune.cli.methods import methods_command
from robustprune.cli.run import run_command
from robustprune.cli.select import select_command
from robustprune.cli.signals import signals_command

__all__ = ["app", "main"]


class _FlagsShowNoType:
    """A flag takes no value, so its help row shows no value type (typer would print ``<bool>`` there)."""

    def get_params(self, ctx: typer.Context) -> list:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:  # the command's options and its --help
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsShowNoType, typer.core.TyperCommand):
    pass


class _Group(_FlagsShowNoType, typer.core.TyperGroup):
    pass


app = typer.Typer(
    cls=_Group,
    name="robustprune",
    help="Robust data pruning under label noise: choose a subset that a noise-robust learner trains well on.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"robustprune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    STATE.debug = debug


app.command("methods", cls=_Command)(methods_command)
app.command("select", cls=_Command)(select_command)
app.command("signals", cls=_Command)(signals_command)
app.command("run", cls=_Command)(run_command)
app.command("al", cls=_Command)(al_cli)
app.command("bench", cls=_Command)(bench_command)
app.command("report", cls=_Command)(report_command)


def main() -> None:
    """Entry point of the ``robustprune`` console script.

    A usage error (an unknown option, ``--budget ten``) is one line ``error: ...`` naming the command's
    ``--help``, exit code 2, like every other bad input; a warning is one line ``warning: ...``. ``--debug``
    may come before or after the subcommand. Under torchrun a rank that stopped is one line naming it (exit
    code 1) on each rank that survived it."""
    import sys

    try:  # typer up to 0.2x depends on click; newer releases carry their own copy
        import click
    except ImportError:
        from typer import _click as click

    import warnings

    def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)

    warnings.showwarning = one_line_warning  # a library warning is one line, without its source line
    args = sys.argv[1:]
    if "--debug" in args[1:] and args[0] != "--debug":  # accepted after the subcommand too
        args.remove("--debug")
        args.insert(0, "--debug")
    try:
        code = app(args=args, prog_name="robustprune", standalone_mode=False)
    except click.exceptions.UsageError as exc:
        message = " ".join(exc.format_message().split())
        if message:  # (no arguments at all: the help was printed, nothing to add)
            where = f"; see {exc.ctx.command_path} --help" if exc.ctx is not None else ""
            print(f"error: {message}{where}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except click.exceptions.ClickException as exc:
        print(f"error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort as exc:  # (click's form of a KeyboardInterrupt, SIGTERM included)
        _exit_if_peer_lost(exc)
        print("error: aborted", file=sys.stderr)
        sys.exit(1)
    except BaseException as exc:
        _exit_if_peer_lost(exc)
        raise
    sys.exit(code if isinstance(code, int) else 0)


def _exit_if_peer_lost(exc: BaseException) -> None:
    """One line and exit code 1 when ``exc`` tells that another torchrun rank stopped (outside a command's own
    handler: a last collective, or torchrun's SIGTERM after a peer died)."""
    import sys

    from robustprune.cli._common import PEER_LOST

    dist = sys.modules.get("robustprune.distributed")
    failure = dist.peer_failure(exc) if dist is not None else None
    if failure is None or STATE.debug:
        return
    print(f"error: {failure}; run the same command again to continue (with --resume for run and al)",
          file=sys.stderr)  # fmt: skip
    sys.exit(PEER_LOST)
