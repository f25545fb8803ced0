"""The report stage: ``index.html`` and ``summary.md`` from the stored analysis, scores and samples, as one unit.

Its key hashes the score and verdict files, the analysis tables, the study (but its executor: where a run ran
changes no report) and :data:`REPORT_VERSION`.
:func:`~divtrace.report.write_report` renders and writes in one call, so the report is rendered when it is saved,
in the driver's process (the stage is never distributed): the worker only passes its inputs on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from divtrace.analysis.pipeline import AnalysisResult, read_analysis
from divtrace.analysis.stage import cells, input_files
from divtrace.fingerprint import files_fingerprint
from divtrace.progress import ProgressSink
from divtrace.report.html import write_report
from divtrace.report.stored_samples import StoredSamples
from divtrace.report.study_info import StudyInfo
from divtrace.runs.layout import RunLayout, read_tables
from divtrace.runs.markers import marker_for
from divtrace.runs.stage import Stage, Unit, WorkItem
from divtrace.study import Study

#: Bumped when the report changes for the same inputs.
REPORT_VERSION = 4  # 2: the "Diversity against quality" section (HTML and summary.md), from the analysis'
# diversity_quality and quality_edges tables. 3: the "Homogenisation" section (a checkpoint x checkpoint heatmap per
# task in HTML, tables in summary.md), from the analysis' homogenization table when there is one. 4: the "Recovery
# frontier" section (a plot per task and the recovery table in HTML, a line per recovery row in summary.md), from
# the analysis' sweep and recovery tables when the study has a sweep


@dataclass(frozen=True)
class ReportWork:
    """What the report is made of: the analysis, the samples (for the drill-down and the unclosed-thinking counts;
    read from the run directory cell by cell when the report is written, never all held at once) and the
    per-prompt scores."""

    analysis: AnalysisResult
    samples: StoredSamples
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
                "study": self.study.model_dump(mode="json", exclude={"executor"}),  # where it ran shows nowhere
            }
        )
        return [Unit("report", key, marker_for(layout.report_dir), (layout.report_html, layout.report_summary))]

    def items(self, layout: RunLayout, unit: Unit) -> list[WorkItem[ReportWork]]:
        """The stored analysis, every sample (as :class:`StoredSamples`: read when the report is written) and every
        per-prompt score, as one item; refused when one of them is not complete."""
        every = cells(self.study, self.task_names)
        layout.check_analysis(self.name)
        for cell in every:
            layout.check_scores(*cell, self.name)
            layout.check_samples(*cell, self.name)
        scores = read_tables(layout.scores_file(*cell) for cell in every)
        return [WorkItem(unit, ReportWork(read_analysis(layout.analysis_dir), StoredSamples(layout, every), scores))]

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
