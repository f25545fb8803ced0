"""The data a lab stage makes: SFT rows distilled from a teacher, DPO pairs from the parent's verified samples, on the
packaged models (tiny sizes), and the rules behind them on constructed samples and verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from divtrace.errors import DivtraceError
from divtrace.generate.params import sample_seed
from divtrace.generate.resume import ResumeMismatchError
from divtrace.lab import data as lab_data
from divtrace.lab.data import distill_rows, pair_rows, prepare_data, verifier_pairs
from divtrace.lab.data_specs import DistillData, PairsData
from divtrace.samples import SampleRecord, read_samples
from divtrace.tasks import get_task, load_prompts
from divtrace.verify import create_verifier

TEACHER = "quickstart:smollm2-135m-instruct"
PARENT = "quickstart:gemma-3-270m"
DISTILL = DistillData(teacher=TEACHER, options={"threads": 2}, prompts="lab_prompts", n=3, k=2, max_new_tokens=8)
# Seed 3 gives the base model's 16 arithmetic samples some correct answers (2 prompts with one each): pairs to check.
PAIRS = PairsData(task="arithmetic", n=4, k=4, temperature=1.0, max_new_tokens=8, seed=3)


def no_model(*args: object, **kwargs: object) -> Any:
    raise AssertionError("a model was loaded")


def shard_stamps(out_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(out_dir)): p.stat().st_mtime_ns for p in sorted((out_dir / "samples").rglob("*"))}


def read_rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ----- the rules, on constructed verdicts and samples -----


def test_pairs_come_only_from_prompts_with_a_correct_and_an_incorrect_sample() -> None:
    assert verifier_pairs([True, True, True, True], 2) == []
    assert verifier_pairs([False, False, False, False], 2) == []
    assert verifier_pairs([], 2) == []
    # The i-th correct with the i-th incorrect in sample order first, then shifted: new samples first, no repeats.
    assert verifier_pairs([False, True, True, False], 2) == [(1, 0), (2, 3)]
    assert verifier_pairs([False, True, True, False], 4) == [(1, 0), (2, 3), (1, 3), (2, 0)]
    assert verifier_pairs([False, True, True, False], 9) == [(1, 0), (2, 3), (1, 3), (2, 0)]
    assert verifier_pairs([True, False, False, False], 2) == [(0, 1), (0, 2)]
    assert verifier_pairs([True, True, True, False], 3) == [(0, 3), (1, 3), (2, 3)]
    assert verifier_pairs([False, True, False, True, True], 1) == [(1, 0)]


def arithmetic_record(prompt_id: str, texts: list[str]) -> SampleRecord:
    item = next(p for p in load_prompts(get_task("arithmetic"))[0] if p.prompt_id == prompt_id)
    return SampleRecord(prompt_id=item.prompt_id, prompt=item.prompt, outputs=texts, responses=texts,
                        references=item.references, checkpoint="parent", task="arithmetic")  # fmt: skip


def test_pair_rows_follow_the_task_verifier_and_skip_empty_samples() -> None:
    records = [
        arithmetic_record("arith-0", [" 7", " 7.", "#### 7", " 7 apples"]),  # all correct: no pair
        arithmetic_record("arith-1", [" 11", " 12", "", " 31"]),  # all wrong (one empty): no pair
        arithmetic_record("arith-2", [" 11", " 12", "   ", " 20 - 8 = 12"]),  # the blank one is left out
    ]
    rows, per_prompt, counts = pair_rows(records, get_task("arithmetic"), 2)
    prompt = records[2].prompt
    assert rows == [{"prompt": prompt, "chosen": " 12", "rejected": " 11"},
                    {"prompt": prompt, "chosen": " 20 - 8 = 12", "rejected": " 11"}]  # fmt: skip
    assert per_prompt[2] == {"prompt_id": "arith-2", "correct": [False, True, False, True], "pairs": [[1, 0], [3, 0]]}
    assert [p["pairs"] for p in per_prompt[:2]] == [[], []]
    assert counts == {"correct": 6, "incorrect": 6, "empty_skipped": 2, "prompts_without_pair": 2,
                      "prompts_all_correct": 1, "prompts_all_incorrect": 1}  # fmt: skip


def test_distill_rows_drop_empty_responses_and_keep_the_prompt_as_asked() -> None:
    record = SampleRecord(prompt_id="p", prompt="Name a fruit.", outputs=["<think>x</think>Apple", "<think>y</think>"],
                          responses=["Apple", ""], finish_reasons=["length", "stop"])  # fmt: skip
    rows, per_prompt, counts = distill_rows([record])
    assert rows == [{"prompt": "Name a fruit.", "completion": "Apple"}]  # the response, chain of thought stripped
    assert per_prompt == [{"prompt_id": "p", "kept": [0]}]
    assert counts == {"empty_dropped": 1, "truncated": 1}


# ----- refusals before any model is loaded -----


def test_a_task_without_a_verifier_is_refused_for_pairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_data, "create_generator", no_model)
    with pytest.raises(DivtraceError, match=r"pairs data needs a verifiable task: task open_ended .* not a verifiable"):
        prepare_data(PairsData(task="open_ended"), PARENT, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_pairs_of_a_parent_with_an_adapter_are_drawn_by_base_and_adapter(lora_adapter: Path, tmp_path: Path) -> None:
    """A stage's parent that is base + LoRA adapter samples as such: its records' model_ref names the adapter."""
    small = PairsData(task="arithmetic", n=2, k=2, temperature=1.0, max_new_tokens=8, seed=3, pairs_per_prompt=1)
    try:
        prepare_data(small, PARENT, str(lora_adapter), tmp_path / "out")
    except DivtraceError as err:  # two prompts may give no (correct, incorrect) pair: the samples are still there
        assert "pairs data made no training rows" in str(err)
    records = read_samples(sorted((tmp_path / "out").rglob("shard-*.parquet"))).records
    assert records and all(r.model_ref and r.model_ref.get("adapter_dir_sha256") for r in records)


def test_teacher_options_are_checked_by_the_backend_options_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lab_data, "create_generator", no_model)
    bad = DISTILL.model_copy(update={"options": {"batch_sise": 4}})
    with pytest.raises(DivtraceError, match="transformers backend options: batch_sise: Extra inputs"):
        prepare_data(bad, PARENT, None, tmp_path / "out")


def test_samples_that_make_no_pair_are_an_error_and_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = [arithmetic_record(f"arith-{i}", [" 97", " 98", " 99", ""]) for i in range(4)]
    monkeypatch.setattr(lab_data, "_samples", lambda plan, job, progress: wrong)
    made_none = r"pairs data made no training rows from 4 prompts x 4 samples \(.*prompts_all_incorrect 4\)"
    with pytest.raises(DivtraceError, match=made_none):
        prepare_data(PAIRS, PARENT, None, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


# ----- real models -----


@pytest.mark.slow
def test_distilled_rows_are_made_once_reused_resumed_and_reproduced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "stage" / "data"
    path = prepare_data(DISTILL, "unused: the teacher answers", None, out)
    assert path == out / "distill.jsonl"
    meta = json.loads((out / "distill.meta.json").read_text())
    prompts = [item.prompt for item in load_prompts(get_task("lab_prompts"), n=3)[0]]
    rows = read_rows(path)
    assert all(set(row) == {"prompt", "completion"} and row["completion"].strip() for row in rows)
    assert [row["prompt"] for row in rows] == [p for p in prompts for _ in range(2)]  # as asked, before any template
    assert meta["counts"] == {"prompts": 3, "samples": 6, "rows": 6, "empty_dropped": 0, "truncated": 6}  # 8 tokens
    assert meta["inputs"]["spec"] == DISTILL.model_dump(mode="json") and meta["rows"]["sha256"]
    assert meta["model_ref"]["id"] == TEACHER and meta["model_ref"]["file_sha256"]
    assert meta["sampling"]["top_p"] == 1.0 and meta["sampling"]["temperature"] == 0.7
    assert meta["seeds"]["samples"] == {
        f"lab-{p}": [sample_seed(1234, f"lab-{p}", k) for k in range(2)] for p in range(3)
    }
    records = read_samples(out / "samples" / "teacher" / "lab_prompts").records
    assert [r.responses for r in records] == [[row["completion"] for row in rows[2 * i : 2 * i + 2]] for i in range(3)]

    # Made again: the same file, nothing generated (no model loaded, the shards untouched).
    stamps, made = shard_stamps(out), path.read_bytes()
    monkeypatch.setattr(lab_data, "create_generator", no_model)
    assert prepare_data(DISTILL, "unused: the teacher answers", None, out) == path
    assert shard_stamps(out) == stamps and path.read_bytes() == made
    # Interrupted after the samples were drawn: the rows are made from the stored samples, no model loaded.
    path.unlink()
    (out / "distill.meta.json").unlink()
    assert prepare_data(DISTILL, "unused", None, out).read_bytes() == made and shard_stamps(out) == stamps
    # Other settings on the same samples are refused, naming the setting, before any model loads.
    with pytest.raises(ResumeMismatchError, match=r"seed=1234, now 7; .* remove .*samples/teacher/lab_prompts"):
        prepare_data(DISTILL.model_copy(update={"seed": 7}), "unused", None, out)
    monkeypatch.undo()

    # The same inputs into a fresh directory: byte-identical rows and sidecar.
    fresh = prepare_data(DISTILL, "unused", None, tmp_path / "elsewhere")
    assert fresh.read_bytes() == made
    assert fresh.with_suffix(".meta.json").read_bytes() == (out / "distill.meta.json").read_bytes()


@pytest.mark.slow
def test_pairs_are_a_correct_and_an_incorrect_sample_of_one_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = prepare_data(PAIRS, PARENT, None, tmp_path / "dpo")
    assert path.name == "pairs.jsonl"
    meta = json.loads(path.with_suffix(".meta.json").read_text())
    rows = read_rows(path)
    records = read_samples(tmp_path / "dpo" / "samples" / "parent" / "arithmetic").records
    assert [r.prompt_id for r in records] == ["arith-0", "arith-1", "arith-2", "arith-3"]
    assert meta["model_ref"]["id"] == PARENT and meta["inputs"]["model"]["adapter"] is None

    # The verdicts, from the task's verifier directly.
    verifier = create_verifier("gsm8k")
    verdicts = [[verifier.verify(text, r.references or {}).correct for text in r.scored_texts()] for r in records]
    assert [p["correct"] for p in meta["per_prompt"]] == verdicts
    assert all(text.strip() for r in records for text in r.scored_texts())  # no empty sample to leave out here
    pairs = [verifier_pairs(correct, PAIRS.pairs_per_prompt) for correct in verdicts]
    assert [p["pairs"] for p in meta["per_prompt"]] == [[list(pair) for pair in mine] for mine in pairs]
    assert rows == [
        {"prompt": r.prompt, "chosen": r.scored_texts()[c], "rejected": r.scored_texts()[w]}
        for r, mine in zip(records, pairs, strict=True)
        for c, w in mine
    ]
    assert len(rows) >= 1  # seed 3: some pairs (see PAIRS)
    for row in rows:
        references = next(r.references for r in records if r.prompt == row["prompt"]) or {}
        assert verifier.verify(row["chosen"], references).correct
        assert not verifier.verify(row["rejected"], references).correct
    mixed = sum(any(v) and not all(v) for v in verdicts)
    assert meta["counts"]["prompts_without_pair"] == 4 - mixed and meta["counts"]["rows"] == len(rows)
    assert meta["counts"]["correct"] == sum(map(sum, verdicts)) and meta["counts"]["samples"] == 16

    # One pair per prompt: the rows are made again from the stored samples, no model loaded.
    monkeypatch.setattr(lab_data, "create_generator", no_model)
    stamps = shard_stamps(tmp_path / "dpo")
    one = PAIRS.model_copy(update={"pairs_per_prompt": 1})
    fewer = read_rows(prepare_data(one, PARENT, None, tmp_path / "dpo"))
    firsts = [{"prompt": r.prompt, "chosen": r.scored_texts()[m[0][0]], "rejected": r.scored_texts()[m[0][1]]}
              for r, m in zip(records, pairs, strict=True) if m]  # fmt: skip
    assert fewer == firsts and len(fewer) == mixed and shard_stamps(tmp_path / "dpo") == stamps
