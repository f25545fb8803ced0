"""A study's settings as the stages below it take them: the generate, verify, judge, score and homogenize stage
objects of a run.

The stages live in their packages and know nothing of a study (``generate``, ``verify`` and ``score`` sit below
``study``); these functions hand each one its typed settings. The analyze and report stages, above ``study``, take
the study itself (:class:`~divtrace.analysis.stage.AnalyzeStage`, :class:`~divtrace.report.stage.ReportStage`).
"""

from __future__ import annotations

from collections.abc import Sequence

from divtrace.generate.job import GenerationJob
from divtrace.generate.stage import CheckpointModel, GenerateStage
from divtrace.judge.client import JudgeEndpoint
from divtrace.judge.pipeline import JudgeConfig, study_protocols
from divtrace.judge.stage import JudgeStage
from divtrace.runs.layout import RunLayout
from divtrace.score.homogenize_stage import HomogenizeStage
from divtrace.score.stage import ScorerSpec, ScoreStage
from divtrace.study.planned import PlannedTask
from divtrace.study.spec import CheckpointSpec, Study
from divtrace.verify.stage import VerifyStage, not_verified_note


def checkpoint_model(checkpoint: CheckpointSpec) -> CheckpointModel:
    """How the generate stage loads ``checkpoint``'s model."""
    return CheckpointModel(
        checkpoint.name, checkpoint.backend, checkpoint.model, checkpoint.revision, checkpoint.backend_options()
    )


def generate_stage(study: Study, tasks: Sequence[PlannedTask], layout: RunLayout) -> GenerateStage:
    """Every (checkpoint, task) generation of ``study`` into ``layout``, checkpoint by checkpoint, each followed by
    its sweep conditions' (:meth:`Study.sampled`, drawn by the checkpoint's model): the task's prompts, sampled as
    :meth:`Study.sampling_for` says, rendered as :meth:`Study.render_options` says, in shards of the study's
    ``shard_size``."""
    jobs = tuple(
        GenerationJob(
            tuple(planned.prompts),
            study.sampling_for(planned, sampled.condition),
            layout.root,
            sampled.name,
            planned.name,
            study.render_options(sampled.checkpoint),
            study.shard_size,
            None if sampled.condition is None else sampled.checkpoint.name,
        )
        for sampled in study.sampled()
        for planned in tasks
    )
    return GenerateStage(tuple(checkpoint_model(c) for c in study.checkpoints), jobs)


def sampled_names(study: Study) -> tuple[str, ...]:
    """The names under which ``study`` stores samples: its checkpoints and its sweep's conditions, in
    :meth:`Study.sampled` order (what the verify, judge and score stages work through)."""
    return tuple(sampled.name for sampled in study.sampled())


def verify_stage(study: Study, tasks: Sequence[PlannedTask]) -> VerifyStage:
    """Verdicts of ``study``'s verifiable tasks; the others are named in the stage's notes, with why."""
    return VerifyStage(
        sampled_names(study),
        tuple(planned.task for planned in tasks if planned.task.verifiable),
        study.data_dir,
        tuple(not_verified_note(p.name, p.not_verified) for p in tasks if not p.task.verifiable),
    )


def scorer_spec(study: Study) -> ScorerSpec:
    """The one scorer of ``study``: its metrics (with their args), embedders and NLI settings, every subset
    (all, correct, curves)."""
    return ScorerSpec(
        tuple(study.metrics),
        embedder=study.embedder_settings(),
        code_embedder=study.code_embedder_settings(),
        nli=study.nli_settings(),
    )


def score_stage(study: Study, tasks: Sequence[PlannedTask]) -> ScoreStage:
    """Scores of every (checkpoint, task) of ``study`` with its scorer, each checkpoint's generator tokenizer at
    hand for EAD's ``tokenizer: generator``."""
    return ScoreStage(
        scorer_spec(study),
        sampled_names(study),
        tuple(planned.name for planned in tasks),
        {sampled.name: sampled.checkpoint.generator_tokenizer() for sampled in study.sampled()},
    )


def judge_config(study: Study, tasks: Sequence[PlannedTask]) -> JudgeConfig | None:
    """What ``study``'s judge judges: its protocols (the study's for its tasks when it names none), outputs, and
    each checkpoint's baseline (the judge's ``baseline``, else the checkpoint's lineage base); None without a
    judge."""
    if study.judge is None:
        return None
    judge = study.judge
    protocols = judge.protocols if judge.protocols is not None else study_protocols([p.name for p in tasks])
    graph = study.graph()
    baselines = {} if judge.baseline else {s.name: graph.base_of(s.checkpoint.name) for s in study.sampled()}
    return JudgeConfig(judge.model, dict(protocols), judge.outputs, judge.baseline, baselines)


def judge_stage(study: Study, tasks: Sequence[PlannedTask], layout: RunLayout) -> JudgeStage | None:
    """The judge stage of ``study`` over ``tasks`` (None when the study has no judge or judges none of them)."""
    config = judge_config(study, tasks)
    if config is None or study.judge is None or not any(p.name in config.protocols for p in tasks):
        return None
    judge = study.judge
    endpoint = JudgeEndpoint(
        base_url=judge.endpoint,
        api_key_env=judge.api_key_env,
        max_concurrency=judge.max_concurrency,
        max_retries=judge.max_retries,
        timeout=judge.timeout,
    )
    return JudgeStage(
        sampled_names(study),
        tuple(planned.name for planned in tasks),
        config,
        endpoint,
        str(layout.judge_cache_file),
    )


def homogenize_stage(study: Study, tasks: Sequence[PlannedTask]) -> HomogenizeStage | None:
    """How alike every pair of ``study``'s checkpoints' outputs are on each task, with the study's sentence
    embedder; None unless the study asks for it (``homogenization``)."""
    if not study.homogenization:
        return None
    return HomogenizeStage(
        study.embedder_settings(),
        tuple(checkpoint.name for checkpoint in study.checkpoints),
        tuple(planned.name for planned in tasks),
    )
