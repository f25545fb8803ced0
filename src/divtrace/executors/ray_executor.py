"""The Ray executor: the stages of the local executor, with generation, verification and scoring spread over a
Ray cluster (``executor: ray`` in the study, or ``divtrace run --executor ray --address HOST:PORT``).

- **Generation**: the shards are those of :func:`divtrace.runs.stages.generation_shards`, the list the local
  executor works through too: each is drawn under its own index and written with the same file, keys and unit
  marker as the local executor's. Each checkpoint gets ``executor.replicas`` actors that load its model once
  and draw shard after shard (resources from the study: ``executor.gpus_per_model`` GPUs,
  ``executor.cpus_per_worker`` CPUs each). Checkpoints are taken in study order and an actor is killed as soon
  as its checkpoint has no shard left, so every model is loaded once per replica and the next checkpoint's
  actors take the freed resources.
- **Verification** runs as CPU tasks, one per (checkpoint, task); **scoring** on ``executor.replicas`` actors
  that keep the sentence encoder (and NLI model) loaded across units.
- **Writing** happens only here, in the driver, which owns the run directory: a shard or table arrives whole
  from a worker and is written atomically with its completion marker, as it finishes. A worker killed mid-shard
  loses that shard only: Ray restarts the actor (``max_restarts``) and retries the call (``max_task_retries``);
  the run directory never holds a partial or a duplicated shard, and markers make a re-run skip finished work.

Samples are identical to the local executor's: every sample is drawn with its own seed, whatever worker or batch
it lands in. Workers must be able to import divtrace (same environment on every node, or a Ray runtime_env).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

from divtrace.errors import DivtraceError
from divtrace.executors.local import StageStart, run_study
from divtrace.executors.ray_connect import CONNECT_TIMEOUT_S, init_ray, ray_auth
from divtrace.generate.backends.options import BackendOptions, TransformersOptions
from divtrace.generate.job import GenerationJob
from divtrace.generate.runner import write_shard
from divtrace.generate.store import keys_match, read_shard_keys
from divtrace.plan.cost import replica_gpus
from divtrace.runs.layout import RunLayout
from divtrace.runs.stages import (
    PlannedTask,
    RunProgress,
    ShardJob,
    StageReport,
    StageUnit,
    generation_shards,
    interruptible,
    read_task_samples,
    score_units,
    shards_by_unit,
    stored_verdicts,
    study_scorer,
    unit_vocab_size,
    verify_units,
)
from divtrace.samples import SampleRecord
from divtrace.study import CheckpointSpec, Study

#: How often Ray restarts a dead actor and retries the call it was running.
MAX_RETRIES = 3


def _ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise DivtraceError("the ray executor needs Ray: pip install 'divtrace[ray]'") from err
    return ray


class ShardGenerator:
    """A Ray actor body: one checkpoint's model, loaded once, drawing shard after shard."""

    def __init__(self, backend: str, model: str, options: BackendOptions, threads: int | None) -> None:
        from divtrace.generate.backends import create_generator

        if isinstance(options, TransformersOptions):
            options = options.with_defaults(threads=threads)
        self.generator = create_generator(backend, model, **options.constructor_kwargs())

    def pid(self) -> int:
        """The worker process id (tests kill it)."""
        return os.getpid()

    def generate(self, job: GenerationJob, index: int, found_keys: list[list[str]] | None) -> list[SampleRecord] | None:
        """The records of shard ``index`` of ``job``, or None when ``found_keys`` (the keys stored in its file) are
        already these."""
        from divtrace.generate.runner import generate_shard, plan_shards

        plan = plan_shards(self.generator, job, [index])
        if keys_match(job.shard_path(index), found_keys, plan.shard_keys(index)):
            return None
        return generate_shard(self.generator, plan, index)

    def close(self) -> None:
        """Release the model."""
        self.generator.close()


class UnitScorer:
    """A Ray actor body: the study's scorer (metrics and encoders), loaded once, scoring unit after unit."""

    def __init__(self, study: dict[str, Any], threads: int | None) -> None:
        from divtrace.runs.stages import study_scorer

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.scorer = study_scorer(Study.model_validate(study))

    def score(self, records: list[SampleRecord], verdicts: Any, vocab_size: int | None) -> Any:
        """The score table of one unit (see :func:`divtrace.runs.stages.score_unit`)."""
        from divtrace.runs.stages import score_unit

        return score_unit(self.scorer, records, verdicts, vocab_size)


def _verify_unit(records: list[SampleRecord], checkpoint: str, planned: PlannedTask, data_dir: str | None) -> Any:
    """A Ray task body: the verdicts of one unit."""
    from divtrace.runs.stages import compute_verdicts

    return compute_verdicts(records, checkpoint, planned, data_dir)


