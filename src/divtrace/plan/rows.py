"""The plan of a study run: shards, samples and an estimate of tokens and time, before anything runs."""

from __future__ import annotations

from dataclasses import dataclass

from divtrace.generate.job import shard_starts
from divtrace.plan.cost import GenerationSize, cost_rows
from divtrace.runs.layout import RunLayout
from divtrace.runs.outputs import unit_state
from divtrace.study import Study
from divtrace.study.planned import PlannedTask
from divtrace.study.stages import generate_stage


@dataclass(frozen=True)
class PlanRow(GenerationSize):
    """One (checkpoint, task) unit of generation: its size (samples, token cap), shards, and whether it is done."""

    checkpoint: str
    task: str
    backend: str
    shards: int
    done: bool


def plan_study(study: Study, layout: RunLayout, tasks: list[PlannedTask]) -> list[PlanRow]:
    """One row per (checkpoint or sweep condition, task), with whether its generation is already complete in
    ``layout`` (its marker holds its key and its shards have their recorded sizes: digests are left to the run)."""
    stage = generate_stage(study, tasks, layout)
    units = iter(stage.units(layout))  # one per (sampled checkpoint, task), in this order
    rows = []
    for sampled in study.sampled():
        for planned in tasks:
            unit, params = next(units), study.sampling_for(planned, sampled.condition)
            rows.append(
                PlanRow(
                    checkpoint=sampled.name,
                    task=planned.name,
                    backend=sampled.checkpoint.backend,
                    prompts=len(planned.prompts),
                    k=params.k,
                    shards=len(shard_starts(len(planned.prompts), study.shard_size)),
                    max_new_tokens=params.max_new_tokens,
                    done=unit_state(layout.root, unit.marker, unit.key, unit.outputs, digests=False).done,
                )
            )
    return rows


def plan_without_data(study: Study) -> list[PlanRow]:
    """The plan from the study alone, for ``--dry-run`` where task data cannot be loaded: N is the study's override
    or the task's default (the real N may be smaller when a dataset has fewer rows); nothing counts as done."""
    backends = {sampled.name: sampled.checkpoint.backend for sampled in study.sampled()}
    return [
        PlanRow(
            checkpoint=row.checkpoint,
            task=row.task,
            backend=backends[row.checkpoint],
            prompts=row.prompts,
            k=row.k,
            shards=len(shard_starts(row.prompts, study.shard_size)),
            max_new_tokens=row.max_new_tokens,
            done=False,
        )
        for row in sorted(cost_rows(study), key=lambda row: list(backends).index(row.checkpoint))
    ]
