"""The typer application every command registers on, with divtrace's one error handler, ``-h`` and ``--version``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from divtrace.cli.errors import handle_errors

#: ``-h`` as well as ``--help`` on every command.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


def _without_placeholder(option: Any) -> Any:
    """``option`` (``--help``) shown without the ``<bool>`` value placeholder typer gives flags."""
    if option is not None:
        option.metavar = ""
    return option


class DivtraceCommand(TyperCommand):
    """A divtrace command: its ``-h/--help`` is shown as the flag it is."""

    def get_help_option(self, ctx: Any) -> Any:
        """The help option, without a value placeholder."""
        return _without_placeholder(super().get_help_option(ctx))


class DivtraceGroup(TyperGroup):
    """The command group: every subcommand runs under :func:`handle_errors`, so that no user error ends in a
    traceback and Ctrl-C ends with one line (the same behaviour under ``divtrace``, ``python -m divtrace.cli`` and
    typer's test runner)."""

    def invoke(self, ctx: Any) -> Any:
        """Run the chosen subcommand; divtrace's errors, bad flag values and Ctrl-C become a message and an exit
        code (see :mod:`divtrace.cli.errors`)."""
        with handle_errors():
            return super().invoke(ctx)

    def get_help_option(self, ctx: Any) -> Any:
        """The help option, without a value placeholder."""
        return _without_placeholder(super().get_help_option(ctx))


app = typer.Typer(
    name="divtrace",
    cls=DivtraceGroup,
    help="Find where a language model's output diversity collapses along its post-training lineage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT_SETTINGS,
    add_completion=False,
)


_Command = TypeVar("_Command", bound=Callable[..., Any])


def command_group(name: str, help: str) -> typer.Typer:
    """A group of divtrace commands registered as ``divtrace NAME`` (``divtrace lab build``), with the same error
    handler, ``-h`` and help display as every command; register its commands with ``group.command(NAME,
    cls=DivtraceCommand)``."""
    group = typer.Typer(
        name=name, cls=DivtraceGroup, help=help, no_args_is_help=True, context_settings=CONTEXT_SETTINGS,
        add_completion=False,
    )  # fmt: skip
    app.add_typer(group, name=name)
    return group


def command(name: str | None = None) -> Callable[[_Command], _Command]:
    """Register the decorated function as the divtrace command ``name`` (default: the function's name)."""
    return app.command(name, cls=DivtraceCommand)


def _print_version(value: bool) -> None:
    if value:
        from divtrace import __version__

        typer.echo(f"divtrace {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_print_version, is_eager=True, metavar="", help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Find where a language model's output diversity collapses along its post-training lineage."""
