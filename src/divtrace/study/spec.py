"""Study files: the lineage (checkpoints as a graph), tasks, sampling, metrics, models and executor, in YAML.

A study is validated by pydantic; every error names the key that is wrong (``checkpoints.2.parent``...).
Built-in presets: ``quickstart`` (the packaged models, small enough for a laptop CPU) and ``olmo3-7b`` (the 13 Olmo 3
7B checkpoints of the study, plus the Think checkpoints again with thinking suppressed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from divtrace.errors import DivtraceError, ModelLoadError
from divtrace.generate.backends.options import (
    OPENAI_ADAPTER_REFUSAL,
    OPTIONS_MODELS,
    BackendName,
    BackendOptions,
    OpenAIOptions,
    TransformersOptions,
    VLLMOptions,
    tag_options,
)
from divtrace.generate.models import QUICKSTART_PREFIX, quickstart_adapter, resolve_adapter
from divtrace.generate.params import SamplingParams
from divtrace.generate.params import SamplingSpec as SamplingSpec  # the study's sampling, re-exported
from divtrace.generate.render_options import RenderOptions
from divtrace.generate.stops import StopPolicy
from divtrace.generate.thinking import ThinkingMode
from divtrace.samples.common_k import MixedK
from divtrace.score.metric_spec import MetricSpec, as_spec
from divtrace.score.settings import CodeEmbedderSettings, EmbedderSettings, ModelSettings, NLISettings
from divtrace.study.lineage import CheckpointNode, LineageGraph
from divtrace.study.sweep import SWEEP_PARAMETERS, SweepCondition, SweepSpec, sweep_conditions, swept_sampling

if TYPE_CHECKING:
    from divtrace.study.planned import PlannedTask

_S = TypeVar("_S", bound=ModelSettings)

#: ``model`` of every checkpoint of an imported study: the samples were generated elsewhere.
IMPORTED_MODEL = "imported"

#: The stop policies a study or checkpoint may name (:class:`~divtrace.generate.stops.StopPolicy`).
StopPolicyName = Literal["auto", "always", "never"]


#: ``options`` of a checkpoint that gives none: validated as its backend's options with every default.
_NO_OPTIONS: Any = {}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckpointSpec(_Strict):
    """One checkpoint: where its weights are, its place in the lineage, and how to sample it.

    ``adapter`` is a LoRA adapter applied on ``model`` (a PEFT adapter directory, or ``quickstart:NAME`` for one
    shipped as package data): the checkpoint is ``model + adapter``, what the lineage lab builds for every
    post-trained checkpoint. Only the local backends apply adapters (an ``openai`` server serves its own: name the
    served adapter as the model). It is dumped only when set, so a study without adapters dumps as before.
    """

    name: str = Field(min_length=1, description="unique label used in every table")
    model: str = Field(min_length=1, description="quickstart:NAME, hub id, local dir, .gguf, or served model name")
    revision: str | None = None
    adapter: str | None = Field(
        None, min_length=1, description="a LoRA adapter applied on model: a PEFT adapter directory or quickstart:NAME"
    )
    stage: str = Field("base", description="base, sft, dpo, rl, rl-zero, instruct, ...")
    parent: str | None = Field(None, description="the checkpoint this one was trained from")
    variant_of: str | None = Field(None, description="same weights as this checkpoint, sampled differently")
    backend: BackendName = "transformers"
    thinking: Literal["native", "suppressed"] = "native"
    chat_template: bool | None = Field(None, description="None: use the tokenizer's template when it has one")
    system_prompt: str | None = None
    stops: StopPolicyName | None = Field(None, description="stop policy for this checkpoint (default: the study's)")
    options: BackendOptions = Field(
        default_factory=lambda: _NO_OPTIONS,
        validate_default=True,
        description="the backend's options (dtype, base_url, ...): :mod:`divtrace.generate.backends.options`",
    )

    @field_validator("options", mode="before")
    @classmethod
    def _options_of_backend(cls, value: Any, info: ValidationInfo) -> Any:
        backend = info.data.get("backend")
        return value if backend is None else tag_options(backend, value)

    @model_validator(mode="after")
    def _adapter_is_valid(self) -> Self:
        """An adapter is the checkpoint's ``adapter`` key (not an option), on a local backend, a known
        ``quickstart:`` one on the model it was trained on; vLLM's ``adapter_mode`` goes with an adapter."""
        given = self.options.model_dump()
        if "adapter" in given:
            raise ValueError("options.adapter: give the adapter as the checkpoint's adapter key")
        if self.adapter is None:
            if "adapter_mode" in given:
                raise ValueError("options.adapter_mode: the checkpoint has no adapter")
            return self
        if isinstance(self.options, OpenAIOptions):
            raise ValueError(f"adapter: {OPENAI_ADAPTER_REFUSAL}")
        if self.adapter.startswith(QUICKSTART_PREFIX):
            try:
                shipped = quickstart_adapter(self.adapter)
            except ModelLoadError as err:
                raise ValueError(f"adapter: {err}") from None
            if shipped.base != self.model:
                raise ValueError(f"adapter: {self.adapter} applies to model {shipped.base}, not {self.model}")
        return self

    @model_serializer(mode="wrap")
    def _omit_no_adapter(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Every field, ``adapter`` only when set (a study without adapters dumps, and is keyed, as before)."""
        data: dict[str, Any] = handler(self)
        if self.adapter is None:
            data.pop("adapter", None)
        return data

    def backend_options(self) -> BackendOptions:
        """The options its generator is built with: ``options``, plus the checkpoint's revision (an options
        ``revision`` wins) and adapter for the local backends."""
        if isinstance(self.options, TransformersOptions | VLLMOptions):
            return self.options.with_defaults(revision=self.revision, adapter=self.adapter)
        return self.options

    def generator_tokenizer(self) -> tuple[str, str | None] | None:
        """The tokenizer its generator uses, as (reference, revision) (EAD's V under ``tokenizer: generator``): an
        adapter's own when its directory ships one, else the model's; None when it is unknown here (imported
        samples, a served model without a ``tokenizer`` option). Raises ModelLoadError when the adapter cannot be
        resolved."""
        if isinstance(self.options, OpenAIOptions):
            return (self.options.tokenizer, None) if self.options.tokenizer else None
        if self.adapter is not None:
            adapter = resolve_adapter(self.adapter)
            if adapter.ships_tokenizer:
                return str(adapter.path), None
        return None if self.model == IMPORTED_MODEL else (self.model, self.revision)


class TaskSpec(_Strict):
    """A task of the study, its prompt count (default: the task's N) and generation settings (default: the task's).

    ``stop`` replaces the task's stop sequences (``[]`` for none); the study's stop policy still decides which
    prompts they apply to.
    """

    name: str = Field(min_length=1, description="a task name (divtrace tasks) or a task .yaml path")
    n: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(None, ge=1, description="default: the task's")
    stop: list[str] | None = Field(None, description="default: the task's stop sequences")
    verify_as: str | None = Field(
        None,
        description="imported tasks: the divtrace task whose verifier checks this task's samples (e.g. gsm8k for "
        "lm-eval's gsm8k_cot_zeroshot); default: the task itself, or the name mapping of divtrace.tasks.names",
    )

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not s for s in value):
            raise ValueError("stop strings must not be empty")
        return value


#: A recorded sampling setting nobody logged.
UNKNOWN = "unknown"


class RecordedSampling(_Strict):
    """The sampling of imported samples, as their records carry it (an imported study generates nothing).

    Each setting is the value every record shares; ``"unknown"`` when no record logged it (lighteval's details
    keep no temperature, for instance); ``"mixed: a, b[, unknown]"`` when records disagree or only some logged it.
    ``requested`` is True when the values are what the tool was asked for (lm-eval's ``gen_kwargs``), which a
    backend may not have honoured. ``from_records`` tells this apart from :class:`SamplingSpec` in ``study.yaml``.
    ``k`` is the K analysed: each (checkpoint, task) whose prompts had different K was cut to its smallest
    (:mod:`divtrace.samples.common_k`), and ``mixed_k`` lists those cells (written only when there are some).
    """

    from_records: Literal[True] = True
    source: str = Field(description="the tool(s) that wrote the records: lm-eval, lighteval, divtrace, or mixed")
    k: int | str = Field(description="outputs per prompt")
    temperature: float | str = UNKNOWN
    top_p: float | str = UNKNOWN
    max_new_tokens: int | str = UNKNOWN
    requested: bool = False
    mixed_k: tuple[MixedK, ...] = Field((), description="the (checkpoint, task) cut to their smallest K")

    @model_serializer(mode="wrap")
    def _omit_uniform_k(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Every field, ``mixed_k`` only when some cell had mixed K (so a uniform import's study is as before)."""
        data: dict[str, Any] = handler(self)
        if not self.mixed_k:
            data.pop("mixed_k", None)
        return data


def _sampling_kind(value: Any) -> str:
    """Which model a ``sampling`` value is: recorded (``from_records``) or the study's settings."""
    recorded = value.get("from_records") if isinstance(value, dict) else isinstance(value, RecordedSampling)
    return "RecordedSampling" if recorded else "SamplingSpec"


#: ``sampling`` of a study: settings to sample with, or (imported study) what the records carry.
SamplingChoice = Annotated[
    Annotated[SamplingSpec, Tag("SamplingSpec")] | Annotated[RecordedSampling, Tag("RecordedSampling")],
    Discriminator(_sampling_kind),
]


def _name_or_mapping(value: Any) -> str:
    """Which form a metric or model setting takes: a bare name, or a mapping (an object)."""
    return "name" if isinstance(value, str) else "mapping"


#: A study's metric: a registry name, or ``{name, args}`` (:class:`~divtrace.score.metric_spec.MetricSpec`).
MetricItem = Annotated[
    Annotated[str, Tag("name")] | Annotated[MetricSpec, Tag("mapping")], Discriminator(_name_or_mapping)
]
#: The sentence embedder: a model id or path, or every :class:`~divtrace.score.settings.EmbedderSettings` field.
EmbedderChoice = Annotated[
    Annotated[str, Tag("name")] | Annotated[EmbedderSettings, Tag("mapping")], Discriminator(_name_or_mapping)
]
#: The code embedder: a model id or path, or :class:`~divtrace.score.settings.CodeEmbedderSettings` fields.
CodeEmbedderChoice = Annotated[
    Annotated[str, Tag("name")] | Annotated[CodeEmbedderSettings, Tag("mapping")], Discriminator(_name_or_mapping)
]
#: The NLI model: a model id or path, or :class:`~divtrace.score.settings.NLISettings` fields.
NLIChoice = Annotated[
    Annotated[str, Tag("name")] | Annotated[NLISettings, Tag("mapping")], Discriminator(_name_or_mapping)
]
#: Tags of the discriminated unions (sampling, a checkpoint's options, name-or-mapping settings), left out of the
#: keys errors name.
_UNION_TAGS = frozenset({"SamplingSpec", "RecordedSampling", "name", "mapping", *OPTIONS_MODELS})


class ExecutorSpec(_Strict):
    """Where the work runs: ``local`` (default) or ``ray`` (address of a running cluster, or None to start one).

    The Ray settings: ``gpus_per_model`` GPUs per generator actor (None: 0 on a cluster without GPUs, CPU vLLM
    included, and for the openai backend; else a vLLM checkpoint's ``tensor_parallel_size``, or 1),
    ``cpus_per_worker`` CPUs per actor or task (also its torch thread count), ``replicas`` actors per checkpoint
    (and scorer actors).
    """

    type: Literal["local", "ray"] = "local"
    address: str | None = None
    gpus_per_model: float | None = Field(None, ge=0)
    cpus_per_worker: float = Field(1.0, gt=0)
    replicas: int = Field(1, ge=1)


class JudgeSpec(_Strict):
    """The LLM judge of a study (``judge:``): which OpenAI-compatible endpoint and model, and which protocol judges
    each task (:mod:`divtrace.judge`).

    ``protocols`` maps task names to protocols (``kirk_summary``, ``arena_hard_creative``, ``wb_score``); None: the
    study's protocol for each of its tasks that the study judged (TL;DR, CNN/DailyMail, XSum, WritingPrompts,
    WildBench). ``baseline``: the checkpoint a pairwise-against-baseline protocol compares with; None: each
    checkpoint's lineage base. The API key is read from the environment variable ``api_key_env`` (never stored).
    """

    endpoint: str = Field(min_length=1, description="the API root, e.g. https://api.openai.com/v1")
    model: str = Field(min_length=1, description="the judge model (the study: gpt-4.1-mini)")
    api_key_env: str = Field("OPENAI_API_KEY", description="the environment variable holding the API key")
    protocols: dict[str, str] | None = Field(None, description="task -> protocol; default: the study's")
    outputs: Literal["first", "all"] = Field("first", description="first output per prompt (the study's), or all")
    baseline: str | None = Field(None, description="checkpoint compared with (default: each lineage's base)")
    max_concurrency: int = Field(8, ge=1)
    max_retries: int = Field(6, ge=0)
    timeout: float = Field(120.0, gt=0, description="seconds per request")


def _default_metrics() -> list[str | MetricSpec]:
    return ["ead", "sbert", "vendi"]


class Study(_Strict):
    """A whole study. ``caveat`` is shown at the top of the report (e.g. a cross-family comparison).

    ``stops`` is the stop policy (:class:`~divtrace.generate.stops.StopPolicy`): ``auto`` (the study's) applies a
    task's stop sequences to completion prompts only, not to chat-template checkpoints; a checkpoint's own
    ``stops`` wins over it.
    """

    name: str = Field(min_length=1)
    description: str = ""
    caveat: str | None = None
    checkpoints: list[CheckpointSpec] = Field(min_length=1)
    tasks: list[TaskSpec] = Field(min_length=1)
    sampling: SamplingChoice = Field(
        default_factory=SamplingSpec,
        description="how to sample (a study to run), or how the records were sampled (an imported study)",
    )
    stops: StopPolicyName = "auto"
    decomposition: Literal["unpaired", "paired"] = Field(
        "unpaired",
        description="quality-filtered decomposition: each checkpoint over its own qualifying prompts (the paper's), "
        "or only prompts qualifying in both",
    )
    metrics: list[MetricItem] = Field(default_factory=_default_metrics, description="metric names, or {name, args}")
    embedder: EmbedderChoice | None = Field(None, description="model id or path, or embedder settings")
    code_embedder: CodeEmbedderChoice | None = Field(
        None, description="encoder of the code-embedding metrics (unixcoder): id or path, or settings"
    )
    nli_model: NLIChoice | None = Field(None, description="MNLI model id or path, or NLI settings")
    data_dir: str | None = None
    shard_size: int = Field(8, ge=1)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    judge: JudgeSpec | None = Field(None, description="an LLM judge of quality on tasks without a verifier")
    homogenization: bool = Field(
        False,
        description="also compare every pair of checkpoints: how alike their outputs are per task (SBERT and n-gram "
        "similarity; analysis/homogenization.csv and a heatmap in the report)",
    )
    sweep: SweepSpec | None = Field(
        None,
        description="also sample checkpoints at every combination of these sampling values (temperature, top_p, "
        "min_p): the recovery frontier (analysis/sweep.csv, analysis/recovery.csv and a plot per task)",
    )

    @model_validator(mode="after")
    def _graph_is_valid(self) -> Study:
        names = [c.name for c in self.checkpoints]
        for index, checkpoint in enumerate(self.checkpoints):
            for key in ("parent", "variant_of"):
                target = getattr(checkpoint, key)
                if target is not None and target not in names:
                    raise ValueError(f"checkpoints.{index}.{key}: {target!r} is not a checkpoint of this study")
        self.graph()  # duplicate names, cycles, variants with parents
        self._names_fit_run_directory()
        self._metrics_are_valid()
        self._judge_is_valid()
        self._sweep_is_valid()
        return self

    def with_judge(self, judge: JudgeSpec) -> Study:
        """This study with ``judge`` as its judge (validated as a ``judge:`` section is: a DivtraceError names the
        bad key)."""
        study = self.model_copy(update={"judge": judge})
        try:
            study._judge_is_valid()
        except ValueError as err:
            raise DivtraceError(str(err)) from None
        return study

    def with_homogenization(self, homogenization: bool) -> Study:
        """This study with its ``homogenization`` setting replaced."""
        return self.model_copy(update={"homogenization": homogenization})

    def _judge_is_valid(self) -> None:
        """The judge's protocols are known and name the study's tasks; its baseline is a checkpoint."""
        if self.judge is None:
            return
        from divtrace.judge.protocols import PROTOCOLS
        from divtrace.tasks.yaml_task import task_file_label

        tasks = {task_file_label(task.name) or task.name for task in self.tasks}
        for task, protocol in (self.judge.protocols or {}).items():
            if protocol not in PROTOCOLS:
                raise ValueError(
                    f"judge.protocols.{task}: unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}"
                )
            if task not in tasks:
                raise ValueError(f"judge.protocols.{task}: not a task of this study ({', '.join(sorted(tasks))})")
        names = [c.name for c in self.checkpoints]
        if self.judge.baseline is not None and self.judge.baseline not in names:
            raise ValueError(f"judge.baseline: {self.judge.baseline!r} is not a checkpoint of this study")

    def _sweep_is_valid(self) -> None:
        """A sweep varies something, names checkpoints of this study, and has sampling settings to vary."""
        if self.sweep is None:
            return
        if not self.sweep.swept():
            raise ValueError(f"sweep: nothing to sweep; give values of one of {', '.join(SWEEP_PARAMETERS)}")
        names = [c.name for c in self.checkpoints]
        for index, name in enumerate(self.sweep.checkpoints or ()):
            if name not in names:
                raise ValueError(f"sweep.checkpoints.{index}: {name!r} is not a checkpoint of this study")
        if not isinstance(self.sampling, SamplingSpec):
            raise ValueError("sweep: a study of imported samples cannot sample again; remove the sweep section")
        taken = [c.name for c in self.sweep_conditions() if not c.is_study_setting and c.name in names]
        if taken:
            raise ValueError(f"sweep: condition {taken[0]!r} has the name of a checkpoint of this study; rename it")

    def _names_fit_run_directory(self) -> None:
        """Every checkpoint and task gets its own files in a run directory: no two names become the same directory
        name (:func:`~divtrace.runs.layout.safe_name`) and none is too long for a file name. A task file's label is
        the ``name`` it holds (not checked when the file cannot be read here; loading the task says why)."""
        from divtrace.runs.layout import run_name_problems
        from divtrace.tasks.yaml_task import task_file_label

        labels = [task_file_label(task.name) for task in self.tasks]
        sampled = [c.name for c in self.checkpoints] + [
            c.name for c in self.sweep_conditions() if not c.is_study_setting
        ]
        problems = run_name_problems(sampled, "checkpoint") + run_name_problems(
            [label for label in labels if label is not None], "task"
        )
        if problems:
            raise ValueError("; ".join(problems))

    def _metrics_are_valid(self) -> None:
        """Every metric is registered, once, with valid args; the models the metrics need are named."""
        from divtrace.score.metric_spec import validated_args
        from divtrace.score.metrics import metric_class, metric_names

        names = self.metric_names()
        unknown = [m for m in names if m not in metric_names()]
        if unknown:
            raise ValueError(f"metrics: unknown {unknown}; known: {metric_names()}")
        repeated = sorted({m for m in names if names.count(m) > 1})
        if repeated:
            raise ValueError(f"metrics: {', '.join(repeated)} named more than once (every metric is one column)")
        for index, spec in enumerate(self.metric_specs()):
            validated_args(metric_class(spec.name), spec.args, where=f"metrics.{index}.args")
        if "nli" in names and not self.nli_model:
            raise ValueError("nli_model: the nli metric needs an MNLI model id or path (e.g. roberta-large-mnli)")
        needs_code = [m for m in names if metric_class(m).uses_code_embeddings]
        if needs_code and not self.code_embedder:
            raise ValueError(
                f"code_embedder: {', '.join(needs_code)} need a code encoder (e.g. microsoft/unixcoder-base)"
            )

    def metric_specs(self) -> list[MetricSpec]:
        """The study's metrics as :class:`~divtrace.score.metric_spec.MetricSpec` (a bare name has no args)."""
        return [as_spec(choice) for choice in self.metrics]

    def metric_names(self) -> list[str]:
        """The names of the study's metrics, in order."""
        return [spec.name for spec in self.metric_specs()]

    def embedder_settings(self) -> EmbedderSettings:
        """The sentence embedder's settings (the packaged all-MiniLM-L6-v2 when the study names none)."""
        return _settings(EmbedderSettings, self.embedder) or EmbedderSettings()

    def code_embedder_settings(self) -> CodeEmbedderSettings | None:
        """The code embedder's settings; None when the study names none."""
        return _settings(CodeEmbedderSettings, self.code_embedder)

    def nli_settings(self) -> NLISettings | None:
        """The NLI model's settings; None when the study names none."""
        return _settings(NLISettings, self.nli_model)

    def graph(self) -> LineageGraph:
        """The checkpoint graph (raises DivtraceError when it is not a forest)."""
        return LineageGraph(
            CheckpointNode(c.name, c.stage, c.parent, c.variant_of, c.thinking) for c in self.checkpoints
        )

    def stop_policy(self, checkpoint: CheckpointSpec) -> StopPolicy:
        """The stop policy of ``checkpoint``: its own, else the study's."""
        return StopPolicy(checkpoint.stops or self.stops)

    def render_options(self, checkpoint: CheckpointSpec) -> RenderOptions:
        """How ``checkpoint`` renders the study's prompts: system prompt, chat template, thinking mode, stop policy."""
        return RenderOptions(
            checkpoint.system_prompt,
            checkpoint.chat_template,
            ThinkingMode(checkpoint.thinking),
            self.stop_policy(checkpoint),
        )

    def sweep_conditions(self) -> list[SweepCondition]:
        """Every condition of the study's sweep (:func:`~divtrace.study.sweep.sweep_conditions`), checkpoint by
        checkpoint; none without a sweep."""
        if self.sweep is None or not isinstance(self.sampling, SamplingSpec):
            return []
        return sweep_conditions(self.sweep, self.sampling, [c.name for c in self.checkpoints])

    def sampled(self) -> list[SampledCheckpoint]:
        """What the study samples: every checkpoint at the study's setting, each followed by its sweep's other
        conditions (checkpoint by checkpoint, so one model load serves a checkpoint and its conditions)."""
        extra: dict[str, list[SweepCondition]] = {}
        for condition in self.sweep_conditions():
            if not condition.is_study_setting:
                extra.setdefault(condition.checkpoint, []).append(condition)
        sampled = []
        for checkpoint in self.checkpoints:
            sampled.append(SampledCheckpoint(checkpoint.name, checkpoint, None))
            sampled += [SampledCheckpoint(c.name, checkpoint, c) for c in extra.get(checkpoint.name, [])]
        return sampled

    def sampling_for(self, planned: PlannedTask, condition: SweepCondition | None = None) -> SamplingParams:
        """The sampling parameters of one task: the study's (with ``condition``'s swept values when given), with the
        task's stops and token cap.

        The cap is the study task's ``max_new_tokens``, else the study's ``sampling.max_new_tokens``, else the
        task's own; the stops are the study task's ``stop``, else the task's (before the stop policy, which
        :meth:`render_options` carries). Raises DivtraceError for a study of imported samples (nothing to sample).
        """
        sampling = self.sampling
        if not isinstance(sampling, SamplingSpec):
            raise DivtraceError(
                f"study {self.name!r} describes imported samples (sampling as recorded: {sampling.source}); "
                "it cannot generate: give a study with sampling settings"
            )
        if condition is not None:
            sampling = swept_sampling(sampling, condition)
        return sampling.params(
            stop=planned.task.stop if planned.spec.stop is None else tuple(planned.spec.stop),
            task_max_new_tokens=planned.task.max_new_tokens,
            max_new_tokens=planned.spec.max_new_tokens,
        )

    def checkpoint(self, name: str) -> CheckpointSpec:
        """The checkpoint called ``name``."""
        for checkpoint in self.checkpoints:
            if checkpoint.name == name:
                return checkpoint
        raise KeyError(name)

    def to_yaml(self) -> str:
        """The study as YAML (every field, defaults included: the frozen, resolved study of a run)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


@dataclass(frozen=True)
class SampledCheckpoint:
    """One thing a study samples: ``checkpoint`` at the study's setting (``condition`` None, ``name`` the
    checkpoint's) or at a sweep ``condition`` (``name`` the condition's). Its samples, verdicts, judgments and
    scores are stored under ``name``."""

    name: str
    checkpoint: CheckpointSpec
    condition: SweepCondition | None


def _settings(kind: type[_S], value: str | _S | None) -> _S | None:
    """``value`` as ``kind`` settings: a bare model name is ``kind(model=name)``; None stays None."""
    return kind(model=value) if isinstance(value, str) else value
