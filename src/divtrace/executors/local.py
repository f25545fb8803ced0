"""The local executor: a stage's work items in this process, one worker at a time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from divtrace.executors.driver import AnyStage, Results
from divtrace.runs.stage import Worker, WorkItem


class LocalExecutor:
    """Runs every item in this process, in order, opening a worker when the group changes (a checkpoint's model is
    loaded once for its items, and only when it has work) and closing it when the group is done.

    A context manager too (it holds nothing), like :class:`~divtrace.executors.ray_executor.RayExecutor`.
    """

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def run_items(self, stage: AnyStage, items: Iterable[WorkItem[Any]], results: Results) -> None:
        """Compute each item with a worker of its group and hand its result over; the worker is closed on the way
        out, Ctrl-C included."""
        worker: Worker[Any, Any] | None = None
        group: str | None = None
        try:
            for item in items:
                if worker is None or item.group != group:
                    if worker is not None:
                        worker.close()
                        worker = None
                    worker = stage.open_worker(item.group, None, results.progress)
                    group = item.group
                results.finished(item, worker.compute(item.payload, results.started(item)))
        finally:
            if worker is not None:
                worker.close()
