"""The Python entry points of a whole study: :func:`run` (generate and everything after) and :func:`analyze`
(samples generated elsewhere). ``divtrace.run``, ``divtrace.analyze`` and ``divtrace.score`` are what a Python user
calls; the command line calls the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from divtrace.errors import DivtraceError

if TYPE_CHECKING:
    from divtrace.analysis.run import AnalysisResult
    from divtrace.runs.stages import PlannedTask, RunProgress, StageReport
    from divtrace.samples import SampleRecord
    from divtrace.study import Study

Executor = Literal["local", "ray"]


@dataclass(frozen=True)
class RunOutcome:
    """What a study run or an analysis of imported samples did, and where its outputs are.

    Attributes:
        directory: the run directory (``study.yaml``, ``samples/``, ``scores/``, ``analysis/``, ``report/``).
        reports: per stage, the units it ran and skipped, and its notes (e.g. tasks that could not be verified).
    """

    directory: Path
    reports: list[StageReport]

    def analysis(self) -> AnalysisResult:
        """The analysis tables the run wrote (``checkpoint_means``, ``retained``, ``collapse_sites``, ``table1``...).

        Raises DivtraceError when the run has no analysis (it stopped before the analyze stage).
        """
        from divtrace.analysis.run import read_analysis

        return read_analysis(self.directory / "analysis")

    @property
    def report_path(self) -> Path | None:
        """``report/index.html`` when the run wrote a report, else None."""
        path = self.directory / "report" / "index.html"
        return path if path.exists() else None


def run(
    study: Study | str | Path = "quickstart",
    out: str | Path | None = None,
    *,
    executor: Executor | None = None,
    address: str | None = None,
    tasks: list[PlannedTask] | None = None,
    progress: RunProgress | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run ``study`` end to end (plan, generate, verify, score, analyze, report) into ``out``; resumable.

    Args:
        study: a :class:`~divtrace.study.Study`, a study YAML file, or a preset name (``quickstart``, ``olmo3-7b``).
        out: the run directory (default ``runs/<study name>``); finished units found there are not redone.
        executor: ``local`` (this process) or ``ray`` (a Ray cluster); default: the study's ``executor.type``.
        address: the Ray cluster (``HOST:PORT`` or ``auto``); default: the study's; checked before any work.
        tasks: the planned tasks when the caller already loaded them (:func:`divtrace.runs.stages.plan_tasks`).
        progress: :data:`~divtrace.runs.stages.RunProgress` callback ``(stage, description, done, total)``.
        on_stage: called with each stage's name as it starts.

    Raises:
        DivtraceError: a bad study, unavailable task data, no cluster at ``address``...;
            :class:`~divtrace.errors.RunInterrupted` on Ctrl-C, counting the units kept.
    """
    from divtrace.study import Study, load_study

    chosen = study if isinstance(study, Study) else load_study(study)
    directory = Path(out) if out is not None else Path("runs") / chosen.name
    kind = executor or chosen.executor.type
    if kind not in ("local", "ray"):
        raise DivtraceError(f"executor {kind!r}: choose local or ray")
    if kind == "ray":
        from divtrace.executors.ray_executor import run_study_ray  # it checks the address before any work

        reports = run_study_ray(chosen, directory, address=address, tasks=tasks, progress=progress, on_stage=on_stage)
    else:
        from divtrace.executors.local import run_study

        reports = run_study(chosen, directory, tasks=tasks, progress=progress, on_stage=on_stage)
    return RunOutcome(directory, reports)


