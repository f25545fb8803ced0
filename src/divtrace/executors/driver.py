"""The one driver: every stage of every run (``divtrace run``, ``divtrace analyze``, ``divtrace report``, the Python
API), whatever executor does the work.

For each stage (:class:`~divtrace.runs.stage.Stage`), in order: its units that are not done
(:func:`~divtrace.runs.outputs.unit_state`: the marker does not hold their key, or a file it records is missing,
truncated or changed) are pending; their work items, read from the run directory as each unit comes up, go to the
executor; the driver saves each result as it arrives (:meth:`Stage.save`, in this process, which owns the run
directory) and writes a unit's marker once all its items are stored, recording every output file's size and sha256;
a :class:`~divtrace.runs.stage.StageReport` says what ran and what was already done. An executor only runs items:
:class:`~divtrace.executors.local.LocalExecutor` in this process, :class:`~divtrace.executors.ray_executor.RayExecutor`
on a Ray cluster.

A unit redone because of a damaged output gets one note per file in its stage's report (``samples/base/gsm8k/
shard-00001.parquet is missing: redoing generate of base/gsm8k``); a file that is there but not as recorded is moved
under ``damaged/`` first (:meth:`RunLayout.set_aside`), so nothing reads it as good, and the unit's marker is
removed until the unit is redone (a generation keeps its other shards: only the missing ones are drawn again). A
done unit whose marker was written before outputs were recorded gets them recorded now.

Ctrl-C ends the run with :class:`~divtrace.errors.RunInterrupted` naming the stage, counting the units finished in
this invocation and, for each unit left unfinished, the items it kept (``2 shards of generate/base/gsm8k``), once
the executor has shut its work down.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from divtrace.analysis.stage import AnalyzeStage
from divtrace.errors import RunInterrupted, counted
from divtrace.progress import UNITS_OF_WORK, ProgressEvent, ProgressSink, scoped
from divtrace.report.stage import ReportStage
from divtrace.runs.layout import RunLayout
from divtrace.runs.lock import hold_run_directory
from divtrace.runs.markers import mark_done, read_marker
from divtrace.runs.outputs import Damage, record_outputs, unit_state
from divtrace.runs.stage import Stage, StageReport, Unit, WorkItem
from divtrace.study import Study
from divtrace.study.ownership import check_run_directory
from divtrace.study.planned import PlannedTask, plan_tasks
from divtrace.study.stages import generate_stage, homogenize_stage, judge_stage, score_stage, verify_stage

#: Called when a stage starts, with its name.
StageStart = Callable[[str], None]
#: Any stage.
AnyStage = Stage[Any, Any]


class Results(Protocol):
    """What an executor reports to the driver, in the driver's process."""

    @property
    def progress(self) -> ProgressSink | None:
        """The stage's progress (a worker opened here reports its loading to it)."""
        ...

    def started(self, item: WorkItem[Any]) -> ProgressSink | None:
        """``item`` starts in this process: where its worker's events go (None: nobody listens)."""
        ...

    def finished(self, item: WorkItem[Any], result: Any) -> None:
        """``item``'s result arrived: save it (and its unit's marker when it was the unit's last item)."""
        ...


class Executor(Protocol):
    """Runs a stage's work items somewhere and hands each result to the driver as it arrives."""

    def run_items(self, stage: AnyStage, items: Iterable[WorkItem[Any]], results: Results) -> None:
        """Compute every item of ``items`` (an iterator that reads each unit's inputs as it comes up) with workers
        of ``stage``, calling ``results.finished`` in this process for each; shut everything down before returning
        or raising (KeyboardInterrupt included)."""
        ...


