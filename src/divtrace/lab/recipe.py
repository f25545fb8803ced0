"""A lab recipe: the base model and the stages that post-train it into a lineage, in YAML.

A recipe names a ``base`` (a model reference: ``quickstart:gemma-3-270m``, a hub id, a local directory) and its
``stages``, each trained from its ``parent`` (``base`` or another stage: the stages form a tree, so siblings with
different data test what the data does). A stage is SFT or DPO, with a LoRA adapter (default: rank 8 on
q/k/v/o) or full fine-tuning; a LoRA stage whose parent is a LoRA stage goes on training its parent's adapter, so
it keeps the parent's adapter settings. The optional ``study:`` section says how the built lineage is sampled.

Errors name the file and the key at fault (``stages.1.parent``), as a study file's do.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from divtrace.errors import DivtraceError
from divtrace.generate.params import SamplingSpec
from divtrace.lab.data_specs import DataSpec
from divtrace.runs.layout import run_name_problems
from divtrace.yaml_files import key_problems, read_yaml_mapping

#: The name of the base model in a recipe's ``parent`` keys, and its checkpoint's name in the study.
BASE = "base"

#: The methods a stage may name; ``grpo`` is reserved (refused) so that recipes have room for it.
Method = Literal["sft", "dpo", "grpo"]

#: DPO's beta when a DPO stage gives none.
DEFAULT_BETA = 0.1

#: The tasks of a built lineage's study when the recipe's ``study:`` gives none (the quickstart's).
DEFAULT_TASKS = ("arithmetic", "open_ended")

#: The metrics of a built lineage's study when the recipe's ``study:`` gives none (the quickstart's).
DEFAULT_METRICS = ("ead", "sbert", "vendi")

#: The data-kind tags of a stage's ``data:``, left out of the keys errors name.
_DATA_TAGS = frozenset({"dataset", "distill", "pairs"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _quickstart_sampling() -> SamplingSpec:
    """The quickstart study's sampling: K = 8 at temperature 0.8, top-p 0.95, 48 new tokens at most."""
    return SamplingSpec(k=8, temperature=0.8, top_p=0.95, max_new_tokens=48, seed=1234)


def _entries(names: tuple[str, ...]) -> list[str | dict[str, Any]]:
    """``names`` as a list of study entries (a name, or a mapping)."""
    return list(names)


class LoraSpec(_Strict):
    """A LoRA adapter: rank ``r``, scale ``alpha``, ``dropout`` and the modules it adapts (``target_modules``)."""

    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: tuple[str, ...] = Field(("q_proj", "k_proj", "v_proj", "o_proj"), min_length=1)


