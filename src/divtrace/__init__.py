"""divtrace: find where output diversity collapses along a post-training lineage.

The entry points: :func:`divtrace.run` (a study end to end, on this machine or a Ray cluster), :func:`divtrace.analyze`
(samples generated elsewhere, along a lineage), :func:`divtrace.score` (diversity of sample files) and
:func:`divtrace.judge_samples` (their quality by an LLM judge; the package :mod:`divtrace.judge` holds the
judges). Metrics live in a registry (:func:`metric_names`, :func:`create_metric`, :func:`register_metric`).
"""

from divtrace.api import JudgeOutcome, RunOutcome, analyze, judge_samples, run, score
from divtrace.errors import DivtraceError, ModelLoadError, SampleFormatError
from divtrace.samples import SampleRecord, read_samples, write_samples
from divtrace.score.metrics import Metric, ScoringContext, create_metric, metric_names, register_metric
from divtrace.score.metrics.embeddings import EmbeddingStore
from divtrace.score.scorer import ScoreResult
from divtrace.score.settings import EmbedderSettings, NLISettings

__version__ = "0.1.0"

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
