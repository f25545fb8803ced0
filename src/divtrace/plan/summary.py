"""The plan of a study as one structure: per (checkpoint, task) rows with estimated time, per-checkpoint subtotals,
totals and notes; what ``divtrace run --dry-run`` prints, as a table or (:meth:`PlanSummary.frame`) CSV/JSON.

Times are upper bounds: every sample is counted at its task's ``max_new_tokens``, at the rate
:func:`~divtrace.plan.throughput.rate_for` chooses for the checkpoint's backend, device and model size, and each
rate carries its provenance (measured, with its results file, or assumed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from divtrace.generate.backends.options import OpenAIOptions
from divtrace.plan.cost import replica_gpus
from divtrace.plan.rows import PlanRow
from divtrace.plan.throughput import THROUGHPUTS, Rate, Throughput, format_parameters, model_parameters, rate_for
from divtrace.study import CheckpointSpec, Study

if TYPE_CHECKING:
    import pandas as pd

#: Said under every plan: what the time estimate is.
UPPER_BOUND_NOTE = (
    "times are upper bounds: every sample counted at its task's max_new_tokens (most outputs end sooner, at a stop "
    "or end of sequence)"
)

#: The columns of :meth:`PlanSummary.frame`, in order.
FRAME_COLUMNS = (
    "kind", "checkpoint", "task", "backend", "model", "device", "parameters", "prompts", "k", "shards", "samples",
    "max_tokens", "status", "samples_to_do", "max_tokens_to_do", "tokens_per_s", "rate_source", "est_seconds",
    "gpu_hours",
)  # fmt: skip


@dataclass(frozen=True)
class RowEstimate:
    """One (checkpoint, task) of the plan with its rate and estimated generation time (0 when already done)."""

    row: PlanRow
    rate: Rate
    seconds: float
    gpu_hours: float


@dataclass(frozen=True)
class CheckpointSubtotal:
    """The rows of one checkpoint added up: every sample and token cap, what is left to do, its time and GPU-hours
    at the checkpoint's rate (one rate per checkpoint: its backend, device and model decide it)."""

    checkpoint: str
    backend: str
    model: str
    device: str
    parameters: float | None
    rate: Rate
    tasks: int
    prompts: int
    shards: int
    samples: int
    max_tokens: int
    samples_to_do: int
    max_tokens_to_do: int
    seconds: float
    gpu_hours: float

    @property
    def status(self) -> str:
        """``done``, ``to do`` or ``partly done``."""
        if self.samples_to_do == 0:
            return "done"
        return "to do" if self.samples_to_do == self.samples else "partly done"


@dataclass(frozen=True)
class PlanSummary:
    """A study's plan: rows, per-checkpoint subtotals (in study order), totals and notes (each assumed rate's
    explanation, the upper-bound caveat). Totals are exact sums of the subtotals, which are exact sums of the rows.
    """

    study: str
    rows: tuple[RowEstimate, ...]
    checkpoints: tuple[CheckpointSubtotal, ...]
    notes: tuple[str, ...]

    @property
    def samples(self) -> int:
        """Samples of the whole plan (done or not)."""
        return sum(c.samples for c in self.checkpoints)

    @property
    def max_tokens(self) -> int:
        """Token cap of the whole plan (done or not)."""
        return sum(c.max_tokens for c in self.checkpoints)

    @property
    def samples_to_do(self) -> int:
        """Samples still to generate."""
        return sum(c.samples_to_do for c in self.checkpoints)

    @property
    def max_tokens_to_do(self) -> int:
        """Token cap of what is still to generate."""
        return sum(c.max_tokens_to_do for c in self.checkpoints)

    @property
    def seconds(self) -> float:
        """Estimated generation time of what is left, one checkpoint after another on one replica each."""
        return sum(c.seconds for c in self.checkpoints)

    @property
    def gpu_hours(self) -> float:
        """GPU-hours of what is left (checkpoints on a GPU only: seconds x GPUs per replica)."""
        return sum(c.gpu_hours for c in self.checkpoints)

    @property
    def all_measured(self) -> bool:
        """True when every checkpoint with work left has a measured rate."""
        return all(c.rate.measured for c in self.checkpoints if c.samples_to_do)

    def frame(self) -> pd.DataFrame:
        """The plan as one table (:data:`FRAME_COLUMNS`): a ``task`` row per (checkpoint, task), then a
        ``checkpoint`` subtotal row after each checkpoint's rows, then one ``total`` row."""
        import pandas as pd

        records: list[dict[str, object]] = []
        for subtotal in self.checkpoints:
            for estimate in self.rows:
                if estimate.row.checkpoint == subtotal.checkpoint:
                    records.append(_task_record(estimate, subtotal))
            records.append(_subtotal_record(subtotal))
        records.append(
            {
                "kind": "total", "checkpoint": "", "task": "", "backend": "", "model": "", "device": "",
                "parameters": "", "prompts": sum(c.prompts for c in self.checkpoints), "k": None,
                "shards": sum(c.shards for c in self.checkpoints), "samples": self.samples,
                "max_tokens": self.max_tokens, "status": "done" if self.samples_to_do == 0 else "to do",
                "samples_to_do": self.samples_to_do, "max_tokens_to_do": self.max_tokens_to_do,
                "tokens_per_s": None, "rate_source": "", "est_seconds": self.seconds, "gpu_hours": self.gpu_hours,
            }
        )  # fmt: skip
        frame = pd.DataFrame.from_records(records, columns=list(FRAME_COLUMNS))
        return frame.astype({"k": "Int64"})


