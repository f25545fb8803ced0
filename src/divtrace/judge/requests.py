"""What is sent to a judge and what comes back: :class:`JudgeRequest` and :class:`JudgeResponse`.

A request is one chat-completions call (the messages a protocol rendered from its published template, the judge
model and its sampling settings) plus where it comes from (checkpoint, task, prompt, sample, protocol, order). Its
:attr:`JudgeRequest.key` is the fingerprint of everything that shapes the judgment: the protocol, the template's
digest, the judge model, its settings and the messages (which hold every text judged). The endpoint is not part of
it, so a judgment read from OpenAI Batch API results and one fetched live from the same model share a key, and the
cache (:mod:`divtrace.judge.cache`) answers a rerun without a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from divtrace.fingerprint import fingerprint

#: Bumped when the same inputs make other request keys (every cached judgment is then asked again).
REQUEST_KEY_VERSION = 1


@dataclass(frozen=True)
class JudgeSettings:
    """The judge model and how it is sampled (the study: gpt-4.1-mini, temperature 0)."""

    model: str
    temperature: float = 0.0
    max_tokens: int = 1024


@dataclass(frozen=True)
class JudgeRequest:
    """One judge call.

    Attributes:
        key: :func:`request_key` of the call (also the OpenAI Batch API ``custom_id``).
        messages: the chat messages, ``({"role": ..., "content": ...}, ...)``.
        settings: the judge model, temperature and max_tokens sent.
        checkpoint, task, prompt_id, sample_index: the output judged (``sample_index``: its index among the K).
        protocol: the protocol's name (``kirk_summary``, ``arena_hard_creative``, ``wb_score``).
        order: which text the judge saw first: ``candidate_first`` or ``reference_first`` (Kirk et al.: against the
            reference summary), ``candidate_first`` or ``baseline_first`` (Arena-Hard: against the baseline's
            output), ``single`` (WB-Score).
        baseline: the checkpoint whose output the candidate is compared with (Arena-Hard), else ``""``.
    """

    key: str
    messages: tuple[dict[str, str], ...]
    settings: JudgeSettings
    checkpoint: str
    task: str
    prompt_id: str
    sample_index: int
    protocol: str
    order: str
    baseline: str = ""

    def body(self) -> dict[str, Any]:
        """The ``/v1/chat/completions`` request body (model, messages, temperature, max_tokens)."""
        return {
            "model": self.settings.model,
            "messages": [dict(message) for message in self.messages],
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
        }


@dataclass(frozen=True)
class JudgeResponse:
    """What came back for one request (by its ``key``).

    Attributes:
        key: the request's key.
        text: the judge's message content; None when the server refused this request (``error`` says why).
        error: why there is no text (an HTTP status and message, a Batch API error), else None.
        finish_reason: the server's finish reason, when it gave one.
        source: where the answer came from: ``live`` (a request now), ``cache`` or ``batch`` (Batch API results).
    """

    key: str
    text: str | None
    error: str | None = None
    finish_reason: str | None = None
    source: str = "live"


def request_key(
    protocol: str, template_digest: str, settings: JudgeSettings, messages: tuple[dict[str, str], ...]
) -> str:
    """The fingerprint of a judge call: ``protocol``, the template's digest, the judge model, its temperature and
    max_tokens, and the messages (every text judged is in them)."""
    return fingerprint(
        {
            "version": REQUEST_KEY_VERSION,
            "protocol": protocol,
            "template": template_digest,
            "model": settings.model,
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "messages": [dict(message) for message in messages],
        },
        ensure_ascii=False,
    )
