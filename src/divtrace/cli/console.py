"""Where the command line writes: rich consoles that keep every cell when the output is piped, and the one way a
table is printed (rich table, CSV or JSON)."""

from __future__ import annotations

import enum
import json
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

#: Width of a console that is not a terminal (a pipe, a log file): wide enough that rich never truncates a cell
#: (a table is as wide as its content, not as this).
_PIPE_WIDTH = 10_000


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    # Rich falls back to 80 columns off a terminal and would cut cells (model ids) with an ellipsis.
    return Console(stderr=stderr, width=_PIPE_WIDTH, soft_wrap=True)


def stdout_console() -> Console:
    """A console on the current stdout (results: tables); full width when stdout is not a terminal."""
    return _console(stderr=False)


def stderr_console() -> Console:
    """A console on the current stderr (notes, warnings, progress); full width when stderr is not a terminal."""
    return _console(stderr=True)


#: Off a terminal, a note longer than this is wrapped (at spaces) onto lines this long, so a log stays readable.
NOTE_WIDTH = 120


def note(message: str, label: str = "note", style: str = "yellow") -> None:
    """``label: message`` on stderr; ``message`` is printed as is (square brackets such as ``[vllm]`` survive).
    On a terminal rich wraps it to the window; off one it is wrapped at :data:`NOTE_WIDTH` columns, continuation
    lines indented."""
    console = stderr_console()
    if console.is_terminal:
        console.print(f"[{style}]{label}:[/] {escape(message)}")
        return
    lines = textwrap.wrap(
        f"{label}: {message}", NOTE_WIDTH, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
    )
    for line in lines or [f"{label}:"]:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A plain line on stderr, printed as is."""
    stderr_console().print(escape(message))


class OutputFormat(str, enum.Enum):
    """``--format``: how a command prints its table."""

    table = "table"
    json = "json"
    csv = "csv"


def print_frame(frame: pd.DataFrame, output_format: OutputFormat, as_table: Callable[[pd.DataFrame], Table]) -> None:
    """``frame`` on stdout: JSON records, CSV, or the rich table ``as_table`` makes of it."""
    if output_format is OutputFormat.json:
        sys.stdout.write(json.dumps(json.loads(frame.to_json(orient="records")), indent=2) + "\n")
    elif output_format is OutputFormat.csv:
        sys.stdout.write(frame.to_csv(index=False))
    else:
        stdout_console().print(as_table(frame))


def frame_table(frame: pd.DataFrame, title: str, caption: str | None = None) -> Table:
    """A rich table of ``frame`` as it is: one column per frame column, cells as text, markup not interpreted."""
    table = Table(title=title, caption=caption, caption_justify="left")
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(*(escape(str(value)) for value in row))
    return table
