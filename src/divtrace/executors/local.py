"""The local executor: every stage in this process, in order, skipping work that is already done."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from divtrace.errors import RunInterrupted
from divtrace.runs.layout import RunLayout
from divtrace.runs.stages import (
    PlannedTask,
    RunProgress,
    StageReport,
    plan_tasks,
    stage_analyze,
    stage_generate,
    stage_report,
    stage_score,
    stage_verify,
)
from divtrace.study import Study

#: Called when a stage starts, with its name.
StageStart = Callable[[str], None]
#: A stage that works on units: (study, layout, tasks, progress) -> what it ran and skipped.
UnitStage = Callable[[Study, RunLayout, list[PlannedTask], RunProgress | None], StageReport]


def run_study(
    study: Study,
    out: str | Path,
    *,
    tasks: list[PlannedTask] | None = None,
    progress: RunProgress | None = None,
    on_stage: StageStart | None = None,
    generate: UnitStage = stage_generate,
    verify: UnitStage = stage_verify,
    score: UnitStage = stage_score,
) -> list[StageReport]:
    """Run plan -> generate -> verify -> score -> analyze -> report for ``study`` into the run directory ``out``.

    The resolved study is frozen as ``out/study.yaml``. Each stage skips the units whose outputs are complete
    and current, so re-running a finished study does no work and an interrupted one resumes. Another executor
    passes its own ``generate``, ``verify`` and ``score`` (same outputs and markers, work done elsewhere).
    Returns what each stage ran and skipped. Ctrl-C (KeyboardInterrupt) ends the run with :class:`RunInterrupted`
    naming the stage and the units finished in this invocation (a stage's own cleanup has run by then).
    """
    layout = RunLayout(out)
    layout.freeze_study(study.to_yaml())
    planned = tasks if tasks is not None else plan_tasks(study)
    reports = []
    stages: tuple[tuple[str, Callable[[], StageReport]], ...] = (
        ("generate", lambda: generate(study, layout, planned, progress)),
        ("verify", lambda: verify(study, layout, planned, progress)),
        ("score", lambda: score(study, layout, planned, progress)),
        ("analyze", lambda: stage_analyze(study, layout, planned)),
        ("report", lambda: stage_report(study, layout, planned)),
    )
    for name, stage in stages:
        try:
            if on_stage is not None:
                on_stage(name)
            reports.append(stage())
        except (KeyboardInterrupt, RunInterrupted) as err:
            during = err.done if isinstance(err, RunInterrupted) else 0
            raise RunInterrupted(name, during + sum(len(r.ran) for r in reports)) from err
    return reports