class _StageRun:
    """One stage's pending units on their way through an executor: saves results, writes markers, reports."""

    def __init__(self, stage: AnyStage, layout: RunLayout, report: StageReport, pending: list[Unit],
                 progress: ProgressSink | None) -> None:  # fmt: skip
        self.stage, self.layout, self.report, self.pending = stage, layout, report, pending
        self.progress = scoped(progress, stage=stage.name)
        self._left: dict[str, int] = {}
        self._size: dict[str, int | None] = {}
        self._done: dict[str, int] = {}
        self._stored: dict[str, int] = {}
        self._facts: dict[str, dict[str, Any]] = {}

    def items(self) -> Iterator[WorkItem[Any]]:
        """Every item of the pending units, in order, each unit's read as it comes up."""
        self._emit("", len(self.report.ran), len(self.pending), UNITS_OF_WORK)
        for unit in self.pending:
            items = self.stage.items(self.layout, unit)
            self._left[unit.name] = len(items)
            sizes = [item.size for item in items if item.size is not None]
            self._size[unit.name] = unit.size if unit.size is not None else (sum(sizes) if sizes else None)
            self._done[unit.name] = 0
            self._stored[unit.name] = 0
            self._facts[unit.name] = dict(unit.facts)
            if not items:
                self._complete(unit)
            yield from items

    def started(self, item: WorkItem[Any]) -> ProgressSink | None:
        """The item's events, within its unit: the unit's count (an item's own done/total moved onto the unit's,
        after the items before it); events of a step pass as they are."""
        if self.progress is None:
            return None
        sink, unit = self.progress, item.unit.name
        base, total = self._done[unit], self._size[unit]

        def within_unit(event: ProgressEvent) -> None:
            if not event.step and event.count == self.stage.count and total is not None:
                event = dataclasses.replace(event, done=base + event.done, total=total)
            sink(dataclasses.replace(event, stage=self.stage.name, unit=event.unit or unit))

        return within_unit

    def finished(self, item: WorkItem[Any], result: Any) -> None:
        """Save ``result``; write the unit's marker when it was its last item."""
        unit = item.unit
        self._facts[unit.name].update(self.stage.save(self.layout, item, result))
        self._stored[unit.name] += 1
        self._left[unit.name] -= 1
        if item.size is not None:
            self._done[unit.name] += item.size
            self._emit(unit.name, self._done[unit.name], self._size[unit.name], self.stage.count)
        if self._left[unit.name] == 0:
            self._complete(unit)

    def kept(self) -> list[str]:
        """The items stored of each unit left unfinished, in words (``2 shards of generate/base/gsm8k``)."""
        return [
            f"{counted(stored, self.stage.item_name)} of {self.stage.name}/{name}"
            for name, stored in self._stored.items()
            if stored and name not in self.report.ran
        ]

    def _complete(self, unit: Unit) -> None:
        outputs = record_outputs(self.layout.root, unit.outputs, unit.marker)
        mark_done(unit.marker, unit.key, outputs, **self._facts[unit.name])
        self.report.ran.append(unit.name)
        self._emit("", len(self.report.ran), len(self.pending), UNITS_OF_WORK)

    def _emit(self, unit: str, done: int, total: int | None, count: str) -> None:
        if self.progress is not None:
            self.progress(ProgressEvent(self.stage.name, unit, done, total, count))


def run_stage(
    stage: AnyStage,
    layout: RunLayout,
    executor: Executor,
    report: StageReport,
    progress: ProgressSink | None = None,
) -> None:
    """Run ``stage``'s pending units with ``executor``, recording in ``report`` what ran (a unit only once its
    outputs and marker are written), what was already done and, in its notes, each damaged output redone.

    Raises :class:`RunInterrupted` on Ctrl-C, counting the units of this stage finished and the items kept of those
    left unfinished.
    """
    pending = []
    for unit in stage.units(layout):
        state = unit_state(layout.root, unit.marker, unit.key, unit.outputs)
        if state.done:
            if not state.recorded:
                _record_now(layout, unit)
            report.skipped.append(unit.name)
            continue
        if state.damage:
            report.notes += [_redo(layout, stage, unit, damage) for damage in state.damage]
            unit.marker.unlink()  # it no longer says what the outputs are: the unit is unfinished until redone
        pending.append(unit)
    if not pending:
        return
    run = _StageRun(stage, layout, report, pending, progress)
    try:
        executor.run_items(stage, run.items(), run)
    except (KeyboardInterrupt, RunInterrupted) as err:
        raise RunInterrupted(stage.name, len(report.ran), kept=run.kept()) from err


