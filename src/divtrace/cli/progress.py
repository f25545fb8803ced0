"""The command line's progress display: the one terminal adapter and the one log adapter of
:class:`~divtrace.progress.ProgressEvent`.

:class:`ProgressDisplay` is a :data:`~divtrace.progress.ProgressSink`: the library's components report to it
directly (the caller fills in the stage with :func:`~divtrace.progress.scoped`). It keeps one line of progress per
stage, whatever the number of units, metrics and steps inside it: that line shows the stage's current unit and step
as text, with the count, rate and ETA of that step in its own count (tokens, samples, texts, prompts, pairs).

- On a terminal: one rich bar per stage. A stage's bar closes (full, its clock stopped) when the stage ends, that
  is when the next stage begins (:meth:`ProgressDisplay.begin`), when :meth:`ProgressDisplay.end` is called, or
  when the display closes.
- Piped or logged: plain lines, never padded, without logging locations: a stage prints at most one line per
  interval (``DIVTRACE_PROGRESS_INTERVAL`` seconds, default :data:`DEFAULT_LINE_INTERVAL_S`; the first event of a
  stage prints at once), plus one final line when it ends.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

from divtrace.cli.console import stderr_console
from divtrace.progress import ProgressEvent, format_duration

#: Seconds between two plain progress lines of the same stage (``DIVTRACE_PROGRESS_INTERVAL`` overrides it).
DEFAULT_LINE_INTERVAL_S = 30.0
#: The unit and step shown on a stage's line are cut to this many characters (unit names can be long).
WHAT_WIDTH = 72


@dataclass
class _Step:
    """What a stage's line shows now: one (unit, step, count) and its counts since it began."""

    unit: str
    step: str
    count: str
    done: int = 0
    total: int | None = None
    started: float = field(default_factory=time.monotonic)
    done_at_start: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return self.unit, self.step, self.count

    @property
    def what(self) -> str:
        """``unit step`` (either may be empty), cut to :data:`WHAT_WIDTH` characters."""
        return _cut(" ".join(part for part in (self.unit, self.step) if part))

    def rate(self, now: float) -> float | None:
        """``count`` per second since this step began; None before any progress."""
        gained, elapsed = self.done - self.done_at_start, now - self.started
        return gained / elapsed if gained > 0 and elapsed > 0 else None

    def counts(self) -> str:
        """``1,536/6,144 tokens (25%)``, ``12 texts``, or empty when nothing is counted."""
        if not self.count and self.total is None:
            return ""
        text = f"{self.done:,}" + (f"/{self.total:,}" if self.total is not None else "")
        text += f" {self.count}" if self.count else ""
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        return text


@dataclass
class _Stage:
    """One stage on the display: when it began, what it is doing now, the units it reported, its bar."""

    name: str
    started: float = field(default_factory=time.monotonic)
    step: _Step | None = None
    units: dict[str, None] = field(default_factory=dict)
    task: TaskID | None = None
    printed: float | None = None
    ended: float | None = None


class _Count(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get("counts", "")), style="progress.download")


class _Rate(ProgressColumn):
    """``48.20 tokens/s`` in the step's count: the step's own rate since it began (:meth:`_Step.rate`, the same
    figure the plain lines print), set with every update; blank before any progress, and once closed."""

    def render(self, task: Task) -> Text:
        count = task.fields.get("count") or "items"
        rate = task.fields.get("rate")
        if rate is None or task.fields.get("closed"):
            return Text("")
        return Text(f"{rate:,.2f} {count}/s", style="progress.data.speed")


class _Eta(ProgressColumn):
    def render(self, task: Task) -> Text:
        rate = task.fields.get("rate")
        if task.fields.get("closed") or task.total is None or not rate:
            return Text("")
        return Text(f"ETA {format_duration(max(0.0, task.total - task.completed) / rate)}", style="cyan")


class _Elapsed(ProgressColumn):
    """The stage's elapsed time (not the step's), stopped when the stage ends."""

    def render(self, task: Task) -> Text:
        started = float(task.fields.get("started", time.monotonic()))
        ended = task.fields.get("ended")
        seconds = (float(ended) if ended is not None else time.monotonic()) - started
        return Text(format_duration(seconds), style="progress.elapsed")


