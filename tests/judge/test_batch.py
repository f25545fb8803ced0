"""OpenAI Batch API files: input files as the API takes them, split at its limits (small limits here), and output
and error files, written as the API writes them, read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from divtrace.errors import DivtraceError
from divtrace.judge.batch import (
    CHAT_COMPLETIONS_URL,
    MANIFEST_NAME,
    MAX_BYTES_PER_FILE,
    MAX_REQUESTS_PER_FILE,
    read_batch_results,
    write_batch_requests,
)
from divtrace.judge.cache import JudgmentCache, store_results
from divtrace.judge.client import NO_CONTENT
from divtrace.judge.jsonl import JudgeFileError
from divtrace.judge.requests import JudgeResponse
from tests.judge.requests_for_tests import judge_requests


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def output_line(custom_id: str, content: str | None, index: int) -> dict[str, Any]:
    """A Batch API output line of a request that succeeded."""
    message = {"role": "assistant", "content": content}
    completion = {
        "id": f"chatcmpl-{index}",
        "object": "chat.completion",
        "created": 1711471533,
        "model": "gpt-4.1-mini-2025-04-14",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }
    return {
        "id": f"batch_req_{index}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": f"req_{index}", "body": completion},
        "error": None,
    }


def write_lines(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_input_files_and_results_round_trip(tmp_path: Path) -> None:
    assert (MAX_REQUESTS_PER_FILE, MAX_BYTES_PER_FILE) == (50_000, 200_000_000)  # the API's limits by default
    requests = judge_requests(5)
    files = write_batch_requests([*requests, requests[0]], tmp_path / "in")
    assert files == [tmp_path / "in" / "batch-00000.jsonl"]
    assert lines_of(files[0]) == [
        {"custom_id": r.key, "method": "POST", "url": CHAT_COMPLETIONS_URL, "body": r.body()} for r in requests
    ]  # a duplicate key is written once
    manifest = lines_of(tmp_path / "in" / MANIFEST_NAME)
    assert [(m["custom_id"], m["file"], m["prompt_id"], m["model"]) for m in manifest] == [
        (r.key, "batch-00000.jsonl", r.prompt_id, "judge") for r in requests
    ]
    with pytest.raises(DivtraceError, match="already holds Batch API input files"):
        write_batch_requests(requests, tmp_path / "in")

    keys = [r.key for r in requests]
    output = write_lines(
        tmp_path / "output.jsonl",
        [
            output_line(keys[0], "[[A>B]]", 0),
            output_line(keys[1], None, 1),
            output_line(keys[0], "a later duplicate", 2),
            output_line("not-one-of-ours", "x", 3),
        ],
    )
    errors = write_lines(
        tmp_path / "errors.jsonl",
        [
            {
                "id": "batch_req_4",
                "custom_id": keys[2],
                "response": {
                    "status_code": 400,
                    "request_id": "req_4",
                    "body": {"error": {"message": "maximum context length exceeded", "type": "invalid_request_error"}},
                },
                "error": None,
            },
            {
                "id": "batch_req_5",
                "custom_id": keys[3],
                "response": None,
                "error": {"code": "batch_expired", "message": "not executed before the window expired"},
            },
        ],
    )
    results = read_batch_results([output, errors])
    assert results[keys[0]] == JudgeResponse(keys[0], "[[A>B]]", None, "stop", source="batch")  # the first wins
    assert results[keys[1]] == JudgeResponse(keys[1], None, NO_CONTENT, "stop", source="batch")
    assert results[keys[2]] == JudgeResponse(keys[2], None, "HTTP 400: maximum context length exceeded", None, "batch")
    assert results[keys[3]].error == "Batch API batch_expired: not executed before the window expired"
    assert "not-one-of-ours" in results and keys[4] not in results

    cache = JudgmentCache(tmp_path / "judgments.jsonl")
    assert store_results(cache, requests, results) == 3  # the expired request stays unanswered, to be asked again
    assert keys[3] not in cache and cache.get(keys[0]) is not None


def test_input_files_are_split_at_the_request_and_byte_limits(tmp_path: Path) -> None:
    requests = judge_requests(5)
    by_count = write_batch_requests(requests, tmp_path / "count", max_requests=2)
    assert [len(lines_of(f)) for f in by_count] == [2, 2, 1]
    one_line = len(by_count[0].read_text().splitlines()[0]) + 1
    by_size = write_batch_requests(requests, tmp_path / "size", max_bytes=3 * one_line + 2)
    assert [len(lines_of(f)) for f in by_size] == [3, 2]
    assert all(f.stat().st_size <= 3 * one_line + 2 for f in by_size)
    assert [line["custom_id"] for f in by_size for line in lines_of(f)] == [r.key for r in requests]
    assert [m["file"] for m in lines_of(tmp_path / "size" / MANIFEST_NAME)] == ["batch-00000.jsonl"] * 3 + [
        "batch-00001.jsonl"
    ] * 2
    with pytest.raises(DivtraceError, match="over the 100 bytes of a batch file"):
        write_batch_requests(requests, tmp_path / "tiny", max_bytes=100)


def test_malformed_result_lines_name_the_file_and_the_line(tmp_path: Path) -> None:
    good = output_line("k", "ok", 0)
    cut = tmp_path / "cut.jsonl"
    cut.write_text(json.dumps(good) + "\n" + json.dumps(good)[:30])
    with pytest.raises(JudgeFileError, match=rf"{cut}, line 2: not JSON"):
        read_batch_results([cut])  # a download cut short is an error, not a shorter result
    nameless = write_lines(tmp_path / "nameless.jsonl", [good, {"response": good["response"]}])
    with pytest.raises(JudgeFileError, match="line 2: no 'custom_id'"):
        read_batch_results([nameless])
    empty = write_lines(tmp_path / "empty.jsonl", [{"custom_id": "k", "response": None, "error": None}])
    with pytest.raises(JudgeFileError, match="line 1: neither an 'error' object nor a 'response'"):
        read_batch_results([empty])
