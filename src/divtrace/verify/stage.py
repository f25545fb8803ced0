"""The verify stage: a verdict per stored sample of every verifiable (checkpoint, task).

A unit is one (checkpoint, task) of a verifiable task; its key hashes its sample files and its verifier's name and
:attr:`~divtrace.verify.Verifier.version`, so new samples or a verifier whose rules change redo its verdicts. Its
one work item carries the stored samples; the worker loads nothing (verifiers are built per task as the records
are verified), so on Ray each unit may run as its own task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from divtrace.fingerprint import files_fingerprint
from divtrace.io_atomic import write_table_atomic
from divtrace.progress import SAMPLES, ProgressSink
from divtrace.runs.layout import RunLayout
from divtrace.runs.markers import marker_for
from divtrace.runs.stage import Stage, Unit, WorkItem
from divtrace.samples import SampleRecord
from divtrace.tasks.base import Task
from divtrace.verify.base import verifier_class

#: Bumped when the same samples and verifiers give other verdict tables.
VERIFY_VERSION = 1


@dataclass(frozen=True)
class VerifyWork:
    """The stored samples of one (checkpoint, task)."""

    checkpoint: str
    task: str
    records: list[SampleRecord]


@dataclass(frozen=True)
class VerifyStage(Stage[VerifyWork, pd.DataFrame]):
    """Verdicts of every (checkpoint, task) of ``checkpoints`` x ``tasks`` (the verifiable tasks of a run, named as
    in its tables); ``data_dir`` holds task data for samples without references; ``unverified`` says, one line
    each, which tasks are not verified and why."""

    name: ClassVar[str] = "verify"
    version: ClassVar[int] = VERIFY_VERSION
    count: ClassVar[str] = SAMPLES

    checkpoints: tuple[str, ...]
    tasks: tuple[Task, ...]
    data_dir: str | None = None
    unverified: tuple[str, ...] = ()

    def notes(self) -> list[str]:
        """The tasks that are not verified, and why."""
        return list(self.unverified)

    def units(self, layout: RunLayout) -> list[Unit]:
        """Every (checkpoint, task), keyed on its sample files and its verifier's name and version."""
        units = []
        for checkpoint in self.checkpoints:
            for task in self.tasks:
                output = layout.verdicts_file(checkpoint, task.name)
                key = self.key(
                    {
                        "inputs": files_fingerprint(layout.sample_files(checkpoint, task.name)),
                        "verifier": task.verifier,
                        "verifier_version": verifier_class(task.verifier or "").version,
                    }
                )
                units.append(
                    Unit(f"{checkpoint}/{task.name}", key, marker_for(output), (output,), checkpoint, task.name)
                )
        return units

    def items(self, layout: RunLayout, unit: Unit) -> list[WorkItem[VerifyWork]]:
        """The unit's stored samples, as one item (refused when they are not complete: see
        :meth:`RunLayout.check_samples`)."""
        layout.check_samples(unit.checkpoint, unit.task, f"{self.name} of {unit.name}")
        records = layout.read_samples(unit.checkpoint, unit.task)
        samples = sum(len(record.outputs) for record in records)
        return [WorkItem(unit, VerifyWork(unit.checkpoint, unit.task, records), size=samples)]

    def open_worker(self, group: str, threads: int | None, progress: ProgressSink | None) -> Verifying:
        """A worker (it loads nothing)."""
        return Verifying(self)

    def save(self, layout: RunLayout, item: WorkItem[VerifyWork], result: pd.DataFrame) -> Mapping[str, Any]:
        """Write the verdict table atomically; its marker records the samples verified."""
        write_table_atomic(result, layout.verdicts_file(item.unit.checkpoint, item.unit.task))
        return {"samples": len(result)}

    def task(self, name: str) -> Task:
        """The task called ``name``."""
        return next(task for task in self.tasks if task.name == name)


class Verifying:
    """The verify stage's worker: verdicts of one (checkpoint, task) at a time."""

    def __init__(self, stage: VerifyStage) -> None:
        self.stage = stage

    def compute(self, payload: VerifyWork, progress: ProgressSink | None) -> pd.DataFrame:
        """One verdict per sample, labelled with the checkpoint and task."""
        from divtrace.verify.pipeline import verify_records

        # The records come from RunLayout.read_samples, which already applied the run's chain-of-thought setting.
        result = verify_records(
            payload.records,
            task=self.stage.task(payload.task),
            data_dir=self.stage.data_dir,
            progress=progress,
            strip_thinking=False,
        )
        return result.verdicts.assign(checkpoint=payload.checkpoint, task=payload.task)

    def close(self) -> None:
        """Nothing to release."""


def not_verified_note(task: str, reason: str | None = None) -> str:
    """Why the samples of ``task`` are not verified, in one line: ``reason``, else: the task has no verifier."""
    if reason:
        return f"task {task}: not verified: {reason}"
    from divtrace.tasks.names import verifiable_task_names

    return (
        f"task {task}: not verified: it has no verifier (its outputs are scored for diversity, not checked "
        f"for correctness); verifiable tasks: {', '.join(verifiable_task_names())}"
    )
