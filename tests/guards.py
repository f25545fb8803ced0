"""A hang guard for tests of work on hostile input."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def hang_guard(seconds: float = 120.0) -> Iterator[None]:
    """Fail the block with TimeoutError if it runs ``seconds`` (a hang: quadratic work on hostile input takes hours).

    A guard with a wide margin, not a speed claim: CI machines are shared and loaded, so tests never assert how fast
    something ran (speed lives in ``benchmarks/``)."""

    def fire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds:.0f} s: a hang")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