def analyze(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    lineage: Sequence[str] = (),
    variants: Sequence[str] = (),
    study: Study | str | Path | None = None,
    metrics: Sequence[str] | None = None,
    embedder: str | None = None,
    nli_model: str | None = None,
    task: str | None = None,
    task_map: Mapping[str, str] | None = None,
    input_format: str = "auto",
    data_dir: str | Path | None = None,
    verify: bool = True,
    report: bool = True,
    skip_invalid: bool = False,
    strip_thinking: bool = True,
    progress: RunProgress | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_problem: Callable[[str], None] | None = None,
    on_import: Callable[[dict[tuple[str, str], int]], None] | None = None,
) -> RunOutcome:
    """Verify, score, analyze (and report) samples generated elsewhere, along a lineage, into the run directory
    ``out``; resumable like :func:`run`.

    Args:
        inputs: sample files or directories (divtrace JSONL/Parquet, lm-eval ``samples_*.jsonl``, lighteval
            details); ``NAME=PATH`` sets the checkpoint label of PATH's records.
        lineage: chains of checkpoints, base first (``"base>sft>dpo>rl"``, ``NAME:STAGE`` sets a stage label).
        variants: ``NAME=OF``: NAME is checkpoint OF sampled with thinking suppressed.
        study: take the lineage (and metrics and models) from this study instead of ``lineage``.
        metrics, embedder, nli_model: the scoring settings (default: the study's, else ead, sbert, vendi).
        task: the task of records that carry none. task_map: logged task name -> divtrace task, for verification.
        input_format: ``auto`` (each file's content decides), ``divtrace``, ``jsonl``, ``parquet``, ``lm-eval``,
            ``lighteval``.
        data_dir: task data, for records without references.
        verify, report: run the verify stage (needed for the decomposition) and write the report.
        on_problem: called with each record skipped under ``skip_invalid``; on_import with the prompts imported
            per (checkpoint, task).

    Raises:
        DivtraceError: a missing or malformed input (file, line, field), a lineage checkpoint without samples...
    """
    from divtrace.runs.imported import (
        SampleSource,
        import_choices,
        import_samples,
        imported_study,
        read_sources,
        run_tasks,
    )
    from divtrace.runs.layout import RunLayout
    from divtrace.runs.stages import stage_analyze, stage_report, stage_score, stage_verify
    from divtrace.study import Study, load_study

    base_study = study if isinstance(study, Study) or study is None else load_study(study)
    choices = import_choices(base_study, lineage, variants, metrics=metrics, embedder=embedder, nli_model=nli_model)
    sources = [SampleSource.parse(str(text)) for text in inputs]
    records, problems = read_sources(
        sources, skip_invalid=skip_invalid, strip_thinking=strip_thinking, fmt=input_format
    )
    if task is not None:
        records = with_task(records, task)
    for problem in problems:
        if on_problem is not None:
            on_problem(problem)
    chosen = imported_study(
        choices.checkpoints,
        records,
        metrics=choices.metrics,
        embedder=choices.embedder,
        nli_model=choices.nli_model,
        data_dir=str(data_dir) if data_dir else None,
        task_map=task_map,
    )
    layout = RunLayout(out)
    imported = import_samples(chosen, records, layout, strip_thinking=strip_thinking)
    if on_import is not None:
        on_import(dict(imported.counts))
    tasks = run_tasks(chosen)
    stages: list[tuple[str, Callable[[], StageReport]]] = []
    if verify:
        stages.append(("verify", lambda: stage_verify(chosen, layout, tasks, progress)))
    stages += [
        ("score", lambda: stage_score(chosen, layout, tasks, progress)),
        ("analyze", lambda: stage_analyze(chosen, layout, tasks)),
    ]
    if report:
        stages.append(("report", lambda: stage_report(chosen, layout, tasks)))
    reports = []
    for name, stage in stages:
        if on_stage is not None:
            on_stage(name)
        reports.append(stage())
    return RunOutcome(Path(out), reports)


def with_task(records: Sequence[SampleRecord], task: str) -> list[SampleRecord]:
    """``records`` with ``task`` given to those that carry none (no label, or the ``default`` label)."""
    from divtrace.samples import DEFAULT_TASK

    return [r if r.task and r.task != DEFAULT_TASK else r.model_copy(update={"task": task}) for r in records]
