"""The one progress protocol of divtrace's library code: ``progress(label, done, total, unit)``.

A long job reports as it goes by calling a :data:`Progress` callback with

- ``label``: what is being done (``"embedding"``, ``"scoring sbert"``, ``"nli across-input"``); one label is one
  bar or one periodic line;
- ``done``: how many ``unit`` are finished so far; never decreases for a label;
- ``total``: how many ``unit`` the job has, or None while unknown; announced with the first event (``done`` 0)
  whenever it is known before any work;
- ``unit``: what ``done`` counts, one of :data:`UNITS`, so a display can show "N texts/s".

Components that do one kind of work take the smaller :data:`Counter` ``(done, total)`` and let their caller (the
scorer) give it a label and a unit with :func:`counter`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

#: Texts embedded (the sentence or code encoder).
TEXTS = "texts"
#: Premise/hypothesis pairs classified (NLI).
PAIRS = "pairs"
#: Prompts (a prompt's group of K outputs, with its curve and correct subsets) scored by a metric.
PROMPTS = "prompts"
#: Samples drawn (generation) or verified.
SAMPLES = "samples"
#: Tokens generated.
TOKENS = "tokens"
#: Units of work of a stage (a (checkpoint, task), the analysis, the report).
UNITS_OF_WORK = "units"
#: Every unit a :data:`Progress` event may carry.
UNITS = (TEXTS, PAIRS, PROMPTS, SAMPLES, TOKENS, UNITS_OF_WORK)


@dataclass(frozen=True)
class ProgressEvent:
    """One report of a long job's progress: the one progress event of divtrace.

    Attributes:
        stage: the pipeline stage (``generate``, ``verify``, ``score``, ``analyze``, ``report``, ``import``); empty
            when the emitter does not know it (the caller fills it in with :func:`scoped`).
        unit: the unit of work (``checkpoint/task``, ``analysis``); empty for the stage as a whole.
        done: how many ``count`` are finished; never decreases for one (stage, unit, step).
        total: how many ``count`` there are, or None while unknown.
        count: what ``done`` counts, one of :data:`UNITS`.
        step: what is being done inside the unit (``loading model``, ``embedding``, ``ead``); empty for the unit's
            own count.
    """

    stage: str
    unit: str
    done: int
    total: int | None
    count: str
    step: str = ""


#: Where :class:`ProgressEvent` go.
ProgressSink = Callable[[ProgressEvent], None]


def scoped(sink: ProgressSink | None, stage: str = "", unit: str = "", step: str = "") -> ProgressSink | None:
    """A sink that fills in the empty ``stage``/``unit``/``step`` of each event with the values given here before
    passing it to ``sink`` (what an emitter cannot know, its caller does); None when ``sink`` is None."""
    if sink is None:
        return None
    target = sink

    def fill(event: ProgressEvent) -> None:
        target(dataclasses.replace(event, stage=event.stage or stage, unit=event.unit or unit, step=event.step or step))

    return fill


#: ``(label, done, total, unit)``: see the module docstring.
Progress = Callable[[str, int, "int | None", str], None]
#: ``(done, total)`` of one job whose label and unit the caller knows.
Counter = Callable[[int, int], None]


def counter(progress: Progress | None, label: str, unit: str) -> Counter | None:
    """A :data:`Counter` that reports to ``progress`` under ``label`` in ``unit``; None when ``progress`` is None."""
    if progress is None:
        return None
    return lambda done, total: progress(label, done, total, unit)


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``131.1 h`` or ``12.3 days`` (from 10 days on): plan estimates, ETAs, elapsed time."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} h" if seconds < 10 * 86400 else f"{seconds / 86400:,.1f} days"