def checkpoint_device(checkpoint: CheckpointSpec, cuda_available: bool) -> str:
    """Where ``checkpoint`` generates, as a throughput device: ``server`` for openai; the checkpoint's ``device``
    option when it names one (``cpu``, ``cuda...``); else vLLM's GPU, and for transformers the GPU only when
    ``cuda_available`` (the backend's own default)."""
    if isinstance(checkpoint.options, OpenAIOptions):
        return "server"
    device = checkpoint.options.device or "auto"
    if device.startswith("cuda"):
        return "gpu"
    if device == "cpu":
        return "cpu"
    if checkpoint.backend == "vllm":
        return "gpu"
    return "gpu" if cuda_available else "cpu"


def summarize_plan(
    study: Study,
    rows: list[PlanRow],
    *,
    cuda_available: bool | None = None,
    table: tuple[Throughput, ...] = THROUGHPUTS,
) -> PlanSummary:
    """The :class:`PlanSummary` of ``rows`` (from :func:`~divtrace.plan.rows.plan_study` or
    :func:`~divtrace.plan.rows.plan_without_data`) for ``study``.

    Each checkpoint's rate comes from ``table`` (:func:`~divtrace.plan.throughput.rate_for`) for its backend,
    device (:func:`checkpoint_device`; ``cuda_available`` None asks torch) and model; done rows cost 0 s.
    Raises KeyError when a row names a checkpoint the study does not have.
    """
    if cuda_available is None:
        cuda_available = _cuda_available()
    specs = {checkpoint.name: checkpoint for checkpoint in study.checkpoints}
    rates = {
        name: rate_for(spec.backend, checkpoint_device(spec, cuda_available), spec.model, table)
        for name, spec in specs.items()
    }
    estimates = []
    for row in rows:
        spec, rate = specs[row.checkpoint], rates[row.checkpoint]
        seconds = 0.0 if row.done else row.max_tokens / rate.tokens_per_s
        on_gpu = checkpoint_device(spec, cuda_available) == "gpu"
        gpu_hours = seconds * replica_gpus(study, spec) / 3600 if on_gpu else 0.0
        estimates.append(RowEstimate(row, rate, seconds, gpu_hours))
    subtotals = []
    for name, spec in specs.items():
        own = [estimate for estimate in estimates if estimate.row.checkpoint == name]
        if own:
            subtotals.append(_subtotal(spec, checkpoint_device(spec, cuda_available), rates[name], own))
    notes = [c.rate.explanation for c in subtotals if not c.rate.measured and c.samples_to_do]
    return PlanSummary(study.name, tuple(estimates), tuple(subtotals), (*dict.fromkeys(notes), UPPER_BOUND_NOTE))


def _subtotal(spec: CheckpointSpec, device: str, rate: Rate, estimates: list[RowEstimate]) -> CheckpointSubtotal:
    todo = [e for e in estimates if not e.row.done]
    return CheckpointSubtotal(
        checkpoint=spec.name,
        backend=spec.backend,
        model=spec.model,
        device=device,
        parameters=model_parameters(spec.model),
        rate=rate,
        tasks=len(estimates),
        prompts=sum(e.row.prompts for e in estimates),
        shards=sum(e.row.shards for e in estimates),
        samples=sum(e.row.samples for e in estimates),
        max_tokens=sum(e.row.max_tokens for e in estimates),
        samples_to_do=sum(e.row.samples for e in todo),
        max_tokens_to_do=sum(e.row.max_tokens for e in todo),
        seconds=sum(e.seconds for e in estimates),
        gpu_hours=sum(e.gpu_hours for e in estimates),
    )


def _task_record(estimate: RowEstimate, subtotal: CheckpointSubtotal) -> dict[str, object]:
    row = estimate.row
    return {
        "kind": "task", "checkpoint": row.checkpoint, "task": row.task, "backend": row.backend,
        "model": subtotal.model, "device": subtotal.device, "parameters": format_parameters(subtotal.parameters),
        "prompts": row.prompts, "k": row.k, "shards": row.shards, "samples": row.samples,
        "max_tokens": row.max_tokens, "status": "done" if row.done else "to do",
        "samples_to_do": 0 if row.done else row.samples, "max_tokens_to_do": 0 if row.done else row.max_tokens,
        "tokens_per_s": estimate.rate.tokens_per_s, "rate_source": estimate.rate.source,
        "est_seconds": estimate.seconds, "gpu_hours": estimate.gpu_hours,
    }  # fmt: skip


def _subtotal_record(subtotal: CheckpointSubtotal) -> dict[str, object]:
    return {
        "kind": "checkpoint", "checkpoint": subtotal.checkpoint, "task": "", "backend": subtotal.backend,
        "model": subtotal.model, "device": subtotal.device, "parameters": format_parameters(subtotal.parameters),
        "prompts": subtotal.prompts, "k": None, "shards": subtotal.shards, "samples": subtotal.samples,
        "max_tokens": subtotal.max_tokens, "status": subtotal.status, "samples_to_do": subtotal.samples_to_do,
        "max_tokens_to_do": subtotal.max_tokens_to_do, "tokens_per_s": subtotal.rate.tokens_per_s,
        "rate_source": subtotal.rate.source, "est_seconds": subtotal.seconds, "gpu_hours": subtotal.gpu_hours,
    }  # fmt: skip


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
