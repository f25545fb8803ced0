"""Real servers on 127.0.0.1 for the tests of divtrace's OpenAI-compatible clients (the generation backend, the
LLM judges): never a mocked HTTP layer.

- :class:`ServerProcess`: a server started as its own process (llm-katan, ``transformers serve``), launched by
  :func:`launch_katan` and :func:`launch_transformers_serve` on :func:`served_smollm2` (the session fixtures of
  ``tests/conftest.py`` start each once per session).
- :class:`FlakyServer`: a stdlib loopback server that answers scripted errors (429, 503, a hang) and forwards the
  rest to an upstream server, counting the POSTs it answered and keeping their bodies.
- :mod:`tests.judge_server` has the deterministic judge server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest

from divtrace.generate.models import resolve_model

#: The packaged model the servers serve, and its served name.
MODEL = "quickstart:smollm2-135m-instruct"
SERVED = "smollm2"
STARTUP_TIMEOUT_S = 180


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of the call)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server started as its own process group; ``wait_ready`` polls ``/health`` until it answers 200."""

    def __init__(self, name: str, command: list[str], port: int, log: Path) -> None:
        self.name = name
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.log = log
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",  # one core per server: the machine is shared
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
        }
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._ready = False

    def wait_ready(self) -> ServerProcess:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._ready:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not ready after {STARTUP_TIMEOUT_S} s:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as answer:
                    self._ready = answer.status == 200
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        return self

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


def served_smollm2(directory: Path) -> str:
    """The quickstart SmolLM2 directory linked into ``directory``, with a generation_config.json that samples:
    ``do_sample`` and no top-k.

    Both servers call ``model.generate`` with the model's generation config underneath the request's fields:
    ``transformers serve`` never sets ``do_sample`` (without it every request is greedy, whatever the
    temperature) and transformers adds ``top_k=50`` when the config leaves it unset.
    """
    source = Path(resolve_model(MODEL).load_path)
    served = directory / "smollm2-135m-instruct"
    served.mkdir()
    for path in source.iterdir():
        if path.name != "generation_config.json":
            (served / path.name).symlink_to(path)
    config = json.loads((source / "generation_config.json").read_text())
    (served / "generation_config.json").write_text(json.dumps({**config, "do_sample": True, "top_k": 0}))
    return str(served)


def launch_katan(model_dir: str, logs: Path) -> ServerProcess | None:
    """llm-katan serving ``model_dir`` as :data:`SERVED` (chat completions only), started, not waited for; None
    when llm-katan is not installed."""
    if importlib.util.find_spec("llm_katan") is None:
        return None
    port = free_port()
    return ServerProcess(
        "llm-katan",
        [
            sys.executable, "-m", "llm_katan.cli",
            "--model", model_dir, "--served-model-name", SERVED,
            "--backend", "transformers", "--device", "cpu", "--no-quantize",
            "--host", "127.0.0.1", "--port", str(port),
            "--providers", "openai", "--disable-dashboard",
            "--stats-file", str(logs / "katan-stats.json"), "--log-level", "WARNING",
        ],
        port,
        logs / "llm-katan.log",
    )  # fmt: skip


def launch_transformers_serve(model_dir: str, logs: Path) -> ServerProcess | None:
    """``transformers serve`` on ``model_dir``, started, not waited for; None when its extras are missing."""
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        return None
    port = free_port()
    return ServerProcess(
        "transformers serve",
        [
            sys.executable, "-m", "transformers.cli.transformers", "serve", model_dir,
            "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
        ],
        port,
        logs / "transformers-serve.log",
    )  # fmt: skip


class LoopbackServer:
    """A stdlib ``ThreadingHTTPServer`` on 127.0.0.1, serving from a daemon thread inside a ``with`` block; a
    subclass answers each request in :meth:`handle`."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                owner.handle("GET", self)

            def do_POST(self) -> None:
                owner.handle("POST", self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, method: str, handler: BaseHTTPRequestHandler) -> None:
        """Answer one ``method`` request through ``handler``."""
        raise NotImplementedError

    @staticmethod
    def body_of(handler: BaseHTTPRequestHandler) -> bytes:
        """The request's body."""
        return handler.rfile.read(int(handler.headers.get("Content-Length", "0")))

    @staticmethod
    def send(
        handler: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Answer ``status`` with the JSON ``payload`` and any extra ``headers``."""
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def error_payload(status: int, message: str) -> bytes:
    """An OpenAI-style error body."""
    return json.dumps({"error": {"message": message, "type": "server_error", "code": status}}).encode()


class FlakyServer(LoopbackServer):
    """A real HTTP server on 127.0.0.1 that answers POSTs from a script, then a default action.

    Actions: an HTTP status (an OpenAI-style error body), ``"proxy"`` (forward to ``upstream`` and relay the
    answer) or ``"hang"`` (answer nothing for ``hang_s`` seconds). GETs are always forwarded (404 without an
    upstream). ``posts`` lists the status answered to each POST (0 for a hang), ``bodies`` each POST's JSON body, in
    order of arrival.
    """

    def __init__(
        self, script: list[int | str], default: int | str = "proxy", upstream: str | None = None, hang_s: float = 3.0
    ) -> None:
        super().__init__()
        self.script = list(script)
        self.default = default
        self.upstream = upstream
        self.hang_s = hang_s
        self.posts: list[int] = []
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def handle(self, method: str, handler: BaseHTTPRequestHandler) -> None:
        auth = handler.headers.get("Authorization")
        if method == "GET":
            self.send(handler, *self.forward("GET", handler.path, None, auth))
            return
        body = self.body_of(handler)
        with self._lock:
            self.bodies.append(json.loads(body or b"{}"))
            action = self.script.pop(0) if self.script else self.default
        if action == "hang":
            self.posts.append(0)
            time.sleep(self.hang_s)
            return
        if action == "proxy":
            status, payload = self.forward("POST", handler.path, body, auth)
        else:
            status = int(action)
            payload = error_payload(status, f"scripted {status}")
        self.posts.append(status)
        self.send(handler, status, payload)

    def forward(self, method: str, path: str, body: bytes | None, auth: str | None) -> tuple[int, bytes]:
        if self.upstream is None:
            return 404, b'{"error": {"message": "no upstream"}}'
        headers = {"Content-Type": "application/json", "Authorization": auth or "Bearer x"}
        request = urllib.request.Request(self.upstream + path.removeprefix("/v1"), body, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
