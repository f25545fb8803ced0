"""Progress on stderr: rich bars with a rate in the work's own unit on a terminal, and a plain periodic line
(done/total, rate, ETA) when stderr is a pipe or a log file, so that a long run shows it is alive in both.

Every command drives its display through :meth:`ProgressDisplay.update` (absolute counts) or
:meth:`ProgressDisplay.advance` (increments), keyed by a label such as ``score: base / gsm8k``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from divtrace.cli.console import stderr_console
from divtrace.progress import format_duration

#: Seconds between two plain progress lines of the same label (``DIVTRACE_PROGRESS_INTERVAL`` overrides it).
DEFAULT_LINE_INTERVAL_S = 30.0


class _Rate(ProgressColumn):
    """Items per second in the task's unit (``12.5 samples/s``); blank until rich has an estimate."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "items")
        return Text("" if task.speed is None else f"{task.speed:,.2f} {unit}/s", style="progress.data.speed")


@dataclass
class _LineState:
    total: int | None
    unit: str
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    done_at_start: int = 0
    printed: float = 0.0
    finished: bool = False


class ProgressDisplay:
    """Progress of labelled jobs; rich bars when ``bars`` is true, else periodic plain lines on stderr."""

    def __init__(self, bars: bool, line_interval_s: float = DEFAULT_LINE_INTERVAL_S, transient: bool = False):
        self.bars = bars
        self.line_interval_s = line_interval_s
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._lines: dict[str, _LineState] = {}
        if bars:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _Rate(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
                console=stderr_console(),
                transient=transient,
            )

    def __enter__(self) -> ProgressDisplay:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
        else:
            for label, state in self._lines.items():
                if not state.finished and state.done > state.done_at_start:
                    self._print_line(label, state)

    def update(self, label: str, done: int, total: int | None, unit: str = "items") -> None:
        """``label`` has ``done`` of ``total`` (None: not known yet) ``unit`` finished."""
        if self._progress is not None:
            if label not in self._tasks:
                self._tasks[label] = self._progress.add_task(escape(label), total=total, unit=unit)
            self._progress.update(self._tasks[label], completed=done, total=total, unit=unit)
            return
        state = self._lines.get(label)
        if state is None:
            state = self._lines[label] = _LineState(total=total, unit=unit, done=done, done_at_start=done)
            self._print_line(label, state)
            return
        state.done, state.total, state.unit = done, total, unit
        now = time.monotonic()
        complete = total is not None and done >= total
        if (complete and not state.finished) or now - state.printed >= self.line_interval_s:
            state.finished = complete
            self._print_line(label, state)

    def advance(self, label: str, amount: int, unit: str = "items") -> None:
        """``amount`` more ``unit`` of ``label`` finished."""
        done, total = self.counts(label)
        self.update(label, done + amount, total, unit)

    def set_total(self, label: str, total: int | None, unit: str = "items") -> None:
        """``label`` has ``total`` ``unit`` in all (``None``: unknown)."""
        done, _ = self.counts(label)
        self.update(label, done, total, unit)

    def counts(self, label: str) -> tuple[int, int | None]:
        """(done, total) of ``label`` so far; (0, None) before its first update."""
        if self._progress is not None:
            if label not in self._tasks:
                return 0, None
            task = self._progress.tasks[self._tasks[label]]
            return int(task.completed), None if task.total is None else int(task.total)
        state = self._lines.get(label)
        return (0, None) if state is None else (state.done, state.total)

    def _print_line(self, label: str, state: _LineState) -> None:
        state.printed = time.monotonic()
        elapsed = state.printed - state.started
        text = f"{label}: {state.done:,}" + (f"/{state.total:,}" if state.total is not None else "") + f" {state.unit}"
        if state.total:
            text += f" ({100 * state.done / state.total:.0f}%)"
        gained = state.done - state.done_at_start
        if gained > 0 and elapsed > 0:
            rate = gained / elapsed
            text += f", {rate:,.2f} {state.unit}/s"
            if state.total is not None and state.done < state.total:
                text += f", ETA {format_duration((state.total - state.done) / rate)}"
        text += f", elapsed {format_duration(elapsed)}"
        stderr_console().print(escape(text), highlight=False)


def line_interval_s() -> float:
    """Seconds between plain progress lines: ``DIVTRACE_PROGRESS_INTERVAL`` or :data:`DEFAULT_LINE_INTERVAL_S`."""
    value = os.environ.get("DIVTRACE_PROGRESS_INTERVAL")
    try:
        return float(value) if value else DEFAULT_LINE_INTERVAL_S
    except ValueError:
        return DEFAULT_LINE_INTERVAL_S


@contextlib.contextmanager
def progress_display(transient: bool = False) -> Iterator[ProgressDisplay]:
    """A :class:`ProgressDisplay` for this process: bars when stderr is a terminal, plain lines otherwise.

    The libraries' own bars (transformers' "Loading weights", tqdm in the GGUF conversion) would tear rich's
    display or flood a log, so they are turned off while it is shown.
    """
    os.environ.setdefault("TQDM_DISABLE", "1")  # read by tqdm when a bar is created
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read by huggingface_hub (and transformers) on import
    if "transformers" in sys.modules:  # already imported: its flag was read
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    with ProgressDisplay(stderr_console().is_terminal, line_interval_s(), transient) as display:
        yield display
