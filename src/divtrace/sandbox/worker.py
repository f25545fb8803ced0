"""Sandbox workers: one sandbox (namespaces and a supervisor, :mod:`divtrace.sandbox.supervisor`) started once and
reused for many programs, one program at a time, and a per-process pool of idle workers.

The host creates each program's stdout and stderr pipes and hands their write ends to the supervisor with the
request (``SCM_RIGHTS`` on a private socket pair), so it reads the program's output directly; the supervisor answers
each request with one line once the program and everything it started are gone. A worker whose supervisor dies, or
that the host kills (deadline overrun, output limit, the caller failing), is never reused.
"""

from __future__ import annotations

import atexit
import contextlib
import marshal
import os
import secrets
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from divtrace.sandbox import supervisor
from divtrace.sandbox.limits import (
    Plan,
    SandboxError,
    SandboxLimits,
    SandboxResult,
    Status,
    allocate_uid,
    release_uid,
    rlimits,
)
from divtrace.sandbox.supervisor import SAFE_PATH, SUPERVISOR_GRACE_S, SUPERVISOR_NAME, kill_stragglers

#: Loads the supervisor's compiled code (the .pyc cache, not a fresh compile) as SUPERVISOR_NAME, which runs it.
_BOOTSTRAP = (
    "import _frozen_importlib_external as e\n"
    f"path = {str(Path(supervisor.__file__).resolve())!r}\n"
    f"code = e.SourceFileLoader({SUPERVISOR_NAME!r}, path).get_code({SUPERVISOR_NAME!r})\n"
    f"exec(code, {{'__name__': {SUPERVISOR_NAME!r}, '__file__': path, '__builtins__': __builtins__}})\n"
)
_START_TIMEOUT_S = 30.0
_DRAIN_GRACE_S = 2.0
#: How long a run waits for the processes of a killed sandbox to exit (:func:`_wait_until_gone`).
_EXIT_WAIT_S = 10.0
_MAX_IDLE = 32
SUPERVISOR_DIED = "divtrace sandbox: the sandbox supervisor died during this run; the program's result is unknown"


class WorkerUnavailable(Exception):
    """The worker's supervisor was gone before the program was handed to it (the program never started)."""


def _live_tasks(uid: int) -> int:
    """Processes of ``uid`` that have not exited yet (zombies do not count: they hold no resources but a pid)."""
    live = 0
    for _, fields in supervisor.process_statuses():
        try:
            if int(fields[b"Uid"].split()[0]) == uid and fields[b"State"].split()[0] not in (b"Z", b"X"):
                live += 1
        except (KeyError, IndexError, ValueError):
            continue
    return live


def _wait_until_gone(uid: int) -> None:
    """Kill what is left of a killed sandbox's program ``uid`` and wait until none of its processes is alive.

    When a PID namespace's first process is killed, the kernel kills every other process in it, but each one exits
    in its own time. The uid is not handed to another run before they are gone. Bounded by :data:`_EXIT_WAIT_S`.
    """
    deadline = time.monotonic() + _EXIT_WAIT_S
    if _live_tasks(uid):
        kill_stragglers(uid, "")  # by uid: the host sees the namespace's processes too
    while _live_tasks(uid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _remove_tree(path: str) -> None:
    """Remove a directory the program may have made hard to remove (modes cleared)."""

    def fix(function: Any, target: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(target), 0o700)
        if os.path.isdir(target) and not os.path.islink(target):
            os.chmod(target, 0o700)
        function(target)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=fix)
    else:
        shutil.rmtree(path, onerror=fix)
    if os.path.exists(path):
        shutil.rmtree(path, ignore_errors=True)


