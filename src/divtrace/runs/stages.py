"""The stages of a study run: generate, verify, score, analyze, report; each resumable and skipping done work.

Every stage reads only what the stage before it wrote (docs/architecture.md), from the run directory, and writes
its outputs atomically with a completion marker (see :mod:`divtrace.runs.layout`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from divtrace.errors import DivtraceError, RunInterrupted
from divtrace.fingerprint import files_fingerprint, fingerprint
from divtrace.generate.backends.options import BackendOptions, OpenAIOptions, TransformersOptions, VLLMOptions
from divtrace.generate.job import GenerationJob
from divtrace.generate.params import SamplingParams
from divtrace.generate.prompts import PromptItem
from divtrace.generate.render_options import RenderOptions
from divtrace.generate.runner import generate_samples
from divtrace.generate.thinking import ThinkingMode
from divtrace.io_atomic import write_table_atomic
from divtrace.progress import ProgressEvent, ProgressSink, scoped
from divtrace.runs.layout import RunLayout, is_done, mark_done, marker_for
from divtrace.samples import SampleRecord, read_samples
from divtrace.study import IMPORTED_MODEL, CheckpointSpec, SamplingSpec, Study, TaskSpec
from divtrace.tasks import get_task, load_prompts
from divtrace.tasks.base import Task
from divtrace.verify import verifier_class

if TYPE_CHECKING:
    from divtrace.score.scorer import Scorer

#: Bumped when the scorer computes different numbers from the same inputs, so stored scores are redone.
SCORER_VERSION = 4  # 4: EAD's V is 50257 for every checkpoint unless a study sets it; 3: values clipped into each
# metric's range, indistinguishable_texts column
#: Likewise for the analysis tables (2: the paper's unpaired decomposition, Table 1, the study's pass@k levels).
ANALYSIS_VERSION = 2

#: ``(stage, description, done, total)``: progress of a stage, in its own unit (samples, prompts, shards).
RunProgress = Callable[[str, str, int, int], None]


@dataclass
class PlannedTask:
    """A task of the study with its prompts loaded."""

    spec: TaskSpec
    task: Task
    prompts: list[PromptItem]
    origin: str
    #: Why the task's samples cannot be verified (None: it can, or the task is simply not verifiable).
    not_verified: str | None = None

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
    #: What the user should know: work that could not be done, and why (e.g. a task that cannot be verified).
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def interruptible(report: StageReport) -> Iterator[StageReport]:
    """Turn Ctrl-C (KeyboardInterrupt) inside the block into :class:`RunInterrupted` for ``report.stage``, with
    ``done`` = the units in ``report.ran`` (a stage appends a unit only once its outputs and marker are written).
    Cleanup inside the block (``finally``) runs first; :func:`divtrace.executors.local.run_study` then adds the
    units of the stages before."""
    try:
        yield report
    except (KeyboardInterrupt, RunInterrupted) as err:  # an inner RunInterrupted counts shards, not this stage's units
        raise RunInterrupted(report.stage, len(report.ran)) from err


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
    if not isinstance(sampling, SamplingSpec):
        raise DivtraceError(
            f"study {study.name!r} describes imported samples (sampling as recorded: {sampling.source}); "
            "it cannot generate: give a study with sampling settings"
        )
    return sampling.params(
        stop=planned.task.stop if planned.spec.stop is None else tuple(planned.spec.stop),
        task_max_new_tokens=planned.task.max_new_tokens,
        max_new_tokens=planned.spec.max_new_tokens,
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


@dataclass(frozen=True)
class ShardJob:
    """One shard of one (checkpoint, task) generation: the unit of work of every executor.

    ``generation`` is the whole (checkpoint, task) job (prompts, sampling, rendering, run directory, shard size);
    this shard is its shard ``index``, the prompts ``prompts`` of it, stored at ``path``. ``options`` are the
    checkpoint's backend options; ``key`` is the (checkpoint, task) generation key that its ``marker`` holds
    once every shard of the unit is stored (:meth:`mark_unit_done`).
    """

    checkpoint: CheckpointSpec
    task: PlannedTask
    index: int
    prompts: range
    generation: GenerationJob
    options: BackendOptions
    key: str
    marker: Path

    @property
    def unit(self) -> str:
        """``checkpoint/task``, for progress and reports."""
        return f"{self.checkpoint.name}/{self.task.name}"

    @property
    def path(self) -> Path:
        """The shard's file in the run directory."""
        return self.generation.shard_path(self.index)

    @property
    def samples(self) -> int:
        """Samples the shard holds."""
        return len(self.prompts) * self.generation.params.k

    def mark_unit_done(self) -> None:
        """Write the (checkpoint, task) completion marker: call only once every shard of the unit is stored."""
        mark_done(self.marker, self.key, prompts=len(self.task.prompts), k=self.generation.params.k)


