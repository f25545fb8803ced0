"""The one progress protocol of divtrace: a long job reports :class:`ProgressEvent` values to a :data:`ProgressSink`.

Every component that works for long takes ``progress: ProgressSink | None`` and calls it as it goes: the embedding
store (texts), the NLI metric (premise/hypothesis pairs), the scorer (texts, then prompts per metric), verification
(samples) and generation (tokens of the budget, within a shard). An emitter fills in what it knows (``count``,
``step``, the ``unit`` when it knows it) and leaves the rest empty; its caller, who knows the stage and the unit,
fills them in with :func:`scoped`. The command line's display (:mod:`divtrace.cli.progress`) is one such sink.
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
#: Samples verified.
SAMPLES = "samples"
#: Tokens of the generation budget: ``max_new_tokens`` per sample, the token count the plan estimates from. A
#: batch counts its rows' tokens step by step as it decodes; a sample that stops early counts the rest of its
#: budget when it is drawn, so the total is known from the start.
TOKENS = "tokens"
#: Judge requests answered (by the judge server, the judgment cache or OpenAI Batch API results).
JUDGMENTS = "judgments"
#: Optimizer steps of a training run (a lineage lab stage).
STEPS = "steps"
#: Units of work of a stage (a (checkpoint, task), the analysis, the report).
UNITS_OF_WORK = "units"
#: Every count a :class:`ProgressEvent` may carry (besides ``""``: a step that counts nothing, such as loading a
#: model).
UNITS = (TEXTS, PAIRS, PROMPTS, SAMPLES, TOKENS, JUDGMENTS, STEPS, UNITS_OF_WORK)


@dataclass(frozen=True)
class ProgressEvent:
    """One report of a long job's progress: the one progress event of divtrace.

    Attributes:
        stage: the pipeline stage (``generate``, ``verify``, ``score``, ``analyze``, ``report``); empty when the
            emitter does not know it (the caller fills it in with :func:`scoped`).
        unit: the unit of work (``checkpoint/task``); empty for the stage as a whole, or when the emitter does not
            know it.
        done: how many ``count`` are finished; never decreases for one (stage, unit, step).
        total: how many ``count`` there are, or None while unknown (or when nothing is counted).
        count: what ``done`` counts, one of :data:`UNITS`; empty for a step that counts nothing (``loading model``).
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


def scoped(sink: ProgressSink | None, *, stage: str = "", unit: str = "", step: str = "") -> ProgressSink | None:
    """A sink that fills in the empty ``stage``/``unit``/``step`` fields of each event with the ones given before
    passing it to ``sink`` (what an emitter cannot know, its caller does); None when ``sink`` is None."""
    if sink is None:
        return None
    target = sink

    def fill(event: ProgressEvent) -> None:
        if (event.stage or not stage) and (event.unit or not unit) and (event.step or not step):
            target(event)
            return
        target(dataclasses.replace(event, stage=event.stage or stage, unit=event.unit or unit, step=event.step or step))

    return fill


def emit(sink: ProgressSink | None, done: int, total: int | None, count: str, step: str = "", unit: str = "") -> None:
    """Send ``ProgressEvent(stage="", unit, done, total, count, step)`` to ``sink``, if there is one (what an
    emitter calls; its caller's :func:`scoped` fills in the stage)."""
    if sink is not None:
        sink(ProgressEvent("", unit, done, total, count, step))


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``131.1 h`` or ``12.3 days`` (from 10 days on): plan estimates, ETAs, elapsed time."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} h" if seconds < 10 * 86400 else f"{seconds / 86400:,.1f} days"