class RayExecutor:
    """Runs a study's stages on a Ray cluster (see the module documentation).

    As a context manager it joins the cluster at ``address`` unless this process already has a Ray session:
    the address is checked first with ``connect_timeout_s`` (:func:`divtrace.executors.ray_connect.init_ray`),
    and token authentication follows :func:`divtrace.executors.ray_connect.ray_auth`. On leaving, it shuts down
    only a session it started. Ctrl-C during :meth:`run` kills this run's actors, cancels its tasks and raises
    :class:`divtrace.errors.RunInterrupted`.
    """

    def __init__(
        self,
        study: Study,
        out: str | Path,
        *,
        address: str | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.study = study
        self.layout = RunLayout(out)
        self.address = address if address is not None else study.executor.address
        self.connect_timeout_s = connect_timeout_s
        self.ray = _ray()
        self.owns_connection = False
        self._session = contextlib.ExitStack()

    # ----------------------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> RayExecutor:
        self.owns_connection = not self.ray.is_initialized()
        if self.owns_connection:
            with contextlib.ExitStack() as session:
                session.enter_context(ray_auth())  # kept until ray.shutdown
                init_ray(self.ray, self.address, self.connect_timeout_s)
                self._session = session.pop_all()
        return self

    def __exit__(self, *_: object) -> None:
        if self.owns_connection:  # a caller's own Ray session stays up
            try:
                self.ray.shutdown()
            finally:
                self._session.close()

    def run(
        self,
        tasks: list[PlannedTask] | None = None,
        progress: RunProgress | None = None,
        on_stage: StageStart | None = None,
    ) -> list[StageReport]:
        """Every stage, in order: the local executor's sequence with this cluster's generate, verify and score."""
        return run_study(
            self.study,
            self.layout.root,
            tasks=tasks,
            progress=progress,
            on_stage=on_stage,
            generate=lambda _study, _layout, planned, report: self.generate(planned, report),
            verify=lambda _study, _layout, planned, report: self.verify(planned, report),
            score=lambda _study, _layout, planned, report: self.score(planned, report),
        )

    # ----------------------------------------------------------------------------------------------- generate

    def gpus_for(self, checkpoint: CheckpointSpec) -> float:
        """GPUs per generator actor of ``checkpoint``: :func:`divtrace.plan.cost.replica_gpus`, but none on a
        cluster without GPUs unless the study asks for them (``executor.gpus_per_model``)."""
        if self.study.executor.gpus_per_model is None and self.ray.cluster_resources().get("GPU", 0) <= 0:
            return 0.0  # a CPU cluster (CPU vLLM included): an actor asking for a GPU would never run
        return replica_gpus(self.study, checkpoint)

    def _actor_options(self, checkpoint: CheckpointSpec) -> dict[str, Any]:
        return {
            "num_cpus": self.study.executor.cpus_per_worker,
            "num_gpus": self.gpus_for(checkpoint),
            "max_restarts": MAX_RETRIES,
            "max_task_retries": MAX_RETRIES,
        }

    def generate(self, tasks: list[PlannedTask], progress: RunProgress | None = None) -> StageReport:
        """Draw every shard of :func:`~divtrace.runs.stages.generation_shards` on generator actors, checkpoint by
        checkpoint; write each shard as it arrives, and a unit's marker once all its shards are written."""
        report = StageReport("generate")
        shards = generation_shards(self.study, self.layout, tasks, report)
        if not shards:
            return report
        with interruptible(report):
            self._generate_shards(shards, report, progress)
        return report

    def _generate_shards(self, shards: list[ShardJob], report: StageReport, progress: RunProgress | None) -> None:
        """Start each checkpoint's actors, queue its shards, write shards and unit markers as they arrive."""
        ray = self.ray
        threads = max(1, int(self.study.executor.cpus_per_worker))
        actors: dict[str, list[Any]] = {}
        pending: dict[Any, ShardJob] = {}
        units = shards_by_unit(shards)
        try:
            for checkpoint in self.study.checkpoints:  # study order: Ray places actors as resources free up
                items = [shard for shard in shards if shard.checkpoint.name == checkpoint.name]
                if not items:
                    continue
                remote = ray.remote(ShardGenerator).options(**self._actor_options(checkpoint))
                replicas = max(1, min(self.study.executor.replicas, len(items)))
                actors[checkpoint.name] = [
                    remote.remote(checkpoint.backend, checkpoint.model, items[0].options, threads)
                    for _ in range(replicas)
                ]
                jobs = {unit: ray.put(group[0].generation) for unit, group in shards_by_unit(items).items()}
                for position, shard in enumerate(items):  # a unit's job is sent once, not once per shard
                    future = actors[checkpoint.name][position % replicas].generate.remote(
                        jobs[shard.checkpoint.name, shard.task.name], shard.index, read_shard_keys(shard.path)
                    )
                    pending[future] = shard
            shards_left = Counter(shard.unit for shard in pending.values())
            samples_done: Counter[str] = Counter()
            left = Counter(shard.checkpoint.name for shard in pending.values())  # per checkpoint
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                shard = pending.pop(ready[0])
                records = self._get(ready[0], f"generating {shard.unit} shard {shard.index}")
                if records is not None:
                    write_shard(records, self.layout.root, shard.checkpoint.name, shard.task.name, shard.index)
                unit = units[shard.checkpoint.name, shard.task.name]
                shards_left[shard.unit] -= 1
                samples_done[shard.unit] += shard.samples
                if progress is not None:
                    progress("generate", f"{shard.checkpoint.name} / {shard.task.name}", samples_done[shard.unit],
                             sum(s.samples for s in unit))  # fmt: skip
                if shards_left[shard.unit] == 0:
                    shard.mark_unit_done()
                    report.ran.append(shard.unit)
                left[shard.checkpoint.name] -= 1
                if left[shard.checkpoint.name] == 0:  # free the resources for the next checkpoint's actors
                    for actor in actors.pop(shard.checkpoint.name):
                        ray.kill(actor)
        finally:
            for group in actors.values():
                for actor in group:
                    ray.kill(actor)

    def _get(self, future: Any, what: str) -> Any:
        try:
            return self.ray.get(future)
        except self.ray.exceptions.RayError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, DivtraceError):
                raise cause from err
            raise DivtraceError(f"ray executor: {what} failed: {err}") from err

    # ------------------------------------------------------------------------------------------ verify, score

    def _save_as_they_finish(
        self,
        pending: dict[Any, StageUnit],
        report: StageReport,
        progress: RunProgress | None,
        count: str,
        facts: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Wait for every unit's table; save each (table + marker) as it arrives, recording its length as ``count``
        and the unit's ``facts`` (by unit name) in its marker, as the local executor does.
        Ctrl-C cancels the units still pending and raises :class:`divtrace.errors.RunInterrupted`."""
        total = len(pending)
        with interruptible(report):
            try:
                while pending:
                    ready, _ = self.ray.wait(list(pending), num_returns=1)
                    unit = pending.pop(ready[0])
                    table = self._get(ready[0], f"{report.stage} {unit.name}")
                    unit.save(table, **{count: len(table)}, **(facts or {}).get(unit.name, {}))
                    report.ran.append(unit.name)
                    if progress is not None:
                        progress(report.stage, "units", len(report.ran), total)
            finally:
                for future in pending:  # interrupted or failed: nothing left running for this run
                    self.ray.cancel(future, force=True)

    def verify(self, tasks: list[PlannedTask], progress: RunProgress | None = None) -> StageReport:
        """Verify every pending unit as a CPU task; write each unit's verdicts as they arrive."""
        report = StageReport("verify")
        units = verify_units(self.study, self.layout, tasks, report)
        if not units:
            return report
        remote = self.ray.remote(_verify_unit).options(
            num_cpus=self.study.executor.cpus_per_worker, max_retries=MAX_RETRIES
        )
        pending = {
            remote.remote(
                read_task_samples(self.layout, u.checkpoint, u.task.name), u.checkpoint, u.task, self.study.data_dir
            ): u
            for u in units
        }
        self._save_as_they_finish(pending, report, progress, "samples")
        return report

    def score(self, tasks: list[PlannedTask], progress: RunProgress | None = None) -> StageReport:
        """Score every pending unit on scorer actors that keep the encoder loaded; write as results arrive."""
        report = StageReport("score")
        units = score_units(self.study, self.layout, tasks, report)
        if not units:
            return report
        spec = self.study.executor
        remote = self.ray.remote(UnitScorer).options(
            num_cpus=spec.cpus_per_worker, max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES
        )
        threads = max(1, int(spec.cpus_per_worker))
        study = self.study.model_dump(mode="json")
        scorers = [remote.remote(study, threads) for _ in range(max(1, min(spec.replicas, len(units))))]
        driver_scorer = study_scorer(self.study)  # loads no model: says which V EAD takes, and records it
        pending, facts = {}, {}
        for position, unit in enumerate(units):
            records = read_task_samples(self.layout, unit.checkpoint, unit.task.name)
            verdicts = stored_verdicts(self.layout, unit.checkpoint, unit.task.name)
            vocab_size = unit_vocab_size(driver_scorer, self.study.checkpoint(unit.checkpoint))
            future = scorers[position % len(scorers)].score.remote(records, verdicts, vocab_size)
            pending[future] = unit
            facts[unit.name] = {"metrics": driver_scorer.metric_settings(vocab_size)}
        try:
            self._save_as_they_finish(pending, report, progress, "rows", facts)
        finally:
            for scorer in scorers:
                self.ray.kill(scorer)
        return report


def run_study_ray(
    study: Study,
    out: str | Path,
    *,
    address: str | None = None,
    tasks: list[PlannedTask] | None = None,
    progress: RunProgress | None = None,
    on_stage: StageStart | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> list[StageReport]:
    """Run ``study`` into the run directory ``out`` on the Ray cluster at ``address`` (default: the study's
    ``executor.address``; None starts a local Ray instance). Same outputs, markers and resumption as
    :func:`divtrace.executors.local.run_study`. Raises DivtraceError when no cluster answers within
    ``connect_timeout_s`` or it refuses divtrace's token; Ctrl-C raises :class:`divtrace.errors.RunInterrupted`
    after killing this run's actors (and shutting down a Ray that this call started)."""
    with RayExecutor(study, out, address=address, connect_timeout_s=connect_timeout_s) as executor:
        return executor.run(tasks, progress, on_stage)
