"""Judge requests for the transport tests: one per text, keyed as a protocol would key them."""

from __future__ import annotations

from divtrace.judge.requests import JudgeRequest, JudgeSettings, request_key

SETTINGS = JudgeSettings(model="judge", temperature=0.0, max_tokens=32)


def judge_request(text: str, index: int = 0, settings: JudgeSettings = SETTINGS) -> JudgeRequest:
    """A one-message request judging ``text`` (sample ``index`` of checkpoint ``ckpt``, task ``t``, prompt
    ``p<index>``)."""
    messages = ({"role": "system", "content": "You are a judge."}, {"role": "user", "content": text})
    return JudgeRequest(
        key=request_key("test_protocol", "digest", settings, messages),
        messages=messages,
        settings=settings,
        checkpoint="ckpt",
        task="t",
        prompt_id=f"p{index}",
        sample_index=index,
        protocol="test_protocol",
        order="single",
    )


def judge_requests(count: int, settings: JudgeSettings = SETTINGS) -> list[JudgeRequest]:
    """``count`` requests judging ``text 0``, ``text 1``..."""
    return [judge_request(f"text {i}", i, settings) for i in range(count)]
