"""A stage's training rows from a data set that exists: local JSONL or Parquet files and hub datasets, in each form
a stage takes, with errors that name the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from divtrace.errors import DivtraceError
from divtrace.lab.data_specs import DatasetData
from divtrace.lab.rows import dataset_rows, read_training_file, write_training_file
from tests.lab.lab_files import PAIR_ROWS, SFT_ROWS, write_jsonl

WHERE = "recipe.yaml: key 'stages.0.data'"


def rows_of(path: str, method: str, recipe_dir: Path, **settings: Any) -> list[dict[str, Any]]:
    return dataset_rows(DatasetData(dataset=path, **settings), method, recipe_dir, WHERE)


def test_each_form_becomes_the_training_form(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "sft.jsonl", [{**row, "source": "made up"} for row in SFT_ROWS])
    assert rows_of("sft.jsonl", "sft", tmp_path) == SFT_ROWS  # relative to the recipe; other columns dropped
    responses = [{"prompt": "p", "response": "r"}]
    write_jsonl(tmp_path / "responses.jsonl", responses)
    assert rows_of(str(tmp_path / "responses.jsonl"), "sft", Path("/elsewhere")) == [{"prompt": "p", "completion": "r"}]
    chat = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    write_jsonl(tmp_path / "chat.jsonl", chat)
    assert rows_of("chat.jsonl", "sft", tmp_path) == chat
    pd.DataFrame(PAIR_ROWS).to_parquet(tmp_path / "pairs.parquet")
    assert rows_of("pairs.parquet", "dpo", tmp_path, limit=2) == PAIR_ROWS[:2]


def test_a_hub_dataset_is_loaded_at_its_split_and_revision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datasets

    asked: list[tuple[str, str, str | None]] = []

    def load_dataset(name: str, split: str, revision: str | None) -> datasets.Dataset:
        asked.append((name, split, revision))
        return datasets.Dataset.from_list(PAIR_ROWS)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    rows = rows_of("org/prefs", "dpo", tmp_path, split="train_prefs", revision="abc", limit=3)
    assert rows == PAIR_ROWS[:3] and asked == [("org/prefs", "train_prefs", "abc")]


def test_a_hub_dataset_that_cannot_be_loaded_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datasets

    def load_dataset(name: str, split: str, revision: str | None) -> None:
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(DivtraceError, match=r"key 'stages.0.data': cannot load hub dataset 'org/x' \(split 'train'\)"):
        rows_of("org/x", "sft", tmp_path)


@pytest.mark.parametrize(
    ("rows", "method", "expected"),
    [
        (PAIR_ROWS, "sft", "line 1: a sft stage takes chat 'messages', or 'prompt' with 'completion' (or 'response'); "
         "this row has the columns chosen, prompt, rejected (these are preference pairs: a dpo stage's data)"),
        (SFT_ROWS, "dpo", "line 1: a dpo stage takes 'prompt', 'chosen' and 'rejected'"),
        ([SFT_ROWS[0], {"prompt": "p", "completion": 3}], "sft", "line 2, field 'completion': a text is a string"),
        ([{"messages": [{"role": "user"}]}], "sft", "line 1, field 'messages': message 0 is not a {role, content}"),
        ([{"messages": []}], "sft", "line 1, field 'messages': chat messages are a non-empty list"),
    ],
)  # fmt: skip
def test_bad_rows_are_refused_naming_file_line_and_field(
    tmp_path: Path, rows: list[dict[str, Any]], method: str, expected: str
) -> None:
    write_jsonl(tmp_path / "data.jsonl", rows)
    with pytest.raises(DivtraceError) as caught:
        rows_of("data.jsonl", method, tmp_path)
    assert str(caught.value).startswith(f"{WHERE}: {tmp_path / 'data.jsonl'}, "), caught.value
    assert expected in str(caught.value)


def test_unreadable_or_empty_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DivtraceError, match=r"missing\.jsonl: no such file"):
        rows_of("missing.jsonl", "sft", tmp_path)
    (tmp_path / "broken.jsonl").write_text('{"prompt": "p", "completion": "c"}\n{"prompt": \n')
    with pytest.raises(DivtraceError, match=r"broken\.jsonl, line 2: not JSON"):
        rows_of("broken.jsonl", "sft", tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DivtraceError, match=r"empty\.jsonl has no rows"):
        rows_of("empty.jsonl", "sft", tmp_path)
    (tmp_path / "data.csv").write_text("prompt,completion\n")
    with pytest.raises(DivtraceError, match=r"a local data set is a \.jsonl or \.parquet file"):
        rows_of("data.csv", "sft", tmp_path)


def test_the_training_file_is_rewritten_only_when_its_rows_change(tmp_path: Path) -> None:
    path = tmp_path / "data" / "train.jsonl"
    assert write_training_file(SFT_ROWS, path)
    assert not write_training_file(SFT_ROWS, path)
    assert [json.loads(line) for line in path.read_text().splitlines()] == SFT_ROWS
    assert read_training_file(path, "sft", WHERE) == SFT_ROWS
    assert write_training_file(SFT_ROWS[:2], path)
    with pytest.raises(DivtraceError, match="a dpo stage takes"):
        read_training_file(path, "dpo", WHERE)
