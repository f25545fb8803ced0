"""Where a lab stage's training data comes from (a recipe's ``data:``): a dataset, or data the lab makes.

- :class:`DatasetData`: a hub dataset id or a local JSONL/Parquet file, in chat form (``messages``), prompt/response
  form (``prompt`` + ``completion``/``response``), or preference form (``prompt``, ``chosen``, ``rejected``).
- :class:`DistillData` (SFT): a teacher's responses to prompts, drawn through any divtrace backend.
- :class:`PairsData` (DPO): preference pairs from a rule: samples of the stage's parent on a verifiable task, a
  correct sample preferred over an incorrect one of the same prompt (``rule: verifier``).

Every made data set is written as a JSON Lines file (one training row per line: ``prompt``/``completion`` for SFT,
``prompt``/``chosen``/``rejected`` for DPO) whose sha256 goes on the checkpoint's card.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetData(_Strict):
    """A data set that exists: ``dataset`` is a hub id (with ``split``, ``revision``) or a local .jsonl/.parquet file
    (a relative path resolves against the recipe's directory); ``limit`` keeps its first rows."""

    kind: Literal["dataset"] = "dataset"
    dataset: str = Field(min_length=1)
    split: str = "train"
    revision: str | None = None
    limit: int | None = Field(None, ge=1)


class DistillData(_Strict):
    """SFT data made by distillation: ``teacher`` (a model reference as a checkpoint's ``model``, on ``backend``
    with ``options``) answers the prompts of ``prompts`` (a divtrace task name or task .yaml file; ``n`` of them),
    ``k`` responses per prompt at ``temperature``, at most ``max_new_tokens`` tokens, seeded with ``seed``."""

    kind: Literal["distill"] = "distill"
    teacher: str = Field(min_length=1)
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    options: dict[str, object] = Field(default_factory=dict)
    prompts: str = Field(min_length=1, description="a divtrace task (name or .yaml file) whose prompts are asked")
    n: int | None = Field(None, ge=1)
    k: int = Field(1, ge=1)
    temperature: float = Field(0.7, gt=0)
    max_new_tokens: int = Field(64, ge=1)
    seed: int = Field(1234, ge=0)


class PairsData(_Strict):
    """DPO data made from a rule: the stage's parent samples ``k`` responses to each of ``n`` prompts of the
    verifiable ``task``; each prompt with at least one correct and one incorrect response gives pairs (correct
    chosen, incorrect rejected; at most ``pairs_per_prompt``, in sample order)."""

    kind: Literal["pairs"] = "pairs"
    rule: Literal["verifier"] = "verifier"
    task: str = Field(min_length=1, description="a verifiable divtrace task (name or .yaml file)")
    n: int | None = Field(None, ge=1)
    k: int = Field(4, ge=2)
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(64, ge=1)
    pairs_per_prompt: int = Field(2, ge=1)
    seed: int = Field(1234, ge=0)


#: A stage's ``data:``, told apart by ``kind``.
DataSpec = Annotated[
    Annotated[DatasetData, Tag("dataset")]
    | Annotated[DistillData, Tag("distill")]
    | Annotated[PairsData, Tag("pairs")],
    Discriminator("kind"),
]