def generation_shards(study: Study, layout: RunLayout, tasks: list[PlannedTask], report: StageReport) -> list[ShardJob]:
    """Every shard of the (checkpoint, task) units whose generation is not complete and current, in study order
    (checkpoint, then task, then shard index); the complete units go to ``report.skipped``.

    A unit is listed whole: which of its stored shards are finished is decided when it runs, with the model's keys.
    """
    shards = []
    for checkpoint in study.checkpoints:
        for planned in tasks:
            key = generation_key(study, checkpoint, planned)
            marker = layout.generation_marker(checkpoint.name, planned.name)
            if is_done(marker, key):
                report.skipped.append(f"{checkpoint.name}/{planned.name}")
                continue
            job = GenerationJob(
                tuple(planned.prompts),
                sampling_for(study, planned),
                layout.root,
                checkpoint.name,
                planned.name,
                render_options(study, checkpoint),
                study.shard_size,
            )
            options = backend_options(checkpoint)
            for index, span in enumerate(job.shard_ranges()):
                shards.append(ShardJob(checkpoint, planned, index, span, job, options, key, marker))
    return shards


def shards_by_unit(shards: Iterable[ShardJob]) -> dict[tuple[str, str], list[ShardJob]]:
    """``shards`` grouped by (checkpoint, task), in the order they come."""
    units: dict[tuple[str, str], list[ShardJob]] = {}
    for shard in shards:
        units.setdefault((shard.checkpoint.name, shard.task.name), []).append(shard)
    return units


def stage_generate(
    study: Study, layout: RunLayout, tasks: list[PlannedTask], progress: RunProgress | None = None
) -> StageReport:
    """Generate the shards of :func:`generation_shards` in this process, loading each checkpoint's model once
    (only when it has work); a unit's marker is written once all its shards are stored."""
    from divtrace.generate.backends import create_generator

    report = StageReport("generate")
    shards = generation_shards(study, layout, tasks, report)
    with interruptible(report):
        for checkpoint in study.checkpoints:
            units = shards_by_unit(s for s in shards if s.checkpoint.name == checkpoint.name)
            if not units:
                continue
            loading = _events(progress, "generate", checkpoint.name)
            if loading is not None:
                loading(ProgressEvent("", "", 0, None, "", "loading model"))
            options = next(iter(units.values()))[0].options  # the shard jobs carry the checkpoint's options
            generator = create_generator(checkpoint.backend, checkpoint.model, **options.constructor_kwargs())
            try:
                for unit in units.values():
                    first = unit[0]
                    events = _events(progress, "generate", first.unit)
                    generate_samples(generator, first.generation, events, [shard.index for shard in unit])
                    first.mark_unit_done()
                    report.ran.append(first.unit)
            finally:
                generator.close()
    return report


def backend_options(checkpoint: CheckpointSpec) -> BackendOptions:
    """The backend options of a checkpoint: its ``options``, plus its revision for local backends (an options
    ``revision`` wins)."""
    options = checkpoint.options
    if isinstance(options, TransformersOptions | VLLMOptions):
        return options.with_defaults(revision=checkpoint.revision)
    return options


