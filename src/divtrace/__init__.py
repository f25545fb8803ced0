"""divtrace: find where output diversity collapses along a post-training lineage.

The entry points: :func:`divtrace.run` (a study end to end, on this machine or a Ray cluster), :func:`divtrace.analyze`
(samples generated elsewhere, along a lineage), :func:`divtrace.score` (diversity of sample files) and
:func:`divtrace.judge_samples` (their quality by an LLM judge; the package :mod:`divtrace.judge` holds the
judges). Metrics live in a registry (:func:`metric_names`, :func:`create_metric`, :func:`register_metric`).

The names below are imported on first use (PEP 562), so that importing a light part of divtrace (the command line,
the sandbox) does not import the scientific stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The subpackage divtrace.score (a docstring only: light) is imported first, so that the function ``score`` below
# keeps the name: importing a subpackage binds its name on the package, and a lazy ``score`` would lose to it.
import divtrace.score as _score_package  # noqa: F401

if TYPE_CHECKING:
    from divtrace.api import JudgeOutcome, RunOutcome, analyze, judge_samples, run
    from divtrace.errors import DivtraceError, ModelLoadError, SampleFormatError
    from divtrace.samples import SampleRecord, read_samples, write_samples
    from divtrace.score.metrics import Metric, ScoringContext, create_metric, metric_names, register_metric
    from divtrace.score.metrics.embeddings import EmbeddingStore
    from divtrace.score.scorer import ScoreResult
    from divtrace.score.settings import EmbedderSettings, NLISettings

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_LAZY = {
    **dict.fromkeys(("JudgeOutcome", "RunOutcome", "analyze", "judge_samples", "run"), "divtrace.api"),
    **dict.fromkeys(("DivtraceError", "ModelLoadError", "SampleFormatError"), "divtrace.errors"),
    **dict.fromkeys(("SampleRecord", "read_samples", "write_samples"), "divtrace.samples"),
    **dict.fromkeys(
        ("Metric", "ScoringContext", "create_metric", "metric_names", "register_metric"), "divtrace.score.metrics"
    ),
    "EmbeddingStore": "divtrace.score.metrics.embeddings",
    "ScoreResult": "divtrace.score.scorer",
    **dict.fromkeys(("EmbedderSettings", "NLISettings"), "divtrace.score.settings"),
}

__all__ = [
    "DivtraceError",
    "EmbedderSettings",
    "EmbeddingStore",
    "JudgeOutcome",
    "Metric",
    "ModelLoadError",
    "NLISettings",
    "RunOutcome",
    "SampleFormatError",
    "SampleRecord",
    "ScoreResult",
    "ScoringContext",
    "analyze",
    "create_metric",
    "judge_samples",
    "metric_names",
    "read_samples",
    "register_metric",
    "run",
    "score",
    "write_samples",
]


def score(*args: Any, **kwargs: Any) -> ScoreResult:
    """Score the diversity of sampled outputs: :func:`divtrace.api.score` (its arguments and contract), imported on
    the first call."""
    from divtrace.api import score as score_samples

    return score_samples(*args, **kwargs)


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its module on first use (then cached in this module)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'divtrace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazy ones included."""
    return sorted(set(globals()) | set(_LAZY))
