"""Judge requests through the OpenAI Batch API (https://platform.openai.com/docs/guides/batch), as the study ran
them: input files written here, uploaded and run by the user (``openai`` CLI, dashboard), their output and error
files read back here.

Input file: one line per request, ``{"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body":
request.body()}``; the Batch API takes at most :data:`MAX_REQUESTS_PER_FILE` requests and
:data:`MAX_BYTES_PER_FILE` bytes per file, so the requests are split over as many files as needed. A
``manifest.jsonl`` next to them maps each ``custom_id`` to its file and the request's metadata, for people.

Output and error files: one line per request, ``{"id": ..., "custom_id": ..., "response": {"status_code": 200,
"request_id": ..., "body": <chat completion>}, "error": null}``; a request that failed has a ``response`` with
another status (its ``body`` holding ``{"error": {"message": ...}}``) or ``response: null`` and ``error: {"code":
..., "message": ...}`` (``batch_expired``, ``batch_cancelled``).

The JSON Lines format, the file splitting and the reading are written here by hand: the ``openai`` package uploads
files and creates batches, but neither writes input files nor parses result files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from divtrace.errors import DivtraceError
from divtrace.io_atomic import atomic_output
from divtrace.judge.cache import request_metadata
from divtrace.judge.client import response_from_completion, status_error
from divtrace.judge.jsonl import JudgeFileError, json_line, read_json_lines
from divtrace.judge.requests import JudgeRequest, JudgeResponse

#: The Batch API's limits on one input file: requests, and bytes ("200 MB", counted in decimal megabytes here to
#: stay below it either way).
MAX_REQUESTS_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 200_000_000
#: The endpoint every request of an input file goes to.
CHAT_COMPLETIONS_URL = "/v1/chat/completions"
#: The file next to the input files mapping each custom_id to its file and its request's metadata.
MANIFEST_NAME = "manifest.jsonl"


def write_batch_requests(
    requests: Iterable[JudgeRequest],
    directory: str | Path,
    *,
    max_requests: int = MAX_REQUESTS_PER_FILE,
    max_bytes: int = MAX_BYTES_PER_FILE,
    prefix: str = "batch",
) -> list[Path]:
    """Write ``requests`` as Batch API input files ``<prefix>-00000.jsonl``, ``<prefix>-00001.jsonl``... in
    ``directory``, each within ``max_requests`` lines and ``max_bytes`` bytes, plus :data:`MANIFEST_NAME`;
    return the input files, in order.

    Requests sharing a key are written once (a ``custom_id`` must be unique in a batch). Each file is written
    atomically. Raises DivtraceError when ``directory`` already holds input files of ``prefix`` (write to a fresh
    directory) or when one request alone is over ``max_bytes``.
    """
    target = Path(directory)
    stale = sorted(target.glob(f"{prefix}-*.jsonl"))
    if stale:
        raise DivtraceError(f"{target} already holds Batch API input files ({stale[0].name}...): use a new directory")
    chunks: list[list[bytes]] = []
    manifest: list[bytes] = []
    size = 0
    seen: set[str] = set()
    for request in requests:
        if request.key in seen:
            continue
        seen.add(request.key)
        body = request.body()
        line = json_line({"custom_id": request.key, "method": "POST", "url": CHAT_COMPLETIONS_URL, "body": body})
        if len(line) > max_bytes:
            raise DivtraceError(
                f"the judge request {request.key} ({request.protocol}, {request.checkpoint}/{request.task}, prompt "
                f"{request.prompt_id}) takes {len(line):,} bytes, over the {max_bytes:,} bytes of a batch file"
            )
        if not chunks or len(chunks[-1]) >= max_requests or size + len(line) > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line)
        where = {"custom_id": request.key, "file": _name(prefix, len(chunks) - 1)}
        manifest.append(json_line({**where, **request_metadata(request)}))
    files = [_write(target / _name(prefix, index), lines) for index, lines in enumerate(chunks)]
    _write(target / MANIFEST_NAME, manifest)
    return files


def read_batch_results(files: Sequence[str | Path]) -> dict[str, JudgeResponse]:
    """The answers (``source="batch"``) in Batch API output and error files, by ``custom_id``.

    A line with ``response.status_code`` 200 gives the completion's content (``error="no content in the answer"``
    without any); another status gives ``text=None, error="HTTP <status>: <message>"``; a line with ``error`` set
    gives ``error="Batch API <code>: <message>"``. A ``custom_id`` met again (a batch resubmitted, a file given
    twice) keeps its first answer, in the order of ``files``, as the study did. Every ``custom_id`` is returned,
    whatever requests it belongs to (the caller ignores those it does not ask). Raises JudgeFileError naming the
    file and the line of a line that is not such an object.
    """
    answers: dict[str, JudgeResponse] = {}
    for name in files:
        path = Path(name)
        for number, row in read_json_lines(path).rows:
            custom_id = row.get("custom_id")
            if not isinstance(custom_id, str) or not custom_id:
                raise JudgeFileError(path, number, "no 'custom_id' (a non-empty string)")
            if custom_id not in answers:
                answers[custom_id] = _answer(path, number, custom_id, row)
    return answers


def _answer(path: Path, number: int, custom_id: str, row: Mapping[str, Any]) -> JudgeResponse:
    """The answer of one output or error line."""
    error, response = row.get("error"), row.get("response")
    if isinstance(error, Mapping):
        message = f"Batch API {error.get('code') or 'error'}: {error.get('message') or 'no message'}"
        return JudgeResponse(custom_id, None, error=message, source="batch")
    if not isinstance(response, Mapping) or not isinstance(response.get("status_code"), int):
        raise JudgeFileError(path, number, "neither an 'error' object nor a 'response' with a 'status_code'")
    body = response.get("body")
    if not isinstance(body, Mapping):
        raise JudgeFileError(path, number, "'response' has no 'body' object")
    status = response["status_code"]
    if status != 200:
        detail = body.get("error")
        reason = detail.get("message") if isinstance(detail, Mapping) else None
        return JudgeResponse(custom_id, None, error=status_error(status, str(reason or body)), source="batch")
    return response_from_completion(custom_id, body, source="batch")


def _name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:05d}.jsonl"


def _write(path: Path, lines: list[bytes]) -> Path:
    with atomic_output(path) as temporary:
        temporary.write_bytes(b"".join(lines))
    return path
