"""The judge transport against a real model: llm-katan serving the packaged SmolLM2 on 127.0.0.1, reached through
a counting relay (tests/servers.py's FlakyServer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from divtrace.judge.cache import JudgmentCache, resolve
from divtrace.judge.client import JudgeClient, JudgeEndpoint
from divtrace.judge.requests import JudgeRequest, JudgeSettings, request_key
from tests.servers import SERVED, FlakyServer, ServerProcess

JUDGE_PROMPT = (
    "Please act as an impartial judge and rate the creativity of the story below on a scale of 1 to 10. "
    'Answer in the form "Rating: [[N]]".\n\n[Story]\nThe lighthouse keeper taught the fog to sing.\n[End of story]'
)


@pytest.mark.slow
def test_a_real_model_judges_and_the_cache_answers_the_rerun(katan: ServerProcess, tmp_path: Path) -> None:
    settings = JudgeSettings(model=SERVED, temperature=0.0, max_tokens=16)
    messages = ({"role": "user", "content": JUDGE_PROMPT},)
    request = JudgeRequest(
        key=request_key("wb_score", "digest", settings, messages),
        messages=messages,
        settings=settings,
        checkpoint="base",
        task="stories",
        prompt_id="p0",
        sample_index=0,
        protocol="wb_score",
        order="single",
    )
    with FlakyServer([], upstream=katan.base_url) as relay:
        client = JudgeClient(JudgeEndpoint(base_url=relay.base_url, max_retries=2, timeout=300))
        client.check(SERVED)
        with JudgmentCache(tmp_path / "judgments.jsonl") as cache:
            answers = resolve([request], cache, client)
        assert relay.posts == [200]
        answer = answers[request.key]
        assert (answer.key, answer.source, answer.error) == (request.key, "live", None)
        assert isinstance(answer.text, str) and answer.text.strip()
        rerun = resolve([request], JudgmentCache(tmp_path / "judgments.jsonl"), client)
        assert relay.posts == [200]  # no request: the cache answered
    assert rerun[request.key].text == answer.text and rerun[request.key].source == "cache"
