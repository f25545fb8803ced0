"""Diversity metrics: the registry, the built-in metrics and the shared embedding store.

Importing this package registers the built-in metrics. A new metric is one module with a ``@register_metric``
class (see ``lexical.py``); import it here to make it built in.
"""

from divtrace.score.metrics import (  # noqa: F401  (registers the metrics)
    answers,
    code_ast,
    code_semantic,
    lexical,
    nli,
    semantic,
)
from divtrace.score.metrics._base import Metric, ScoringContext
from divtrace.score.metrics._registry import create_metric, metric_class, metric_names, register_metric

__all__ = ["Metric", "ScoringContext", "create_metric", "metric_class", "metric_names", "register_metric"]
