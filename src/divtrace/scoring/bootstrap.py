"""Kept for :func:`divtrace.score` callers: :class:`BootstrapSettings` (its ``bootstrap`` argument) now lives in
:mod:`divtrace.stats.bootstrap`, with the bootstrap itself."""

from divtrace.stats.bootstrap import BootstrapSettings

__all__ = ["BootstrapSettings"]
