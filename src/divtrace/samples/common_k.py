"""The common-K rule: samples whose prompts have different numbers of outputs (K) within one (checkpoint, task) are
cut to the cell's smallest K before anything is verified or scored.

Vendi, EAD, distinct-n, the answer and AST distinct counts, and pass@k (with accuracy and the majority vote) all
depend on K, so a cell's prompts are only comparable at one K. The cut keeps the first K outputs of each prompt
(deterministic, and a random subsample since samples are i.i.d.) and every per-output field with them; every metric
of the cell is then computed on the same outputs. divtrace's own generation always gives one K; the rule applies
wherever samples come in (``divtrace score``, ``verify``, ``analyze`` and the Python API), and is refused outright
with ``strict`` (``--strict-k``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from divtrace.errors import DivtraceError
from divtrace.samples.schema import SampleRecord
from divtrace.samples.validate import PER_OUTPUT_FIELDS

#: Every field that holds one item per output, cut with the outputs.
CUT_FIELDS = ("outputs", *PER_OUTPUT_FIELDS, "sample_keys")
#: Prompts a warning names before it counts the rest.
NAMED_PROMPTS = 3
#: The rule, as the settings state it.
COMMON_K_RULE = (
    "a (checkpoint, task) whose prompts have different numbers of outputs is cut to its smallest K (the first K "
    "outputs of each prompt) before verification and scoring; every metric and pass@k of it use those outputs"
)


class MixedK(BaseModel):
    """One (checkpoint, task) whose prompts had different K, as the settings record it (``mixed_k``).

    Attributes:
        checkpoint, task: the cell.
        common_k: the smallest K of the cell, which every prompt was cut to.
        prompts_per_k: how many prompts had each K, before the cut.
        first_cut: (prompt_id, K) of the first :data:`NAMED_PROMPTS` prompts that had more outputs than
            ``common_k``, in input order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    checkpoint: str
    task: str
    common_k: int
    prompts_per_k: dict[int, int]
    first_cut: tuple[tuple[str, int], ...]

    @property
    def prompts_cut(self) -> int:
        """How many prompts had more outputs than ``common_k``."""
        return sum(n for k, n in self.prompts_per_k.items() if k > self.common_k)

    def message(self) -> str:
        """The cell's K in words, naming the first prompts cut (and counting the others)."""
        ks = ", ".join(f"{k} ({n} prompt{'s' if n != 1 else ''})" for k, n in sorted(self.prompts_per_k.items()))
        named = ", ".join(f"{prompt_id!r} (K={k})" for prompt_id, k in self.first_cut)
        more = self.prompts_cut - len(self.first_cut)
        return (
            f"{self.checkpoint}/{self.task} has prompts with different K: {ks}; prompts with more than "
            f"{self.common_k}: {named}" + (f" and {more} more" if more > 0 else "")
        )


@dataclass(frozen=True)
class CommonK:
    """Records at one K per (checkpoint, task) (:func:`to_common_k`), and the cells that were cut."""

    records: list[SampleRecord]
    mixed: list[MixedK] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """One line per cut cell: its K, the prompts cut, and what was done."""
        return [
            f"{cell.message()}; every prompt of the cell is cut to its first {cell.common_k} outputs (the cell's "
            "smallest K) for every metric and pass@k (--strict-k refuses mixed K instead)"
            for cell in self.mixed
        ]


def mixed_k_settings(cells: Sequence[MixedK]) -> dict[str, Any]:
    """How settings record the rule (``mixed_k``): the rule in words and the cells it cut (none: K was uniform)."""
    return {"rule": COMMON_K_RULE, "cells": [cell.model_dump(mode="json") for cell in cells]}


def _cut(record: SampleRecord, k: int) -> SampleRecord:
    """``record`` with its first ``k`` outputs and the per-output fields that go with them."""
    update = {name: value[:k] for name in CUT_FIELDS if isinstance(value := getattr(record, name), list)}
    return record.model_copy(update=update)


def to_common_k(records: Sequence[SampleRecord], *, strict: bool = False) -> CommonK:
    """``records``, each (checkpoint, task) cut to its smallest K, in input order.

    Contract: a cell whose prompts all have the same K is returned as it is (the same objects); in a cell with
    different K every prompt keeps its first ``common_k`` outputs (and the first ``common_k`` items of every
    per-output field, :data:`CUT_FIELDS`), and the cell is listed in ``mixed``. Cells are keyed by the records'
    ``checkpoint`` and ``task`` labels, so call it once those are final.

    Raises:
        DivtraceError: ``strict`` and some cell has mixed K (the message names the first such cell, its prompts
            and their K).
    """
    cells: dict[tuple[str, str], list[SampleRecord]] = {}
    for record in records:
        cells.setdefault((record.checkpoint or "", record.task or ""), []).append(record)
    mixed: list[MixedK] = []
    for (checkpoint, task), members in cells.items():
        counts = Counter(len(record.outputs) for record in members)
        if len(counts) > 1:
            common = min(counts)
            cut = tuple((r.prompt_id, len(r.outputs)) for r in members if len(r.outputs) > common)[:NAMED_PROMPTS]
            mixed.append(
                MixedK(checkpoint=checkpoint, task=task, common_k=common, prompts_per_k=dict(counts), first_cut=cut)
            )
    if strict and mixed:
        others = f" (and {len(mixed) - 1} more (checkpoint, task) with mixed K)" if len(mixed) > 1 else ""
        raise DivtraceError(
            f"mixed K refused (--strict-k): {mixed[0].message()}{others}; give every prompt of a (checkpoint, task) "
            "the same number of outputs, or leave out --strict-k to cut each to its smallest K"
        )
    common_of = {(cell.checkpoint, cell.task): cell.common_k for cell in mixed}
    out = []
    for record in records:
        k = common_of.get((record.checkpoint or "", record.task or ""))
        out.append(record if k is None or len(record.outputs) == k else _cut(record, k))
    return CommonK(out, mixed)
