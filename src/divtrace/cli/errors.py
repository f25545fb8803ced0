"""divtrace's one error handler: what a user sees, and the exit code, when a command cannot finish.

- a :class:`~divtrace.errors.DivtraceError` (bad input, a missing file, a refused resume): ``error: ...``, exit 2;
- a bad flag value caught by pydantic (sampling settings): the flag, the allowed range and the value, exit 2;
- an operating-system error (disk full, permission denied): the message and the path, exit 1;
- Ctrl-C (or a :class:`~divtrace.errors.RunInterrupted` from an executor): one line saying how much finished work is
  kept and that the same command resumes, exit 130;
- a flag typer itself refuses (an unknown choice, a value below a flag's minimum): the same one-line ``error:`` form
  with the command's help hint, exit 2.

Errors that are none of these are divtrace's bugs and keep their traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from divtrace.cli.console import stderr_console
from divtrace.errors import DivtraceError, RunInterrupted

if TYPE_CHECKING:  # imported where it is caught (pydantic loads slowly)
    from pydantic import ValidationError

#: Exit codes: user errors (bad input or flags, like click's usage errors), the system refusing (I/O), Ctrl-C.
EXIT_USER_ERROR = 2
EXIT_SYSTEM_ERROR = 1
EXIT_INTERRUPTED = 130

#: pydantic field names whose flag is not ``--field-name``.
_FLAG_OF_FIELD = {"k": "-k"}


def flag_of(field: str) -> str:
    """The command-line flag that sets the settings field ``field`` (``top_p`` -> ``--top-p``, ``k`` -> ``-k``)."""
    return _FLAG_OF_FIELD.get(field, "--" + field.replace("_", "-"))


def validation_message(error: ValidationError) -> str:
    """A pydantic ``ValidationError`` in the command line's terms: one line per bad value, naming its flag."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item.get("loc", ()))
        where = flag_of(field) if field else "value"
        lines.append(f"invalid value for {where}: {item.get('msg', 'invalid')} (got {item.get('input')!r})")
    return "\n".join(lines)


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Turn the exceptions a command can end with into a message on stderr and an exit code (see the module
    docstring); typer's own exits and usage errors pass through unchanged."""
    from pydantic import ValidationError
    from typer._click.exceptions import NoArgsIsHelpError, UsageError

    console = stderr_console()
    try:
        yield
    except NoArgsIsHelpError:
        raise
    except UsageError as err:  # parsing a subcommand's flags happens inside the group's invoke
        where = f" (see: {err.ctx.command_path} -h)" if err.ctx is not None else ""
        console.print(f"[bold red]error:[/] {escape(err.format_message())}{escape(where)}")
        raise typer.Exit(code=EXIT_USER_ERROR) from None
    except RunInterrupted as err:
        console.print(f"[bold yellow]interrupted:[/] {escape(str(err))}")
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        console.print(
            "[bold yellow]interrupted:[/] finished work is kept; rerun the same command to resume where it stopped"
        )
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    except DivtraceError as err:
        console.print(f"[bold red]error:[/] {escape(str(err))}")
        raise typer.Exit(code=EXIT_USER_ERROR) from None
    except ValidationError as err:
        console.print(f"[bold red]error:[/] {escape(validation_message(err))}")
        raise typer.Exit(code=EXIT_USER_ERROR) from None
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        console.print(f"[bold red]error:[/] {escape((err.strerror or str(err)) + where)}")
        raise typer.Exit(code=EXIT_SYSTEM_ERROR) from None
