"""Files the lab tests build from: tiny training data in each form a dataset takes, and recipes written as YAML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

#: Prompt/completion rows: a number doubled, in the quickstart arithmetic task's format.
SFT_ROWS = [
    {"prompt": f"Question: What is {n} plus {n}?\n\nAnswer:", "completion": f" {2 * n}. The answer is {2 * n}."}
    for n in range(6)
]
#: Preference rows: the right sum preferred over the wrong one.
PAIR_ROWS = [
    {"prompt": f"Question: What is {n} plus {n}?\n\nAnswer:", "chosen": f" {2 * n}.", "rejected": f" {2 * n + 1}."}
    for n in range(6)
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` as a JSON Lines file at ``path``."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def tiny_stage(name: str, method: str, data: str, parent: str = "base", **settings: Any) -> dict[str, Any]:
    """A recipe stage of 2 steps of 2 rows of at most 32 tokens on the dataset file ``data``."""
    stage = {"name": name, "method": method, "parent": parent, "data": {"kind": "dataset", "dataset": data}}
    return {**stage, "steps": 2, "batch_size": 2, "max_length": 32, "learning_rate": 1e-3, **settings}


def lineage_recipe(directory: Path, base: str, **dpo_settings: Any) -> Path:
    """``directory/recipe.yaml``: base -> sft -> dpo on ``sft.jsonl`` and ``pairs.jsonl`` (written beside it)."""
    write_jsonl(directory / "sft.jsonl", SFT_ROWS)
    write_jsonl(directory / "pairs.jsonl", PAIR_ROWS)
    stages = [tiny_stage("sft", "sft", "sft.jsonl"), tiny_stage("dpo", "dpo", "pairs.jsonl", "sft", **dpo_settings)]
    return write_recipe(directory / "recipe.yaml", {"name": "tiny", "base": base, "stages": stages})


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    """``recipe`` as YAML at ``path``."""
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path
