"""Judge requests sent live to an OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, llama.cpp server, llm-katan...).

:class:`JudgeEndpoint` holds where the judge is served and how it is called; :class:`JudgeClient` checks the endpoint
(:meth:`JudgeClient.check`) and sends :class:`~divtrace.judge.requests.JudgeRequest` values to
``/v1/chat/completions`` (:meth:`JudgeClient.judge`), the body exactly :meth:`JudgeRequest.body`, the same body an
OpenAI Batch API input line carries (:mod:`divtrace.judge.batch`).

Requests go through the maintained ``openai`` package (``AsyncOpenAI``), as the generation backend does
(:mod:`divtrace.openai_calls` holds what both share): at most ``max_concurrency`` requests in flight (an
``asyncio.Semaphore``), a per-request ``timeout``, and the package's own retries (``max_retries``), with exponential
backoff and jitter (0.5 s doubling up to 8 s) or the server's ``Retry-After``, on connection errors, timeouts, 408,
409, 429 and 5xx. No backoff is written here.

What fails is sorted in two:
- the server refuses one request for itself (HTTP 400, 413, 422: a prompt too long, a field it rejects): that
  request gets a :class:`~divtrace.judge.requests.JudgeResponse` with ``text=None`` and ``error="HTTP 400: ..."``,
  and the others go on;
- anything else (unreachable, timed out or 5xx after the retries, 401/403, 404...) is about the endpoint, not the
  request: :class:`JudgeEndpointError` is raised, the requests in flight are cancelled, and every answer that had
  arrived has already been handed to ``on_response``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field, field_validator

from divtrace.judge.requests import JudgeRequest, JudgeResponse
from divtrace.openai_calls import OpenAIServerError, gather_or_cancel, normalize_base_url, run_sync, server_error
from divtrace.progress import JUDGMENTS, ProgressSink, emit

_logger = logging.getLogger(__name__)

#: Statuses by which a server refuses one request for itself (kept as that request's error response).
REFUSED_STATUSES = frozenset({400, 413, 422})
#: Statuses that refuse the API key.
KEY_REFUSED_STATUSES = frozenset({401, 403})
#: The key sent when the API key's variable is unset (local servers want none, the openai package wants one).
NO_KEY = "EMPTY"
#: Retries of :meth:`JudgeClient.check`'s one request (it is meant to be quick).
CHECK_RETRIES = 1
#: The error of an answer without message content.
NO_CONTENT = "no content in the answer"


class JudgeEndpointError(OpenAIServerError):
    """The judge endpoint failed, not one request: unreachable, timed out or 5xx after the retries, the API key
    refused, the model unknown. ``base_url``, ``status_code`` (None without an HTTP status) and ``attempts`` say
    which endpoint, how and after how many tries; the message names them."""


class JudgeEndpoint(BaseModel):
    """Where the judge is served and how it is called.

    Attributes:
        base_url: the OpenAI-compatible API root (``https://api.openai.com/v1``, ``http://127.0.0.1:8000/v1``);
            ``/v1`` is appended to a bare host.
        api_key_env: the *name* of the environment variable that holds the API key (the key itself is never
            stored); when it is unset, ``EMPTY`` is sent (a local server needs no key).
        max_concurrency: requests in flight at once.
        max_retries: retries of a failed request (connection error, timeout, 408, 409, 429, 5xx) by the openai
            package, with exponential backoff or the server's ``Retry-After``.
        timeout: seconds one request may take (connect, send, wait for the whole answer).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(8, ge=1)
    max_retries: int = Field(6, ge=0)
    timeout: float = Field(120.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return normalize_base_url(value)

    def api_key(self) -> str:
        """The API key read from ``$api_key_env`` now, or ``EMPTY`` when it is unset or empty."""
        return os.environ.get(self.api_key_env) or NO_KEY


class JudgeClient:
    """Sends judge requests to one :class:`JudgeEndpoint` (see the module docstring for retries and failures).

    The client holds no connection between calls: each :meth:`check` or :meth:`judge` opens an ``AsyncOpenAI``
    client in an event loop of its own and closes it before returning.
    """

    def __init__(self, endpoint: JudgeEndpoint) -> None:
        self.endpoint = endpoint

    @property
    def base_url(self) -> str:
        """The endpoint's API root, normalized."""
        return self.endpoint.base_url

    def check(self, model: str) -> None:
        """Find, with one cheap request (``GET /models``, :data:`CHECK_RETRIES` retry), an endpoint that cannot serve
        any judgment, before any work.

        Raises JudgeEndpointError when the endpoint cannot be reached (``cannot reach ... : connection refused``),
        refuses the API key (``the server refused the API key from $OPENAI_API_KEY (HTTP 401)``) or fails with a
        5xx. A server without ``/models`` (404 or another 4xx) passes; so does one whose list lacks ``model`` (local
        servers serve under other names), with a warning logged.
        """
        run_sync(lambda: self._check(model))

    def judge(
        self,
        requests: Sequence[JudgeRequest],
        on_response: Callable[[JudgeResponse], None] | None = None,
        progress: ProgressSink | None = None,
    ) -> list[JudgeResponse]:
        """One :class:`JudgeResponse` (``source="live"``) per request, in the order of ``requests``.

        Synchronous for the caller; the requests run concurrently (at most ``max_concurrency`` in flight) in an
        event loop of their own. Every request is sent, duplicate keys included (deduplicating is the caller's).
        Each response is handed to ``on_response`` as soon as it arrives, before the others, so a caller that
        stores it keeps it if the run stops later; ``on_response`` is called from the thread that runs the event
        loop (the caller's, or a worker thread when the caller is itself inside a running loop), one call at a
        time, never concurrently. ``progress`` gets judgments answered of the call's total (:data:`JUDGMENTS`).

        A request refused for itself (HTTP 400, 413, 422) gives ``text=None, error="HTTP 400: <message>"``; an
        answer without choices or message content gives ``text=None, error="no content in the answer"``. Any
        other failure raises JudgeEndpointError, once the openai package's retries are spent; the requests in
        flight are then cancelled. An exception raised by ``on_response`` stops the call the same way.
        """
        if not requests:
            return []
        return run_sync(lambda: self._judge_all(requests, on_response, progress))

    # ----- async -----

    def _client(self, max_retries: int | None = None) -> openai.AsyncOpenAI:
        """A fresh async client for one event loop (connections are bound to the loop that opened them)."""
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.endpoint.api_key(),
            max_retries=self.endpoint.max_retries if max_retries is None else max_retries,
            timeout=self.endpoint.timeout,
        )

    async def _check(self, model: str) -> None:
        retries = min(CHECK_RETRIES, self.endpoint.max_retries)
        async with self._client(max_retries=retries) as client:
            try:
                page = await client.models.list()
            except openai.APIStatusError as err:
                if err.status_code in KEY_REFUSED_STATUSES or err.status_code >= 500:
                    raise self._failure(err, "/models", retries) from err
                return  # no model list here (404, 405...): nothing to check
            except openai.APIConnectionError as err:
                raise self._failure(err, "/models", retries) from err
        served = sorted(entry.id for entry in page.data)
        if served and model not in served:
            _logger.warning("%s does not list the judge model %r (it lists %s)", self.base_url, model, served[:10])

    async def _judge_all(
        self,
        requests: Sequence[JudgeRequest],
        on_response: Callable[[JudgeResponse], None] | None,
        progress: ProgressSink | None,
    ) -> list[JudgeResponse]:
        total = len(requests)
        answered = 0
        emit(progress, 0, total, JUDGMENTS)
        semaphore = asyncio.Semaphore(self.endpoint.max_concurrency)
        async with self._client() as client:

            async def one(request: JudgeRequest) -> JudgeResponse:
                nonlocal answered
                async with semaphore:
                    response = await self._ask(client, request)
                if on_response is not None:
                    on_response(response)
                answered += 1
                emit(progress, answered, total, JUDGMENTS)
                return response

            return await gather_or_cancel([one(request) for request in requests])

    async def _ask(self, client: openai.AsyncOpenAI, request: JudgeRequest) -> JudgeResponse:
        """The answer to one request; a refusal of this request is its error response, other failures raise."""
        try:
            completion = await client.chat.completions.create(**request.body())
        except openai.APIStatusError as err:
            if err.status_code in REFUSED_STATUSES:
                return JudgeResponse(request.key, None, error=status_error(err.status_code, _server_message(err)))
            raise self._failure(err, "/chat/completions", self.endpoint.max_retries, request.settings.model) from err
        except openai.APIConnectionError as err:
            raise self._failure(err, "/chat/completions", self.endpoint.max_retries) from err
        return response_from_completion(request.key, completion.model_dump(), source="live")

    def _failure(
        self,
        err: openai.APIStatusError | openai.APIConnectionError,
        route: str,
        max_retries: int,
        model: str | None = None,
    ) -> JudgeEndpointError:
        """``err`` as a JudgeEndpointError naming the endpoint, the status and the attempts."""
        status = err.status_code if isinstance(err, openai.APIStatusError) else None
        hint = ""
        if status in KEY_REFUSED_STATUSES:
            variable = self.endpoint.api_key_env
            unset = "" if os.environ.get(variable) else f" (${variable} is not set)"
            hint = f" (the server refused the API key from ${variable}{unset}, HTTP {status})"
        elif status == 404 and model is not None:
            hint = f" (does this endpoint serve the judge model {model!r}?)"
        return server_error(
            err,
            JudgeEndpointError,
            base_url=self.base_url,
            route=route,
            max_retries=max_retries,
            timeout=self.endpoint.timeout,
            hint=hint,
        )


def response_from_completion(key: str, body: Mapping[str, Any], source: str) -> JudgeResponse:
    """The :class:`JudgeResponse` of request ``key`` from a chat-completions answer ``body`` (a JSON object, as
    sent live or in a Batch API output line): the first choice's message content and finish reason, or
    ``error="no content in the answer"`` when there is no choice or its content is None."""
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], Mapping) else {}
    message = first.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    finish = first.get("finish_reason")
    finish_reason = finish if isinstance(finish, str) else None
    if not isinstance(content, str):
        return JudgeResponse(key, None, error=NO_CONTENT, finish_reason=finish_reason, source=source)
    return JudgeResponse(key, content, finish_reason=finish_reason, source=source)


def _server_message(err: openai.APIStatusError) -> str:
    """The message of the server's error body (``{"error": {"message": ...}}``), else the package's message."""
    body = err.body
    message = body.get("message") if isinstance(body, Mapping) else None
    return message if isinstance(message, str) and message else err.message


def status_error(status: int, message: str) -> str:
    """The ``error`` of an answer refused with HTTP ``status``: ``HTTP 400: <message>``."""
    return f"HTTP {status}: {message}"


def is_settled(response: JudgeResponse) -> bool:
    """Whether ``response`` is the server's lasting answer to its request, worth keeping: a text, a refusal of the
    request itself (:data:`REFUSED_STATUSES`) or an answer without content. Other errors (a Batch API request
    that expired, was cancelled, or failed with 429/5xx) would not come back the same and are asked again."""
    if response.text is not None or response.error == NO_CONTENT:
        return True
    return any((response.error or "").startswith(status_error(status, "")) for status in REFUSED_STATUSES)
