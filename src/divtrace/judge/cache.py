"""Judgments kept on disk: :class:`JudgmentCache`, an append-only JSON Lines file, and :func:`resolve`, which
answers judge requests from it first and asks the endpoint only for the rest.

One line per answer: ``key``, ``text``, ``error`` and ``finish_reason`` (what :class:`JudgeResponse` holds), then,
for people reading the file, the request's ``protocol``, ``checkpoint``, ``task``, ``prompt_id``, ``sample_index``,
``order``, ``baseline`` and ``model``. Each line is written by one ``write`` and flushed as its answer arrives, so a
run that is interrupted keeps every answer that arrived. A later line of a key replaces an earlier one (an error
asked again with ``retry_errors``).

What is cached: every :class:`JudgeResponse` a request got, refusals included (HTTP 400/413/422, an answer without
content): they are the server's answer to that exact request and would come back the same, so a rerun sends no
request for them (:func:`resolve` with ``retry_errors=True`` asks them again). Transport failures are never
answers: they raise (:class:`~divtrace.judge.client.JudgeEndpointError`) and nothing is written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from divtrace.errors import DivtraceError
from divtrace.judge.client import JudgeClient, is_settled
from divtrace.judge.jsonl import JudgeFileError, json_line, read_json_lines
from divtrace.judge.requests import JudgeRequest, JudgeResponse
from divtrace.progress import JUDGMENTS, ProgressSink, emit

_logger = logging.getLogger(__name__)

#: The answer fields of a line (:class:`JudgeResponse` less its ``source``), each a string or null.
ANSWER_FIELDS = ("key", "text", "error", "finish_reason")


class UnansweredRequestsError(DivtraceError):
    """Judge requests have no answer in the cache and there is no endpoint to ask.

    Attributes:
        missing: how many (distinct) requests have no answer.
        total: how many distinct requests were to be answered.
    """

    def __init__(self, message: str, *, missing: int, total: int) -> None:
        super().__init__(message)
        self.missing = missing
        self.total = total


class JudgmentCache:
    """The judgments of one JSON Lines file, by request key (see the module docstring for its lines).

    Opening reads the whole file. A last line cut short (a process killed mid-write) is dropped with a logged
    warning, every complete line being kept; :attr:`dropped_cut_line` says so, and the next :meth:`put` cuts the
    partial line off the file before appending. A bad line anywhere else raises JudgeFileError naming the file and
    the line.

    One writer: :meth:`put` is meant to be called from one thread at a time (the event loop thread that runs
    :meth:`~divtrace.judge.client.JudgeClient.judge` calls its ``on_response`` one response at a time), and by one
    process per file. Use it as a context manager, or :meth:`close` it, to release the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._answers: dict[str, JudgeResponse] = {}
        self._file: IO[bytes] | None = None
        #: Where a cut last line starts (cut off at the first put), or None.
        self._cut_at: int | None = None
        #: Whether opening dropped a last line that was cut short.
        self.dropped_cut_line = False
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        lines = read_json_lines(self.path, allow_cut_last_line=True)
        for number, row in lines.rows:
            self._answers[row_key(self.path, number, row)] = answer_of(self.path, number, row)
        if lines.cut_at is not None:
            self._cut_at = lines.cut_at
            self.dropped_cut_line = True
            _logger.warning(
                "%s: its last line was cut short (a write interrupted): dropped; the %d complete judgment(s) "
                "before it are kept, nothing else is lost, and its request will be sent again",
                self.path,
                len(lines.rows),
            )

    def get(self, key: str) -> JudgeResponse | None:
        """The cached answer of request ``key`` (``source="cache"``), or None."""
        return self._answers.get(key)

    def keys(self) -> Iterator[str]:
        """The keys of the cached answers."""
        return iter(list(self._answers))

    def __len__(self) -> int:
        return len(self._answers)

    def __contains__(self, key: object) -> bool:
        return key in self._answers

    def put(self, request: JudgeRequest, response: JudgeResponse) -> None:
        """Append ``response`` to ``request`` (same key, else ValueError) as one line, flushed before returning;
        :meth:`get` answers it from then on (``source="cache"``)."""
        if response.key != request.key:
            raise ValueError(f"response for {response.key!r} given for request {request.key!r}")
        line = json_line({**{field: getattr(response, field) for field in ANSWER_FIELDS}, **request_metadata(request)})
        handle = self._open()
        handle.write(line)  # unbuffered: one write call per line
        handle.flush()
        self._answers[request.key] = dataclasses.replace(response, source="cache")

    def _open(self) -> IO[bytes]:
        """The file, opened for appending, after cutting off a cut last line or ending an unended one."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._cut_at is not None:
                os.truncate(self.path, self._cut_at)
                self._cut_at = None
            handle = open(self.path, "ab", buffering=0)  # noqa: SIM115 (held open across puts, closed by close())
            if handle.tell() > 0 and not _ends_with_newline(self.path):
                handle.write(b"\n")
            self._file = handle
        return self._file

    def close(self) -> None:
        """Close the file (a later :meth:`put` opens it again)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JudgmentCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request_metadata(request: JudgeRequest) -> dict[str, Any]:
    """What a person reading a cache line or a batch manifest wants to know of the request: its protocol, the output
    judged (checkpoint, task, prompt_id, sample_index), the order, the baseline and the judge model."""
    return {
        "protocol": request.protocol,
        "checkpoint": request.checkpoint,
        "task": request.task,
        "prompt_id": request.prompt_id,
        "sample_index": request.sample_index,
        "order": request.order,
        "baseline": request.baseline,
        "model": request.settings.model,
    }


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def row_key(path: Path, number: int, row: Mapping[str, Any]) -> str:
    """The ``key`` of a cache line (JudgeFileError when it is not a non-empty string)."""
    key = row.get("key")
    if not isinstance(key, str) or not key:
        raise JudgeFileError(path, number, "no 'key' (a non-empty string)")
    return key


