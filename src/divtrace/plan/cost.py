"""A cost model: generated tokens and GPU-hours of a study, from its plan and a measured generation rate.

Generation dominates a study's cost (scoring and verification are CPU work orders of magnitude smaller, see the
performance record), so the model counts generated tokens: per (checkpoint, task), prompts x K x tokens per sample.
Tokens per sample are bounded by the task's ``max_new_tokens``; ``length_fraction`` scales that bound to the mean
length actually observed (1.0 = every sample runs to the limit, the upper bound). GPU-hours are tokens divided by
the rate of one model replica, times the GPUs a replica holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from divtrace.study import CheckpointSpec, Study
from divtrace.study.planned import PlannedTask
from divtrace.study.stages import checkpoint_model
from divtrace.tasks import get_task


@dataclass(frozen=True)
class GenerationSize:
    """The size of one (checkpoint, task) generation: the one token count of the plan and the cost model."""

    prompts: int
    k: int
    max_new_tokens: int

    @property
    def samples(self) -> int:
        """Samples to draw (prompts x K)."""
        return self.prompts * self.k

    @property
    def max_tokens(self) -> int:
        """Upper bound on generated tokens: every sample reaching max_new_tokens (prompts x K x max_new_tokens)."""
        return self.samples * self.max_new_tokens


@dataclass(frozen=True)
class CostRow(GenerationSize):
    """One (checkpoint, task) of the cost model, with the GPUs one replica holds."""

    checkpoint: str
    task: str
    gpus: float


def cost_rows(study: Study) -> list[CostRow]:
    """Per (checkpoint or sweep condition, task): N (the study's override, else the task's default), K, max new
    tokens, GPUs.

    Needs no task data: N comes from the study and the task registry. GPUs per replica: the study's
    ``executor.gpus_per_model``, else a vLLM checkpoint's ``tensor_parallel_size``, else 1 (0 for openai).
    """
    rows = []
    for spec in study.tasks:
        task = get_task(spec.name)
        planned = PlannedTask(spec, task, [], "")
        for sampled in study.sampled():
            params = study.sampling_for(planned, sampled.condition)
            gpus = replica_gpus(study, sampled.checkpoint)
            rows.append(
                CostRow(
                    prompts=spec.n or task.default_n,
                    k=params.k,
                    max_new_tokens=params.max_new_tokens,
                    checkpoint=sampled.name,
                    task=task.name,
                    gpus=gpus,
                )
            )
    return rows


def replica_gpus(study: Study, checkpoint: CheckpointSpec) -> float:
    """GPUs one replica of ``checkpoint`` holds: the study's ``executor.gpus_per_model``, else a vLLM checkpoint's
    ``tensor_parallel_size``, else 1 (0 for openai, whose GPUs are the server's)."""
    if study.executor.gpus_per_model is not None:
        return study.executor.gpus_per_model
    return checkpoint_model(checkpoint).gpus()


@dataclass(frozen=True)
class CostEstimate:
    """Totals of the cost model for one generation rate."""

    samples: int
    tokens: float
    gpu_hours: float
    tokens_per_s: float
    length_fraction: float


def estimate_cost(study: Study, tokens_per_s: float, *, length_fraction: float = 1.0) -> CostEstimate:
    """Samples, generated tokens and GPU-hours of ``study`` at ``tokens_per_s`` per model replica.

    Raises ValueError for a non-positive rate or a length fraction outside (0, 1].
    """
    if tokens_per_s <= 0:
        raise ValueError(f"tokens_per_s must be positive, got {tokens_per_s}")
    if not 0 < length_fraction <= 1:
        raise ValueError(f"length_fraction must be in (0, 1], got {length_fraction}")
    rows = cost_rows(study)
    tokens = sum(row.max_tokens * length_fraction for row in rows)
    gpu_seconds = sum(row.max_tokens * length_fraction / tokens_per_s * row.gpus for row in rows)
    return CostEstimate(
        samples=sum(row.samples for row in rows),
        tokens=tokens,
        gpu_hours=gpu_seconds / 3600,
        tokens_per_s=tokens_per_s,
        length_fraction=length_fraction,
    )
