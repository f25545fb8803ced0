"""The plan of a study as one structure: per (checkpoint, task) rows with estimated time, per-checkpoint subtotals,
the stages besides generation, totals and notes; what ``divtrace run --dry-run`` prints, as text or
(:meth:`PlanSummary.frame`) CSV/JSON.

Generation times are upper bounds: every sample is counted at its task's ``max_new_tokens``, at the rate
:func:`~divtrace.plan.throughput.rate_for` chooses for the checkpoint's backend, device and model size. The rest of
the run (loading each model, verifying, scoring, the analysis and the report) is estimated from the figures of
:mod:`divtrace.plan.throughput`. Every figure carries its provenance (measured, or assumed: a guess), and CPU work
is slowed by the machine's current load (:func:`~divtrace.plan.throughput.cpu_slowdown`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from divtrace.generate.backends.options import BackendOptions, OpenAIOptions, TransformersOptions
from divtrace.plan.cost import replica_gpus
from divtrace.plan.rows import PlanRow
from divtrace.plan.throughput import (
    ANALYSIS_S,
    EMBED_RATES,
    JUDGE_S_PER_CALL,
    LOAD_S,
    METRIC_S_PER_PROMPT,
    NLI_S_PER_PAIR,
    QUICKSTART_LOAD_S,
    RATE_ROWS,
    THROUGHPUTS,
    VERIFY_RATES,
    Figure,
    Rate,
    Throughput,
    cpu_slowdown,
    format_parameters,
    machine_load,
    model_parameters,
    rate_for,
)
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
class StageEstimate:
    """The estimated time of one part of the run besides drawing tokens: ``model loading``, ``verify``, ``judge``,
    ``score`` or ``analyze and report``; ``measured`` is False when any figure it uses is assumed (a guess)."""

    stage: str
    seconds: float
    measured: bool
    explanation: str


@dataclass(frozen=True)
class PlanSummary:
    """A study's plan: rows, per-checkpoint subtotals (in study order), totals and notes (each assumed rate's
    explanation, the upper-bound caveat). Totals are exact sums of the subtotals, which are exact sums of the rows.
    """

    study: str
    rows: tuple[RowEstimate, ...]
    checkpoints: tuple[CheckpointSubtotal, ...]
    notes: tuple[str, ...]
    #: The other stages of what is left to do (none when nothing is left to generate).
    stages: tuple[StageEstimate, ...] = ()
    #: The factor CPU work was slowed by for the machine's load (1.0: idle).
    slowdown: float = 1.0

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
    def total_seconds(self) -> float:
        """Estimated time of the whole run left: generation plus the other stages (:attr:`stages`)."""
        return self.seconds + sum(stage.seconds for stage in self.stages)

    @property
    def guess(self) -> bool:
        """True when some figure of the estimate is assumed, not measured (the estimate is then a guess)."""
        return not self.all_measured or not all(stage.measured for stage in self.stages)

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
        ``checkpoint`` subtotal row after each checkpoint's rows, a ``stage`` row per other stage (its name in
        ``task``), then one ``total`` row (its ``est_seconds``: the whole run, :attr:`total_seconds`)."""
        import pandas as pd

        records: list[dict[str, object]] = []
        for subtotal in self.checkpoints:
            for estimate in self.rows:
                if estimate.row.checkpoint == subtotal.checkpoint:
                    records.append(_task_record(estimate, subtotal))
            records.append(_subtotal_record(subtotal))
        for stage in self.stages:
            records.append({"kind": "stage", "task": stage.stage, "est_seconds": stage.seconds,
                            "rate_source": "measured" if stage.measured else "assumed"})  # fmt: skip
        records.append(
            {
                "kind": "total", "checkpoint": "", "task": "", "backend": "", "model": "", "device": "",
                "parameters": "", "prompts": sum(c.prompts for c in self.checkpoints), "k": None,
                "shards": sum(c.shards for c in self.checkpoints), "samples": self.samples,
                "max_tokens": self.max_tokens, "status": "done" if self.samples_to_do == 0 else "to do",
                "samples_to_do": self.samples_to_do, "max_tokens_to_do": self.max_tokens_to_do,
                "tokens_per_s": None, "rate_source": "assumed" if self.guess else "measured",
                "est_seconds": self.total_seconds, "gpu_hours": self.gpu_hours,
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
    slowdown: float | None = None,
) -> PlanSummary:
    """The :class:`PlanSummary` of ``rows`` (from :func:`~divtrace.plan.rows.plan_study` or
    :func:`~divtrace.plan.rows.plan_without_data`) for ``study``.

    Each checkpoint's rate comes from ``table`` (:func:`~divtrace.plan.throughput.rate_for`) for its backend,
    device (:func:`checkpoint_device`; ``cuda_available`` None asks torch) and model; done rows cost 0 s. A
    checkpoint with an adapter is estimated as its base model (its ``model``: the rate, size and load figure), as
    the adapter is merged into the base's weights (the transformers backend, and vLLM's default ``adapter_mode``). The
    other stages of the rows left to do are estimated by :func:`other_stages`. CPU work is multiplied by
    ``slowdown`` (None: :func:`~divtrace.plan.throughput.cpu_slowdown` of this machine's load now).
    Raises KeyError when a row names a checkpoint the study does not have.
    """
    if cuda_available is None:
        cuda_available = _cuda_available()
    busy = None
    if slowdown is None:
        measured_load = machine_load()
        slowdown = cpu_slowdown(*measured_load) if measured_load is not None else 1.0
        busy = measured_load if slowdown > 1.0 else None
    specs = sampled_specs(study)
    rates = {
        name: rate_for(spec.backend, checkpoint_device(spec, cuda_available), spec.model, table)
        for name, spec in specs.items()
    }
    estimates = []
    for row in rows:
        spec, rate = specs[row.checkpoint], rates[row.checkpoint]
        device = checkpoint_device(spec, cuda_available)
        tokens = batched_tokens(row, study.shard_size, spec.options)
        seconds = 0.0 if row.done else tokens / rate.tokens_per_s * (slowdown if device == "cpu" else 1.0)
        on_gpu = device == "gpu"
        gpu_hours = seconds * replica_gpus(study, spec) / 3600 if on_gpu else 0.0
        estimates.append(RowEstimate(row, rate, seconds, gpu_hours))
    subtotals = []
    for name, spec in specs.items():
        own = [estimate for estimate in estimates if estimate.row.checkpoint == name]
        if own:
            subtotals.append(_subtotal(name, spec, checkpoint_device(spec, cuda_available), rates[name], own))
    notes = [c.rate.explanation for c in subtotals if not c.rate.measured and c.samples_to_do]
    stages = other_stages(study, rows, cuda_available, slowdown)
    if busy is not None:
        notes.append(f"this machine is busy (load average {busy[0]:.1f} on {busy[1]} CPUs): CPU work is estimated "
                     f"{slowdown:.1f}x slower than on an idle machine")  # fmt: skip
    elif slowdown > 1.0:
        notes.append(f"CPU work is estimated {slowdown:.1f}x slower than on an idle machine")
    return PlanSummary(
        study.name, tuple(estimates), tuple(subtotals), (*dict.fromkeys(notes), UPPER_BOUND_NOTE), stages, slowdown
    )


def sampled_specs(study: Study) -> dict[str, CheckpointSpec]:
    """``{name: checkpoint}`` of everything ``study`` samples: each checkpoint by its name, each sweep condition by
    the condition's (its checkpoint's spec: the same model, backend and device)."""
    return {sampled.name: sampled.checkpoint for sampled in study.sampled()}


def batched_tokens(row: PlanRow, shard_size: int, options: BackendOptions) -> int:
    """The token cap of ``row`` as its backend pays for it. For transformers, each batch (a shard's rows, at most
    the backend's ``batch_size`` of them) decodes ``max_new_tokens`` steps, and a step costs about as much with a few
    rows as with the :data:`~divtrace.plan.throughput.RATE_ROWS` rows its rate was measured with: a batch counts at
    least that many rows, so full batches count exactly their tokens. Other backends: ``row.max_tokens``."""
    if not isinstance(options, TransformersOptions):
        return row.max_tokens
    batch = options.batch_size
    rows_per_shard = [min(shard_size, row.prompts - start) * row.k for start in range(0, row.prompts, shard_size)]
    counted = 0
    for rows in rows_per_shard:
        full, rest = divmod(rows, batch)
        counted += full * max(batch, RATE_ROWS) + (max(rest, RATE_ROWS) if rest else 0)
    return counted * row.max_new_tokens


def other_stages(study: Study, rows: list[PlanRow], cuda_available: bool, slowdown: float) -> tuple[StageEstimate, ...]:
    """The time of loading each model with work left, verifying and scoring the rows left to do, and the analysis
    and report (when anything is left), from the figures of :mod:`divtrace.plan.throughput`."""
    from divtrace.score.metrics import metric_class
    from divtrace.score.settings import NLISettings
    from divtrace.tasks import get_task

    todo = [row for row in rows if not row.done]
    if not todo:
        return ()
    specs = sampled_specs(study)
    tasks = {task.name: task for task in (get_task(spec.name) for spec in study.tasks)}
    on_gpu = cuda_available or any(checkpoint_device(spec, cuda_available) == "gpu" for spec in specs.values())
    scoring = "gpu" if on_gpu else "cpu"  # where the embedder and the NLI classifier run: where the study runs

    def scaled(seconds: float, device: str) -> float:
        return seconds * (slowdown if device == "cpu" else 1.0)

    models = {specs[row.checkpoint].name: specs[row.checkpoint] for row in todo}  # a sweep condition loads no model
    # A packaged model is de-quantised on its first load only: the checkpoints after it that share it (the
    # quickstart's base and its adapters) load it from the cache.
    loads, seen = [], set()
    for spec in models.values():
        loads.append(_load_figure(spec, checkpoint_device(spec, cuda_available), loaded_before=spec.model in seen))
        seen.add(spec.model)
    load_s = sum(scaled(figure.value, device) for figure, device in loads)
    how = "; ".join(f"{figure.value:g} s ({figure.note})" for figure, _ in loads)
    parts = [StageEstimate("model loading", load_s, all(f.measured for f, _ in loads), f"{len(loads)} model(s): {how}")]

    verify_s, verify_figures = 0.0, []
    for row in todo:
        verifier = getattr(tasks.get(row.task), "verifier", None)
        if verifier:
            figure = VERIFY_RATES.get(verifier, Figure(50.0, "assumed", f"no figure for the {verifier} verifier"))
            verify_s += scaled(row.samples / figure.value, "cpu")
            verify_figures.append(figure)
    if verify_figures:
        measured = all(f.measured for f in verify_figures)
        parts.append(
            StageEstimate("verify", verify_s, measured, "the verifiable tasks' samples at each verifier's rate")
        )

    judging = judge_estimate(study, todo)
    if judging is not None:  # the judge runs after verification, before scoring
        parts.append(judging)

    classes = [metric_class(name) for name in study.metric_names()]
    embeds = (
        sum(row.samples for row in todo) if any(m.uses_embeddings or m.uses_code_embeddings for m in classes) else 0
    )
    prompts = sum(row.prompts for row in todo)
    embed = EMBED_RATES[scoring]
    score_s = scaled(embeds / embed.value + prompts * len(classes) * METRIC_S_PER_PROMPT.value, scoring)
    measured = embed.measured and METRIC_S_PER_PROMPT.measured
    if any(m.settings_type is NLISettings for m in classes):  # pairs of K outputs per prompt, both directions
        pairs = sum(row.prompts * row.k * (row.k - 1) for row in todo)
        score_s += scaled(pairs * NLI_S_PER_PAIR[scoring].value, scoring)
        measured = measured and NLI_S_PER_PAIR[scoring].measured
    how = f"{embeds:,} texts at {embed.value:g} texts/s, {len(classes)} metric(s) x {prompts:,} prompts"
    parts.append(StageEstimate("score", score_s, measured, how))
    analysis = StageEstimate(
        "analyze and report", scaled(ANALYSIS_S.value, "cpu"), ANALYSIS_S.measured, ANALYSIS_S.note
    )
    return (*parts, analysis)


def judge_estimate(study: Study, todo: list[PlanRow]) -> StageEstimate | None:
    """The judge calls of the rows left to do (None without a judge or a judged row): per judged (checkpoint, task),
    its prompts (times K with ``outputs: all``), twice for a protocol against a baseline, whose own cell is not
    judged; their time at :data:`JUDGE_S_PER_CALL`, ``max_concurrency`` calls at once."""
    if study.judge is None:
        return None
    from divtrace.judge.pipeline import study_protocols
    from divtrace.judge.protocols import get_protocol

    judge = study.judge
    protocols = judge.protocols if judge.protocols is not None else study_protocols([row.task for row in todo])
    graph = study.graph()
    specs = sampled_specs(study)
    calls = 0
    for row in todo:
        if row.task not in protocols:
            continue
        protocol = get_protocol(protocols[row.task])
        baseline = judge.baseline or graph.base_of(specs[row.checkpoint].name)
        if protocol.needs_baseline and row.checkpoint == baseline:
            continue
        calls += row.prompts * (row.k if judge.outputs == "all" else 1) * (2 if protocol.needs_baseline else 1)
    if not calls:
        return None
    seconds = calls * JUDGE_S_PER_CALL.value / judge.max_concurrency
    how = f"{calls:,} judge call(s) to {judge.model}, {judge.max_concurrency} at once: {JUDGE_S_PER_CALL.note}"
    return StageEstimate("judge", seconds, JUDGE_S_PER_CALL.measured, how)


def _load_figure(spec: CheckpointSpec, device: str, *, loaded_before: bool = False) -> tuple[Figure, str]:
    """The figure of loading ``spec``'s model on ``device``, and the device (CPU figures are slowed by load). A
    packaged model counts as loaded from the cache when it is converted already or ``loaded_before`` in this run."""
    from divtrace.generate.models import QUICKSTART_PREFIX, quickstart_converted

    if spec.model.startswith(QUICKSTART_PREFIX) and spec.model[len(QUICKSTART_PREFIX) :] in QUICKSTART_LOAD_S:
        name = spec.model[len(QUICKSTART_PREFIX) :]
        first, later = QUICKSTART_LOAD_S[name]
        return (later if loaded_before or quickstart_converted(name) else first), "cpu"
    figure = LOAD_S.get((spec.backend, device), Figure(60.0, "assumed", f"no figure for {spec.backend}/{device}"))
    return figure, device


def _subtotal(
    name: str, spec: CheckpointSpec, device: str, rate: Rate, estimates: list[RowEstimate]
) -> CheckpointSubtotal:
    todo = [e for e in estimates if not e.row.done]
    return CheckpointSubtotal(
        checkpoint=name,
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