def _events(progress: RunProgress | None, stage: str, unit: str) -> ProgressSink | None:
    """TEMPORARY (issue 21, console branch, until the stage rewrite passes a ProgressSink through): the sink the
    components of ``unit`` report to. The CLI's bridge (``divtrace.cli.outcome.run_progress_bridge``) carries the
    display's sink, which gets the events as they are; any other :data:`RunProgress` gets ``(stage, "unit step",
    done, total)``."""
    if progress is None:
        return None
    sink = getattr(progress, "sink", None)
    if sink is not None:
        return scoped(sink, stage=stage, unit=unit)
    report = progress
    return lambda e: report(stage, " ".join(p for p in (e.unit or unit, e.step) if p), e.done, e.total or 0)


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


def pending_units(units: Iterable[StageUnit], report: StageReport) -> list[StageUnit]:
    """The ``units`` whose output is missing or stale (its marker does not hold the unit's key); the others are
    recorded in ``report.skipped``."""
    pending = []
    for unit in units:
        if is_done(marker_for(unit.output), unit.key):
            report.skipped.append(unit.name)
        else:
            pending.append(unit)
    return pending


def verify_units(study: Study, layout: RunLayout, tasks: list[PlannedTask], report: StageReport) -> list[StageUnit]:
    """The verifiable (checkpoint, task) units whose verdicts are missing or stale (the others go to ``report``).

    A unit's key hashes its sample files and its verifier's name and :attr:`~divtrace.verify.Verifier.version`, so
    a verifier whose rules change (a new version) redoes its verdicts.
    """
    units = (
        StageUnit(
            checkpoint.name,
            planned,
            layout.verdicts_file(checkpoint.name, planned.name),
            fingerprint(
                {
                    "inputs": files_fingerprint(layout.sample_files(checkpoint.name, planned.name)),
                    "verifier": planned.task.verifier,
                    "version": verifier_class(planned.task.verifier or "").version,
                }
            ),
        )
        for checkpoint in study.checkpoints
        for planned in tasks
        if planned.task.verifiable
    )
    return pending_units(units, report)


def compute_verdicts(
    records: list[SampleRecord],
    checkpoint: str,
    planned: PlannedTask,
    data_dir: str | None,
    progress: ProgressSink | None = None,
) -> pd.DataFrame:
    """One verdict per sample of ``records`` (one checkpoint and task), labelled with both."""
    from divtrace.verify.pipeline import verify_records

    # The records come from read_task_samples, which already applied the run's chain-of-thought setting.
    result = verify_records(records, task=planned.task, data_dir=data_dir, progress=progress, strip_thinking=False)
    return result.verdicts.assign(checkpoint=checkpoint, task=planned.name)


def stage_verify(
    study: Study, layout: RunLayout, tasks: list[PlannedTask], progress: RunProgress | None = None
) -> StageReport:
    """Verify the samples of every verifiable (checkpoint, task) whose verdicts are missing or stale.

    Each task that is not verified gets a line in the report's ``notes``: which task, why, and what to do.
    """
    report = StageReport("verify")
    report.notes += [not_verified_note(planned) for planned in tasks if not planned.task.verifiable]
    with interruptible(report):
        for unit in verify_units(study, layout, tasks, report):
            records = read_task_samples(layout, unit.checkpoint, unit.task.name)
            events = _events(progress, "verify", unit.name)
            verdicts = compute_verdicts(records, unit.checkpoint, unit.task, study.data_dir, events)
            unit.save(verdicts, samples=len(verdicts))
            report.ran.append(unit.name)
    return report


