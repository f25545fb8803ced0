"""What divtrace's clients of OpenAI-compatible servers share: the generation backend
(:mod:`divtrace.generate.backends.openai_compat`) and the LLM judges (:mod:`divtrace.judge.client`).

- :func:`normalize_base_url`: the API root as both take it (``/v1`` appended to a bare host).
- :func:`run_sync` and :func:`gather_or_cancel`: synchronous calls that run concurrent requests in an event loop.
- :class:`OpenAIServerError` and :func:`server_error`: a request that failed for good (after the ``openai``
  package's own retries), in words that name the server, the status and the attempts.

This module imports ``openai`` only inside :func:`server_error`, so the options models that validate a
``base_url`` stay light.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from divtrace.errors import DivtraceError

if TYPE_CHECKING:
    import openai

T = TypeVar("T")

#: Statuses the openai package retries (with connection errors, timeouts and every 5xx).
RETRIED_STATUSES = frozenset({408, 409, 429})


class OpenAIServerError(DivtraceError):
    """A request to the server failed for good: unreachable, timed out, or an error status after every retry.

    Attributes:
        base_url: the server's API root.
        status_code: the last HTTP status, or None for connection errors and timeouts.
        attempts: how many times the request was sent (1 + the retries spent; 1 for errors never retried).
    """

    def __init__(self, message: str, *, base_url: str, status_code: int | None, attempts: int) -> None:
        super().__init__(message)
        self.base_url = base_url
        self.status_code = status_code
        self.attempts = attempts


E = TypeVar("E", bound=OpenAIServerError)


def normalize_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash, with ``/v1`` appended when it names only a host (``http://h:8000``);
    ValueError when it is not an http(s) URL."""
    parts = urlsplit(base_url.strip())
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"base_url {base_url!r} is not an http(s) URL such as http://127.0.0.1:8000/v1")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine made by ``factory`` to completion from synchronous code.

    In a thread without a running event loop the coroutine runs in a fresh loop of its own (``asyncio.run``);
    called from inside a running loop (a notebook, an async caller) it runs in a fresh loop in a worker thread,
    because a running loop cannot be re-entered.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="divtrace-openai") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


async def gather_or_cancel(coroutines: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Await all ``coroutines`` concurrently; on the first failure cancel the rest and re-raise it."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def attempts_spent(status_code: int | None, max_retries: int) -> int:
    """How many times the openai package sent a request that failed with ``status_code`` (None: a connection
    error or a timeout): every retry for what it retries, else once."""
    retried = status_code is None or status_code in RETRIED_STATUSES or status_code >= 500
    return max_retries + 1 if retried else 1


def connection_failure(err: BaseException) -> str:
    """Why a connection failed, in words: the operating system's reason found down the exception's causes
    (``connection refused``, ``name or service not known``), else the first cause's type and message."""
    first = err.__cause__ or err
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno is not None:
            # errno's own words (asyncio words a refused connection "Connect call failed (host, port)")
            reason = os.strerror(cause.errno) if cause.errno > 0 else cause.strerror
            if reason:
                return reason[:1].lower() + reason[1:]
        cause = cause.__cause__ or cause.__context__
    return f"{type(first).__name__}: {first}"


def server_error(
    err: openai.APIStatusError | openai.APIConnectionError,
    error_type: type[E],
    *,
    base_url: str,
    route: str,
    max_retries: int,
    timeout: float,
    hint: str = "",
) -> E:
    """``err``, what the ``openai`` package raised for a request to ``route`` once its retries were spent (an error
    status, a timeout, a connection failure), as an ``error_type`` naming ``base_url``, the status (if any) and
    the attempts; ``hint`` (what the caller can explain of an error status) ends the message of a status."""
    import openai

    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        attempts = attempts_spent(status, max_retries)
        message = f"{base_url}: HTTP {status} on {route} after {attempts} attempt(s): {err.message}{hint}"
        return error_type(message, base_url=base_url, status_code=status, attempts=attempts)
    attempts = attempts_spent(None, max_retries)
    if isinstance(err, openai.APITimeoutError):
        message = f"{base_url}: request timed out ({timeout:g} s) on each of {attempts} attempt(s)"
    else:
        message = (
            f"cannot reach the OpenAI-compatible server at {base_url} after {attempts} attempt(s): "
            f"{connection_failure(err)}"
        )
    return error_type(message, base_url=base_url, status_code=None, attempts=attempts)
