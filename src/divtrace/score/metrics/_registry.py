"""Metrics in the plug-in registry (:mod:`divtrace.plugins`): registered by decorator or by the built-in table, and
created by name."""

from __future__ import annotations

from typing import Any, TypeVar

from divtrace import plugins
from divtrace.score.metrics._base import Metric

M = TypeVar("M", bound=type[Metric])


def register_metric(cls: M) -> M:
    """Class decorator: make ``cls`` available under ``cls.name``. Adding a metric = one small module (and, for a
    built-in one, a line in :data:`divtrace.plugins.BUILTIN_PLUGINS`)."""
    plugins.register("metric", cls.name, cls)
    return cls


def metric_class(name: str) -> type[Metric]:
    """The registered class called ``name``; a DivtraceError listing the known names otherwise."""
    return plugins.load_class("metric", name, Metric)


def create_metric(name: str, **options: Any) -> Metric:
    """Instantiate the metric registered as ``name`` with its ``options``."""
    return metric_class(name)(**options)


def metric_names() -> list[str]:
    """Names of every registered metric, sorted (imports no metric module)."""
    return sorted(plugins.names("metric"))