def run_stages(
    stages: Sequence[AnyStage],
    layout: RunLayout,
    executor: Executor,
    *,
    progress: ProgressSink | None = None,
    on_stage: StageStart | None = None,
) -> list[StageReport]:
    """Run ``stages`` in order into ``layout``; what each ran and skipped, and its notes.

    Raises :class:`RunInterrupted` on Ctrl-C, naming the stage, counting the units finished in this invocation
    (every stage's so far) and the items kept of the units left unfinished.
    """
    reports: list[StageReport] = []
    for stage in stages:
        report = StageReport(stage.name, notes=stage.notes())
        try:
            if on_stage is not None:
                on_stage(stage.name)
            run_stage(stage, layout, executor, report, progress)
        except (KeyboardInterrupt, RunInterrupted) as err:
            kept = err.kept if isinstance(err, RunInterrupted) else ()
            raise RunInterrupted(stage.name, sum(len(r.ran) for r in [*reports, report]), kept=kept) from err
        reports.append(report)
    return reports


def _redo(layout: RunLayout, stage: AnyStage, unit: Unit, damage: Damage) -> str:
    """Move the damaged output aside when it is there; the note that says so and that ``unit`` is redone."""
    moved = ""
    if damage.present:
        moved = f", moved to {layout.set_aside(damage.path).relative_to(layout.root).as_posix()}"
    return f"{damage}{moved}: redoing {stage.name} of {unit.name}"


def _record_now(layout: RunLayout, unit: Unit) -> None:
    """Record the outputs of a done unit in its marker, written before outputs were recorded (its key and facts
    kept)."""
    marker = read_marker(unit.marker)
    if marker is not None:
        facts = {**marker.facts, **({} if marker.strip_thinking else {"strip_thinking": False})}
        mark_done(unit.marker, marker.fingerprint, record_outputs(layout.root, unit.outputs, unit.marker), **facts)


def study_stages(
    study: Study,
    tasks: Sequence[PlannedTask],
    layout: RunLayout,
    *,
    generate: bool = True,
    verify: bool = True,
    report: bool = True,
) -> list[AnyStage]:
    """The stages of ``study`` over ``tasks`` in ``layout``: generate, verify, judge (when the study has a judge),
    score, homogenize (when the study asks for it), analyze, report (``generate``, ``verify``, ``report`` False
    leave that one out)."""
    origins: Mapping[str, str] = {planned.name: planned.origin for planned in tasks}
    stages: list[AnyStage] = []
    if generate:
        stages.append(generate_stage(study, tasks, layout))
    if verify:
        stages.append(verify_stage(study, tasks))
    judging = judge_stage(study, tasks, layout)
    if judging is not None:
        stages.append(judging)
    stages.append(score_stage(study, tasks))
    homogenizing = homogenize_stage(study, tasks)
    if homogenizing is not None:
        stages.append(homogenizing)
    stages.append(AnalyzeStage(study, tuple(origins)))
    if report:
        stages.append(ReportStage(study, origins))
    return stages


def run_study(
    study: Study,
    out: str | Path,
    executor: Executor,
    *,
    tasks: list[PlannedTask] | None = None,
    progress: ProgressSink | None = None,
    on_stage: StageStart | None = None,
) -> list[StageReport]:
    """Run plan -> generate -> verify -> score -> analyze -> report for ``study`` into the run directory ``out``.

    The run holds the directory (:func:`~divtrace.runs.lock.hold_run_directory`; at no cost when the caller holds
    it already). Before anything in it is written, a directory of another study is refused
    (:func:`~divtrace.study.ownership.check_run_directory`), and so is a stored output a stage would refuse to
    resume, as far as that is known without loading a model (:meth:`Stage.check_resume`); only then is the
    resolved study frozen as ``out/study.yaml``. ``tasks`` are the planned tasks when the caller already loaded them
    (default: :func:`~divtrace.study.planned.plan_tasks`). Each stage skips the units whose outputs are complete and
    current, so re-running a finished study does no work and an interrupted one resumes.

    Raises:
        RunDirectoryInUse: another process holds ``out``.
        DivtraceError: ``out`` holds another study, or a stored output made with other settings.
    """
    layout = RunLayout(out)
    with hold_run_directory(out, "divtrace.run", wait_flag="wait=True"):
        check_run_directory(layout, study)
        planned = tasks if tasks is not None else plan_tasks(study)
        stages = study_stages(study, planned, layout)
        for stage in stages:
            stage.check_resume(layout)
        for stage in stages:
            stage.check_ready(layout)
        layout.freeze_study(study.to_yaml())
        return run_stages(stages, layout, executor, progress=progress, on_stage=on_stage)
