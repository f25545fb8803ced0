"""Shared fixtures, each built once per session: a tiny random MNLI-style classifier built offline, a tiny LoRA
adapter of the packaged gemma-3-270m (:mod:`tests.lora_adapter`), one finished run of the small study
(:mod:`tests.run_commands`) on the packaged models, and the OpenAI-compatible servers of :mod:`tests.servers`
(llm-katan, ``transformers serve``)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lora_adapter import build_lora_adapter
from tests.nli_model import build_tiny_nli_model
from tests.run_commands import SmallRun, finish_small_run
from tests.servers import ServerProcess, launch_katan, launch_transformers_serve, served_smollm2

# A shell without job control that starts the suite in the background (`cmd &` in a script, nohup) makes it ignore
# SIGINT, and an ignored signal stays ignored across exec: the subprocesses of the Ctrl-C tests would never see their
# interrupt. A handler here is reset to the default in every child, where Python turns SIGINT into KeyboardInterrupt.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_nli_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_nli_model(tmp_path_factory.mktemp("nli") / "tiny-mnli")


@pytest.fixture(scope="session")
def lora_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rank-4 LoRA adapter of quickstart:gemma-3-270m (:func:`tests.lora_adapter.build_lora_adapter`, seed 0),
    which changes the model's samples. Tests never change it: :func:`tests.lora_adapter.changed_adapter` copies."""
    return build_lora_adapter(tmp_path_factory.mktemp("lora") / "gemma-lora")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> SmallRun:
    """``divtrace run`` of the small study (``tests.run_commands.small_study``, unchanged) from a fresh directory in
    a subprocess, its output piped: made once, as loading the two models and generating takes half a minute or
    more. Tests read its output and its run directory, and never change them: a test that interrupts, damages,
    edits or reruns takes a copy (:meth:`SmallRun.copy`, or the ``small_run_copy`` fixture), so tests cannot affect
    each other."""
    return finish_small_run(tmp_path_factory.mktemp("small-run"))


@pytest.fixture
def small_run_copy(small_run: SmallRun, tmp_path: Path) -> tuple[Path, Path]:
    """(study file, run directory): this test's own copy of :func:`small_run`'s, under its ``tmp_path``."""
    return small_run.copy(tmp_path)


# ----- OpenAI-compatible servers on 127.0.0.1 (tests/servers.py), each started once per session -----


@pytest.fixture(scope="session")
def served_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The quickstart SmolLM2 directory as the servers serve it (see :func:`tests.servers.served_smollm2`)."""
    return served_smollm2(tmp_path_factory.mktemp("served"))


def _serving(server: ServerProcess | None) -> Iterator[ServerProcess | None]:
    yield server
    if server is not None:
        server.stop()


def _ready(server: ServerProcess | None, missing: str) -> ServerProcess:
    if server is None:
        pytest.skip(missing)
    return server.wait_ready()


@pytest.fixture(scope="session")
def katan_process(served_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess | None]:
    """llm-katan, started (not waited for) the first time a test asks; None when it is not installed."""
    yield from _serving(launch_katan(served_model_dir, tmp_path_factory.mktemp("katan")))


@pytest.fixture(scope="session")
def tserve_process(served_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess | None]:
    """``transformers serve``, started (not waited for) the first time a test asks; None without its extras."""
    yield from _serving(launch_transformers_serve(served_model_dir, tmp_path_factory.mktemp("tserve")))


@pytest.fixture(scope="session")
def katan(katan_process: ServerProcess | None) -> ServerProcess:
    """llm-katan serving SmolLM2 as ``smollm2``, ready (skips the test when llm-katan is not installed)."""
    return _ready(
        katan_process, "llm-katan is not installed: pip install 'llm-katan>=0.22,<1' (it is in the test extra)"
    )


@pytest.fixture(scope="session")
def tserve(tserve_process: ServerProcess | None) -> ServerProcess:
    """``transformers serve`` on SmolLM2, ready (skips the test without its extras)."""
    return _ready(
        tserve_process, "transformers serve needs fastapi, uvicorn and openai: pip install fastapi uvicorn openai"
    )