def answer_of(path: Path, number: int, row: Mapping[str, Any]) -> JudgeResponse:
    """The :class:`JudgeResponse` of a cache line (JudgeFileError naming the field when one is wrong)."""
    for field in ANSWER_FIELDS[1:]:
        if row.get(field) is not None and not isinstance(row[field], str):
            raise JudgeFileError(path, number, f"'{field}' is a {type(row[field]).__name__}, not a string or null")
    if row.get("text") is None and row.get("error") is None:
        raise JudgeFileError(path, number, "neither a 'text' nor an 'error'")
    return JudgeResponse(
        row_key(path, number, row), row.get("text"), row.get("error"), row.get("finish_reason"), source="cache"
    )


def resolve(
    requests: Iterable[JudgeRequest],
    cache: JudgmentCache,
    client: JudgeClient | None,
    progress: ProgressSink | None = None,
    *,
    retry_errors: bool = False,
) -> dict[str, JudgeResponse]:
    """The answer to every request, by key: from ``cache`` first, the rest asked through ``client``.

    Requests sharing a key are asked once. Each answer from ``client`` is put in ``cache`` as it arrives (so an
    interrupted call keeps them) and returned with ``source="live"``; cached ones come back with
    ``source="cache"``. With ``retry_errors`` a cached error answer (no text) is asked again, and the new answer
    replaces it. ``progress`` gets judgments answered of the distinct requests (:data:`JUDGMENTS`), the cached
    ones counted at once.

    Raises UnansweredRequestsError, before any request, when some requests have no cached answer and ``client``
    is None; whatever ``client.judge`` raises (JudgeEndpointError) once what arrived is stored.
    """
    unique: dict[str, JudgeRequest] = {}
    for request in requests:
        unique.setdefault(request.key, request)
    answers: dict[str, JudgeResponse] = {}
    missing: list[JudgeRequest] = []
    for key, request in unique.items():
        cached = cache.get(key)
        if cached is not None and not (retry_errors and cached.text is None):
            answers[key] = cached
        else:
            missing.append(request)
    total = len(unique)
    if missing and client is None:
        raise UnansweredRequestsError(
            f"{len(missing)} of {total} judge request(s) have no answer in {cache.path} and no judge endpoint was "
            "given to ask them: give an endpoint, or put the OpenAI Batch API results in the cache first",
            missing=len(missing),
            total=total,
        )
    emit(progress, len(answers), total, JUDGMENTS)
    if missing and client is not None:

        def store(response: JudgeResponse) -> None:
            cache.put(unique[response.key], response)
            answers[response.key] = response
            emit(progress, len(answers), total, JUDGMENTS)

        client.judge(missing, on_response=store)
    return answers


def store_results(cache: JudgmentCache, requests: Iterable[JudgeRequest], results: Mapping[str, JudgeResponse]) -> int:
    """Put in ``cache`` the ``results`` (by key, e.g. from :func:`~divtrace.judge.batch.read_batch_results`) that
    answer one of ``requests``, are not cached yet and are settled (:func:`~divtrace.judge.client.is_settled`: a
    text or a refusal of the request itself; an expired, cancelled or rate-limited Batch API request is left out,
    to be asked again). Results of other keys are ignored. Returns how many were put."""
    put = 0
    for request in requests:
        result = results.get(request.key)
        if result is not None and request.key not in cache and is_settled(result):
            cache.put(request, result)
            put += 1
    return put
