"""The stages of a study run: generate, verify, score, analyze, report; each resumable and skipping done work.

Every stage reads only what the stage before it wrote (DESIGN.md, data flow), from the run directory, and writes
its outputs atomically with a completion marker (see :mod:`divtrace.runs.layout`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from divtrace.generate.params import SamplingParams
from divtrace.generate.prompts import PromptItem
from divtrace.generate.runner import RenderOptions, generate_samples
from divtrace.generate.thinking import ThinkingMode
from divtrace.io_atomic import write_table_atomic
from divtrace.runs.layout import RunLayout, files_fingerprint, fingerprint, is_done, mark_done, marker_for
from divtrace.samples import SampleRecord, read_samples
from divtrace.study import CheckpointSpec, Study, TaskSpec
from divtrace.tasks import get_task, load_prompts
from divtrace.tasks.base import Task

#: ``(stage, description, done, total)``: progress of a stage, in its own unit (samples, prompts, shards).
RunProgress = Callable[[str, str, int, int], None]


@dataclass
class PlannedTask:
    """A task of the study with its prompts loaded."""

    spec: TaskSpec
    task: Task
    prompts: list[PromptItem]
    origin: str

    @property
    def name(self) -> str:
        """The task's label in every table."""
        return self.task.name


@dataclass
class StageReport:
    """What a stage did: units of work run now and skipped as already done."""

    stage: str
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def plan_tasks(study: Study) -> list[PlannedTask]:
    """Load every task's prompts (first N rows; the study's ``n`` overrides the task's N)."""
    planned = []
    for spec in study.tasks:
        task = get_task(spec.name)
        prompts, origin = load_prompts(task, study.data_dir, spec.n)
        planned.append(PlannedTask(spec, task, prompts, origin))
    return planned


def sampling_for(study: Study, planned: PlannedTask) -> SamplingParams:
    """The sampling parameters of one task: the study's, with the task's stops and token cap.

    The cap is the study task's ``max_new_tokens``, else the study's ``sampling.max_new_tokens``, else the task's
    own; the stops are the study task's ``stop``, else the task's (before the stop policy, which
    :func:`render_options` carries).
    """
    sampling = study.sampling
    max_new_tokens = planned.spec.max_new_tokens or sampling.max_new_tokens or planned.task.max_new_tokens
    stop = planned.task.stop if planned.spec.stop is None else tuple(planned.spec.stop)
    return SamplingParams(
        k=sampling.k,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        max_new_tokens=max_new_tokens,
        stop=stop,
        seed=sampling.seed,
    )


def render_options(study: Study, checkpoint: CheckpointSpec) -> RenderOptions:
    """How ``checkpoint`` renders the study's prompts: system prompt, chat template, thinking mode, stop policy."""
    return RenderOptions(
        checkpoint.system_prompt,
        checkpoint.chat_template,
        ThinkingMode(checkpoint.thinking),
        study.stop_policy(checkpoint),
    )


def generation_key(study: Study, checkpoint: CheckpointSpec, planned: PlannedTask) -> str:
    """Fingerprint of everything a (checkpoint, task) generation depends on (settings and prompt texts)."""
    return fingerprint(
        {
            "checkpoint": checkpoint.model_dump(mode="json"),
            "stop_policy": study.stop_policy(checkpoint).value,
            "sampling": sampling_for(study, planned).model_dump(mode="json"),
            "shard_size": study.shard_size,
            "prompts": [(p.prompt_id, p.prompt) for p in planned.prompts],
        }
    )


def stage_generate(
    study: Study, layout: RunLayout, tasks: list[PlannedTask], progress: RunProgress | None = None
) -> StageReport:
    """Generate the samples of every (checkpoint, task) not already complete; a model is loaded only if needed."""
    from divtrace.generate.backends import create_generator

    report = StageReport("generate")
    for checkpoint in study.checkpoints:
        todo = []
        for planned in tasks:
            unit = f"{checkpoint.name}/{planned.name}"
            if is_done(
                layout.generation_marker(checkpoint.name, planned.name), generation_key(study, checkpoint, planned)
            ):
                report.skipped.append(unit)
            else:
                todo.append(planned)
        if not todo:
            continue
        if progress is not None:
            progress("generate", f"loading {checkpoint.name}", 0, 0)
        generator = create_generator(checkpoint.backend, checkpoint.model, **backend_options(checkpoint))
        try:
            for planned in todo:
                params = sampling_for(study, planned)
                description = f"{checkpoint.name} / {planned.name}"
                counter = _Counter(progress, "generate", description)
                generate_samples(
                    generator,
                    planned.prompts,
                    params,
                    out_dir=layout.root,
                    checkpoint=checkpoint.name,
                    task=planned.name,
                    render=render_options(study, checkpoint),
                    shard_size=study.shard_size,
                    progress=counter,
                )
                mark_done(
                    layout.generation_marker(checkpoint.name, planned.name),
                    generation_key(study, checkpoint, planned),
                    prompts=len(planned.prompts),
                    k=params.k,
                )
                report.ran.append(f"{checkpoint.name}/{planned.name}")
        finally:
            generator.close()
    return report


