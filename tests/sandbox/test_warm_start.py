"""Warm workers: a program run as a fork of a supervisor that already runs the programs' interpreter behaves as the
same program exec'd in a fresh interpreter (``python -I -B main.py``), and a worker whose interpreter cannot run
the supervisor falls back to exec'ing one per program."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from typing import cast

import pytest

from divtrace.sandbox import SandboxError, SandboxLimits, run_python
from divtrace.sandbox import host as sandbox_host
from divtrace.sandbox import worker as sandbox_worker
from divtrace.sandbox.limits import Isolation
from tests.sandbox.conftest import use_start

LIMITS = SandboxLimits(timeout_s=10)

#: Programs whose whole observable behaviour (stdout, stderr, exit status) must not depend on how they started.
PROGRAMS = {
    "main module": "import sys\nprint(__name__, __file__, sys.argv, sorted(globals()), __annotations__, __doc__)\n",
    "exception": "def f():\n    return 1 / 0\nf()\n",
    "syntax error": "print('never')\ndef f(:\n    pass\n",
    "exit status": "raise SystemExit(3)\n",
    "exit message": "import sys\nsys.exit('bye')\n",
    "atexit and threads": textwrap.dedent(
        """
        import atexit, threading, time
        atexit.register(lambda: print("atexit", flush=True))
        def late():
            time.sleep(0.2)
            print("thread joined before exit", flush=True)
        threading.Thread(target=late).start()
        print("main done")
        """
    ),
    "environment": "import os, sys\nprint(sorted(os.environ), sys.flags.isolated, sys.flags.dont_write_bytecode)\n",
    "open files": "import os\nprint(sorted(os.listdir('/proc/self/fd')))\n",
}


def _normalise(text: str) -> str:
    """The text with the per-run working directory (and run marker) replaced by placeholders."""
    text = re.sub(r"/[\w/.-]*divtrace-sandbox-[0-9a-f]+[\w-]*", "WORKDIR", text)
    return re.sub(r"[0-9a-f]{16}", "RUNID", text)


def _run_all(isolation: str, warm: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[str, int, str, str]]:
    use_start(warm, monkeypatch)
    try:
        results = {}
        for name, code in PROGRAMS.items():
            result = run_python(code, LIMITS, isolation=cast(Isolation, isolation))
            results[name] = (result.status, result.returncode, _normalise(result.stdout), _normalise(result.stderr))
        return results
    finally:
        sandbox_worker.shutdown()


def test_a_forked_program_behaves_as_an_execd_one(isolation_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    warm = _run_all(isolation_kind, True, monkeypatch)
    cold = _run_all(isolation_kind, False, monkeypatch)
    assert warm == cold
    assert warm["exit status"][:2] == ("error", 3)
    assert warm["atexit and threads"][2].splitlines() == ["main done", "thread joined before exit", "atexit"]
    traceback = warm["exception"][3]
    assert "ZeroDivisionError" in traceback and traceback.count('main.py", line') == 2
    assert "supervisor" not in traceback  # no frame of the supervisor's (basic keeps the socket prelude's, as cold)


def test_workers_start_warm_unless_told_otherwise(isolation: str, start: str) -> None:
    plan = sandbox_host._plan_for(cast(Isolation, isolation))[0]
    worker = sandbox_worker.acquire(plan)
    try:
        assert worker.warm == (start == "warm")
        result = worker.run("print('ran')", LIMITS, plan.python)
        assert result.ok and result.stdout == "ran\n"
    finally:
        sandbox_worker.release(worker)


def test_random_state_is_not_shared_between_forked_programs(isolation: str) -> None:
    draws = {
        run_python("import random\nprint(random.getrandbits(64))", LIMITS, isolation=cast(Isolation, isolation)).stdout
        for _ in range(4)
    }
    assert len(draws) == 4


def test_an_interpreter_that_cannot_run_the_supervisor_falls_back_to_exec(
    isolation_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan whose interpreter is gone: no warm supervisor can start, so the worker starts cold (under this
    process's interpreter), and running a program says why it cannot."""
    use_start(True, monkeypatch)
    monkeypatch.setattr(sandbox_worker, "_cold", set())
    plan = sandbox_host._plan_for(cast(Isolation, isolation_kind))[0]
    gone = dataclasses.replace(plan, python="/nonexistent/python3")
    worker = sandbox_worker.acquire(gone)
    try:
        assert not worker.warm and sandbox_worker.worker_key(gone) in sandbox_worker._cold
        with pytest.raises(SandboxError, match="/nonexistent/python3"):
            worker.run("print('ran')", LIMITS, gone.python)
    finally:
        worker.kill()
