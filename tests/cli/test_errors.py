"""Careless input meets the one error handler (``cli/errors.py``) at load time: one ``error:`` line naming the file
(and the byte, the names...), exit 2, no traceback, and nothing computed or written before it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from divtrace.study import STARTER_STUDY
from tests.cli.test_cli import assert_user_error, cli

INSTRUCT = "quickstart:smollm2-135m-instruct"


def write_study(path: Path, checkpoints: list[str], **extra: object) -> Path:
    """A quickstart study of ``checkpoints`` (a chain, first is the base) on one arithmetic prompt."""
    chain = [
        {"name": name, "model": INSTRUCT, **({"parent": checkpoints[i - 1], "stage": "sft"} if i else {})}
        for i, name in enumerate(checkpoints)
    ]
    study = {"name": "careless", "checkpoints": chain, "tasks": [{"name": "arithmetic", "n": 1}],
             "sampling": {"k": 2, "max_new_tokens": 4}, "metrics": ["ead"], **extra}  # fmt: skip
    path.write_text(yaml.safe_dump(study))
    return path


def test_run_refuses_checkpoints_that_share_a_directory_before_any_work(tmp_path: Path) -> None:
    study = write_study(tmp_path / "study.yaml", ["sft/v2 final", "sft_v2_final"])
    for args in (["--dry-run"], ["--out", str(tmp_path / "run")]):
        result = cli("run", str(study), *args)
        assert_user_error(
            result,
            f"error: {study}: checkpoints 'sft/v2 final' and 'sft_v2_final' would be stored under one name, "
            "'sft_v2_final', in the run directory",
        )
    assert not (tmp_path / "run").exists()


def test_run_refuses_a_name_too_long_for_a_file_before_any_work(tmp_path: Path) -> None:
    study = write_study(tmp_path / "study.yaml", ["c" * 300])
    result = cli("run", str(study), "--out", str(tmp_path / "run"))
    assert_user_error(result, f"error: {study}: checkpoint '{'c' * 48}'… (300 characters) is too long")
    assert "loading task data" not in result.stderr and not (tmp_path / "run").exists()


def test_analyze_refuses_lineage_names_and_task_labels_that_share_a_directory(tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    lines = [
        {"checkpoint": checkpoint, "task": task, "prompt_id": "1", "prompt": "p", "outputs": ["a b", "c d"]}
        for checkpoint in ("base", "sft")
        for task in ("gsm8k|0", "gsm8k_0")
    ]
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = tmp_path / "run"
    lineage = cli("analyze", str(samples), "--lineage", "base>sft", "--lineage", "base>sft?", "--out", str(run))
    assert_user_error(lineage, "error: --lineage: checkpoints 'sft' and 'sft?' would be stored under one name, 'sft'")
    tasks = cli("analyze", str(samples), "--lineage", "base>sft", "--out", str(run))
    assert_user_error(
        tasks,
        "error: the task labels of the samples: tasks 'gsm8k_0' and 'gsm8k|0' would be stored under one name, "
        "'gsm8k_0'",
    )
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text(
        "".join(json.dumps({k: v for k, v in line.items() if k != "task"}) + "\n" for line in lines[::2])
    )
    long_label = cli("analyze", str(unlabelled), "--lineage", "base>sft", "--task", "t" * 300, "--out", str(run))
    assert_user_error(
        long_label, f"error: the task labels of the samples: task '{'t' * 48}'… (300 characters) is too long"
    )
    assert not run.exists()
    study = tmp_path / "study.yaml"
    raw = yaml.safe_load(STARTER_STUDY)
    raw["checkpoints"][1]["name"] = "sft?"
    raw["checkpoints"][2].update(name="sft", parent="sft?")
    study.write_text(yaml.safe_dump(raw))
    from_study = cli("analyze", str(samples), "--study", str(study), "--out", str(run))
    assert_user_error(from_study, f"error: {study}: checkpoints 'sft?' and 'sft' would be stored under one name")
    assert not run.exists()
