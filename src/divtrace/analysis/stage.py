"""The analyze stage: every analysis table of a run from its stored scores and verdicts, as one unit.

Its key hashes the score and verdict files (and the judgments and homogenisation files when the study asks for
them), the checkpoint graph (as ``study.yaml`` holds it), the decomposition's
pairing, the study's name (Table 1 shows the paper's row for the study it reproduces), the cells of imported samples
cut to a common K (only when there are some, so other runs keep their keys) and :data:`ANALYSIS_VERSION`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from divtrace.analysis.pipeline import AnalysisResult, analysis_files, analyze, write_analysis
from divtrace.analysis.sweep import SweepInputs
from divtrace.fingerprint import files_fingerprint
from divtrace.progress import ProgressSink
from divtrace.runs.layout import RunLayout, read_tables
from divtrace.runs.markers import marker_for
from divtrace.runs.stage import Stage, Unit, WorkItem
from divtrace.samples.common_k import MixedK
from divtrace.study import RecordedSampling, SamplingSpec, Study
from divtrace.study.sweep import study_value

#: Bumped when the analysis tables change for the same inputs (2: the paper's unpaired decomposition, Table 1, the
#: study's pass@k levels).
ANALYSIS_VERSION = 8  # 3: collapse_sites.status (a site is a significant loss), headline.change_pct_base, table1
# significant/is_collapse_site, qfd.delta_all_ci_includes_zero. 4: one bootstrap engine (divtrace.stats.bootstrap):
# every CI skips the resamples whose statistic is NaN (retained, edge and headline CIs were NaN then), and Table 1's
# and the decomposition's CIs take scipy's percentile interpolation (the last bit of some ends moves). 5: the
# diversity_quality and quality_edges tables (diversity against quality: pass@1 on verifiable tasks, a judge's
# win rate or WB-Score where a quality table is given) and settings["quality"]. 6: the homogenization table (every
# pair of checkpoints' output similarity per task) when the study asks for it. 7: the sweep and recovery tables
# (the recovery frontier) for a study with a sweep. 8: no recovery row for a checkpoint the sweep leaves out


@dataclass(frozen=True)
class AnalysisWork:
    """The stored scores, verdicts, judgments and per-prompt homogenisation similarities of a run, and the scores,
    verdicts and judgments of its sweep's conditions (empty frames where there are none)."""

    scores: pd.DataFrame
    verdicts: pd.DataFrame
    judgments: pd.DataFrame = field(default_factory=pd.DataFrame)
    homogenization: pd.DataFrame = field(default_factory=pd.DataFrame)
    sweep_scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    sweep_verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    sweep_judgments: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class AnalyzeStage(Stage[AnalysisWork, AnalysisResult]):
    """The analysis of ``study``'s checkpoints x ``tasks`` (the task names of the run)."""

    name: ClassVar[str] = "analyze"
    version: ClassVar[int] = ANALYSIS_VERSION
    distributed: ClassVar[bool] = False

    study: Study
    tasks: tuple[str, ...]

    def units(self, layout: RunLayout) -> list[Unit]:
        """One unit, ``analysis``."""
        mixed = mixed_k(self.study)
        key = self.key(
            {
                "inputs": files_fingerprint(input_files(layout, self.study, self.tasks)),
                "graph": [checkpoint.model_dump(mode="json") for checkpoint in self.study.checkpoints],
                "decomposition": self.study.decomposition,
                "study": self.study.name,
                **({"mixed_k": [cell.model_dump(mode="json") for cell in mixed]} if mixed else {}),
            }
        )
        outputs = analysis_files(
            layout.analysis_dir, homogenization=self.study.homogenization, sweep=self.study.sweep is not None
        )
        return [Unit("analysis", key, marker_for(layout.analysis_dir), tuple(outputs))]

    def items(self, layout: RunLayout, unit: Unit) -> list[WorkItem[AnalysisWork]]:
        """Every stored score, verdict, judgment (when the study has a judge) and homogenisation (when it asks for
        it), in study order, and the sweep conditions' (when the study has a sweep), as one item; refused when a
        unit's scores or homogenisation are missing or a unit's scores, verdicts, judgments or homogenisation are not
        complete."""
        for cell in cells(self.study, self.tasks) + sweep_cells(self.study, self.tasks):
            layout.check_scores(*cell, self.name)
            layout.check_verdicts(*cell, self.name)
            if self.study.judge is not None:
                layout.check_judgments(*cell, self.name)
        for task in self.tasks if self.study.homogenization else ():
            layout.check_homogenization(task, self.name)
        scores = read_tables(layout.scores_file(*cell) for cell in cells(self.study, self.tasks))
        verdicts = read_tables(layout.verdicts_file(*cell) for cell in cells(self.study, self.tasks))
        judgments = read_tables(judgment_files(layout, self.study, self.tasks))
        similarities = read_tables(homogenization_files(layout, self.study, self.tasks))
        swept = sweep_cells(self.study, self.tasks)
        work = AnalysisWork(
            scores,
            verdicts,
            judgments,
            similarities,
            read_tables(layout.scores_file(*cell) for cell in swept),
            read_tables(layout.verdicts_file(*cell) for cell in swept),
            read_tables(judgment_files(layout, self.study, self.tasks, swept)),
        )
        return [WorkItem(unit, work)]

    def open_worker(self, group: str, threads: int | None, progress: ProgressSink | None) -> Analysing:
        """A worker (it loads nothing)."""
        return Analysing(self.study)

    def save(self, layout: RunLayout, item: WorkItem[AnalysisWork], result: AnalysisResult) -> Mapping[str, Any]:
        """Write every table atomically."""
        write_analysis(result, layout.analysis_dir)
        return {}


