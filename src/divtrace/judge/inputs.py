"""What ``divtrace judge`` judges: sample records grouped by (checkpoint, task), from sample files or a run
directory (read by :func:`divtrace.api.judge_samples`, above ``study``), with the name of where each cell came from (for
errors) and, for a run directory, each checkpoint's lineage base (the default baseline)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from divtrace.judge.pipeline import Cell
from divtrace.runs.layout import RunLayout
from divtrace.samples.schema import DEFAULT_TASK, SampleRecord


@dataclass
class JudgeInputs:
    """Records by cell, where each cell came from, and each checkpoint's lineage base (run directories only)."""

    cells: dict[Cell, list[SampleRecord]] = field(default_factory=dict)
    where: dict[Cell, str] = field(default_factory=dict)
    bases: dict[str, str] = field(default_factory=dict)

    def add(self, records: Sequence[SampleRecord], where: str) -> None:
        """Add ``records`` (labelled with checkpoint and task) read from ``where``."""
        grouped: dict[Cell, list[SampleRecord]] = defaultdict(list)
        for record in records:
            grouped[(record.checkpoint or "default", record.task or DEFAULT_TASK)].append(record)
        for cell, cell_records in grouped.items():
            self.cells.setdefault(cell, []).extend(cell_records)
            self.where[cell] = f"{self.where[cell]}, {where}" if cell in self.where else where


def is_run_directory(path: Path) -> bool:
    """True for a divtrace run directory (it holds ``study.yaml``)."""
    return path.is_dir() and RunLayout(path).study_file.is_file()
