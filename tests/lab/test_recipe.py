"""Lab recipes: a tree of stages rooted at the base, each error naming the file and the key at fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from divtrace.errors import DivtraceError
from divtrace.lab.recipe import LoraSpec, load_recipe, parse_recipe
from tests.lab.lab_files import tiny_stage, write_recipe


def recipe(*stages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "r", "base": "quickstart:gemma-3-270m", "stages": list(stages), **extra}


def refused(raw: dict[str, Any]) -> str:
    with pytest.raises(DivtraceError) as caught:
        parse_recipe(raw, "recipe.yaml")
    return str(caught.value)


def test_a_recipe_with_siblings_builds_parents_first_and_inherits_the_parents_adapter() -> None:
    parsed = parse_recipe(
        recipe(
            tiny_stage("dpo", "dpo", "p.jsonl", "sft"),  # listed before its parent
            tiny_stage("sft", "sft", "a.jsonl", lora={"r": 4, "alpha": 8}),
            tiny_stage("sft-b", "sft", "b.jsonl"),  # a sibling of sft, with the default adapter
            tiny_stage("full", "sft", "b.jsonl", full=True),
        )
    )
    assert [stage.name for stage in parsed.build_order()] == ["sft", "sft-b", "full", "dpo"]
    assert parsed.lora_of("dpo") == LoraSpec(r=4, alpha=8)  # goes on training sft's adapter
    assert parsed.lora_of("sft-b") == LoraSpec()  # rank 8 on q/k/v/o
    assert parsed.lora_of("sft-b").target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert parsed.lora_of("full") is None
    assert parsed.stage("dpo").dpo_beta == 0.1
    assert [task for task in parsed.study.tasks] == ["arithmetic", "open_ended"]


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        (
            [tiny_stage("sft", "sft", "a.jsonl", parent="sfx")],
            "key 'stages.0.parent': unknown stage 'sfx' (known: base, sft)",
        ),
        (
            [tiny_stage("a", "sft", "a.jsonl", parent="b"), tiny_stage("b", "sft", "a.jsonl", parent="a")],
            "key 'stages.0.parent': stage 'a' is its own ancestor (a cycle)",
        ),
        (
            [tiny_stage("a", "sft", "a.jsonl"), tiny_stage("a", "dpo", "p.jsonl")],
            "key 'stages.1.name': stage 'a' is named twice (also stages.0)",
        ),
        ([tiny_stage("a", "grpo", "a.jsonl")], "key 'stages.0.method': method 'grpo' is not yet supported"),
        ([tiny_stage("base", "sft", "a.jsonl")], "key 'stages.0.name': 'base' names the base model"),
        ([tiny_stage("a", "sft", "a.jsonl", full=True, lora={"r": 4})], "key 'stages.0.full': a stage is LoRA"),
        ([tiny_stage("a", "sft", "a.jsonl", beta=0.2)], "key 'stages.0.beta': 'beta' is DPO's"),
        (
            [tiny_stage("a", "sft", "a.jsonl", steps=0)],
            "key 'stages.0.steps': Input should be greater than or equal to 1",
        ),
        ([tiny_stage("a", "sft", "a.jsonl", stepz=3)], "key 'stages.0.stepz': Extra inputs are not permitted"),
        ([tiny_stage("a", "sft", "a.jsonl", lora={"r": 0})], "key 'stages.0.lora.r'"),
        (
            [{**tiny_stage("a", "sft", "a.jsonl"), "data": {"kind": "dataset"}}],
            "key 'stages.0.data.dataset': Field required",
        ),
        (
            [{**tiny_stage("a", "sft", "a.jsonl"), "data": {"dataset": "a.jsonl"}}],
            "key 'stages.0.data': a stage's data names its 'kind': dataset, distill or pairs",
        ),
        (
            [{**tiny_stage("a", "dpo", "a.jsonl"), "data": {"kind": "distill", "teacher": "t", "prompts": "gsm8k"}}],
            "key 'stages.0.data': data of kind 'distill' (SFT rows) is SFT's",
        ),
        (
            [tiny_stage("a", "sft", "a.jsonl", lora={"r": 4}), tiny_stage("b", "dpo", "p.jsonl", "a", lora={"r": 16})],
            "key 'stages.1.lora': stage 'b' goes on training the adapter of its parent 'a'",
        ),
        (
            [tiny_stage("a/b", "sft", "a.jsonl"), tiny_stage("a_b", "sft", "a.jsonl")],
            "key 'stages': stages 'a/b' and 'a_b' would be stored under one name",
        ),
    ],
)
def test_recipe_errors_name_the_file_and_the_key(stages: list[dict[str, Any]], expected: str) -> None:
    message = refused(recipe(*stages))
    assert message.startswith("recipe.yaml: "), message
    assert expected in message, message


def test_a_recipe_needs_stages_and_a_base() -> None:
    assert "key 'stages': List should have at least 1 item" in refused(recipe())
    assert "key 'base': Field required" in refused({"name": "r", "stages": [tiny_stage("a", "sft", "a.jsonl")]})


def test_a_child_that_restates_its_parents_adapter_is_accepted() -> None:
    parsed = parse_recipe(
        recipe(tiny_stage("a", "sft", "a.jsonl", lora={"r": 4}), tiny_stage("b", "dpo", "p.jsonl", "a", lora={"r": 4}))
    )
    assert parsed.lora_of("b") == LoraSpec(r=4)


def test_load_recipe_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DivtraceError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(DivtraceError, match=r"bad\.yaml, line \d+: not valid YAML"):
        load_recipe(bad)
    path = write_recipe(tmp_path / "r.yaml", recipe(tiny_stage("a", "sft", "a.jsonl", batch_size="two")))
    with pytest.raises(DivtraceError, match=r"r\.yaml: key 'stages\.0\.batch_size'"):
        load_recipe(path)