class Analysing:
    """The analyze stage's worker."""

    def __init__(self, study: Study) -> None:
        self.study = study

    def compute(self, payload: AnalysisWork, progress: ProgressSink | None) -> AnalysisResult:
        """Every analysis table along the study's lineage graph (with the judge's quality table when there are
        judgments)."""
        from divtrace.judge.aggregate import quality_table

        quality = quality_table(payload.judgments) if not payload.judgments.empty else None
        sweep = None
        if self.study.sweep is not None and isinstance(self.study.sampling, SamplingSpec):
            sweep = SweepInputs(
                tuple(self.study.sweep_conditions()),
                {name: study_value(self.study.sampling, name) for name in self.study.sweep.swept()},
                payload.sweep_scores,
                payload.sweep_verdicts,
                quality_table(payload.sweep_judgments) if not payload.sweep_judgments.empty else None,
            )
        return analyze(
            payload.scores,
            payload.verdicts,
            self.study.graph(),
            qfd_pairing=self.study.decomposition,
            study_name=self.study.name,
            mixed_k=mixed_k(self.study),
            quality=quality,
            homogenization=payload.homogenization if self.study.homogenization else None,
            sweep=sweep,
        )

    def close(self) -> None:
        """Nothing to release."""


def mixed_k(study: Study) -> tuple[MixedK, ...]:
    """The (checkpoint, task) of ``study``'s imported samples that were cut to their smallest K (none for a study
    that generates its samples: divtrace's own generation gives one K)."""
    return study.sampling.mixed_k if isinstance(study.sampling, RecordedSampling) else ()


def cells(study: Study, tasks: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every (checkpoint, task) of ``study`` over ``tasks``, in study order (checkpoint, then task)."""
    return [(checkpoint.name, task) for checkpoint in study.checkpoints for task in tasks]


def sweep_cells(study: Study, tasks: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every (sweep condition, task) of ``study`` whose samples are the condition's own (a condition at the study's
    setting is its checkpoint's cell), in sweep order; none without a sweep."""
    conditions = [c.name for c in study.sweep_conditions() if not c.is_study_setting]
    return [(condition, task) for condition in conditions for task in tasks]


def input_files(layout: RunLayout, study: Study, tasks: tuple[str, ...]) -> list[Path]:
    """The stored score, verdict, (with a judge) judgment files of every (checkpoint, task), in study order, then
    of every (sweep condition, task), and (when the study asks for it) the homogenisation files of every task: what
    the analysis and the report are computed from."""
    every = cells(study, tasks) + sweep_cells(study, tasks)
    places = [place(*cell) for cell in every for place in (layout.scores_file, layout.verdicts_file)]
    return (
        [path for path in places if path.exists()]
        + judgment_files(layout, study, tasks)
        + judgment_files(layout, study, tasks, sweep_cells(study, tasks))
        + homogenization_files(layout, study, tasks)
    )


def judgment_files(
    layout: RunLayout, study: Study, tasks: tuple[str, ...], which: list[tuple[str, str]] | None = None
) -> list[Path]:
    """The stored judgment files of ``which`` (None: every (checkpoint, task) of the study, in study order); none
    when the study has no judge (judgments left by an earlier judge section are not read)."""
    if study.judge is None:
        return []
    places = [layout.judgments_file(*cell) for cell in (cells(study, tasks) if which is None else which)]
    return [path for path in places if path.exists()]


def homogenization_files(layout: RunLayout, study: Study, tasks: tuple[str, ...]) -> list[Path]:
    """The stored homogenisation files of every task, in task order; none unless the study asks for them."""
    if not study.homogenization:
        return []
    return [path for path in (layout.homogenization_file(task) for task in tasks) if path.exists()]
