"""Shared fixtures: a tiny random MNLI-style classifier built offline, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.nli_model import build_tiny_nli_model


@pytest.fixture(scope="session")
def tiny_nli_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_nli_model(tmp_path_factory.mktemp("nli") / "tiny-mnli")

