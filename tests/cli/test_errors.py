"""Careless input meets the one error handler (``cli/errors.py``) at load time: one ``error:`` line naming the file
(and the byte, the names...), exit 2, no traceback, and nothing computed or written before it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import yaml

from tests.cli.test_cli import assert_user_error, cli
from tests.olmo_study import OLMO_INSTRUCT_STUDY

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
    raw = yaml.safe_load(OLMO_INSTRUCT_STUDY)
    raw["checkpoints"][1]["name"] = "sft?"
    raw["checkpoints"][2].update(name="sft", parent="sft?")
    study.write_text(yaml.safe_dump(raw))
    from_study = cli("analyze", str(samples), "--study", str(study), "--out", str(run))
    assert_user_error(from_study, f"error: {study}: checkpoints 'sft?' and 'sft' would be stored under one name")
    assert not run.exists()


LATIN1_STUDY = "name: caf\xe9\ncheckpoints:\n  - {name: base, model: 'quickstart:smollm2-135m-instruct'}\n"
#: The start of an ELF executable: valid UTF-8 up to its first NUL byte, at offset 7.
BINARY = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00>\x00\x01\x00\x00\x00\xf0\x8b\x01"


def assert_one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    """Exit 2 and exactly ``expected`` on stderr, on one line."""
    assert_user_error(result, expected)
    assert result.stderr.strip() == expected, result.stderr


def test_a_study_file_that_is_not_utf8_text_is_one_line_naming_the_byte(tmp_path: Path) -> None:
    latin1, binary = tmp_path / "latin1.yaml", tmp_path / "binary.yaml"
    latin1.write_bytes(LATIN1_STUDY.encode("latin-1"))
    binary.write_bytes(BINARY)
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"prompt_id": "1", "prompt": "p", "outputs": ["a", "b"]}) + "\n")
    expected = {
        latin1: f"error: {latin1}, line 1: not UTF-8 text (byte 0xe9 at byte offset 9): save the file as UTF-8",
        binary: f"error: {binary}, line 1: binary data, not text (a NUL byte at byte offset 7): give the text file, "
        "or save UTF-16 text as UTF-8",
    }
    for study, message in expected.items():
        assert_one_line(cli("run", str(study), "--dry-run"), message)
        assert_one_line(cli("analyze", str(samples), "--study", str(study), "--out", str(tmp_path / "run")), message)
    assert not (tmp_path / "run").exists()


def test_a_sample_file_that_is_not_utf8_text_is_one_line_naming_the_line_and_byte(tmp_path: Path) -> None:
    good = json.dumps({"checkpoint": "base", "prompt_id": "1", "prompt": "p", "outputs": ["a", "b"]}) + "\n"
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(good.encode() + good.replace('"p"', '"caf\xe9"').replace('"1"', '"2"').encode("latin-1"))
    offset = len(good) + good.index('"p"') + 4  # the é, on line 2
    binary = tmp_path / "binary.bin"  # no known suffix: the content tells
    binary.write_bytes(BINARY)
    expected = {
        latin1: f"error: {latin1}, line 2: not UTF-8 text (byte 0xe9 at byte offset {offset}): save the file as UTF-8",
        binary: f"error: {binary}, line 1: binary data, not text (a NUL byte at byte offset 7): give the text file, "
        "or save UTF-16 text as UTF-8; sample files are JSON Lines (UTF-8) or Parquet",
    }
    for path, message in expected.items():
        assert_one_line(cli("score", str(path)), message)
        assert_one_line(cli("verify", str(path)), message)
        assert_one_line(cli("analyze", str(path), "--lineage", "base", "--out", str(tmp_path / "run")), message)
    assert not (tmp_path / "run").exists()


def test_verify_cuts_mixed_k_with_a_warning_or_refuses_it_with_strict_k(tmp_path: Path) -> None:
    lines = [
        {"checkpoint": "base", "task": "arithmetic", "prompt_id": str(i), "prompt": "1+1?",
         "references": {"answer": "2"}, "outputs": ["2", "3", "2", "2", "5"][: 3 if i else 5]}
        for i in range(3)
    ]  # fmt: skip
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "verified"
    verified = cli("verify", str(samples), "--out", str(out), "--format", "json")
    assert verified.returncode == 0, verified.stderr
    assert "warning: base/arithmetic has prompts with different K: 3 (2 prompts), 5 (1 prompt)" in " ".join(
        verified.stderr.split()
    )
    verdicts = pd.read_parquet(out / "verdicts.parquet")
    assert len(verdicts) == 9  # 3 prompts x the common K, 3
    settings = json.loads((out / "verify_settings.json").read_text())
    assert [cell["common_k"] for cell in settings["mixed_k"]["cells"]] == [3]
    assert_user_error(cli("verify", str(samples), "--strict-k"), "error: mixed K refused (--strict-k): base/arithmetic")