def backend_options(checkpoint: CheckpointSpec) -> dict[str, Any]:
    """The backend constructor keywords of a checkpoint (its options, plus its revision for local backends)."""
    options = dict(checkpoint.options)
    if checkpoint.backend in ("transformers", "vllm") and checkpoint.revision is not None:
        options.setdefault("revision", checkpoint.revision)
    return options


class _Counter:
    """Adapts :func:`generate_samples` progress events to :data:`RunProgress`."""

    def __init__(self, progress: RunProgress | None, stage: str, description: str) -> None:
        self.progress, self.stage, self.description = progress, stage, description
        self.total = 0
        self.done = 0

    def __call__(self, event: str, value: int) -> None:
        if event == "total":
            self.total = value
        else:
            self.done += value
        if self.progress is not None:
            self.progress(self.stage, self.description, self.done, self.total)


def read_task_samples(layout: RunLayout, checkpoint: str, task: str) -> list[SampleRecord]:
    """The stored samples of (checkpoint, task), in prompt order.

    Chain-of-thought is stripped on reading (responses already stored are kept; see
    :func:`~divtrace.samples.read_samples`) unless the samples were imported with stripping off
    (``divtrace analyze --no-strip-thinking`` records ``"strip_thinking": false`` in the generation marker).
    """
    files = layout.sample_files(checkpoint, task)
    if not files:
        return []
    return read_samples(files, strip_thinking=stripping_recorded(layout, checkpoint, task)).records


def stripping_recorded(layout: RunLayout, checkpoint: str, task: str) -> bool:
    """The ``strip_thinking`` recorded when the samples of (checkpoint, task) were stored (True when not recorded:
    divtrace's own generation always strips, and run directories written before the setting existed)."""
    try:
        facts = json.loads(layout.generation_marker(checkpoint, task).read_text())
    except (FileNotFoundError, ValueError):
        return True
    return facts.get("strip_thinking", True) is not False if isinstance(facts, dict) else True


@dataclass(frozen=True)
class StageUnit:
    """One (checkpoint, task) of a stage after generation: where its output goes and the fingerprint it needs."""

    checkpoint: str
    task: PlannedTask
    output: Path
    key: str

    @property
    def name(self) -> str:
        """``checkpoint/task``, for progress and reports."""
        return f"{self.checkpoint}/{self.task.name}"

    def save(self, table: pd.DataFrame, **facts: Any) -> None:
        """Write the unit's table atomically, then its completion marker."""
        write_table_atomic(table, self.output)
        mark_done(marker_for(self.output), self.key, **facts)


def verify_units(study: Study, layout: RunLayout, tasks: list[PlannedTask], report: StageReport) -> list[StageUnit]:
    """The verifiable (checkpoint, task) units whose verdicts are missing or stale (the others go to ``report``)."""
    pending = []
    for checkpoint in study.checkpoints:
        for planned in (t for t in tasks if t.task.verifiable):
            output = layout.verdicts_file(checkpoint.name, planned.name)
            key = files_fingerprint(layout.sample_files(checkpoint.name, planned.name))
            unit = StageUnit(checkpoint.name, planned, output, key)
            if is_done(marker_for(output), key):
                report.skipped.append(unit.name)
            else:
                pending.append(unit)
    return pending


def compute_verdicts(
    records: list[SampleRecord], checkpoint: str, planned: PlannedTask, data_dir: str | None, progress: Any = None
) -> pd.DataFrame:
    """One verdict per sample of ``records`` (one checkpoint and task), labelled with both."""
    from divtrace.tasks.verify import verify_records

    # The records come from read_task_samples, which already applied the run's chain-of-thought setting.
    result = verify_records(
        records, task=str(planned.spec.name), data_dir=data_dir, progress=progress, strip_thinking=False
    )
    return result.verdicts.assign(checkpoint=checkpoint, task=planned.name)


