"""The generate stage: K samples per prompt for every (checkpoint, task), shard by shard.

A unit is one (checkpoint, task) generation (:class:`~divtrace.generate.job.GenerationJob`); its outputs and work
items are its shards (:meth:`GenerationJob.shard_ranges`), grouped by checkpoint, so a worker loads a checkpoint's
model once and draws shard after shard. A worker plans a job once (renders and keys its prompts,
:func:`~divtrace.generate.runner.plan_shards`) and returns a shard's records, or None when the shard's file
already holds exactly its sample keys; a stored shard made with other settings raises
:class:`~divtrace.generate.resume.ResumeMismatchError` naming the setting, wherever the worker runs. The driver
writes each shard as it arrives and the unit's marker once all its shards are stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from divtrace.generate.backends.options import BackendOptions, OpenAIOptions, TransformersOptions, tensor_parallel_size
from divtrace.generate.job import GenerationJob
from divtrace.generate.protocol import Generator
from divtrace.generate.resume import ModelSource, ResumeMismatchError, difference, generation_status, mismatch_message
from divtrace.generate.runner import ShardPlan, generate_shard, plan_shards, write_shard
from divtrace.generate.store import read_shard_settings
from divtrace.progress import SAMPLES, UNITS_OF_WORK, ProgressEvent, ProgressSink
from divtrace.runs.layout import RunLayout
from divtrace.runs.markers import is_done
from divtrace.runs.stage import Stage, Unit, WorkItem
from divtrace.samples import SampleRecord

#: Bumped when the same settings draw other samples (stored generations are then re-checked shard by shard).
GENERATE_VERSION = 1

#: A shard's records; None when its file already holds them.
ShardResult = list[SampleRecord] | None


@dataclass(frozen=True)
class CheckpointModel:
    """A checkpoint's model as the generate stage loads it: ``backend`` (``transformers``, ``vllm``, ``openai``),
    the model reference, its revision and the backend's typed options (the revision and the adapter included for
    local backends: a Ray actor gets this object and loads the same model + adapter from it)."""

    name: str
    backend: str
    model: str
    revision: str | None
    options: BackendOptions

    @property
    def adapter(self) -> str | None:
        """The LoRA adapter applied on the model (its reference), or None."""
        return getattr(self.options, "adapter", None)

    def identity(self) -> dict[str, Any]:
        """What the model's samples depend on, for the generation key. With an adapter, its content digest in place
        of its path (a changed adapter file redoes the generation, whose stored shards are then refused naming the
        adapter; a moved one does not); without one, exactly what it was before adapters existed."""
        options = self.options.model_dump(mode="json")
        identity = {"backend": self.backend, "model": self.model, "revision": self.revision, "options": options}
        if self.adapter is not None:
            from divtrace.generate.models import resolve_adapter

            options.pop("adapter")
            identity["adapter"] = resolve_adapter(self.adapter).identity
        return identity

    def gpus(self) -> float:
        """GPUs one replica holds: vLLM's ``tensor_parallel_size``, else 1; 0 for a served model (its GPUs are the
        server's)."""
        return 0.0 if isinstance(self.options, OpenAIOptions) else float(tensor_parallel_size(self.options))

    def load(self, threads: int | None = None) -> Generator:
        """The generator (``threads``: CPU threads of a transformers model, unless its options set them)."""
        from divtrace.generate.backends import create_generator

        options = self.options
        if isinstance(options, TransformersOptions):
            options = options.with_defaults(threads=threads)
        return create_generator(self.backend, self.model, options)


@dataclass(frozen=True)
class ShardWork:
    """One shard to draw: shard ``index`` of the (``checkpoint``, ``task``) job, and what its file holds now
    (:func:`~divtrace.generate.store.read_shard_settings`; None: no file)."""

    checkpoint: str
    task: str
    index: int
    stored: list[dict[str, Any]] | None


