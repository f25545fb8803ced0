"""Fixtures of the sandbox tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from divtrace.sandbox import SandboxError, sandbox_capabilities, worker


@pytest.fixture(params=["warm", "cold"])
def start(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """How the sandbox starts each program: a fork of a supervisor already running the program's interpreter
    (``warm``, the default) or an interpreter exec'd per program (``cold``); idle workers are stopped around it."""
    worker.shutdown()
    monkeypatch.setattr(worker, "WARM_START", request.param == "warm")
    yield str(request.param)
    worker.shutdown()


@pytest.fixture(params=["namespace", "basic"])
def isolation(request: pytest.FixtureRequest, start: str) -> str:
    try:
        sandbox_capabilities(request.param)
    except SandboxError as exc:
        pytest.skip(f"{request.param} isolation unavailable here: {exc}")
    return str(request.param)