class Worker:
    """One sandbox, prepared once, that runs programs one after the other (not thread-safe: one caller at a time).

    Raises SandboxError when the sandbox cannot be started.
    """

    def __init__(self, plan: Plan, *, warm: bool = True) -> None:
        """Start the supervisor for ``plan`` and wait until it has prepared the sandbox.

        With ``warm`` and ``plan.python`` set, the supervisor runs under that interpreter with the programs' flags
        (``-I -B``) and each program under it is a fork of the supervisor that runs main.py in-process (no
        interpreter start-up per program); otherwise the supervisor runs under this process's interpreter
        (``-I -S``) and each program execs its interpreter.
        """
        self.plan = plan
        self.key = worker_key(plan)
        self.alive = False
        self._buffer = bytearray()
        warm = warm and bool(plan.python)
        self.warm = warm
        host_end, supervisor_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        config = {
            "control_fd": supervisor_end.fileno(),
            "namespace": plan.namespace,
            "drop_capabilities": plan.user_namespace,
            "socket_prelude": not plan.namespace,
            "python": plan.python if warm else None,
        }
        interpreter = [plan.python, "-I", "-B"] if warm else [sys.executable, "-I", "-S"]
        command = [*plan.prefix(), *interpreter, "-c", _BOOTSTRAP, marshal.dumps(config).hex()]
        try:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"},
                cwd="/",
                start_new_session=True,
                pass_fds=(supervisor_end.fileno(),),
            )
        except OSError as exc:
            host_end.close()
            raise SandboxError(f"cannot start the sandbox ({command[0]}): {exc}") from exc
        finally:
            supervisor_end.close()
        self._sock = host_end
        self.alive = True
        line = self._wait_line(time.monotonic() + _START_TIMEOUT_S)
        if line is None or not line.startswith("ready "):
            self.kill()
            detail = line or f"exit status {self._proc.returncode}: {self._stderr_tail()}"
            raise SandboxError(f"sandbox setup failed: {detail}")
        words = line.split()
        self.setup = {
            "readonly_filesystem": words[1] == "1",
            "private_tmp": words[2] == "1",
            "no_mqueue": words[3] == "1",
        }

    def _stderr_tail(self) -> str:
        assert self._proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            os.set_blocking(self._proc.stderr.fileno(), False)
            return (self._proc.stderr.read() or b"").decode(errors="replace").strip()[-500:]
        return ""

    def _take_line(self) -> str | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._buffer[:end]).decode(errors="replace")
        del self._buffer[: end + 1]
        return line

    def _read_socket(self) -> bool:
        """Read what the supervisor sent into the line buffer; False at EOF (the supervisor is gone)."""
        try:
            chunk = self._sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
        self._buffer += chunk
        return bool(chunk)

    def _wait_line(self, deadline: float) -> str | None:
        """The supervisor's next line, or None if it is gone or silent until ``deadline``."""
        while (line := self._take_line()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._sock], [], [], remaining)[0]:
                return None
            if not self._read_socket():
                return None
        return line

    def kill(self) -> None:
        """Kill the supervisor's whole process group (with a PID namespace: everything in the sandbox) and reap
        it; the worker is dead afterwards."""
        self.alive = False
        with contextlib.suppress(OSError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        self._sock.close()
        if self._proc.stderr is not None:
            with contextlib.suppress(OSError):
                self._proc.stderr.close()

    def _send(self, request: dict[str, Any], fds: list[int]) -> None:
        payload = marshal.dumps(request)
        try:
            socket.send_fds(self._sock, [len(payload).to_bytes(8, "big")], fds)
            self._sock.sendall(payload)
        except OSError as exc:
            self.kill()
            raise WorkerUnavailable(str(exc)) from exc

    def run(self, code: str, limits: SandboxLimits, python: str) -> SandboxResult:
        """Run ``code`` as ``main.py`` under ``python`` in this sandbox and report how it ended.

        Returns once the program and everything it started are gone (the supervisor kills and reaps them before it
        answers). Raises WorkerUnavailable when the supervisor was already gone (nothing ran: retry on another
        worker) and SandboxError when it could not prepare the run. When the supervisor dies during the run, the
        status is ``killed`` with :data:`SUPERVISOR_DIED` as the last line of stderr, and the worker is dead.
        """
        if not self.alive or self._proc.poll() is not None:
            self.kill()
            raise WorkerUnavailable("the supervisor has exited")
        plan = self.plan
        run_id = secrets.token_hex(8)
        uid = allocate_uid() if plan.drop_uid else None
        workdir: str | None = None
        pipes: list[int] = []
        selector = selectors.DefaultSelector()
        start = time.monotonic()
        sent = answered = False
        try:
            if not plan.namespace:
                workdir = tempfile.mkdtemp(prefix=f"divtrace-sandbox-{run_id}-")
                if uid is not None:
                    os.chown(workdir, uid, uid)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            pipes += [out_r, out_w, err_r, err_w]
            request = {
                "run_id": run_id,
                "uid": uid,
                "workdir": workdir,
                "python": python,
                "timeout_s": limits.timeout_s,
                "tmp_mb": limits.tmp_mb,
                "rlimits": rlimits(limits, plan),
                "code": code.encode("utf-8", errors="surrogatepass"),
            }
            self._send(request, [out_w, err_w])
            sent = True
            for fd in (out_w, err_w):
                os.close(fd)
                pipes.remove(fd)
            for fd, name in ((out_r, "stdout"), (err_r, "stderr")):
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ, name)
            selector.register(self._sock, selectors.EVENT_READ, "status")
            captured = {"stdout": bytearray(), "stderr": bytearray()}
            truncated = {"stdout": False, "stderr": False}
            cap = limits.max_output_bytes
            outcome: str | None = None
            line: str | None = None
            deadline = start + limits.timeout_s + SUPERVISOR_GRACE_S  # the supervisor enforces timeout_s itself
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if outcome is not None:
                        break  # killed, and stragglers still hold the pipes: stop listening
                    outcome = "timeout"
                    self._abandon(uid, run_id, selector)
                    deadline = time.monotonic() + _DRAIN_GRACE_S
                    continue
                for key, _ in selector.select(timeout=remaining):
                    name = key.data
                    if name == "status":
                        alive = self._read_socket()
                        line = self._take_line()
                        if line is not None or not alive:
                            selector.unregister(key.fileobj)
                        continue
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        selector.unregister(key.fd)
                        continue
                    buffer = captured[name]
                    room = max(0, cap - len(buffer))
                    buffer += chunk[:room]
                    if len(chunk) > room:
                        truncated[name] = True
                        if outcome is None:
                            outcome = "output_limit"
                            self._abandon(uid, run_id, selector)
                            deadline = time.monotonic() + _DRAIN_GRACE_S
            duration = time.monotonic() - start
            answered = line is not None
            if line is not None and line.startswith("setup_error "):
                raise SandboxError(f"sandbox setup failed: {line.partition(' ')[2]}")
            returncode: int | None = None
            status: Status
            words = line.split() if line is not None and line.startswith("exited ") else None
            stderr = bytes(captured["stderr"]).decode("utf-8", errors="replace")
            if outcome == "timeout" or (words is not None and words[2] == "1"):
                status = "timeout"
            elif outcome == "output_limit":
                status = "output_limit"
            elif words is not None:
                returncode = int(words[1])
                status = "ok" if returncode == 0 else "error" if returncode > 0 else "killed"
            else:  # the supervisor died with the program running: never a pass
                self.kill()
                status = "killed"
                stderr += ("\n" if stderr and not stderr.endswith("\n") else "") + SUPERVISOR_DIED + "\n"
            return SandboxResult(
                status=status,
                returncode=returncode,
                stdout=bytes(captured["stdout"]).decode("utf-8", errors="replace"),
                stderr=stderr,
                stdout_truncated=truncated["stdout"],
                stderr_truncated=truncated["stderr"],
                duration_s=duration,
                isolation=plan.isolation,
            )
        finally:
            selector.close()
            for fd in pipes:
                os.close(fd)
            if not answered and self.alive:
                self.kill()  # the caller failed mid-run: nothing of this run may outlive it
            if not plan.namespace and sent and not answered:
                kill_stragglers(uid, run_id)  # an answer comes after the supervisor's own sweep
            if plan.namespace and uid is not None and sent and not answered:
                _wait_until_gone(uid)  # the supervisor did not get to reap the program's processes
            if workdir is not None:
                _remove_tree(workdir)
            if uid is not None:
                release_uid(uid)

    def _abandon(self, uid: int | None, run_id: str, selector: selectors.BaseSelector) -> None:
        """Stop a run the host gives up on (deadline, output limit): kill the whole sandbox, then, without a PID
        namespace, the program's stragglers. The control socket leaves ``selector`` first (it is closed: no answer
        will come), so the run ends as soon as the program's pipes do."""
        if self._sock.fileno() in selector.get_map():
            selector.unregister(self._sock)
        self.kill()
        if not self.plan.namespace:
            kill_stragglers(uid, run_id)