class StageSpec(_Strict):
    """One stage of the lineage: trained by ``method`` from ``parent`` on ``data``.

    ``steps`` optimizer steps of ``batch_size`` rows of at most ``max_length`` tokens at ``learning_rate``, seeded
    with ``seed``; a LoRA adapter (``lora``, the default) or ``full: true`` fine-tuning; ``beta`` is DPO's.
    """

    name: str = Field(min_length=1, description="the stage's checkpoint name; not 'base'")
    method: Method
    parent: str = Field(BASE, min_length=1, description="'base' or another stage's name")
    data: DataSpec
    steps: int = Field(ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    batch_size: int = Field(4, ge=1)
    max_length: int = Field(512, ge=8)
    seed: int = Field(1234, ge=0)
    lora: LoraSpec | None = Field(None, description="default: rank 8 on q/k/v/o, unless full")
    full: bool = Field(False, description="full fine-tuning instead of a LoRA adapter")
    beta: float | None = Field(None, gt=0, description=f"DPO's beta (default {DEFAULT_BETA})")

    @field_validator("name")
    @classmethod
    def _not_base(cls, value: str) -> str:
        if value == BASE:
            raise ValueError(f"'{BASE}' names the base model; give the stage another name")
        return value

    @field_validator("method")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value == "grpo":
            raise ValueError("method 'grpo' is not yet supported (sft and dpo are)")
        return value

    @field_validator("data")
    @classmethod
    def _data_of_method(cls, value: DataSpec, info: ValidationInfo) -> DataSpec:
        method = info.data.get("method")
        if method == "sft" and value.kind == "pairs":
            raise ValueError("data of kind 'pairs' (preference pairs) is DPO's: an sft stage takes SFT rows")
        if method == "dpo" and value.kind == "distill":
            raise ValueError("data of kind 'distill' (SFT rows) is SFT's: a dpo stage takes preference pairs")
        return value

    @field_validator("full")
    @classmethod
    def _lora_or_full(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("lora") is not None:
            raise ValueError("a stage is LoRA ('lora') or full fine-tuning ('full: true'), not both")
        return value

    @field_validator("beta")
    @classmethod
    def _beta_of_dpo(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("method") not in (None, "dpo"):
            raise ValueError("'beta' is DPO's: an sft stage takes none")
        return value

    @property
    def adapter(self) -> LoraSpec | None:
        """The stage's LoRA settings (the default adapter when it names none); None for full fine-tuning."""
        return None if self.full else (self.lora or LoraSpec())

    @property
    def dpo_beta(self) -> float:
        """DPO's beta: ``beta``, or :data:`DEFAULT_BETA`."""
        return DEFAULT_BETA if self.beta is None else self.beta


class LabStudySpec(_Strict):
    """How the built lineage is sampled: the study ``divtrace run`` takes (default: the quickstart's tasks,
    sampling and metrics)."""

    name: str | None = Field(None, min_length=1, description="default: the recipe's name")
    tasks: list[str | dict[str, Any]] = Field(
        default_factory=lambda: _entries(DEFAULT_TASKS), min_length=1, description="task names, or study task entries"
    )
    sampling: SamplingSpec = Field(default_factory=_quickstart_sampling)
    metrics: list[str | dict[str, Any]] = Field(default_factory=lambda: _entries(DEFAULT_METRICS), min_length=1)
    shard_size: int = Field(8, ge=1)


class Recipe(_Strict):
    """A lab recipe: ``base`` post-trained by ``stages`` (a tree rooted at the base), sampled as ``study`` says."""

    name: str = Field(min_length=1)
    description: str = ""
    base: str = Field(min_length=1, description="quickstart:NAME, a hub id or a local model directory")
    stages: list[StageSpec] = Field(min_length=1)
    study: LabStudySpec = Field(default_factory=LabStudySpec)

    @model_validator(mode="after")
    def _a_tree(self) -> Recipe:
        problems = graph_problems(self.stages)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def stage(self, name: str) -> StageSpec:
        """The stage called ``name`` (KeyError when there is none)."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def build_order(self) -> list[StageSpec]:
        """The stages parents first: each after its parent, otherwise in the recipe's order."""
        return _parents_first(self.stages)

    def lora_of(self, name: str) -> LoraSpec | None:
        """The LoRA settings stage ``name`` trains with (:func:`lineage_adapters`); None for full fine-tuning."""
        return lineage_adapters(self.stages)[name]


def _parents_first(stages: Iterable[StageSpec]) -> list[StageSpec]:
    """``stages`` each after its parent (a stage whose parent never comes, in a cycle or unknown, is left out)."""
    built: set[str] = {BASE}
    order: list[StageSpec] = []
    pending = list(stages)
    while True:
        ready = [stage for stage in pending if stage.parent in built]
        if not ready:
            return order
        order += ready
        built.update(stage.name for stage in ready)
        pending = [stage for stage in pending if stage.name not in built]


def lineage_adapters(stages: Iterable[StageSpec]) -> dict[str, LoraSpec | None]:
    """Stage name -> the LoRA settings it trains with: a LoRA stage whose parent trains a LoRA adapter goes on
    training that adapter, so it has its parent's settings; any other LoRA stage has its own
    (:attr:`StageSpec.adapter`); a full fine-tuning stage has None."""
    adapters: dict[str, LoraSpec | None] = {BASE: None}
    for stage in _parents_first(stages):
        inherited = adapters.get(stage.parent)
        adapters[stage.name] = None if stage.full else (inherited or stage.adapter)
    return adapters


def graph_problems(stages: Iterable[StageSpec]) -> list[str]:
    """Why ``stages`` are not a tree rooted at the base, one sentence per problem naming its key: a name given
    twice, a parent that is no stage, a cycle, a LoRA child of a LoRA stage whose adapter settings differ from its
    parent's, names that would share a directory."""
    listed = list(stages)
    problems: list[str] = []
    index: dict[str, int] = {}
    for position, stage in enumerate(listed):
        if stage.name in index:
            problems.append(
                f"key 'stages.{position}.name': stage {stage.name!r} is named twice (also stages.{index[stage.name]})"
            )
        else:
            index[stage.name] = position
    for problem in run_name_problems([stage.name for stage in listed], "checkpoint"):
        problems.append(f"key 'stages': {problem.replace('checkpoints', 'stages', 1)}")
    known = ", ".join([BASE, *index])
    for position, stage in enumerate(listed):
        if stage.parent != BASE and stage.parent not in index:
            problems.append(f"key 'stages.{position}.parent': unknown stage {stage.parent!r} (known: {known})")
    for position, stage in enumerate(listed):
        if _in_cycle(stage, listed, index):
            problems.append(f"key 'stages.{position}.parent': stage {stage.name!r} is its own ancestor (a cycle)")
    if problems:
        return problems
    adapters = lineage_adapters(listed)
    for position, stage in enumerate(listed):
        inherited = adapters[stage.parent]
        if stage.lora is not None and inherited is not None and stage.lora != inherited:
            problems.append(
                f"key 'stages.{position}.lora': stage {stage.name!r} goes on training the adapter of its parent "
                f"{stage.parent!r}, so it keeps that adapter's settings ({_lora_text(inherited)}); leave 'lora' out "
                "or give the same"
            )
    return problems


def _in_cycle(stage: StageSpec, stages: list[StageSpec], index: dict[str, int]) -> bool:
    """True when following parents from ``stage`` comes back to it."""
    seen: set[str] = set()
    current = stage.parent
    while current in index and current not in seen:
        if current == stage.name:
            return True
        seen.add(current)
        current = stages[index[current]].parent
    return current == stage.name


def _lora_text(lora: LoraSpec) -> str:
    return f"r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout:g}, target_modules={list(lora.target_modules)}"


def load_recipe(path: str | Path) -> Recipe:
    """The recipe in the YAML file ``path``.

    Raises DivtraceError naming the file and each key at fault (a missing file, YAML that does not parse, a
    value out of range, an unknown parent, a cycle...).
    """
    source = Path(path)
    raw = read_yaml_mapping(
        source,
        missing="no such recipe file",
        not_a_mapping="a recipe file is a mapping (name, base, stages, ...)",
    )
    return parse_recipe(raw, str(source))


def parse_recipe(raw: dict[str, Any], where: str = "recipe") -> Recipe:
    """Validate a recipe given as a dict; errors (DivtraceError) name ``where`` and the keys at fault."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise DivtraceError(f"{where}: " + "; ".join(key_problems(err, _not_a_key, _EXPLAINED))) from None


#: Pydantic's errors said in a recipe's terms (the one discriminated union of a recipe is a stage's ``data``).
_EXPLAINED = {"union_tag_not_found": "a stage's data names its 'kind': dataset, distill or pairs"}


def _not_a_key(location: tuple[int | str, ...], index: int) -> bool:
    """Whether part ``index`` of a validation error's location names no key: the tag of a ``data:`` kind, or of a
    validator."""
    part = location[index]
    if index > 0 and location[index - 1] == "data" and part in _DATA_TAGS:
        return True
    return isinstance(part, str) and part.startswith(("function-", "union["))