@dataclass(frozen=True)
class GenerateStage(Stage[ShardWork, ShardResult]):
    """Every (checkpoint, task) generation of a run: ``models`` by checkpoint, ``jobs`` in the order they run
    (checkpoint, then task; a sweep condition's jobs right after its checkpoint's, drawn by its model), each job's
    ``out_dir`` the run directory."""

    name: ClassVar[str] = "generate"
    version: ClassVar[int] = GENERATE_VERSION
    count: ClassVar[str] = SAMPLES
    item_name: ClassVar[str] = "shard"
    loads_model: ClassVar[bool] = True

    models: tuple[CheckpointModel, ...]
    jobs: tuple[GenerationJob, ...]

    def model(self, checkpoint: str) -> CheckpointModel:
        """The model of ``checkpoint``."""
        return next(model for model in self.models if model.name == checkpoint)

    def job(self, checkpoint: str, task: str) -> GenerationJob:
        """The job of (``checkpoint``, ``task``)."""
        return next(job for job in self.jobs if (job.checkpoint, job.task) == (checkpoint, task))

    def unit_key(self, job: GenerationJob) -> str:
        """The key of ``job``'s unit: the model, how prompts are rendered, the sampling, the shard cut, the prompts."""
        render = job.render
        return self.key(
            {
                "model": self.model(job.model_name).identity(),
                "render": {
                    "system_prompt": render.system_prompt,
                    "chat_template": render.chat_template,
                    "thinking": render.thinking.value,
                    "stop_policy": render.stops.value,
                },
                "sampling": job.params.as_record(),  # min_p left out when off: older keys stand
                "shard_size": job.shard_size,
                "prompts": [(item.prompt_id, item.prompt) for item in job.prompts],
            }
        )

    def units(self, layout: RunLayout) -> list[Unit]:
        """One unit per job; its marker is the (checkpoint, task) generation marker, its outputs the job's shard
        files (the marker records each: a shard missing or damaged is drawn again, the others are kept)."""
        units = []
        for job in self.jobs:
            if job.out_dir != layout.root:
                raise ValueError(
                    f"generation job {job.checkpoint}/{job.task} writes to {job.out_dir}, not {layout.root}"
                )
            units.append(
                Unit(
                    f"{job.checkpoint}/{job.task}",
                    self.unit_key(job),
                    layout.generation_marker(job.checkpoint, job.task),
                    tuple(job.shard_path(index) for index in range(len(job.shard_ranges()))),
                    job.checkpoint,
                    job.task,
                    size=job.samples,
                    facts={"prompts": len(job.prompts), "k": job.params.k},
                )
            )
        return units

    def check_resume(self, layout: RunLayout) -> None:
        """Refuse, before any model loads, a stored shard of an unfinished generation made with another requested
        setting (:func:`~divtrace.generate.resume.generation_status`: the prompts, the sampling settings, the
        rendering, the backend and its given options, the model's reference), naming the setting. What only the
        loaded model can tell (a hub revision's commit, the chat template in use) is checked by the worker.

        Raises:
            ResumeMismatchError: a stored shard was made with other settings.
        """
        for unit in self.units(layout):
            if is_done(unit.marker, unit.key) or not layout.sample_files(unit.checkpoint, unit.task):
                continue
            job = self.job(unit.checkpoint, unit.task)
            model = self.model(job.model_name)
            source = ModelSource(model.backend, model.model, model.revision, model.options)
            generation_status(job, source)

    def items(self, layout: RunLayout, unit: Unit) -> list[WorkItem[ShardWork]]:
        """Every shard of the unit, with what its file holds now (which shards are finished is decided by the
        worker, with the model's keys)."""
        job = self.job(unit.checkpoint, unit.task)
        return [
            WorkItem(
                unit,
                ShardWork(job.checkpoint, job.task, index, read_shard_settings(job.shard_path(index))),
                group=job.model_name,
                size=len(span) * job.params.k,
            )
            for index, span in enumerate(job.shard_ranges())
        ]

    def open_worker(self, group: str, threads: int | None, progress: ProgressSink | None) -> ShardDrawer:
        """Load checkpoint ``group``'s model."""
        step = f"loading {group}"
        if progress is not None:
            progress(ProgressEvent(self.name, "", 0, 1, UNITS_OF_WORK, step))
        drawer = ShardDrawer(self, self.model(group).load(threads))
        if progress is not None:
            progress(ProgressEvent(self.name, "", 1, 1, UNITS_OF_WORK, step))
        return drawer

    def save(self, layout: RunLayout, item: WorkItem[ShardWork], result: ShardResult) -> Mapping[str, Any]:
        """Write the shard atomically (nothing when its file already held it)."""
        work = item.payload
        if result is not None:
            write_shard(result, layout.root, work.checkpoint, work.task, work.index)
        return {}

    def worker_gpus(self, group: str) -> float:
        """GPUs of one replica of checkpoint ``group``'s model."""
        return self.model(group).gpus()


class ShardDrawer:
    """A worker of the generate stage: one checkpoint's generator, drawing shard after shard."""

    def __init__(self, stage: GenerateStage, generator: Generator) -> None:
        self.stage = stage
        self.generator = generator
        self._plans: dict[tuple[str, str], ShardPlan] = {}

    def compute(self, payload: ShardWork, progress: ProgressSink | None) -> ShardResult:
        """The records of the shard; None when its file already holds exactly its sample keys.

        Raises :class:`ResumeMismatchError` naming the first setting that differs when the file holds samples made
        otherwise.
        """
        plan = self._plan(payload.checkpoint, payload.task)
        index = payload.index
        if payload.stored is not None:
            if [row["sample_keys"] for row in payload.stored] == plan.shard_keys(index):
                return None
            path = plan.job.shard_path(index)
            raise ResumeMismatchError(mismatch_message(path, difference(payload.stored, plan.expectation(index))))
        return generate_shard(self.generator, plan, index, progress)

    def close(self) -> None:
        """Release the model."""
        self.generator.close()

    def _plan(self, checkpoint: str, task: str) -> ShardPlan:
        """Every shard of the job rendered and keyed, once per job."""
        if (checkpoint, task) not in self._plans:
            self._plans[checkpoint, task] = plan_shards(self.generator, self.stage.job(checkpoint, task))
        return self._plans[checkpoint, task]
