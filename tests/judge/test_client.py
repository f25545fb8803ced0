"""The judge client against the deterministic judge server on 127.0.0.1 (tests/judge_server.py): answers, retries
(429 with Retry-After, 503), refusals kept as answers, endpoint failures raised, the concurrency bound, timeouts and
an interrupted run that keeps what arrived."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from divtrace.errors import DivtraceError
from divtrace.judge.cache import JudgmentCache, resolve
from divtrace.judge.client import NO_CONTENT, JudgeClient, JudgeEndpoint, JudgeEndpointError
from divtrace.judge.requests import JudgeResponse
from divtrace.progress import JUDGMENTS, ProgressEvent
from tests.judge.requests_for_tests import judge_request, judge_requests
from tests.judge_server import JudgeServer, Status, last_user_message
from tests.servers import free_port


def client_for(server: JudgeServer, **settings: object) -> JudgeClient:
    return JudgeClient(JudgeEndpoint.model_validate({"base_url": server.base_url, **settings}))


def test_endpoint_settings() -> None:
    endpoint = JudgeEndpoint(base_url="http://127.0.0.1:8000/")
    assert endpoint.base_url == "http://127.0.0.1:8000/v1"  # /v1 appended to a bare host, as for generation
    assert (endpoint.api_key_env, endpoint.max_concurrency, endpoint.max_retries, endpoint.timeout) == (
        "OPENAI_API_KEY",
        8,
        6,
        120.0,
    )
    with pytest.raises(ValueError, match="not an http"):
        JudgeEndpoint(base_url="localhost")
    with pytest.raises(ValueError, match="api_key\n  Extra inputs are not permitted"):
        JudgeEndpoint.model_validate({"base_url": "http://h", "api_key": "sk-..."})  # the key is never stored


def test_answers_each_request_and_hands_each_answer_over_as_it_arrives() -> None:
    requests = judge_requests(5)
    handed: list[JudgeResponse] = []
    events: list[ProgressEvent] = []
    with JudgeServer() as server:
        responses = client_for(server).judge(requests, on_response=handed.append, progress=events.append)
    assert [r.key for r in responses] == [r.key for r in requests]
    assert [r.text for r in responses] == [f"judged: text {i}" for i in range(5)]
    assert {(r.source, r.error, r.finish_reason) for r in responses} == {("live", None, "stop")}
    assert sorted(handed, key=responses.index) == responses
    assert [call.body for call in sorted(server.calls, key=lambda c: last_user_message(c.body))] == [
        r.body() for r in requests
    ]  # the body sent is exactly JudgeRequest.body(), as a Batch API line carries it
    assert [(e.done, e.total, e.count) for e in events] == [(i, 5, JUDGMENTS) for i in range(6)]


def test_429_is_retried_after_the_servers_retry_after() -> None:
    with JudgeServer(script=[Status(429, retry_after=1)]) as server:
        [response] = client_for(server, max_retries=2).judge([judge_request("x")])
    assert response.text == "judged: x"
    assert server.statuses == [429, 200]
    assert server.calls[1].arrived - server.calls[0].arrived >= 1.0  # Retry-After: 1 honoured


def test_503_is_retried() -> None:
    with JudgeServer(script=[503, 503]) as server:
        [response] = client_for(server, max_retries=2).judge([judge_request("x")])
    assert response.text == "judged: x" and server.statuses == [503, 503, 200]


def test_a_request_the_server_refuses_is_kept_as_its_error_answer() -> None:
    requests = [judge_request("fine", 0), judge_request("far too long", 1), judge_request("also fine", 2)]
    with JudgeServer(refuse=lambda body: 400 if "too long" in last_user_message(body) else None) as server:
        responses = client_for(server).judge(requests)
    assert [r.text for r in responses] == ["judged: fine", None, "judged: also fine"]
    assert responses[1].error == "HTTP 400: scripted 400"
    assert sorted(server.statuses) == [200, 200, 400]  # a 400 is not retried


def test_an_answer_without_content_is_an_error_answer() -> None:
    with JudgeServer(answer=lambda body: None) as server:
        [response] = client_for(server).judge([judge_request("x")])
    assert (response.text, response.error) == (None, NO_CONTENT)


def test_check_finds_an_unreachable_endpoint_before_any_work() -> None:
    client = JudgeClient(JudgeEndpoint(base_url=f"http://127.0.0.1:{free_port()}", max_retries=0))
    with pytest.raises(JudgeEndpointError, match=r"cannot reach .* at http://127\.0\.0\.1:\d+/v1 .*connection refused"):
        client.check("judge")
    with pytest.raises(JudgeEndpointError, match="connection refused") as caught:
        client.judge([judge_request("x")])
    assert isinstance(caught.value, DivtraceError) and caught.value.status_code is None


def test_check_finds_a_refused_key_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    with JudgeServer(api_key="right") as server:
        client = client_for(server, api_key_env="JUDGE_TEST_KEY")
        monkeypatch.setenv("JUDGE_TEST_KEY", "wrong")
        with pytest.raises(JudgeEndpointError, match=r"refused the API key from \$JUDGE_TEST_KEY, HTTP 401") as caught:
            client.check("judge")
        assert (caught.value.base_url, caught.value.status_code, caught.value.attempts) == (server.base_url, 401, 1)
        monkeypatch.delenv("JUDGE_TEST_KEY")
        with pytest.raises(JudgeEndpointError, match=r"\$JUDGE_TEST_KEY is not set"):
            client.check("judge")
        with pytest.raises(JudgeEndpointError, match="HTTP 401"):
            client.judge([judge_request("x")])  # mid-run too: about the endpoint, raised
        monkeypatch.setenv("JUDGE_TEST_KEY", "right")
        client.check("judge")
        assert server.calls == []  # check only ever sends GET /models


def test_check_passes_servers_without_a_model_list_or_under_other_names(caplog: pytest.LogCaptureFixture) -> None:
    with JudgeServer(models=[]) as server:  # GET /models: 404
        client_for(server).check("judge")
    with caplog.at_level(logging.WARNING), JudgeServer(models=["served-name"]) as server:
        client_for(server).check("judge")
    assert "does not list the judge model 'judge'" in caplog.text


def test_requests_in_flight_never_exceed_max_concurrency() -> None:
    with JudgeServer(delay_s=0.1) as server:
        responses = client_for(server, max_concurrency=3).judge(judge_requests(12))
    assert len(responses) == 12 and all(r.text for r in responses)
    assert 2 <= server.max_in_flight <= 3


def test_a_request_that_times_out_on_every_attempt_raises() -> None:
    with JudgeServer(default="hang", hang_s=2.0) as server:
        client = client_for(server, timeout=0.3, max_retries=1)
        with pytest.raises(JudgeEndpointError, match=r"timed out \(0.3 s\) on each of 2 attempt") as caught:
            client.judge([judge_request("x")])
    assert caught.value.base_url == server.base_url and caught.value.attempts == 2
    assert server.statuses == [0, 0]


def test_an_endpoint_failing_mid_run_keeps_what_arrived_and_a_rerun_sends_only_the_rest(tmp_path: Path) -> None:
    requests = judge_requests(6)
    path = tmp_path / "judgments.jsonl"
    stopped = pytest.raises(JudgeEndpointError, match=r"HTTP 500 on /chat/completions after 2 attempt")
    with JudgeServer(script=["answer"] * 3, default=500) as failing, JudgmentCache(path) as cache, stopped as caught:
        resolve(requests, cache, client_for(failing, max_concurrency=1, max_retries=1))
    assert caught.value.status_code == 500
    assert failing.statuses == [200, 200, 200, 500, 500]  # the fourth request failed twice: the run stopped
    assert len(path.read_text().splitlines()) == 3  # the three answers that arrived are on disk

    events: list[ProgressEvent] = []
    with JudgeServer() as server, JudgmentCache(path) as cache:
        assert len(cache) == 3
        answers = resolve(requests, cache, client_for(server), events.append)
        assert len(server.calls) == 3  # only the three unanswered requests were sent
        assert sorted(r.source for r in answers.values()) == ["cache"] * 3 + ["live"] * 3
        assert [answers[r.key].text for r in requests] == [f"judged: text {i}" for i in range(6)]
        assert (events[0].done, events[-1].done, events[-1].total) == (3, 6, 6)
        again = resolve(requests, cache, client_for(server))
    assert len(server.calls) == 3 and {r.source for r in again.values()} == {"cache"}
    assert os.path.getsize(path) > 0 and len(path.read_text().splitlines()) == 6
