"""Fixtures of the sandbox tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from divtrace.sandbox import SandboxError, sandbox_capabilities, worker


def use_start(warm: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make new workers start programs warm (a fork of a supervisor already running the program's interpreter) or
    cold (an interpreter exec'd per program), the idle workers of the other kind stopped first."""
    worker.shutdown()
    monkeypatch.setattr(worker, "WARM_START", warm)


@pytest.fixture(params=["warm", "cold"])
def start(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """How the sandbox starts each program (:func:`use_start`); idle workers are stopped around the test."""
    use_start(request.param == "warm", monkeypatch)
    yield str(request.param)
    worker.shutdown()


@pytest.fixture(params=["namespace", "basic"])
def isolation_kind(request: pytest.FixtureRequest) -> str:
    """An isolation level this machine runs (skipped otherwise), whichever way programs start."""
    try:
        sandbox_capabilities(request.param)
    except SandboxError as exc:
        pytest.skip(f"{request.param} isolation unavailable here: {exc}")
    return str(request.param)


@pytest.fixture
def isolation(isolation_kind: str, start: str) -> str:
    """An isolation level this machine runs, once with warm and once with cold program starts."""
    return isolation_kind