def stage_verify(
    study: Study, layout: RunLayout, tasks: list[PlannedTask], progress: RunProgress | None = None
) -> StageReport:
    """Verify the samples of every verifiable (checkpoint, task) whose verdicts are missing or stale."""
    report = StageReport("verify")
    for unit in verify_units(study, layout, tasks, report):
        records = read_task_samples(layout, unit.checkpoint, unit.task.name)

        def tick(_task: str, done: int, total: int, name: str = unit.name) -> None:
            if progress is not None:
                progress("verify", name, done, total)

        verdicts = compute_verdicts(records, unit.checkpoint, unit.task, study.data_dir, tick)
        unit.save(verdicts, samples=len(verdicts))
        report.ran.append(unit.name)
    return report


def _existing_unit_files(study: Study, tasks: list[PlannedTask], *where: Callable[[str, str], Path]) -> list[Path]:
    """For every (checkpoint, task), the files ``where(checkpoint, task)`` that exist, in study order."""
    return [
        path
        for checkpoint in study.checkpoints
        for planned in tasks
        for place in where
        if (path := place(checkpoint.name, planned.name)).exists()
    ]


def _read_tables(paths: list[Path]) -> pd.DataFrame:
    frames = [pd.read_parquet(path) for path in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_verdicts(layout: RunLayout, study: Study, tasks: list[PlannedTask]) -> pd.DataFrame:
    """Every stored verdict of the study (empty when no task is verifiable)."""
    return _read_tables(_existing_unit_files(study, tasks, layout.verdicts_file))


def score_units(study: Study, layout: RunLayout, tasks: list[PlannedTask], report: StageReport) -> list[StageUnit]:
    """The (checkpoint, task) units whose scores are missing or stale (the others go to ``report``)."""
    settings = {"metrics": study.metrics, "embedder": study.embedder, "nli_model": study.nli_model}
    pending = []
    for checkpoint in study.checkpoints:
        for planned in tasks:
            output = layout.scores_file(checkpoint.name, planned.name)
            inputs = layout.sample_files(checkpoint.name, planned.name)
            verdicts_path = layout.verdicts_file(checkpoint.name, planned.name)
            if verdicts_path.exists():
                inputs = [*inputs, verdicts_path]
            key = fingerprint({"inputs": files_fingerprint(inputs), "settings": settings})
            unit = StageUnit(checkpoint.name, planned, output, key)
            if is_done(marker_for(output), key):
                report.skipped.append(unit.name)
            else:
                pending.append(unit)
    return pending


def correct_flags(layout: RunLayout, checkpoint: str, task: str) -> dict[tuple[str, str, str], list[bool]] | None:
    """``{(checkpoint, task, prompt_id): correct per sample}`` from the stored verdicts; None when unverified."""
    path = layout.verdicts_file(checkpoint, task)
    if not path.exists():
        return None
    verdicts = pd.read_parquet(path).sort_values(["prompt_id", "sample_index"])
    return {
        (checkpoint, task, str(prompt_id)): list(group["correct"])
        for prompt_id, group in verdicts.groupby("prompt_id", sort=False)
    }


class Scorer:
    """The study's metrics and embedding store, loaded once (on first use) and reused for every unit."""

    def __init__(self, metrics: list[str], embedder: str | None, nli_model: str | None) -> None:
        self.names, self.embedder, self.nli_model = metrics, embedder, nli_model
        self.metrics: list[Any] | None = None
        self.store: Any = None

    def _load(self) -> None:
        from divtrace.metrics.embeddings import EmbeddingStore
        from divtrace.scoring.pipeline import build_metrics
        from divtrace.settings import EmbedderSettings, NLISettings

        nli = NLISettings(model=self.nli_model) if self.nli_model else None
        self.metrics = build_metrics(self.names, nli=nli)
        for metric in self.metrics:
            metric.prepare()
        if any(m.uses_embeddings for m in self.metrics):
            self.store = EmbeddingStore(EmbedderSettings(**({"model": self.embedder} if self.embedder else {})))

    def score(
        self,
        records: list[SampleRecord],
        correct: dict[tuple[str, str, str], list[bool]] | None,
        code_tasks: frozenset[str],
    ) -> pd.DataFrame:
        """Per-prompt scores of ``records`` for every metric and subset (see :func:`score_subsets`)."""
        from divtrace.scoring.subsets import score_subsets

        if self.metrics is None:
            self._load()
        assert self.metrics is not None
        return score_subsets(records, self.metrics, embedder=self.store, correct=correct, code_tasks=code_tasks)


def stage_score(
    study: Study, layout: RunLayout, tasks: list[PlannedTask], progress: RunProgress | None = None
) -> StageReport:
    """Score every (checkpoint, task) whose scores are missing or stale; models load only when needed."""
    report = StageReport("score")
    code_tasks = frozenset(t.name for t in tasks if t.task.code)
    scorer = Scorer(study.metrics, study.embedder, study.nli_model)
    for unit in score_units(study, layout, tasks, report):
        if progress is not None:
            progress("score", unit.name, 0, 1)
        records = read_task_samples(layout, unit.checkpoint, unit.task.name)
        scores = scorer.score(records, correct_flags(layout, unit.checkpoint, unit.task.name), code_tasks)
        unit.save(scores, rows=len(scores))
        if progress is not None:
            progress("score", unit.name, 1, 1)
        report.ran.append(unit.name)
    return report


def read_scores(layout: RunLayout, study: Study, tasks: list[PlannedTask]) -> pd.DataFrame:
    """Every stored per-prompt score of the study."""
    return _read_tables(_existing_unit_files(study, tasks, layout.scores_file))


def _stage_inputs(layout: RunLayout, study: Study, tasks: list[PlannedTask]) -> list[Path]:
    return _existing_unit_files(study, tasks, layout.scores_file, layout.verdicts_file)


def stage_analyze(study: Study, layout: RunLayout, tasks: list[PlannedTask]) -> StageReport:
    """Compute the analysis tables from the stored scores and verdicts (skipped when they did not change)."""
    from divtrace.analysis.run import analyze, write_analysis

    report = StageReport("analyze")
    key = fingerprint({"inputs": files_fingerprint(_stage_inputs(layout, study, tasks)), "graph": study.checkpoints})
    if is_done(marker_for(layout.analysis_dir), key):
        report.skipped.append("analysis")
        return report
    result = analyze(read_scores(layout, study, tasks), read_verdicts(layout, study, tasks), study.graph())
    write_analysis(result, layout.analysis_dir)
    mark_done(marker_for(layout.analysis_dir), key)
    report.ran.append("analysis")
    return report


def stage_report(study: Study, layout: RunLayout, tasks: list[PlannedTask]) -> StageReport:
    """Write the HTML report and summary.md from the stored analysis (skipped when nothing changed)."""
    from divtrace.analysis.run import read_analysis
    from divtrace.report import write_report

    report = StageReport("report")
    inputs = _stage_inputs(layout, study, tasks)
    analysis_marker = marker_for(layout.analysis_dir)
    key = fingerprint(
        {
            "inputs": files_fingerprint(inputs),
            "analysis": analysis_marker.read_text() if analysis_marker.exists() else None,
            "study": study.model_dump(mode="json"),
        }
    )
    if is_done(marker_for(layout.report_dir), key):
        report.skipped.append("report")
        return report
    samples = [
        record
        for checkpoint in study.checkpoints
        for planned in tasks
        for record in read_task_samples(layout, checkpoint.name, planned.name)
    ]
    write_report(
        layout.report_dir,
        analysis=read_analysis(layout.analysis_dir),
        samples=samples,
        per_prompt_scores=read_scores(layout, study, tasks),
        graph=study.graph(),
        study_info=study_info(study, tasks),
    )
    mark_done(marker_for(layout.report_dir), key)
    report.ran.append("report")
    return report


def study_info(study: Study, tasks: list[PlannedTask]) -> dict[str, Any]:
    """What the report header shows about the study."""
    from divtrace.settings import PACKAGED_MINILM

    return {
        "name": study.name,
        "description": study.description,
        "caveat": study.caveat,
        "checkpoints": [c.model_dump(mode="json") for c in study.checkpoints],
        "tasks": {t.name: t.origin for t in tasks},
        "metrics": study.metrics,
        "embedder": study.embedder or PACKAGED_MINILM,
        "nli_model": study.nli_model,
        "sampling": study.sampling.model_dump(mode="json"),
    }
