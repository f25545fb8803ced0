"""The judgment cache: lines kept across runs, a cut last line tolerated, a bad line named; resolve without an
endpoint; cached refusals; results stored from elsewhere (Batch API)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from divtrace.judge.cache import JudgmentCache, UnansweredRequestsError, resolve, store_results
from divtrace.judge.client import JudgeClient, JudgeEndpoint
from divtrace.judge.jsonl import JudgeFileError
from divtrace.judge.requests import JudgeResponse
from tests.judge.requests_for_tests import judge_request, judge_requests
from tests.judge_server import JudgeServer, last_user_message


def filled(path: Path, count: int) -> list[str]:
    """A cache at ``path`` holding answers to ``judge_requests(count)``; their keys."""
    requests = judge_requests(count)
    with JudgmentCache(path) as cache:
        for request in requests:
            cache.put(request, JudgeResponse(request.key, f"answer {request.sample_index}", finish_reason="stop"))
    return [request.key for request in requests]


def test_answers_are_kept_one_line_each_with_the_requests_metadata(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "judgments.jsonl"
    keys = filled(path, 3)
    cache = JudgmentCache(path)
    assert len(cache) == 3 and list(cache.keys()) == keys
    assert cache.get(keys[1]) == JudgeResponse(keys[1], "answer 1", None, "stop", source="cache")
    assert cache.get("other") is None
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {
        "key": keys[0],
        "text": "answer 0",
        "error": None,
        "finish_reason": "stop",
        "protocol": "test_protocol",
        "checkpoint": "ckpt",
        "task": "t",
        "prompt_id": "p0",
        "sample_index": 0,
        "order": "single",
        "baseline": "",
        "model": "judge",
    }
    with pytest.raises(ValueError, match="given for request"):
        cache.put(judge_request("a"), JudgeResponse("not-its-key", "x"))


def test_a_cut_last_line_is_dropped_and_every_complete_line_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "judgments.jsonl"
    keys = filled(path, 3)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 20])  # killed while writing the third line
    with caplog.at_level(logging.WARNING):
        cache = JudgmentCache(path)
    assert len(cache) == 2 and cache.dropped_cut_line
    assert "cut short" in caplog.text and "nothing else is lost" in caplog.text
    request = judge_requests(3)[2]
    cache.put(request, JudgeResponse(request.key, "asked again"))  # the cut line is cut off before appending
    cache.close()
    again = JudgmentCache(path)
    assert list(again.keys()) == keys and not again.dropped_cut_line
    assert again.get(keys[2]) == JudgeResponse(keys[2], "asked again", source="cache")


def test_a_complete_last_line_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "judgments.jsonl"
    keys = filled(path, 2)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    cache = JudgmentCache(path)
    assert len(cache) == 2
    request = judge_requests(3)[2]
    cache.put(request, JudgeResponse(request.key, "third"))
    cache.close()
    assert list(JudgmentCache(path).keys()) == [*keys, request.key]


def test_a_bad_line_inside_the_file_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "judgments.jsonl"
    filled(path, 3)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + '{"key": "k", "text": "cut\n' + lines[2])
    with pytest.raises(JudgeFileError, match=rf"{path}, line 2: not JSON"):
        JudgmentCache(path)
    path.write_text(lines[0] + '{"key": "k", "text": 3}\n')
    with pytest.raises(JudgeFileError, match="line 2: 'text' is a int, not a string or null"):
        JudgmentCache(path)
    path.write_text('{"text": "t"}\n')
    with pytest.raises(JudgeFileError, match="line 1: no 'key'"):
        JudgmentCache(path)


def test_resolve_without_an_endpoint_says_how_many_requests_have_no_answer(tmp_path: Path) -> None:
    path = tmp_path / "judgments.jsonl"
    filled(path, 1)
    requests = judge_requests(3)
    with pytest.raises(UnansweredRequestsError, match="2 of 3 judge request") as caught:
        resolve([*requests, requests[2]], JudgmentCache(path), None)  # a duplicate counts once
    assert (caught.value.missing, caught.value.total) == (2, 3)
    assert {r.text for r in resolve(requests[:1], JudgmentCache(path), None).values()} == {"answer 0"}


def test_refusals_are_cached_and_asked_again_only_on_request(tmp_path: Path) -> None:
    requests = [judge_request("fine", 0), judge_request("too long", 1)]
    cache = JudgmentCache(tmp_path / "judgments.jsonl")
    refuse_long = JudgeServer(refuse=lambda body: 400 if "too long" in last_user_message(body) else None)
    with refuse_long as server:
        client = JudgeClient(JudgeEndpoint(base_url=server.base_url))
        first = resolve([*requests, requests[0]], cache, client)  # the duplicate is sent once
        assert len(server.calls) == 2 and first[requests[1].key].error == "HTTP 400: scripted 400"
        assert resolve(requests, cache, client)[requests[1].key].source == "cache"
        assert len(server.calls) == 2  # the refusal was cached: no request
        server.refuse = None
        retried = resolve(requests, cache, client, retry_errors=True)
    assert len(server.calls) == 3 and retried[requests[1].key].text == "judged: too long"
    assert JudgmentCache(cache.path).get(requests[1].key) == JudgeResponse(
        requests[1].key, "judged: too long", None, "stop", source="cache"
    )  # the later line replaces the earlier one


def test_store_results_keeps_settled_answers_of_the_requests_only(tmp_path: Path) -> None:
    requests = judge_requests(4)
    results = {
        requests[0].key: JudgeResponse(requests[0].key, "yes", source="batch"),
        requests[1].key: JudgeResponse(requests[1].key, None, error="HTTP 400: too long", source="batch"),
        requests[2].key: JudgeResponse(requests[2].key, None, error="Batch API batch_expired: late", source="batch"),
        "unknown": JudgeResponse("unknown", "other", source="batch"),
    }
    cache = JudgmentCache(tmp_path / "judgments.jsonl")
    assert store_results(cache, requests, results) == 2
    assert sorted(cache.keys()) == sorted([requests[0].key, requests[1].key])
    assert store_results(cache, requests, results) == 0  # already cached