def not_verified_note(planned: PlannedTask) -> str:
    """Why ``planned``'s samples are not verified, in one line (its own reason, else: the task has no verifier)."""
    if planned.not_verified:
        return f"task {planned.name}: not verified: {planned.not_verified}"
    from divtrace.tasks.names import verifiable_task_names

    return (
        f"task {planned.name}: not verified: it has no verifier (its outputs are scored for diversity, not checked "
        f"for correctness); verifiable tasks: {', '.join(verifiable_task_names())}"
    )


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
    """The (checkpoint, task) units whose scores are missing or stale (the others go to ``report``).

    A unit's key hashes its input files and the scoring settings: the metrics as the study names them, and the
    content key (:func:`~divtrace.score.content_key.content_key`: settings plus model files) of each model the
    metrics use, so new weights in the same directory rescore.
    """
    from divtrace.score.content_key import content_key
    from divtrace.score.metrics import metric_class
    from divtrace.score.settings import NLISettings

    classes = [metric_class(name) for name in study.metric_names()]
    code_embedder, nli = study.code_embedder_settings(), study.nli_settings()
    uses_code = any(m.uses_code_embeddings for m in classes)
    uses_nli = any(m.settings_type is NLISettings for m in classes)
    settings = {
        "metrics": [m if isinstance(m, str) else m.model_dump(mode="json") for m in study.metrics],
        "embedder": content_key(study.embedder_settings()) if any(m.uses_embeddings for m in classes) else None,
        "code_embedder": content_key(code_embedder) if code_embedder is not None and uses_code else None,
        "nli_model": content_key(nli) if nli is not None and uses_nli else None,
        "scorer": SCORER_VERSION,
    }
    units = []
    for checkpoint in study.checkpoints:
        for planned in tasks:
            output = layout.scores_file(checkpoint.name, planned.name)
            inputs = layout.sample_files(checkpoint.name, planned.name)
            verdicts_path = layout.verdicts_file(checkpoint.name, planned.name)
            if verdicts_path.exists():
                inputs = [*inputs, verdicts_path]
            key = fingerprint({"inputs": files_fingerprint(inputs), "settings": settings})
            units.append(StageUnit(checkpoint.name, planned, output, key))
    return pending_units(units, report)


def stored_verdicts(layout: RunLayout, checkpoint: str, task: str) -> pd.DataFrame | None:
    """The stored verdict table of (checkpoint, task); None when it was not verified."""
    path = layout.verdicts_file(checkpoint, task)
    return pd.read_parquet(path) if path.exists() else None


def checkpoint_vocab_size(checkpoint: CheckpointSpec) -> int | None:
    """The vocabulary size of ``checkpoint``'s tokenizer (EAD's V under ``tokenizer: generator``), or None when it
    is unknown here (imported samples, a served model without a ``tokenizer`` option)."""
    from divtrace.generate.models import generator_vocab_size

    if isinstance(checkpoint.options, OpenAIOptions):
        tokenizer = checkpoint.options.tokenizer
        return generator_vocab_size(tokenizer) if tokenizer else None
    if checkpoint.model == IMPORTED_MODEL:
        return None
    return generator_vocab_size(checkpoint.model, checkpoint.revision)


def unit_vocab_size(scorer: Scorer, checkpoint: CheckpointSpec) -> int | None:
    """What :meth:`Scorer.score` takes as ``vocab_size`` for ``checkpoint``'s samples: its generator's vocabulary
    size when a metric asks for it (EAD with ``tokenizer: generator``), else None (no tokenizer is loaded)."""
    return checkpoint_vocab_size(checkpoint) if scorer.needs_generator_vocab else None


def study_scorer(study: Study) -> Scorer:
    """The one scorer (:class:`~divtrace.score.scorer.Scorer`) of a study: its metrics (with their args), embedders
    and NLI settings, every subset (all, correct, curves); models load on first use."""
    from divtrace.score.scorer import ScoreOptions, Scorer, build_metrics

    return Scorer(
        build_metrics(study.metrics, nli=study.nli_settings()),
        embedder=study.embedder_settings(),
        code_embedder=study.code_embedder_settings(),
        options=ScoreOptions(subsets=("all", "correct", "curves")),
    )


