"""The metric registry: metrics register themselves by decorator, and are created by name."""

from __future__ import annotations

from typing import Any, TypeVar

from divtrace.errors import DivtraceError
from divtrace.score.metrics._base import Metric

M = TypeVar("M", bound=type[Metric])

_METRICS: dict[str, type[Metric]] = {}


def register_metric(cls: M) -> M:
    """Class decorator: make ``cls`` available under ``cls.name``. Adding a metric = one small module."""
    if cls.name in _METRICS and _METRICS[cls.name] is not cls:
        raise ValueError(f"metric name {cls.name!r} is already registered by {_METRICS[cls.name].__name__}")
    _METRICS[cls.name] = cls
    return cls


def metric_class(name: str) -> type[Metric]:
    """The registered class called ``name``; a clear error listing the known names otherwise."""
    try:
        return _METRICS[name]
    except KeyError:
        known = ", ".join(sorted(_METRICS))
        raise DivtraceError(f"unknown metric {name!r}; known metrics: {known}") from None


def create_metric(name: str, **options: Any) -> Metric:
    """Instantiate the metric registered as ``name`` with its ``options``."""
    return metric_class(name)(**options)


def metric_names() -> list[str]:
    """Names of every registered metric, sorted."""
    return sorted(_METRICS)