class ProgressDisplay:
    """A :data:`~divtrace.progress.ProgressSink` that shows one line of progress per stage: a rich bar when
    ``bars`` is true, else periodic plain lines (at most one per ``line_interval_s`` per stage, plus a final one).

    Use it as a context manager; events whose stage is empty count under the stage ``work``. ``console`` is where
    it writes (default: stderr).
    """

    def __init__(
        self,
        bars: bool,
        line_interval_s: float = DEFAULT_LINE_INTERVAL_S,
        transient: bool = False,
        console: Console | None = None,
    ) -> None:
        self.bars = bars
        self.line_interval_s = line_interval_s
        self.console = console or stderr_console()
        self._stages: dict[str, _Stage] = {}
        self._open: list[str] = []
        self._lock = threading.RLock()  # the openai backend reports from its event-loop thread
        self._progress: Progress | None = None
        if bars:
            self._progress = Progress(
                TextColumn("[bold]{task.fields[stage]}"),
                TextColumn("{task.fields[what]}", markup=False),
                BarColumn(),
                _Count(),
                _Rate(),
                _Eta(),
                _Elapsed(),
                console=self.console,
                transient=transient,
            )

    def __enter__(self) -> ProgressDisplay:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.close(failed=kind is not None)

    def close(self, failed: bool = False) -> None:
        """End every open stage (``failed``: it stopped on an error or Ctrl-C) and stop drawing."""
        with self._lock:
            for name in list(self._open):
                self.end(name, failed)
            if self._progress is not None:
                self._progress.stop()

    def begin(self, stage: str) -> None:
        """``stage`` starts: the stages still open end (stages run one after the other) and ``stage`` opens."""
        with self._lock:
            for name in list(self._open):
                if name != stage:
                    self.end(name)
            if stage not in self._open:
                self._stage(stage)

    def end(self, stage: str, failed: bool = False) -> None:
        """``stage`` is over: its bar closes full with its clock stopped, or its final line is printed."""
        with self._lock:
            state = self._stages.get(stage)
            if state is None or state.ended is not None:
                return
            state.ended = time.monotonic()
            self._open.remove(stage)
            elapsed = format_duration(state.ended - state.started)
            units = f", {len(state.units)} unit(s)" if state.units else ""
            summary = f"{'stopped' if failed else 'done'}{units} in {elapsed}"
            if self._progress is not None:
                assert state.task is not None
                task = self._progress.tasks[self._progress.task_ids.index(state.task)]
                total = task.total if task.total is not None and not failed else max(task.completed, 1)
                self._progress.update(
                    state.task, what=summary, counts="", closed=True, ended=state.ended, total=total,
                    completed=total if not failed else task.completed,
                )  # fmt: skip
            else:
                self._print(f"{stage}: {summary}")

    def __call__(self, event: ProgressEvent) -> None:
        """Show ``event`` on its stage's line (the stage opens if it was not)."""
        with self._lock:
            name = event.stage or "work"
            state = self._stages.get(name)
            if state is None or state.ended is not None:
                self.begin(name)
                state = self._stages[name]
            if event.unit and event.count:  # a unit counted (not only named while its model loads)
                state.units[event.unit] = None
            step = state.step
            if step is None or step.key != (event.unit, event.step, event.count) or event.done < step.done:
                step = state.step = _Step(event.unit, event.step, event.count, event.done, event.total)
                step.done_at_start = event.done
                if self._progress is not None:
                    assert state.task is not None
                    # a new step: its rate and ETA start afresh (reset keeps the fields, update sets them)
                    self._progress.reset(state.task, total=event.total, completed=event.done)
                    self._progress.update(
                        state.task, what=step.what, count=event.count, counts=step.counts(), rate=None
                    )
                    return
            step.done, step.total = event.done, event.total
            if self._progress is not None:
                assert state.task is not None
                self._progress.update(
                    state.task, total=event.total, completed=event.done, counts=step.counts(),
                    rate=step.rate(time.monotonic()),
                )  # fmt: skip
                return
            now = time.monotonic()
            if state.printed is None or now - state.printed >= self.line_interval_s:
                self._print_line(state, now)

    def _stage(self, name: str) -> _Stage:
        state = self._stages[name] = _Stage(name)
        self._open.append(name)
        if self._progress is not None:
            state.task = self._progress.add_task(
                "", total=None, stage=name, what="", count="", counts="", started=state.started, ended=None,
                closed=False, rate=None,
            )  # fmt: skip
        return state

    def _print_line(self, state: _Stage, now: float) -> None:
        state.printed = now
        step = state.step
        assert step is not None
        head = " ".join(part for part in (state.name, _cut(step.unit)) if part)
        doing = " ".join(part for part in (_cut(step.step), step.counts()) if part)
        parts = [f"{head}: {doing}" if doing else head]
        rate = step.rate(now)
        if rate is not None:
            parts.append(f"{rate:,.2f} {step.count or 'items'}/s")
            if step.total is not None and step.done < step.total:
                parts.append(f"ETA {format_duration((step.total - step.done) / rate)}")
        parts.append(f"elapsed {format_duration(now - state.started)}")
        self._print(", ".join(parts))

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def _cut(text: str) -> str:
    """``text``, cut to :data:`WHAT_WIDTH` characters (an ellipsis at the end when it was longer)."""
    return text if len(text) <= WHAT_WIDTH else text[: WHAT_WIDTH - 1] + "…"


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
    quiet_library_bars()
    console = stderr_console()
    with ProgressDisplay(console.is_terminal, line_interval_s(), transient, console) as display:
        yield display


def quiet_library_bars() -> None:
    """Turn off the progress bars of tqdm, huggingface_hub and transformers for this process."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # read by tqdm when a bar is created
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read by huggingface_hub (and transformers) on import
    if "transformers" in sys.modules:  # already imported: its flag was read
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