def score_unit(
    scorer: Scorer,
    records: list[SampleRecord],
    verdicts: pd.DataFrame | None,
    vocab_size: int | None,
    progress: ProgressSink | None = None,
) -> pd.DataFrame:
    """The stored score table of one (checkpoint, task): per-prompt rows of every subset plus the across-input
    rows (see :func:`~divtrace.score.scorer.unit_table`); ``progress`` as :meth:`Scorer.score` reports it."""
    from divtrace.score.scorer import unit_table, verdicts_from_table

    lookup = verdicts_from_table(verdicts) if verdicts is not None else None
    return unit_table(scorer.score(records, lookup, vocab_size=vocab_size, progress=progress))


def stage_score(
    study: Study, layout: RunLayout, tasks: list[PlannedTask], progress: RunProgress | None = None
) -> StageReport:
    """Score every (checkpoint, task) whose scores are missing or stale; models load only when needed."""
    report = StageReport("score")
    units = score_units(study, layout, tasks, report)
    with interruptible(report):
        scorer = study_scorer(study) if units else None
        for unit in units:
            assert scorer is not None
            records = read_task_samples(layout, unit.checkpoint, unit.task.name)
            vocab_size = unit_vocab_size(scorer, study.checkpoint(unit.checkpoint))
            verdicts = stored_verdicts(layout, unit.checkpoint, unit.task.name)
            scores = score_unit(scorer, records, verdicts, vocab_size, _events(progress, "score", unit.name))
            unit.save(scores, rows=len(scores), metrics=scorer.metric_settings(vocab_size))
            report.ran.append(unit.name)
    return report


def read_scores(layout: RunLayout, study: Study, tasks: list[PlannedTask]) -> pd.DataFrame:
    """Every stored per-prompt score of the study."""
    return _read_tables(_existing_unit_files(study, tasks, layout.scores_file))


def _stage_inputs(layout: RunLayout, study: Study, tasks: list[PlannedTask]) -> list[Path]:
    return _existing_unit_files(study, tasks, layout.scores_file, layout.verdicts_file)


def stage_analyze(study: Study, layout: RunLayout, tasks: list[PlannedTask]) -> StageReport:
    """Compute the analysis tables from the stored scores and verdicts (skipped when they did not change)."""
    from divtrace.analysis.pipeline import analyze, write_analysis

    report = StageReport("analyze")
    key = fingerprint(
        {
            "inputs": files_fingerprint(_stage_inputs(layout, study, tasks)),
            "graph": [checkpoint.model_dump(mode="json") for checkpoint in study.checkpoints],  # as study.yaml
            "decomposition": study.decomposition,
            "study": study.name,
            "analysis": ANALYSIS_VERSION,
        }
    )
    if is_done(marker_for(layout.analysis_dir), key):
        report.skipped.append("analysis")
        return report
    result = analyze(
        read_scores(layout, study, tasks),
        read_verdicts(layout, study, tasks),
        study.graph(),
        qfd_pairing=study.decomposition,
        study_name=study.name,
    )
    write_analysis(result, layout.analysis_dir)
    mark_done(marker_for(layout.analysis_dir), key)
    report.ran.append("analysis")
    return report


def stage_report(study: Study, layout: RunLayout, tasks: list[PlannedTask]) -> StageReport:
    """Write the HTML report and summary.md from the stored analysis (skipped when nothing changed)."""
    from divtrace.analysis.pipeline import read_analysis
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
    from divtrace.score.settings import PACKAGED_MINILM

    return {
        "name": study.name,
        "description": study.description,
        "caveat": study.caveat,
        "checkpoints": [c.model_dump(mode="json") for c in study.checkpoints],
        "tasks": {t.name: t.origin for t in tasks},
        "metrics": study.metric_names(),
        "embedder": study.model_dump(mode="json")["embedder"] or PACKAGED_MINILM,
        "nli_model": study.nli_model,
        "sampling": study.sampling.model_dump(mode="json"),
    }
