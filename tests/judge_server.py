"""A deterministic OpenAI-compatible judge server on 127.0.0.1 for the tests of :mod:`divtrace.judge`.

    with JudgeServer(answer=lambda body: "[[A>B]]") as server:
        client = JudgeClient(JudgeEndpoint(base_url=server.base_url))
        ...
    server.calls  # every POST: its body, arrival time and the status answered

It answers ``GET /v1/models`` (``models``; None: 404) and ``POST /v1/chat/completions`` with a chat completion whose
content is ``answer(body)`` (None: a null content). What it answers to each POST, in order of arrival, can be
scripted: an HTTP status (an OpenAI-style error body), :class:`Status` (a status with a ``Retry-After`` header),
``"hang"`` (no answer for ``hang_s`` seconds) or ``"answer"``; after the script, ``default``. ``refuse(body)``
gives a status for particular requests (a 400 for one prompt) whatever the script. ``api_key`` set: a request
without that bearer key gets 401. ``delay_s`` holds every answer a moment, so requests overlap and
``max_in_flight`` (the most POSTs in the server at once) shows the client's concurrency.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.servers import LoopbackServer, error_payload


@dataclass(frozen=True)
class Status:
    """An error status answered with a ``Retry-After`` header (seconds)."""

    code: int
    retry_after: float | None = None


#: What the server answers to one POST: "answer", "hang", an HTTP status, or a Status.
Action = str | int | Status


@dataclass(frozen=True)
class Call:
    """One POST the server received: its JSON body, when it arrived (``time.monotonic()``), what it answered (an
    HTTP status; 0 for a hang)."""

    body: dict[str, Any]
    arrived: float
    status: int


def last_user_message(body: dict[str, Any]) -> str:
    """The content of the last user message of a chat-completions body."""
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


def echo_answer(body: dict[str, Any]) -> str:
    """The default answer: ``judged: `` and the last user message, so each request's answer is its own."""
    return f"judged: {last_user_message(body)}"


class JudgeServer(LoopbackServer):
    """See the module docstring."""

    def __init__(
        self,
        answer: Callable[[dict[str, Any]], str | None] = echo_answer,
        *,
        script: list[Action] | None = None,
        default: Action = "answer",
        refuse: Callable[[dict[str, Any]], int | None] | None = None,
        api_key: str | None = None,
        models: list[str] | None = None,
        delay_s: float = 0.0,
        hang_s: float = 3.0,
    ) -> None:
        super().__init__()
        self.answer = answer
        self.script = list(script or [])
        self.default = default
        self.refuse = refuse
        self.api_key = api_key
        self.models = ["judge"] if models is None else models
        self.delay_s = delay_s
        self.hang_s = hang_s
        self.calls: list[Call] = []
        self.gets = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    @property
    def statuses(self) -> list[int]:
        """The status answered to each POST, in order of arrival (0: a hang)."""
        return [call.status for call in self.calls]

    def handle(self, method: str, handler: BaseHTTPRequestHandler) -> None:
        if self.api_key is not None and handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            self.body_of(handler)
            self.send(handler, 401, error_payload(401, "Incorrect API key provided"))
            return
        if method == "GET":
            self.gets += 1
            if handler.path.rstrip("/") != "/v1/models" or not self.models:
                self.send(handler, 404, error_payload(404, "no such route"))
                return
            data = [{"id": model, "object": "model", "created": 0, "owned_by": "judge-server"} for model in self.models]
            self.send(handler, 200, json.dumps({"object": "list", "data": data}).encode())
            return
        body = json.loads(self.body_of(handler))
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            action = self.script.pop(0) if self.script else self.default
            refused = self.refuse(body) if self.refuse is not None else None
            call_index = len(self.calls)
            self.calls.append(Call(body, time.monotonic(), 0))
        try:
            self._answer(handler, body, call_index, refused if refused is not None else action)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], index: int, action: Action) -> None:
        if action == "hang":
            time.sleep(self.hang_s)
            return
        time.sleep(self.delay_s)
        if action == "answer":
            status, payload, headers = 200, self._completion(body, index), {}
        else:
            scripted = action if isinstance(action, Status) else Status(int(action))
            status, payload = scripted.code, error_payload(scripted.code, f"scripted {scripted.code}")
            headers = {} if scripted.retry_after is None else {"Retry-After": f"{scripted.retry_after:g}"}
        with self._lock:
            self.calls[index] = Call(body, self.calls[index].arrived, status)
        self.send(handler, status, payload, headers)

    def _completion(self, body: dict[str, Any], index: int) -> bytes:
        completion = {
            "id": f"chatcmpl-{index}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", ""),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": self.answer(body)}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return json.dumps(completion).encode()
