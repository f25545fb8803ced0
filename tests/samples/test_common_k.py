"""The common-K rule: within a (checkpoint, task), prompts with different K are cut to the smallest K."""

from __future__ import annotations

import pytest

from divtrace.errors import DivtraceError
from divtrace.samples import SampleRecord
from divtrace.samples.common_k import COMMON_K_RULE, CUT_FIELDS, mixed_k_settings, to_common_k


def record(prompt_id: str, k: int, checkpoint: str = "base", task: str = "open") -> SampleRecord:
    return SampleRecord(
        prompt_id=prompt_id,
        prompt=f"q {prompt_id}",
        outputs=[f"out {prompt_id} {i}" for i in range(k)],
        responses=[f"resp {prompt_id} {i}" for i in range(k)],
        finish_reasons=["stop"] * k,
        sample_seeds=list(range(k)),
        thinking_unclosed=[False] * k,
        checkpoint=checkpoint,
        task=task,
    )


def test_uniform_cells_are_left_as_they_are() -> None:
    records = [record("1", 4), record("2", 4), record("1", 8, checkpoint="sft")]  # K differs across cells only
    common = to_common_k(records)
    assert common.mixed == [] and common.warnings() == []
    assert all(a is b for a, b in zip(common.records, records, strict=True))


def test_a_mixed_cell_is_cut_to_its_smallest_k_keeping_the_first_outputs() -> None:
    records = [record("1", 3), record("2", 5), record("3", 6), record("4", 3), record("1", 4, task="other")]
    common = to_common_k(records)
    assert [r.prompt_id for r in common.records] == ["1", "2", "3", "4", "1"]  # input order
    assert [len(r.outputs) for r in common.records] == [3, 3, 3, 3, 4]
    cut = common.records[2]
    assert cut.outputs == records[2].outputs[:3] and cut.responses == records[2].responses[:3]  # type: ignore[index]
    for name in CUT_FIELDS:
        value = getattr(cut, name)
        assert value is None or len(value) == 3, name
    assert common.records[0] is records[0]  # already at the common K
    [cell] = common.mixed
    assert (cell.checkpoint, cell.task, cell.common_k, cell.prompts_per_k) == ("base", "open", 3, {3: 2, 5: 1, 6: 1})
    assert cell.first_cut == (("2", 5), ("3", 6)) and cell.prompts_cut == 2
    [warning] = common.warnings()
    assert warning.startswith(
        "base/open has prompts with different K: 3 (2 prompts), 5 (1 prompt), 6 (1 prompt); prompts with more than "
        "3: '2' (K=5), '3' (K=6); every prompt of the cell is cut to its first 3 outputs"
    )
    assert mixed_k_settings(common.mixed) == {
        "rule": COMMON_K_RULE,
        "cells": [{"checkpoint": "base", "task": "open", "common_k": 3, "prompts_per_k": {"3": 2, "5": 1, "6": 1},
                   "first_cut": [["2", 5], ["3", 6]]}],
    }  # fmt: skip


def test_a_warning_names_a_few_prompts_then_counts_the_rest() -> None:
    records = [record("short", 2)] + [record(f"p{i}", 4) for i in range(7)]
    [warning] = to_common_k(records).warnings()
    assert "prompts with more than 2: 'p0' (K=4), 'p1' (K=4), 'p2' (K=4) and 4 more;" in warning


def test_strict_refuses_mixed_k_naming_the_prompts() -> None:
    records = [record("1", 3), record("2", 5), record("1", 2, checkpoint="sft"), record("2", 4, checkpoint="sft")]
    with pytest.raises(DivtraceError) as caught:
        to_common_k(records, strict=True)
    assert str(caught.value).startswith(
        "mixed K refused (--strict-k): base/open has prompts with different K: 3 (1 prompt), 5 (1 prompt); prompts "
        "with more than 3: '2' (K=5) (and 1 more (checkpoint, task) with mixed K)"
    )
    assert to_common_k(records[:1] + records[2:3], strict=True).mixed == []
