"""The run directory's names: one directory-name rule (``safe_name``), and the check that every checkpoint and task
gets files of its own (no two names share a directory, none is too long for a file name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from divtrace.io_atomic import write_json_atomic
from divtrace.runs.layout import NAME_MAX, RunLayout, longest_name, run_name_problems, safe_name


def test_safe_name_is_the_directory_name_of_every_unit_file() -> None:
    layout = RunLayout("run")
    assert safe_name("sft/v2 final") == safe_name("sft_v2_final") == "sft_v2_final"
    assert layout.samples_dir("sft/v2 final", "gsm8k|0") == Path("run/samples/sft_v2_final/gsm8k_0")
    assert layout.scores_file("sft/v2 final", "gsm8k|0") == Path("run/scores/sft_v2_final/gsm8k_0.parquet")


def test_names_that_share_a_directory_are_named_together() -> None:
    problems = run_name_problems(["sft/v2 final", "base", "sft_v2_final", "sft?v2!final"], "checkpoint")
    assert len(problems) == 1
    assert problems[0].startswith(
        "checkpoints 'sft/v2 final', 'sft_v2_final' and 'sft?v2!final' would be stored under one name, "
        "'sft_v2_final', in the run directory"
    )
    assert run_name_problems(["gsm8k|0", "gsm8k_0"], "task")[0].endswith("rename one of them")
    assert run_name_problems(["base", "sft", "base"], "checkpoint") == []  # duplicates are the study's concern


def test_the_longest_file_name_counts_suffixes_and_temporary_names() -> None:
    # a task's scores are written as .TASK.parquet.<12 hex>.tmp first: 26 bytes more than the task name
    assert len(longest_name("c", "t" * 200).encode()) == 226
    fits, over = "t" * (NAME_MAX - 26), "t" * (NAME_MAX - 25)
    assert run_name_problems([fits], "task") == []
    (problem,) = run_name_problems([over], "task")
    assert problem.startswith("task 'tttttttttttttttttttttttttttttttttttttttttttttttt'… (230 characters) is too long")
    assert "256 bytes" in problem and f"at most {NAME_MAX - 26} characters" in problem
    # a checkpoint names directories only
    assert run_name_problems(["c" * NAME_MAX], "checkpoint") == []
    (problem,) = run_name_problems(["c" * 300], "checkpoint")
    assert "(300 characters) is too long" in problem and "300 bytes" in problem


@pytest.mark.parametrize("kind", ["checkpoint", "task"])
def test_a_name_the_file_system_refuses_is_refused_first(kind: str, tmp_path: Path) -> None:
    """The check agrees with the file system: a name it passes at the limit can be written, one over is refused."""
    layout = RunLayout(tmp_path)

    def scores_of(name: str) -> Path:
        return layout.scores_file(name, "t") if kind == "checkpoint" else layout.scores_file("c", name)

    at_limit = "x" * (NAME_MAX if kind == "checkpoint" else NAME_MAX - 26)
    assert run_name_problems([at_limit], kind) == []  # type: ignore[arg-type]
    write_json_atomic({}, scores_of(at_limit))  # written under a temporary name first, the longest of all
    assert scores_of(at_limit).exists()
    assert run_name_problems([at_limit + "x"], kind) != []  # type: ignore[arg-type]
    with pytest.raises(OSError, match="too long"):
        write_json_atomic({}, scores_of(at_limit + "x"))