#: What :func:`worker_key` returns: namespace, user namespace, uid drop, unshare command, interpreter.
WorkerKey = tuple[bool, bool, bool, str | None, str]


def worker_key(plan: Plan) -> WorkerKey:
    """What makes two plans' sandboxes interchangeable: the isolation and the interpreter (a warm supervisor runs
    under the programs' interpreter)."""
    return (plan.namespace, plan.user_namespace, plan.drop_uid, plan.unshare, plan.python)


_pool_lock = threading.Lock()
_idle: dict[WorkerKey, list[Worker]] = {}
_pool_pid = os.getpid()
#: Whether new workers run their programs as forks of a supervisor started under the programs' interpreter (see
#: :class:`Worker`); False execs an interpreter per program (the tests run both).
WARM_START = True
#: Plans (keys) whose interpreter could not run a warm supervisor: their workers start cold.
_cold: set[WorkerKey] = set()


def acquire(plan: Plan) -> Worker:
    """An idle worker for ``plan`` from this process's pool, else a new one (SandboxError if it cannot start).

    Warm (see :class:`Worker`) when :data:`WARM_START` and the plan names its interpreter, unless that interpreter
    could not run a warm supervisor before; an idle worker is taken only if it starts programs that way too.
    """
    global _pool_pid
    key = worker_key(plan)
    with _pool_lock:
        if _pool_pid != os.getpid():  # a forked child: the workers belong to the parent
            _idle.clear()
            _pool_pid = os.getpid()
        warm = WARM_START and bool(plan.python) and key not in _cold
        idle = _idle.get(key, [])
        for worker in [worker for worker in idle if worker.warm == warm]:
            idle.remove(worker)
            if worker.alive and worker._proc.poll() is None:
                return worker
            worker.kill()
    if warm:
        try:
            return Worker(plan)
        except SandboxError:
            with _pool_lock:
                _cold.add(key)  # e.g. an interpreter too old for the supervisor: exec each program instead
    return Worker(plan, warm=False)


