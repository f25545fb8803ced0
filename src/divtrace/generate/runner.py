"""Generate K samples per prompt for one (checkpoint, task), shard by shard, resuming finished work."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from divtrace.errors import RunInterrupted
from divtrace.generate.job import GenerationJob
from divtrace.generate.params import SamplingParams, sample_seed
from divtrace.generate.prompts import PromptItem
from divtrace.generate.protocol import Completion, GenerationRequest, Generator
from divtrace.generate.render_options import RenderOptions
from divtrace.generate.resume import (
    Expectation,
    ModelSource,
    ResumeMismatchError,
    difference,
    generation_status,
    mismatch_message,
)
from divtrace.generate.stops import effective_stops
from divtrace.generate.store import read_shard_keys, read_shard_settings, sample_key, shard_path
from divtrace.generate.thinking import prompt_opens_thinking, split_thinking
from divtrace.progress import TOKENS, ProgressEvent, ProgressSink, emit
from divtrace.samples import SampleRecord, write_samples


@dataclass
class GenerationSummary:
    """What a :func:`generate_samples` call did: shards in the plan, found finished, and written now."""

    shards: int = 0
    skipped_shards: int = 0
    written_shards: int = 0
    samples_written: int = 0
    paths: list[Path] = field(default_factory=list)
    model_loaded: bool = True


@dataclass(frozen=True)
class _PlannedPrompt:
    item: PromptItem
    rendered: str
    messages: tuple[dict[str, str], ...] | None
    seeds: tuple[int, ...]
    keys: tuple[str, ...]


@dataclass(frozen=True)
class ShardPlan:
    """Shards of one generation job, by shard index: prompts rendered and keyed, and what every record will say.

    Built where the model's tokenizer is (:func:`plan_shards`, for every shard of the job or some of them); a shard
    is then drawn by :func:`generate_shard` wherever that generator lives (this process, or a Ray actor) and
    written by whoever owns the run directory.
    """

    job: GenerationJob
    shards: dict[int, tuple[_PlannedPrompt, ...]]
    params: SamplingParams
    sampling: dict[str, Any]
    model_ref: dict[str, Any]

    def shard_keys(self, index: int) -> list[list[str]]:
        """The sample keys of shard ``index``, per prompt (what :func:`shard_is_finished` checks)."""
        return [list(p.keys) for p in self.shards[index]]

    def shard_samples(self, index: int) -> int:
        """Samples in shard ``index``."""
        return sum(len(p.seeds) for p in self.shards[index])

    def expectation(self, index: int) -> Expectation:
        """Everything shard ``index`` must hold, for naming what differs in a stored one."""
        shard = self.shards[index]
        return Expectation(
            tuple(p.item for p in shard),
            self.params,
            {**self.sampling, "stop": list(self.params.stop)},
            self.model_ref,
            rendered=tuple(p.rendered for p in shard),
            complete=True,
        )

    def shard_is_finished(self, index: int) -> bool:
        """True when shard ``index``'s file holds exactly its sample keys; False when there is no file. Raises
        :class:`~divtrace.generate.resume.ResumeMismatchError` naming the first setting that differs when the file
        holds other samples, DivtraceError when it is not a divtrace shard."""
        path = self.job.shard_path(index)
        found = read_shard_keys(path)
        if found is None:
            return False
        if found == self.shard_keys(index):
            return True
        stored = read_shard_settings(path) or []
        raise ResumeMismatchError(mismatch_message(path, difference(stored, self.expectation(index))))


def plan_shards(generator: Generator, job: GenerationJob, indices: Sequence[int] | None = None) -> ShardPlan:
    """Render the prompts of shards ``indices`` of ``job`` (None: every shard), apply the stop policy, check the
    backend's effective parameters and key every prompt.

    ``job.params.stop`` are the task's stop sequences; the plan's ``params`` carry the ones in effect
    (:func:`~divtrace.generate.stops.effective_stops` for the prompts' rendering), which are recorded on every
    sample and are part of every sample key. Raises :class:`~divtrace.generate.params.UnsupportedSamplingError`
    when the backend would change a requested parameter (before any work).
    """
    spans = job.shard_ranges()
    chosen = range(len(spans)) if indices is None else indices
    render = job.render
    rendered = {index: [_render(generator, job.prompts[p], render) for p in spans[index]] for index in chosen}
    first = next((text for texts in rendered.values() for text in texts), None)
    uses_template = first[1] is not None if first is not None else False
    params = job.params.model_copy(update={"stop": effective_stops(job.params.stop, render.stops, uses_template)})
    effective = generator.check(params)
    model_ref = generator.model_ref()
    shards = {
        index: tuple(
            _plan(job.prompts[p], text, messages, params, render, effective, model_ref)
            for p, (text, messages) in zip(spans[index], texts, strict=True)
        )
        for index, texts in rendered.items()
    }
    sampling = {
        **effective,
        "chat_template": uses_template,
        "stop_policy": render.stops.value,
        "system_prompt": render.system_prompt,
        "thinking": render.thinking.value,
    }
    return ShardPlan(job, shards, params, sampling, model_ref)


def generate_shard(
    generator: Generator,
    plan: ShardPlan,
    index: int,
    progress: ProgressSink | None = None,
) -> list[SampleRecord]:
    """Draw every sample of shard ``index`` of ``plan`` (sample k of prompt p with its planned seed, with the
    plan's effective parameters); ``progress`` gets the backend's events (tokens of this shard's budget)."""
    shard = plan.shards[index]
    params = plan.params
    requests = [
        GenerationRequest(
            prompt_id=p.item.prompt_id,
            prompt=p.item.prompt,
            rendered=p.rendered,
            seeds=p.seeds,
            messages=p.messages,
        )
        for p in shard
    ]
    completions = generator.generate(requests, params, progress)
    return [
        _record(p, done, plan.job.checkpoint, plan.job.task, plan.sampling, plan.model_ref)
        for p, done in zip(shard, completions, strict=True)
    ]


def write_shard(records: Sequence[SampleRecord], out_dir: str | Path, checkpoint: str, task: str, index: int) -> Path:
    """Write shard ``index`` of (checkpoint, task) atomically, clearing temporaries a killed run left; its path."""
    path = shard_path(out_dir, checkpoint, task, index)
    _remove_stale_temporaries(path)
    write_samples(records, path)
    return path


def generate_samples(
    generator: Generator,
    job: GenerationJob,
    progress: ProgressSink | None = None,
    shards: Sequence[int] | None = None,
) -> GenerationSummary:
    """Draw ``job.params.k`` samples for every prompt of ``job`` and store them as its shards (``shards``: only
    those shard indices; None: every shard).

    Contract:
    - the backend's effective parameters are checked first (``generator.check``); a backend that would change a
      requested parameter raises :class:`~divtrace.generate.params.UnsupportedSamplingError` before any work;
    - sample ``k`` of prompt ``p`` is drawn with seed ``sample_seed(params.seed, p.prompt_id, k)``;
    - a shard whose file already holds the expected sample keys is skipped; a file with other keys raises
      :class:`~divtrace.generate.resume.ResumeMismatchError` naming the setting that differs; every other shard is
      generated in full and written atomically, so killing the process at any moment and calling again with the
      same arguments finishes the work with no sample duplicated or missing; Ctrl-C raises
      :class:`~divtrace.errors.RunInterrupted` counting the shards that are stored;
    - each record holds the raw ``outputs``, ``reasoning`` and ``responses`` (thinking stripped), seeds, finish
      reasons, token counts, the effective ``sampling`` and the ``model_ref``, plus ``rendered_prompt`` and
      ``sample_keys``.

    Progress: ``progress`` gets :class:`~divtrace.progress.ProgressEvent` values of the unit
    ``checkpoint/task`` counting tokens of the budget (:data:`~divtrace.progress.TOKENS`: ``max_new_tokens`` per
    sample of the chosen shards): the total first, before the backend is asked anything (its parameter check may
    send a request), then finished shards as found, then within each shard as the backend draws (per decoding
    step, request or sample, as the backend can tell). The stage is left empty for the caller.
    """
    spans = job.shard_ranges()
    chosen = list(range(len(spans)) if shards is None else shards)
    budget = job.params.max_new_tokens
    unit = f"{job.checkpoint}/{job.task}"
    total = sum(len(spans[index]) for index in chosen) * job.params.k * budget  # known before rendering anything
    emit(progress, 0, total, TOKENS, unit=unit)
    plan = plan_shards(generator, job, chosen)
    summary = GenerationSummary(shards=len(chosen))
    done = 0
    try:
        for index in chosen:
            shard_tokens = plan.shard_samples(index) * budget
            if plan.shard_is_finished(index):
                summary.skipped_shards += 1
                done += shard_tokens
                emit(progress, done, total, TOKENS, unit=unit)
                continue
            records = generate_shard(generator, plan, index, _within(progress, unit, done, total))
            done += shard_tokens
            emit(progress, done, total, TOKENS, unit=unit)
            summary.paths.append(write_shard(records, job.out_dir, job.checkpoint, job.task, index))
            summary.written_shards += 1
            summary.samples_written += sum(len(r.outputs) for r in records)
    except KeyboardInterrupt:
        done = summary.written_shards + summary.skipped_shards
        raise RunInterrupted("generate", done, f"of {len(chosen)} shard(s) in {job.out_dir}") from None
    return summary


def generate_if_needed(
    make_generator: Callable[[], Generator],
    job: GenerationJob,
    source: ModelSource,
    progress: ProgressSink | None = None,
) -> GenerationSummary:
    """:func:`generate_samples` of ``job`` with the generator ``make_generator`` builds, built only when some shard
    is not confirmed done by :func:`~divtrace.generate.resume.generation_status` (``source`` says which model and
    backend ``make_generator`` loads); the generator is closed afterwards.

    When everything is done the summary has ``model_loaded`` False and every shard skipped. Raises
    :class:`~divtrace.generate.resume.ResumeMismatchError` (naming the setting) for a stored shard made with other
    settings, before loading the model when the difference is in a requested setting.
    """
    status = generation_status(job, source)
    if status.done:
        tokens = job.samples * job.params.max_new_tokens
        emit(progress, tokens, tokens, TOKENS, unit=f"{job.checkpoint}/{job.task}")
        return GenerationSummary(status.shards, status.shards, model_loaded=False)
    generator = make_generator()
    try:
        return generate_samples(generator, job, progress)
    finally:
        generator.close()


def _within(progress: ProgressSink | None, unit: str, before: int, total: int) -> ProgressSink | None:
    """The backend's events of one shard (tokens of that shard's budget) as events of the whole ``unit``: offset
    by the ``before`` tokens of the shards before it, out of the unit's ``total``."""
    if progress is None:
        return None
    target = progress

    def forward(event: ProgressEvent) -> None:
        target(ProgressEvent("", unit, before + event.done, total, TOKENS, event.step))

    return forward


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files a killed earlier run left for this shard (atomic writes name them ``.NAME.*.tmp``)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def _render(
    generator: Generator, item: PromptItem, render: RenderOptions
) -> tuple[str, tuple[dict[str, str], ...] | None]:
    return generator.render(
        item.prompt, system_prompt=render.system_prompt, chat_template=render.chat_template, thinking=render.thinking
    )


def _plan(
    item: PromptItem,
    rendered: str,
    messages: tuple[dict[str, str], ...] | None,
    params: SamplingParams,
    render: RenderOptions,
    effective: dict[str, Any],
    model_ref: dict[str, Any],
) -> _PlannedPrompt:
    seeds = tuple(sample_seed(params.seed, item.prompt_id, k) for k in range(params.k))
    keyed_sampling = {**effective, "system_prompt": render.system_prompt, "thinking": render.thinking.value}
    keys = tuple(sample_key(model_ref, rendered, keyed_sampling, seed, k) for k, seed in enumerate(seeds))
    return _PlannedPrompt(item, rendered, messages, seeds, keys)


def _record(
    planned: _PlannedPrompt,
    completions: list[Completion],
    checkpoint: str,
    task: str,
    sampling: dict[str, Any],
    model_ref: dict[str, Any],
) -> SampleRecord:
    if len(completions) != len(planned.seeds):
        raise RuntimeError(
            f"backend returned {len(completions)} samples for prompt {planned.item.prompt_id!r}, "
            f"{len(planned.seeds)} requested"
        )
    opened = prompt_opens_thinking(planned.rendered)
    split = [split_thinking(c.text, opened) for c in completions]
    return SampleRecord(
        prompt_id=planned.item.prompt_id,
        prompt=planned.item.prompt,
        outputs=[c.text for c in completions],
        checkpoint=checkpoint,
        task=task,
        sample_seeds=[c.seed for c in completions],
        finish_reasons=[c.finish_reason for c in completions],
        output_tokens=[c.output_tokens for c in completions]
        if all(c.output_tokens is not None for c in completions)
        else None,
        reasoning=[s.reasoning for s in split],
        responses=[s.response for s in split],
        thinking_unclosed=[s.unclosed for s in split],
        sampling=sampling,
        model_ref=model_ref,
        references=planned.item.references,
        rendered_prompt=planned.rendered,
        sample_keys=list(planned.keys),
    )
