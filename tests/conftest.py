"""Shared fixtures: a tiny random MNLI-style classifier built offline, once per session."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.nli_model import build_tiny_nli_model

# A shell without job control that starts the suite in the background (`cmd &` in a script, nohup) makes it ignore
# SIGINT, and an ignored signal stays ignored across exec: the subprocesses of the Ctrl-C tests would never see their
# interrupt. A handler here is reset to the default in every child, where Python turns SIGINT into KeyboardInterrupt.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_nli_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_nli_model(tmp_path_factory.mktemp("nli") / "tiny-mnli")

