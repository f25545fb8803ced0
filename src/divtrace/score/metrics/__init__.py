"""Diversity metrics: the Metric interface, the registry wrappers and the built-in metrics (one module each).

A new metric is one module with a ``@register_metric`` class (see ``lexical.py``); a built-in one also gets a line
in :data:`divtrace.plugins.BUILTIN_PLUGINS`, so it is listed without importing its module.
"""

from divtrace.score.metrics._base import Metric, ScoringContext
from divtrace.score.metrics._registry import create_metric, metric_class, metric_names, register_metric

__all__ = ["Metric", "ScoringContext", "create_metric", "metric_class", "metric_names", "register_metric"]
