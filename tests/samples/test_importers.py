"""Importers for lm-evaluation-harness samples and lighteval details, on files written in their real layouts.

The fixtures follow the writers' source:
* lm-eval: ``lm_eval/evaluator.py`` (the logged ``example`` dict) and ``lm_eval/loggers/evaluation_tracker.py``
  (``save_results_samples``: ``arguments`` re-keyed as ``gen_args_<i>``/``arg_<j>``, one JSON line per sample,
  file ``<output_path>/<model>/samples_<task>_<isoformat with ':' -> '-'>.jsonl``); older releases logged
  ``arguments`` as ``[[ctx, gen_kwargs]]``.
* lighteval: ``src/lighteval/logging/info_loggers.py`` (``DetailsLogger.Detail``) saved by
  ``src/lighteval/logging/evaluation_tracker.py`` (``Dataset.from_list([asdict(detail)])``, columns sorted,
  file ``<output_dir>/details/<model>/<date>/details_<task>_<date>.parquet``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from divtrace.errors import SampleFormatError
from divtrace.samples import DEFAULT_TASK, read_samples, write_samples
from divtrace.samples.lighteval import parse_details_filename
from divtrace.samples.lmeval import parse_samples_filename

STAMP = "2024-05-01T12-34-56.123456"
GEN_KWARGS = {"until": ["Question:", "</s>"], "do_sample": True, "temperature": 0.8, "max_gen_toks": 256}


# --- lm-eval fixtures ----------------------------------------------------------------------------------------


def lmeval_line(doc_id: int, k: int = 4, *, form: str = "dict", filter_name: str = "strict-match") -> dict[str, Any]:
    """One logged sample of a generate_until task run with ``repeats: k``."""
    question = f"Natalia sold {doc_id + 48} clips. How many?"
    ctx = f"Question: {question}\nAnswer:"
    resps = [[f" She sold {doc_id} clips (sample {i}). #### {doc_id}" for i in range(k)]]
    if form == "dict":  # evaluation_tracker.save_results_samples
        arguments: Any = {"gen_args_0": {"arg_0": ctx, "arg_1": GEN_KWARGS}}
    else:  # older releases: the request's args tuple, JSON-encoded as a list
        arguments = [[ctx, GEN_KWARGS]]
    line: dict[str, Any] = {
        "doc_id": doc_id,
        "doc": {"question": question, "answer": f"... #### {doc_id}"},
        "target": f"... #### {doc_id}",
        "arguments": arguments,
        "resps": resps,
        "filtered_resps": [[str(doc_id)] * k],
    }
    if form == "dict":
        line.update(
            {
                "filter": filter_name,
                "metrics": ["exact_match"],
                "doc_hash": f"dochash{doc_id}",
                "prompt_hash": f"prompthash{doc_id}",
                "target_hash": f"targethash{doc_id}",
                "exact_match": 1.0,
            }
        )
    return line


def write_lmeval(root: Path, model: str, task: str, lines: list[dict[str, Any]]) -> Path:
    """Write ``lines`` where lm-eval would: ``<root>/<sanitized model>/samples_<task>_<stamp>.jsonl``."""
    directory = root / model
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"samples_{task}_{STAMP}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    (directory / f"results_{STAMP}.json").write_text(json.dumps({"results": {task: {}}}, indent=2))
    return path


def test_parse_samples_filename() -> None:
    assert parse_samples_filename(f"samples_gsm8k_cot_zeroshot_{STAMP}.jsonl") == ("gsm8k_cot_zeroshot", STAMP)
    assert parse_samples_filename("samples_mmlu_2024-05-01T12-34-56.jsonl") == ("mmlu", "2024-05-01T12-34-56")
    assert parse_samples_filename("samples_ifeval_custom.jsonl") == ("ifeval", "custom")
    assert parse_samples_filename("details_x.jsonl") is None


@pytest.mark.parametrize("form", ["dict", "list"])
def test_lmeval_samples_import(tmp_path: Path, form: str) -> None:
    path = write_lmeval(
        tmp_path, "allenai__Olmo-3-7B-SFT", "gsm8k_cot_zeroshot", [lmeval_line(i, form=form) for i in range(3)]
    )
    result = read_samples(path)
    assert result.problems == []
    assert len(result.records) == 3
    record = result.records[1]
    assert record.prompt_id == "1"
    assert record.prompt == "Question: Natalia sold 49 clips. How many?\nAnswer:"
    assert record.outputs == [f" She sold 1 clips (sample {i}). #### 1" for i in range(4)]
    assert record.checkpoint == "allenai__Olmo-3-7B-SFT"
    assert record.task == "gsm8k_cot_zeroshot"
    assert record.sampling == {"source": "lm-eval", "requested": GEN_KWARGS}
    assert record.references == {"target": "... #### 1", "doc": lmeval_line(1)["doc"]}
    assert record.origin["format"] == "lm-eval"
    assert record.origin["line"] == 2
    if form == "dict":
        assert record.origin["doc_hash"] == "dochash1"


def test_lmeval_one_generation_per_request(tmp_path: Path) -> None:
    """A task issuing K requests of one generation each logs resps as [[o1], [o2], ...]."""
    line = lmeval_line(0)
    ctx = line["arguments"]["gen_args_0"]["arg_0"]
    line["arguments"] = {f"gen_args_{i}": {"arg_0": ctx, "arg_1": GEN_KWARGS} for i in range(4)}
    line["resps"] = [[f"o{i}"] for i in range(4)]
    record = read_samples(write_lmeval(tmp_path, "m", "t", [line])).records[0]
    assert record.outputs == ["o0", "o1", "o2", "o3"]
    assert record.prompt == ctx


def test_lmeval_filters_log_each_document_once_per_filter(tmp_path: Path) -> None:
    lines = [lmeval_line(i, filter_name="strict-match") for i in range(2)]
    lines += [lmeval_line(i, filter_name="flexible-extract") for i in range(2)]
    records = read_samples(write_lmeval(tmp_path, "m", "gsm8k", lines)).records
    assert [r.prompt_id for r in records] == ["0", "1"]


def test_lmeval_same_doc_with_different_resps_is_an_error(tmp_path: Path) -> None:
    other = lmeval_line(0)
    other["resps"] = [["x", "y"]]
    path = write_lmeval(tmp_path, "m", "t", [lmeval_line(0), other])
    with pytest.raises(SampleFormatError) as info:
        read_samples(path)
    assert (info.value.line, info.value.field) == (2, "doc_id")
    assert "line 1" in info.value.reason


def test_lmeval_overrides_and_directory_auto_detection(tmp_path: Path) -> None:
    write_lmeval(tmp_path, "base", "gsm8k", [lmeval_line(0)])
    write_lmeval(tmp_path, "sft", "gsm8k", [lmeval_line(0)])
    records = read_samples(tmp_path).records  # results_*.json next to the samples are skipped
    assert [(r.checkpoint, r.task, r.prompt_id) for r in records] == [("base", "gsm8k", "0"), ("sft", "gsm8k", "0")]
    path = tmp_path / "base" / f"samples_gsm8k_{STAMP}.jsonl"
    record = read_samples(path, checkpoint="ck", task="math").records[0]
    assert (record.checkpoint, record.task) == ("ck", "math")


def test_lmeval_loglikelihood_task_is_rejected(tmp_path: Path) -> None:
    line = {
        "doc_id": 0,
        "doc": {"q": "?"},
        "target": 1,
        "arguments": {"gen_args_0": {"arg_0": "ctx", "arg_1": " A"}, "gen_args_1": {"arg_0": "ctx", "arg_1": " B"}},
        "resps": [[[-1.5, False]], [[-0.5, True]]],
        "filtered_resps": [[-1.5, False], [-0.5, True]],
    }
    path = write_lmeval(tmp_path, "m", "arc_easy", [line, lmeval_line(1)])
    with pytest.raises(SampleFormatError) as info:
        read_samples(path)
    assert (info.value.line, info.value.field) == (1, "resps[0][0]")
    assert "generate_until" in info.value.reason
    result = read_samples(path, skip_invalid=True)
    assert [r.prompt_id for r in result.records] == ["1"]
    assert [p.line for p in result.problems] == [1]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("doc_id"), "doc_id"),
        (lambda d: d.pop("arguments"), "arguments"),
        (lambda d: d.update(arguments="ctx"), "arguments"),
        (lambda d: d.pop("resps"), "resps"),
        (lambda d: d.update(resps=[["only one"]]), "outputs"),
    ],
)
def test_lmeval_bad_lines_name_the_field(tmp_path: Path, mutate: Any, field: str) -> None:
    line = lmeval_line(0)
    mutate(line)
    path = write_lmeval(tmp_path, "m", "t", [lmeval_line(5), line])
    with pytest.raises(SampleFormatError) as info:
        read_samples(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, field)


def test_lmeval_import_round_trips_through_parquet(tmp_path: Path) -> None:
    records = read_samples(write_lmeval(tmp_path, "m", "t", [lmeval_line(i) for i in range(2)])).records
    write_samples(records, tmp_path / "out.parquet")
    assert read_samples(tmp_path / "out.parquet").records == records


# --- lighteval fixtures --------------------------------------------------------------------------------------

TASK = "lighteval|gsm8k|0"


def lighteval_doc(i: int, *, with_id: bool = True) -> dict[str, Any]:
    """``asdict(Doc(...))`` (src/lighteval/tasks/requests.py) for a generative task sampled 4 times."""
    return {
        "query": f"Question: what is {i} + {i}?\nAnswer:",
        "choices": [f" {2 * i}"],
        "gold_index": 0,
        "id": f"gsm8k-{i}" if with_id else "",
        "original_query": "",
        "specific": None,
        "task_name": TASK,
        "system_prompt": None,
        "full_prompt": f"<|user|>what is {i} + {i}?<|assistant|>",
        "instruction": "",
        "fewshot_sorting_class": None,
        "num_asked_few_shots": 0,
        "num_effective_few_shots": 0,
        "unconditioned_query": None,
        "fewshot_samples": [],
        "sampling_methods": ["GENERATIVE"],
        "generation_size": 256,
        "do_sample": True,
        "stop_sequences": ["\n\n"],
        "use_logits": False,
        "num_samples": 4,
    }


def lighteval_response(i: int, k: int = 4) -> dict[str, Any]:
    """``asdict(ModelResponse(...))`` (src/lighteval/models/model_output.py) with ``k`` sampled generations."""
    return {
        "input": f"<|user|>what is {i} + {i}?<|assistant|>",
        "input_tokens": [1, 2, 3],
        "text": [f"<think>add</think>{2 * i} (try {j})" for j in range(k)],
        "output_tokens": [[7] * (j + 1) for j in range(k)],
        "text_post_processed": [f"{2 * i} (try {j})" for j in range(k)],
        "reasonings": ["add"] * k,
        "logprobs": [],
        "argmax_logits_eq_gold": [],
        "logits": None,
        "unconditioned_logprobs": None,
        "truncated_tokens_count": 0,
        "padded_tokens_count": 0,
    }


def write_lighteval(root: Path, model: str, rows: list[dict[str, Any]], task: str = TASK) -> Path:
    """Write rows where lighteval would, columns sorted as in ``EvaluationTracker.save``."""
    directory = root / "details" / model / STAMP
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"details_{task}_{STAMP}.parquet"
    columns = sorted(rows[0])
    pq.write_table(pa.Table.from_pylist([{c: row[c] for c in columns} for row in rows]), path)
    return path


def current_rows(n: int = 3, **kwargs: Any) -> list[dict[str, Any]]:
    return [
        {
            "doc": lighteval_doc(i, **kwargs),
            "model_response": lighteval_response(i),
            "metric": {"extractive_match": 1.0},
        }
        for i in range(n)
    ]


def older_row(i: int, *, stringify: bool = False) -> dict[str, Any]:
    """``asdict(DetailsLogger.Detail(...))`` of older lighteval: flat columns, sampled generations flattened."""
    row: dict[str, Any] = {
        "example": f"what is {i} + {i}?",
        "instruction": "",
        "full_prompt": f"Question: what is {i} + {i}?\nAnswer:",
        "num_effective_few_shots": 0,
        "num_asked_few_shots": 0,
        "predictions": [f"{2 * i} (try {j})" for j in range(4)],
        "prediction_logits": [],
        "input_tokens": [[1, 2, 3]],
        "cont_tokens": [[4, 5]],
        "truncated": [0],
        "padded": [0],
        "gold": [f" {2 * i}"],
        "pred_logits": [],
        "choices": [],
        "gold_index": [],
        "metrics": {"maj@4": 1.0},
        "specifics": {"extracted": str(2 * i)},
    }
    if stringify:  # releases that saved {k: str(v) for k, v in asdict(detail).items()}
        row = {k: str(v) for k, v in row.items()}
    return row


def test_parse_details_filename() -> None:
    assert parse_details_filename(f"details_{TASK}_{STAMP}.parquet") == (TASK, STAMP)
    assert parse_details_filename(f"details_leaderboard|mmlu:us_foreign_policy|5_{STAMP}.parquet") == (
        "leaderboard|mmlu:us_foreign_policy|5",
        STAMP,
    )
    assert parse_details_filename("details_x.parquet") is None


def test_lighteval_current_layout(tmp_path: Path) -> None:
    path = write_lighteval(tmp_path, "Olmo-3-7B-DPO", current_rows())
    result = read_samples(path)
    assert result.problems == []
    record = result.records[2]
    assert record.prompt_id == "gsm8k-2"
    assert record.prompt == "<|user|>what is 2 + 2?<|assistant|>"
    assert record.outputs == [f"<think>add</think>4 (try {j})" for j in range(4)]
    assert record.responses == [f"4 (try {j})" for j in range(4)]
    assert record.reasoning == ["add"] * 4
    assert record.output_tokens == [1, 2, 3, 4]
    assert record.checkpoint == "Olmo-3-7B-DPO"  # the model directory above the timestamp directory
    assert record.task == TASK
    assert record.sampling == {
        "source": "lighteval",
        "requested": {
            "generation_size": 256,
            "do_sample": True,
            "stop_sequences": ["\n\n"],
            "num_samples": 4,
            "use_logits": False,
        },
    }
    assert record.references["golds"] == [" 4"]
    assert record.origin["metric"] == {"extractive_match": 1.0}


def test_lighteval_current_layout_without_ids_uses_row_numbers(tmp_path: Path) -> None:
    rows = current_rows(with_id=False)
    for row in rows:
        row["model_response"]["input"] = None
        row["model_response"]["reasonings"] = []
        row["model_response"]["text_post_processed"] = None
    path = write_lighteval(tmp_path, "m", rows)
    record = read_samples(path).records[1]
    assert record.prompt_id == "1"
    assert record.prompt == "<|user|>what is 1 + 1?<|assistant|>"  # doc.full_prompt
    # no post-processed text logged: divtrace strips the raw text by the study's rule
    assert record.responses == [f"2 (try {j})" for j in range(4)] and record.reasoning == ["add"] * 4
    raw = read_samples(path, strip_thinking=False).records[1]
    assert raw.responses is None and raw.reasoning is None and raw.thinking_unclosed is None


def test_lighteval_loglikelihood_rows_are_rejected(tmp_path: Path) -> None:
    rows = current_rows(2)
    rows[0]["model_response"].update(text=[], output_tokens=[], logprobs=[-1.0, -2.0], argmax_logits_eq_gold=[1, 0])
    path = write_lighteval(tmp_path, "m", rows)
    with pytest.raises(SampleFormatError) as info:
        read_samples(path)
    assert (info.value.line, info.value.field) == (1, "model_response.text")
    result = read_samples(path, skip_invalid=True)
    assert [r.prompt_id for r in result.records] == ["gsm8k-1"]


@pytest.mark.parametrize("stringify", [False, True])
def test_lighteval_older_layout(tmp_path: Path, stringify: bool) -> None:
    path = write_lighteval(tmp_path, "base", [older_row(i, stringify=stringify) for i in range(3)])
    result = read_samples(path)
    assert result.problems == []
    record = result.records[1]
    assert record.prompt_id == "1"
    assert record.prompt == "Question: what is 1 + 1?\nAnswer:"
    assert record.outputs == [f"2 (try {j})" for j in range(4)]
    assert (record.checkpoint, record.task) == ("base", TASK)
    assert record.references["gold"] == [" 2"]
    assert record.origin["metric"] == {"maj@4": 1.0}


def test_lighteval_unknown_layout_names_the_columns(tmp_path: Path) -> None:
    path = write_lighteval(tmp_path, "m", [{"question": "q", "answer": "a"}])
    with pytest.raises(SampleFormatError) as info:
        read_samples(path)
    assert info.value.path == str(path) and info.value.line is None
    assert "['answer', 'question']" in info.value.reason


def test_lighteval_directory_and_overrides(tmp_path: Path) -> None:
    write_lighteval(tmp_path, "base", current_rows(1))
    write_lighteval(tmp_path, "rl", current_rows(1))
    records = read_samples(tmp_path / "details").records
    assert [(r.checkpoint, r.prompt_id) for r in records] == [("base", "gsm8k-0"), ("rl", "gsm8k-0")]
    only = read_samples(tmp_path / "details" / "rl", checkpoint="rl-step-100", task="gsm8k").records[0]
    assert (only.checkpoint, only.task) == ("rl-step-100", "gsm8k")


def test_format_is_detected_from_content_and_can_be_forced(tmp_path: Path) -> None:
    source = write_lmeval(tmp_path, "m", "t", [lmeval_line(0)])
    renamed = tmp_path / "plain-name.jsonl"
    renamed.write_bytes(source.read_bytes())
    record = read_samples(renamed).records[0]  # auto: the first line's keys say lm-eval
    assert (record.checkpoint, record.task, record.prompt_id) == (tmp_path.name, DEFAULT_TASK, "0")
    assert record.outputs == lmeval_line(0)["resps"][0]
    assert read_samples(renamed, fmt="lm-eval").records == [record]
    for forced in ("divtrace", "jsonl"):  # read as divtrace records, the lm-eval line lacks prompt_id
        with pytest.raises(SampleFormatError, match="prompt_id"):
            read_samples(renamed, fmt=forced)

    details = write_lighteval(tmp_path, "olmo", current_rows(2))
    odd_name = tmp_path / "downloaded.bin"
    odd_name.write_bytes(details.read_bytes())
    records = read_samples(odd_name).records  # the Parquet schema says lighteval
    assert [r.prompt_id for r in records] == ["gsm8k-0", "gsm8k-1"] and records[0].task == TASK

    ours = tmp_path / "samples_mine_2024-01-01T00-00-00.jsonl"  # an lm-eval-like name, divtrace records inside
    write_samples([record.model_copy(update={"checkpoint": "c"})], ours)
    assert read_samples(ours).records[0].checkpoint == "c"
    with pytest.raises(ValueError, match="unknown sample format 'csv'"):
        read_samples(ours, fmt="csv")


def test_git_lfs_pointer_says_to_pull_the_data(tmp_path: Path) -> None:
    pointer = tmp_path / "details" / "m" / STAMP / f"details_{TASK}_{STAMP}.parquet"
    pointer.parent.mkdir(parents=True)
    pointer.write_text(  # what git checks out when the LFS object was not fetched
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
        "size 1234567\n"
    )
    with pytest.raises(SampleFormatError) as info:
        read_samples(pointer)
    assert info.value.path == str(pointer) and info.value.line is None
    assert "this is a Git LFS pointer, not the data" in str(info.value) and "git lfs pull" in str(info.value)
    assert "1234567 bytes" in str(info.value)
    skipped = read_samples(tmp_path / "details", skip_invalid=True)  # in a directory too, as a named problem
    assert skipped.records == [] and "Git LFS pointer" in str(skipped.problems[0])


@pytest.mark.parametrize("source", ["lm-eval", "lighteval"])
def test_a_single_sample_per_prompt_says_how_to_sample_k_in_the_tool(tmp_path: Path, source: str) -> None:
    if source == "lm-eval":
        path = write_lmeval(tmp_path, "m", "gsm8k", [lmeval_line(0, k=1)])
        expected = ["repeats", "--gen_kwargs", "temperature"]
    else:
        rows = [
            {
                "doc": {**lighteval_doc(0), "num_samples": 1},
                "model_response": lighteval_response(0, k=1),
                "metric": {"maj@4": 0.0},
            }
        ]
        path = write_lighteval(tmp_path, "m", rows)
        expected = ["num_samples", "n >= 2", "temperature"]
    with pytest.raises(SampleFormatError) as info:
        read_samples(path)
    message = str(info.value)
    assert info.value.line == 1 and info.value.field == "outputs" and "K >= 2" in message
    assert all(word in message for word in expected), message
    other = "lighteval" if source == "lm-eval" else "lm-eval"
    assert f"{other} logged" not in message


def test_score_reads_a_renamed_lmeval_log_and_takes_the_input_format(tmp_path: Path) -> None:
    import divtrace

    source = write_lmeval(tmp_path, "m", "gsm8k", [lmeval_line(i) for i in range(2)])
    renamed = tmp_path / "run-1.jsonl"
    renamed.write_bytes(source.read_bytes())
    result = divtrace.score(renamed, metrics=["ead"], use_cache=False)
    assert result.summary["n_prompts"].tolist() == [2]
    with pytest.raises(SampleFormatError, match="prompt_id"):
        divtrace.score(renamed, metrics=["ead"], use_cache=False, input_format="divtrace")
