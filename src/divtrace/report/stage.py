"""The report stage: ``index.html`` and ``summary.md`` from the stored analysis, scores and samples, as one unit.

Its key hashes the score and verdict files, the analysis tables, the study and :data:`REPORT_VERSION`.
:func:`~divtrace.report.write_report` renders and writes in one call, so the report is rendered when it is saved,
in the driver's process (the stage is never distributed): the worker only passes its inputs on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from divtrace.analysis.pipeline import AnalysisResult, read_analysis
from divtrace.analysis.stage import cells, input_files
from divtrace.fingerprint import files_fingerprint
from divtrace.progress import ProgressSink
from divtrace.report.html import write_report
from divtrace.runs.layout import RunLayout, read_tables
from divtrace.runs.markers import marker_for
from divtrace.runs.stage import Stage, Unit, WorkItem
from divtrace.samples import SampleRecord
from divtrace.score.settings import PACKAGED_MINILM, NLISettings
from divtrace.study import CheckpointSpec, RecordedSampling, SamplingSpec, Study

#: Bumped when the report changes for the same inputs.
REPORT_VERSION = 1


@dataclass(frozen=True)
class StudyInfo(Mapping[str, Any]):
    """What the report says about the study: its name, description and caveat, checkpoints, tasks (with where
    their samples came from), metrics, models and sampling.

    Also a read-only mapping of the same values as plain JSON (checkpoints as dicts), which is how
    :func:`~divtrace.report.write_report` reads it.
    """

    name: str
    description: str
    caveat: str | None
    checkpoints: tuple[CheckpointSpec, ...]
    #: Task name -> where its prompts (or samples) came from.
    tasks: Mapping[str, str]
    metrics: tuple[str, ...]
    #: The sentence embedder as the study names it (an id or its settings), the packaged one when it names none.
    embedder: str | Mapping[str, Any]
    nli_model: str | NLISettings | None
    sampling: SamplingSpec | RecordedSampling

    @classmethod
    def of(cls, study: Study, origins: Mapping[str, str]) -> StudyInfo:
        """The description of ``study`` whose tasks came from ``origins`` (task name -> origin)."""
        dumped = study.model_dump(mode="json")
        return cls(
            name=study.name,
            description=study.description,
            caveat=study.caveat,
            checkpoints=tuple(study.checkpoints),
            tasks=dict(origins),
            metrics=tuple(study.metric_names()),
            embedder=dumped["embedder"] or PACKAGED_MINILM,
            nli_model=study.nli_model,
            sampling=study.sampling,
        )

    def _fields(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "caveat": self.caveat,
            "checkpoints": [checkpoint.model_dump(mode="json") for checkpoint in self.checkpoints],
            "tasks": dict(self.tasks),
            "metrics": list(self.metrics),
            "embedder": self.embedder,
            "nli_model": self.nli_model,
            "sampling": self.sampling.model_dump(mode="json"),
        }

    def __getitem__(self, key: str) -> Any:
        return self._fields()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._fields())


@dataclass(frozen=True)
class ReportWork:
    """What the report is made of: the analysis, the samples (for the drill-down) and the per-prompt scores."""

    analysis: AnalysisResult
    samples: list[SampleRecord]
    scores: pd.DataFrame


@dataclass(frozen=True)
class ReportStage(Stage[ReportWork, ReportWork]):
    """The report of ``study`` over ``tasks`` (task name -> where its samples came from, in run order)."""

    name: ClassVar[str] = "report"
    version: ClassVar[int] = REPORT_VERSION
    distributed: ClassVar[bool] = False

    study: Study
    tasks: Mapping[str, str]

    @property
    def task_names(self) -> tuple[str, ...]:
        """The tasks, in run order."""
        return tuple(self.tasks)

    def units(self, layout: RunLayout) -> list[Unit]:
        """One unit, ``report``."""
        marker = marker_for(layout.analysis_dir)
        analysis = sorted(p for p in layout.analysis_dir.glob("[!.]*") if p.is_file() and p != marker)
        key = self.key(
            {
                "inputs": files_fingerprint(input_files(layout, self.study, self.task_names)),
                "analysis": files_fingerprint(analysis),
                "study": self.study.model_dump(mode="json"),
            }
        )
        return [Unit("report", key, marker_for(layout.report_dir), (layout.report_html, layout.report_summary))]

    def items(self, layout: RunLayout, unit: Unit) -> list[WorkItem[ReportWork]]:
        """The stored analysis, every sample and every per-prompt score, as one item."""
        every = cells(self.study, self.task_names)
        samples = [record for cell in every for record in layout.read_samples(*cell)]
        scores = read_tables(layout.scores_file(*cell) for cell in every)
        return [WorkItem(unit, ReportWork(read_analysis(layout.analysis_dir), samples, scores))]

    def open_worker(self, group: str, threads: int | None, progress: ProgressSink | None) -> PassOn:
        """A worker (it loads nothing)."""
        return PassOn()

    def save(self, layout: RunLayout, item: WorkItem[ReportWork], result: ReportWork) -> Mapping[str, Any]:
        """Render and write ``index.html`` and ``summary.md`` atomically."""
        write_report(
            layout.report_dir,
            analysis=result.analysis,
            samples=result.samples,
            per_prompt_scores=result.scores,
            graph=self.study.graph(),
            study_info=StudyInfo.of(self.study, self.tasks),
        )
        return {}


class PassOn:
    """The report stage's worker: the inputs are the result (the report is rendered as it is written)."""

    def compute(self, payload: ReportWork, progress: ProgressSink | None) -> ReportWork:
        """``payload`` itself."""
        return payload

    def close(self) -> None:
        """Nothing to release."""