def release(worker: Worker) -> None:
    """Give ``worker`` back to the pool (a dead one is dropped; beyond the pool's size it is stopped)."""
    with _pool_lock:
        if worker.alive and _pool_pid == os.getpid():
            idle = _idle.setdefault(worker.key, [])
            if len(idle) < _MAX_IDLE:
                idle.append(worker)
                return
    if worker.alive:
        worker.kill()


def shutdown() -> None:
    """Stop every idle worker of this process (registered with atexit; the pool refills on demand)."""
    with _pool_lock:
        workers = [worker for idle in _idle.values() for worker in idle] if _pool_pid == os.getpid() else []
        _idle.clear()
    for worker in workers:
        worker.kill()


atexit.register(shutdown)


class Runner:
    """Runs programs one after another on one pooled worker, replacing it when it dies; :meth:`close` gives the
    worker back."""

    def __init__(self, plan: Plan) -> None:
        """A runner for ``plan``; its worker is taken from the pool at the first program."""
        self.plan = plan
        self._worker: Worker | None = None

    def run(self, code: str, limits: SandboxLimits) -> SandboxResult:
        """Run ``code`` (see :meth:`Worker.run`); a worker found dead before the program started is replaced once."""
        for attempt in (1, 2):
            if self._worker is None or not self._worker.alive:
                self._worker = acquire(self.plan)
            try:
                return self._worker.run(code, limits, self.plan.python)
            except WorkerUnavailable as exc:
                self._worker = None
                if attempt == 2:
                    raise SandboxError(f"the sandbox supervisor exited before the program started: {exc}") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Give the worker back to the pool (a dead one is dropped)."""
        if self._worker is not None:
            release(self._worker)
            self._worker = None
