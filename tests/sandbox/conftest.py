"""Fixtures of the sandbox tests."""

from __future__ import annotations

import pytest

from divtrace.sandbox import SandboxError, sandbox_capabilities


@pytest.fixture(params=["namespace", "basic"])
def isolation(request: pytest.FixtureRequest) -> str:
    try:
        sandbox_capabilities(request.param)
    except SandboxError as exc:
        pytest.skip(f"{request.param} isolation unavailable here: {exc}")
    return str(request.param)
