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

import inspect
from collections.abc import Callable
from typing import Any

#: Texts embedded (the sentence or code encoder).
TEXTS = "texts"
#: Premise/hypothesis pairs classified (NLI).
PAIRS = "pairs"
#: Prompts (a prompt's group of K outputs, with its curve and correct subsets) scored by a metric.
PROMPTS = "prompts"
#: Samples drawn (generation) or verified.
SAMPLES = "samples"
#: Every unit a :data:`Progress` event may carry.
UNITS = (TEXTS, PAIRS, PROMPTS, SAMPLES)

#: ``(label, done, total, unit)``: see the module docstring.
Progress = Callable[[str, int, "int | None", str], None]
#: ``(done, total)`` of one job whose label and unit the caller knows.
Counter = Callable[[int, int], None]


def counter(progress: Progress | None, label: str, unit: str) -> Counter | None:
    """A :data:`Counter` that reports to ``progress`` under ``label`` in ``unit``; None when ``progress`` is None."""
    if progress is None:
        return None
    return lambda done, total: progress(label, done, total, unit)


def as_progress(callback: Callable[..., Any] | None) -> Progress | None:
    """``callback`` as a :data:`Progress`.

    A callback taking four positional arguments is returned as it is. One taking three, the former scorer
    protocol ``(stage, done, total)``, is wrapped: the unit is dropped and an unknown total becomes 0. The wrapping
    is transitional, for callers written before the unit existed; new callers pass four-argument callbacks.
    """
    if callback is None or _positional_count(callback) != 3:
        return callback
    legacy = callback
    return lambda label, done, total, unit: legacy(label, done, total or 0)


def _positional_count(callback: Callable[..., Any]) -> int | None:
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume the current protocol
        return None
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in parameters if p.kind in positional)
