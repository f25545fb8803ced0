"""Study files: the lineage (checkpoints as a graph), tasks, sampling, metrics, models and executor, in YAML.

A study is validated by pydantic; every error names the key that is wrong (``checkpoints.2.parent``...).
Built-in presets: ``quickstart`` (the packaged models, small enough for a laptop CPU) and ``olmo3-7b`` (the 13 Olmo 3
7B checkpoints of the study, plus the Think checkpoints again with thinking suppressed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from divtrace.errors import DivtraceError
from divtrace.generate.params import STUDY_K, STUDY_SEED, STUDY_TEMPERATURE, STUDY_TOP_P
from divtrace.generate.stops import StopPolicy
from divtrace.lineage import CheckpointNode, LineageGraph

#: ``model`` of every checkpoint of an imported study: the samples were generated elsewhere.
IMPORTED_MODEL = "imported"

#: The stop policies a study or checkpoint may name (:class:`~divtrace.generate.stops.StopPolicy`).
StopPolicyName = Literal["auto", "always", "never"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckpointSpec(_Strict):
    """One checkpoint: where its weights are, its place in the lineage, and how to sample it."""

    name: str = Field(min_length=1, description="unique label used in every table")
    model: str = Field(min_length=1, description="quickstart:NAME, hub id, local dir, .gguf, or served model name")
    revision: str | None = None
    stage: str = Field("base", description="base, sft, dpo, rl, rl-zero, instruct, ...")
    parent: str | None = Field(None, description="the checkpoint this one was trained from")
    variant_of: str | None = Field(None, description="same weights as this checkpoint, sampled differently")
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    thinking: Literal["native", "suppressed"] = "native"
    chat_template: bool | None = Field(None, description="None: use the tokenizer's template when it has one")
    system_prompt: str | None = None
    stops: StopPolicyName | None = Field(None, description="stop policy for this checkpoint (default: the study's)")
    options: dict[str, Any] = Field(default_factory=dict, description="backend options (dtype, base_url, ...)")


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


class SamplingSpec(_Strict):
    """Sampling settings shared by every checkpoint (the study's defaults)."""

    k: int = Field(STUDY_K, ge=2)
    temperature: float = Field(STUDY_TEMPERATURE, gt=0)
    top_p: float = Field(STUDY_TOP_P, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(
        None, ge=1, description="every task's cap when set (a task's own max_new_tokens in the study wins)"
    )
    seed: int = Field(STUDY_SEED, ge=0)


#: A recorded sampling setting nobody logged.
UNKNOWN = "unknown"


class RecordedSampling(_Strict):
    """The sampling of imported samples, as their records carry it (an imported study generates nothing).

    Each setting is the value every record shares; ``"unknown"`` when no record logged it (lighteval's details
    keep no temperature, for instance); ``"mixed: a, b[, unknown]"`` when records disagree or only some logged it.
    ``requested`` is True when the values are what the tool was asked for (lm-eval's ``gen_kwargs``), which a
    backend may not have honoured. ``from_records`` tells this apart from :class:`SamplingSpec` in ``study.yaml``.
    """

    from_records: Literal[True] = True
    source: str = Field(description="the tool(s) that wrote the records: lm-eval, lighteval, divtrace, or mixed")
    k: int | str = Field(description="outputs per prompt")
    temperature: float | str = UNKNOWN
    top_p: float | str = UNKNOWN
    max_new_tokens: int | str = UNKNOWN
    requested: bool = False


def _sampling_kind(value: Any) -> str:
    """Which model a ``sampling`` value is: recorded (``from_records``) or the study's settings."""
    recorded = value.get("from_records") if isinstance(value, dict) else isinstance(value, RecordedSampling)
    return "RecordedSampling" if recorded else "SamplingSpec"


#: ``sampling`` of a study: settings to sample with, or (imported study) what the records carry.
SamplingChoice = Annotated[
    Annotated[SamplingSpec, Tag("SamplingSpec")] | Annotated[RecordedSampling, Tag("RecordedSampling")],
    Discriminator(_sampling_kind),
]
_UNION_TAGS = frozenset({"SamplingSpec", "RecordedSampling"})


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
    metrics: list[str] = Field(default_factory=lambda: ["ead", "sbert", "vendi"])
    embedder: str | None = None
    code_embedder: str | None = Field(None, description="encoder of the code-embedding metrics (unixcoder)")
    nli_model: str | None = None
    data_dir: str | None = None
    shard_size: int = Field(8, ge=1)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)

    @model_validator(mode="after")
    def _graph_is_valid(self) -> Study:
        names = [c.name for c in self.checkpoints]
        for index, checkpoint in enumerate(self.checkpoints):
            for key in ("parent", "variant_of"):
                target = getattr(checkpoint, key)
                if target is not None and target not in names:
                    raise ValueError(f"checkpoints.{index}.{key}: {target!r} is not a checkpoint of this study")
        self.graph()  # duplicate names, cycles, variants with parents
        for index, checkpoint in enumerate(self.checkpoints):
            if checkpoint.backend == "vllm":
                from divtrace.generate.backends.vllm_backend import VLLMOptions

                try:
                    VLLMOptions.model_validate(checkpoint.options)
                except ValidationError as err:
                    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
                    raise ValueError(f"checkpoints.{index}.options: {problems}") from None
        from divtrace.metrics import metric_names

        unknown = [m for m in self.metrics if m not in metric_names()]
        if unknown:
            raise ValueError(f"metrics: unknown {unknown}; known: {metric_names()}")
        if "nli" in self.metrics and not self.nli_model:
            raise ValueError("nli_model: the nli metric needs an MNLI model id or path (e.g. roberta-large-mnli)")
        from divtrace.metrics import metric_class

        needs_code = [m for m in self.metrics if metric_class(m).uses_code_embeddings]
        if needs_code and not self.code_embedder:
            raise ValueError(
                f"code_embedder: {', '.join(needs_code)} need a code encoder (e.g. microsoft/unixcoder-base)"
            )
        return self

    def graph(self) -> LineageGraph:
        """The checkpoint graph (raises DivtraceError when it is not a forest)."""
        return LineageGraph(
            CheckpointNode(c.name, c.stage, c.parent, c.variant_of, c.thinking) for c in self.checkpoints
        )

    def stop_policy(self, checkpoint: CheckpointSpec) -> StopPolicy:
        """The stop policy of ``checkpoint``: its own, else the study's."""
        return StopPolicy(checkpoint.stops or self.stops)

    def checkpoint(self, name: str) -> CheckpointSpec:
        """The checkpoint called ``name``."""
        for checkpoint in self.checkpoints:
            if checkpoint.name == name:
                return checkpoint
        raise KeyError(name)

    def to_yaml(self) -> str:
        """The study as YAML (every field, defaults included: the frozen, resolved study of a run)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def load_study(source: str | Path) -> Study:
    """A study from a YAML file, or a preset by name (``quickstart``, ``olmo3-7b``).

    Raises DivtraceError naming the file and each key at fault.
    """
    if str(source) in PRESETS:
        return PRESETS[str(source)]()
    path = Path(source)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DivtraceError(f"{path}: no such study file (presets: {', '.join(PRESETS)})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise DivtraceError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise DivtraceError(f"{path}: a study file is a mapping (name, checkpoints, tasks, ...)")
    return parse_study(raw, str(path))


def parse_study(raw: dict[str, Any], where: str = "study") -> Study:
    """Validate a study given as a dict; errors name ``where`` and the keys at fault."""
    try:
        return Study.model_validate(raw)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            key = ".".join(str(part) for part in error["loc"] if part not in _UNION_TAGS)
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"key '{key}': {message}" if key else message)
        raise DivtraceError(f"{where}: " + "; ".join(problems)) from None
    except DivtraceError as err:
        raise DivtraceError(f"{where}: key 'checkpoints': {err}") from None


# ----- presets -----

QUICKSTART_CAVEAT = (
    "The two quickstart models come from different families (google/gemma-3-270m, a base model, and "
    "HuggingFaceTB/SmolLM2-135M-Instruct): this report compares across families, it is NOT a lineage. "
    "It demonstrates the pipeline; draw no conclusion about post-training from it."
)


def quickstart_study() -> Study:
    """The built-in offline demo: two packaged models, two bundled tasks, small K, short outputs."""
    from divtrace.tasks.bundled import QUICKSTART_TASK_FILES

    return Study(
        name="quickstart",
        description="Offline demo on the packaged models (2 CPU cores, a few minutes).",
        caveat=QUICKSTART_CAVEAT,
        checkpoints=[
            CheckpointSpec(name="gemma-3-270m", model="quickstart:gemma-3-270m", stage="base"),
            CheckpointSpec(
                name="smollm2-135m-instruct",
                model="quickstart:smollm2-135m-instruct",
                stage="instruct (other family)",
                parent="gemma-3-270m",
            ),
        ],
        tasks=[TaskSpec(name=str(path)) for path in QUICKSTART_TASK_FILES],
        sampling=SamplingSpec(k=8, temperature=0.8, top_p=0.95, max_new_tokens=48, seed=1234),
        metrics=["ead", "sbert", "vendi"],
        shard_size=8,
    )


def small_quickstart_study(
    prompts: int, k: int, max_new_tokens: int, *, shard_size: int = 1, seed: int = 1234, name: str = "small-quickstart"
) -> Study:
    """The quickstart cut down to ``prompts`` prompts per task, K = ``k``, ``max_new_tokens`` tokens (tests and
    benchmarks that need the real end-to-end path in seconds)."""
    study = quickstart_study()
    return study.model_copy(
        update={
            "name": name,
            "tasks": [TaskSpec(name=task.name, n=prompts) for task in study.tasks],
            "sampling": SamplingSpec(k=k, temperature=0.8, top_p=0.95, max_new_tokens=max_new_tokens, seed=seed),
            "shard_size": shard_size,
        }
    )


OLMO3_7B_TASKS = (
    "tldr", "cnn_dailymail", "xsum", "humaneval", "mbpp", "cruxeval", "gsm8k", "math_algebra", "math_geometry",
    "truthfulqa", "alpaca", "ifeval", "writingprompts", "prism", "wildbench",
)  # fmt: skip


#: The study's four text metrics, its code diversity (on the correct programs of code tasks) and answer-level
#: diversity (on verifiable tasks).
OLMO3_7B_METRICS = (
    "ead", "sbert", "vendi", "nli", "ast", "ast-distinct", "code-sbert", "code-vendi", "answer-distinct",
    "answer-entropy",
)  # fmt: skip


def olmo3_7b_study() -> Study:
    """The study's 13 Olmo 3 7B checkpoints (vLLM), plus the Think checkpoints with thinking suppressed."""
    vllm = {"backend": "vllm"}
    checkpoints = [
        CheckpointSpec(name="base", model="allenai/Olmo-3-1025-7B", stage="base", chat_template=False, **vllm),
        CheckpointSpec(name="think-sft", model="allenai/Olmo-3-7B-Think-SFT", stage="sft", parent="base", **vllm),
        CheckpointSpec(name="think-dpo", model="allenai/Olmo-3-7B-Think-DPO", stage="dpo", parent="think-sft", **vllm),
        CheckpointSpec(name="think", model="allenai/Olmo-3-7B-Think", stage="rl", parent="think-dpo", **vllm),
        CheckpointSpec(name="instruct-sft", model="allenai/Olmo-3-7B-Instruct-SFT", stage="sft", parent="base", **vllm),
        CheckpointSpec(
            name="instruct-dpo", model="allenai/Olmo-3-7B-Instruct-DPO", stage="dpo", parent="instruct-sft", **vllm
        ),
        CheckpointSpec(name="instruct", model="allenai/Olmo-3-7B-Instruct", stage="rl", parent="instruct-dpo", **vllm),
    ]
    for domain in ("Math", "Code", "IF", "General"):
        checkpoints.append(
            CheckpointSpec(
                name=f"rl-zero-{domain.lower()}",
                model=f"allenai/Olmo-3-7B-RL-Zero-{domain}",
                stage="rl-zero",
                parent="base",
                **vllm,
            )
        )
    for domain in ("Math", "Code"):
        checkpoints.append(
            CheckpointSpec(
                name=f"rl-zero-3.1-{domain.lower()}",
                model=f"allenai/Olmo-3.1-7B-RL-Zero-{domain}",
                stage="rl-zero",
                parent="base",
                **vllm,
            )
        )
    for think in ("think-sft", "think-dpo", "think"):
        original = next(c for c in checkpoints if c.name == think)
        checkpoints.append(
            CheckpointSpec(
                name=f"{think}-nothink",
                model=original.model,
                stage=original.stage,
                variant_of=think,
                thinking="suppressed",
                **vllm,
            )
        )
    return Study(
        name="olmo3-7b",
        description="Karouzos, Tan, Aletras (2026): where does output diversity collapse in post-training? "
        "13 Olmo 3 7B checkpoints, 15 tasks, K=16, temperature 0.6, top-p 0.95.",
        checkpoints=checkpoints,
        tasks=[TaskSpec(name=name) for name in OLMO3_7B_TASKS],
        sampling=SamplingSpec(),
        metrics=list(OLMO3_7B_METRICS),
        embedder="sentence-transformers/all-mpnet-base-v2",
        code_embedder="microsoft/unixcoder-base",
        nli_model="roberta-large-mnli",
        executor=ExecutorSpec(type="ray"),
    )


PRESETS = {"quickstart": quickstart_study, "olmo3-7b": olmo3_7b_study}


STARTER_STUDY = """\
# A divtrace study: one lineage of checkpoints, the tasks to sample, and how.
# Run it with: divtrace run study.yaml --out runs/my-study   (add --dry-run to see the plan first)
name: my-study
# caveat: shown at the top of the report, e.g. when the checkpoints are not one lineage.

checkpoints:                # the lineage as a graph: each checkpoint names the one it was trained from
  - name: base
    model: allenai/Olmo-3-1025-7B          # hub id, local dir, .gguf file, or quickstart:NAME
    stage: base
    chat_template: false                   # base models get the raw prompt
  - name: sft
    model: allenai/Olmo-3-7B-Instruct-SFT
    # revision: main                       # pin a revision for reproducibility
    stage: sft
    parent: base
  - name: dpo
    model: allenai/Olmo-3-7B-Instruct-DPO
    stage: dpo
    parent: sft
  # - name: think-nothink                  # same weights, thinking suppressed (chain-of-thought ablation)
  #   model: allenai/Olmo-3-7B-Think
  #   variant_of: think
  #   thinking: suppressed
  # backend: transformers | vllm | openai  (per checkpoint; options: {dtype: bfloat16, base_url: ...})

tasks:                      # divtrace tasks lists them; a task .yaml file works too
  - name: gsm8k
    n: 100                  # default: the study's N for the task
  - name: writingprompts
    n: 100

sampling:                   # the study's defaults
  k: 16
  temperature: 0.6
  top_p: 0.95
  seed: 1234
  # max_new_tokens: 512     # default: each task's own

metrics: [ead, sbert, vendi]          # add nli with nli_model: roberta-large-mnli
# embedder: sentence-transformers/all-mpnet-base-v2   # the study's; default: packaged all-MiniLM-L6-v2
# data_dir: data/                     # offline task data: TASK.jsonl files
executor:
  type: local                         # or ray (address: auto)
"""
