"""The host side of the sandbox: plan the isolation this machine allows, start one supervisor process per run
(:mod:`divtrace.sandbox.supervisor`, standard library only), feed it the program, collect how it ended.

The public API is :func:`run_python`, :func:`run_many` and :func:`sandbox_capabilities`; docs/sandbox.md lists the
guarantees and the gaps.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from divtrace.errors import DivtraceError
from divtrace.sandbox import supervisor
from divtrace.sandbox.supervisor import (
    SAFE_PATH,
    SUPERVISOR_GRACE_S,
    SUPERVISOR_NAME,
    kill_stragglers,
    process_statuses,
)

Isolation = Literal["auto", "namespace", "basic"]
Status = Literal["ok", "error", "timeout", "killed", "output_limit"]

#: Loads this file's compiled code (the .pyc cache, not a fresh compile) as SUPERVISOR_NAME, which runs it.
_BOOTSTRAP = (
    "import _frozen_importlib_external as e\n"
    f"path = {str(Path(supervisor.__file__).resolve())!r}\n"
    f"code = e.SourceFileLoader({SUPERVISOR_NAME!r}, path).get_code({SUPERVISOR_NAME!r})\n"
    f"exec(code, {{'__name__': {SUPERVISOR_NAME!r}, '__file__': path, '__builtins__': __builtins__}})\n"
)
_UID_RANGE = (2_000_000_000, 2_100_000_000)  # far above real users, subuid ranges and systemd's dynamic uids
_DRAIN_GRACE_S = 2.0
#: How long a run waits for its namespace's processes to exit after its end (:func:`_wait_until_gone`).
_EXIT_WAIT_S = 10.0


class SandboxError(DivtraceError):
    """The sandbox itself could not be set up or started (never raised because of what the code does)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run.

    Attributes:
        timeout_s: wall-clock limit; past it the whole process tree is killed and the status is ``timeout``.
        cpu_s: CPU-time limit per process (``RLIMIT_CPU``); None means ``ceil(timeout_s) + 1``.
        memory_mb: address-space limit per process (``RLIMIT_AS``), in MiB.
        max_processes: processes/threads the program may have at once (``RLIMIT_NPROC``; with a per-run uid as
            root, otherwise on top of what the user already runs).
        max_file_mb: largest file the program may write (``RLIMIT_FSIZE``), in MiB.
        max_open_files: file descriptors per process (``RLIMIT_NOFILE``).
        max_output_bytes: bytes kept of stdout and of stderr each; more output kills the run (``output_limit``).
        tmp_mb: size of the private tmpfs holding the working directory (namespace isolation only), in MiB.
    """

    timeout_s: float = 10.0
    cpu_s: float | None = None
    memory_mb: int = 1024
    max_processes: int = 64
    max_file_mb: int = 16
    max_open_files: int = 64
    max_output_bytes: int = 64 * 1024
    tmp_mb: int = 64

    def __post_init__(self) -> None:
        for name in (
            "timeout_s",
            "memory_mb",
            "max_processes",
            "max_file_mb",
            "max_open_files",
            "max_output_bytes",
            "tmp_mb",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxLimits.{name} must be positive, got {getattr(self, name)!r}")
        if self.cpu_s is not None and self.cpu_s <= 0:
            raise ValueError(f"SandboxLimits.cpu_s must be positive, got {self.cpu_s!r}")


@dataclass(frozen=True)
class SandboxResult:
    """How one sandboxed run ended.

    Attributes:
        status: ``ok`` (exit status 0), ``error`` (non-zero exit status), ``timeout`` (killed at the wall-clock
            limit), ``killed`` (ended by a signal: CPU limit, memory, its own kill...), or ``output_limit``
            (killed for writing more than ``max_output_bytes`` to stdout or stderr).
        returncode: the exit status, ``-N`` for signal N, None when the sandbox killed it (timeout, output limit).
        stdout: captured standard output (UTF-8, undecodable bytes replaced), at most ``max_output_bytes`` bytes.
        stderr: captured standard error, same cap.
        stdout_truncated: whether stdout was cut at the cap.
        stderr_truncated: whether stderr was cut at the cap.
        duration_s: wall-clock seconds from start to the end of the run, sandbox setup included.
        isolation: the isolation that was used (``namespace`` or ``basic``).
    """

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    isolation: str

    @property
    def ok(self) -> bool:
        """Whether the program exited with status 0 within its limits."""
        return self.status == "ok"

    def summary(self) -> str:
        """A short reason for people: ``ok``, ``timeout after 3 s``, or the last line of stderr (the exception)."""
        if self.status == "timeout":
            return f"timeout after {self.duration_s:.3g} s"
        if self.status == "output_limit":
            return "output limit exceeded"
        if self.status == "ok":
            return "ok"
        lines = [line.strip() for line in self.stderr.strip().splitlines() if line.strip()]
        if lines:
            return lines[-1][:300]
        if self.returncode is not None and self.returncode < 0:
            try:
                return f"killed by {signal.Signals(-self.returncode).name}"
            except ValueError:
                return f"killed by signal {-self.returncode}"
        return f"exit status {self.returncode}"


@dataclass(frozen=True)
class SandboxCapabilities:
    """What isolation is active on this machine; record it with verdicts (``as_dict``).

    Attributes:
        isolation: ``namespace`` or ``basic`` (see the module documentation).
        network_namespace: no network at all (a fresh network namespace) rather than a Python-level socket guard.
        pid_namespace: the program sees only its own processes, all killed when it ends.
        mount_namespace: private mounts (read-only filesystem and private tmpfs, see the next two).
        user_namespace: namespaces were created unprivileged, inside a user namespace.
        readonly_filesystem: the whole filesystem is read-only (and nosuid) for the program.
        private_tmp: ``/tmp``, ``/var/tmp`` and ``/dev/shm`` are private size-limited tmpfs mounts.
        uid_drop: the program runs under a fresh unprivileged uid (only possible as root).
        capabilities_dropped: as uid 0 of a user namespace, all capabilities are dropped before the program starts.
        socket_guard: sockets are disabled by a Python prelude (basic isolation; code can undo it).
        python: path of the interpreter the program runs under.
        python_version: ``sys.version`` of that interpreter as the sandboxed user sees it.
        notes: what is weaker than the namespace isolation as root, in words.
    """

    isolation: str
    network_namespace: bool
    pid_namespace: bool
    mount_namespace: bool
    user_namespace: bool
    readonly_filesystem: bool
    private_tmp: bool
    uid_drop: bool
    capabilities_dropped: bool
    socket_guard: bool
    python: str
    python_version: str
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        values = asdict(self)
        values["notes"] = list(self.notes)
        return values


@dataclass(frozen=True)
class _Plan:
    """How to start a run: the isolation, the interpreter, the credentials."""

    namespace: bool
    user_namespace: bool
    drop_uid: bool
    python: str
    unshare: str | None = None

    @property
    def isolation(self) -> str:
        return "namespace" if self.namespace else "basic"

    def prefix(self) -> list[str]:
        if not self.namespace:
            return []
        assert self.unshare is not None
        command = [self.unshare]
        if self.user_namespace:
            command += ["--user", "--map-root-user"]
        return [*command, "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount", "--ipc", "--uts", "--"]


_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()
_plan_lock = threading.Lock()
_plans: dict[str, tuple[_Plan, SandboxCapabilities]] = {}


def _allocate_uid() -> int:
    rng = secrets.SystemRandom()
    with _uid_lock:
        while True:
            uid = rng.randrange(*_UID_RANGE)
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def _live_tasks(uid: int) -> int:
    """Processes of ``uid`` that have not exited yet (zombies do not count: they hold no resources but a pid)."""
    live = 0
    for _, fields in process_statuses():
        try:
            if int(fields[b"Uid"].split()[0]) == uid and fields[b"State"].split()[0] not in (b"Z", b"X"):
                live += 1
        except (KeyError, IndexError, ValueError):
            continue
    return live


def _wait_until_gone(uid: int) -> None:
    """Kill what is left of the run's ``uid`` and wait until none of its processes is alive.

    When a PID namespace's first process dies, the kernel kills every other process in it, but each one exits in
    its own time: on a loaded machine a fork bomb's processes can still be running when the namespace's first
    process has been reaped. The uid is not handed to another run (nor is ``run_python`` done) before they are
    gone, so every run starts without anything of an earlier one. Bounded by :data:`_EXIT_WAIT_S`.
    """
    deadline = time.monotonic() + _EXIT_WAIT_S
    if _live_tasks(uid):
        kill_stragglers(uid, "")  # by uid: the host sees the namespace's processes too
    while _live_tasks(uid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _release_uid(uid: int) -> None:
    with _uid_lock:
        _uids_in_use.discard(uid)


def _user_tasks(uid: int) -> int:
    """Tasks (processes and threads) that ``uid`` runs now: RLIMIT_NPROC counts them all."""
    total = 0
    for _, fields in process_statuses():
        try:
            if int(fields[b"Uid"].split()[0]) == uid:
                total += int(fields.get(b"Threads", b"1").split()[0])
        except (KeyError, IndexError, ValueError):
            continue
    return total


def _rlimits(limits: SandboxLimits, plan: _Plan) -> dict[str, tuple[int, int]]:
    cpu = math.ceil(limits.cpu_s if limits.cpu_s is not None else math.ceil(limits.timeout_s) + 1)
    processes = limits.max_processes
    if not plan.drop_uid and not plan.user_namespace:
        processes += _user_tasks(os.getuid())  # the limit counts every task of the user, not just ours
    memory = limits.memory_mb * 1024 * 1024
    size = limits.max_file_mb * 1024 * 1024
    return {
        "RLIMIT_CPU": (cpu, cpu + 1),
        "RLIMIT_AS": (memory, memory),
        "RLIMIT_NPROC": (processes, processes),
        "RLIMIT_FSIZE": (size, size),
        "RLIMIT_NOFILE": (limits.max_open_files, limits.max_open_files),
        "RLIMIT_CORE": (0, 0),
    }


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


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)


def _parse_events(data: bytes) -> dict[str, list[str]]:
    """The supervisor's status lines (``started RO TMP``, ``exited RC TIMED_OUT``, ``setup_error MESSAGE``)."""
    events = {}
    for line in data.decode(errors="replace").splitlines():
        kind, _, rest = line.partition(" ")
        events[kind] = rest.split(" ") if kind != "setup_error" else [rest]
    return events


def _execute(code: str, limits: SandboxLimits, plan: _Plan) -> tuple[SandboxResult, dict[str, Any]]:
    """One run under ``plan``; the result and the supervisor's setup report. SandboxError if it cannot start."""
    run_id = secrets.token_hex(8)
    uid = _allocate_uid() if plan.drop_uid else None
    workdir: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    status_r = status_w = -1
    selector = selectors.DefaultSelector()
    start = time.monotonic()
    try:
        if not plan.namespace:
            workdir = tempfile.mkdtemp(prefix=f"divtrace-sandbox-{run_id}-")
            if uid is not None:
                os.chown(workdir, uid, uid)
        status_r, status_w = os.pipe()
        config = {
            "run_id": run_id,
            "status_fd": status_w,
            "namespace": plan.namespace,
            "uid": uid,
            "drop_capabilities": plan.user_namespace,
            "workdir": workdir,
            "python": plan.python,
            "socket_prelude": not plan.namespace,
            "timeout_s": limits.timeout_s,
            "tmp_mb": limits.tmp_mb,
            "rlimits": _rlimits(limits, plan),
        }
        command = [*plan.prefix(), sys.executable, "-I", "-S", "-c", _BOOTSTRAP, marshal.dumps(config).hex()]
        environment = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=environment,
                cwd="/",
                start_new_session=True,
                pass_fds=(status_w,),
            )
        except OSError as exc:
            raise SandboxError(f"cannot start the sandbox ({command[0]}): {exc}") from exc
        os.close(status_w)
        status_w = -1
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(code.encode("utf-8", errors="surrogatepass"))
            proc.stdin.close()
        except OSError:
            pass  # the supervisor died before reading: its status says why
        streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr", status_r: "status"}
        for fd, name in streams.items():
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ, name)
        captured = {"stdout": bytearray(), "stderr": bytearray(), "status": bytearray()}
        truncated = {"stdout": False, "stderr": False}
        cap = limits.max_output_bytes
        outcome: str | None = None
        deadline = start + limits.timeout_s + SUPERVISOR_GRACE_S  # the supervisor enforces timeout_s itself
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if outcome is not None:
                    break  # killed, and stragglers still hold the pipes: stop listening
                outcome = "timeout"
                _kill_group(proc)
                if not plan.namespace:
                    kill_stragglers(uid, run_id)
                deadline = time.monotonic() + _DRAIN_GRACE_S
                continue
            for key, _ in selector.select(timeout=remaining):
                name = key.data
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                buffer = captured[name]
                if name == "status":
                    buffer += chunk[: 65536 - len(buffer)]
                    continue
                room = max(0, cap - len(buffer))
                buffer += chunk[:room]
                if len(chunk) > room:
                    truncated[name] = True
                    if outcome is None:
                        outcome = "output_limit"
                        _kill_group(proc)
                        if not plan.namespace:
                            kill_stragglers(uid, run_id)
                        deadline = time.monotonic() + _DRAIN_GRACE_S
        duration = time.monotonic() - start
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
        events = _parse_events(bytes(captured["status"]))
        if "setup_error" in events:
            raise SandboxError(f"sandbox setup failed: {' '.join(events['setup_error'])}")
        if "started" not in events and outcome is None:
            message = captured["stderr"].decode(errors="replace").strip()[-500:]
            raise SandboxError(f"the sandbox supervisor failed (exit status {proc.returncode}): {message}")
        returncode: int | None = None
        status: Status
        exited = events.get("exited")
        if outcome == "timeout" or (exited is not None and exited[1:] == ["1"]):
            status = "timeout"
        elif outcome == "output_limit":
            status = "output_limit"
        elif exited is not None:
            returncode = int(exited[0])
            status = "ok" if returncode == 0 else "error" if returncode > 0 else "killed"
        else:  # the program killed its supervisor (possible only without a uid drop)
            status = "killed"
        result = SandboxResult(
            status=status,
            returncode=returncode,
            stdout=bytes(captured["stdout"]).decode("utf-8", errors="replace"),
            stderr=bytes(captured["stderr"]).decode("utf-8", errors="replace"),
            stdout_truncated=truncated["stdout"],
            stderr_truncated=truncated["stderr"],
            duration_s=duration,
            isolation=plan.isolation,
        )
        started = events.get("started", ["0", "0"])
        return result, {"readonly_filesystem": started[0] == "1", "private_tmp": started[1] == "1"}
    finally:
        selector.close()
        if proc is not None:
            if proc.poll() is None:
                _kill_group(proc)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if not plan.namespace and proc is not None:
            kill_stragglers(uid, run_id)
        if plan.namespace and uid is not None:
            _wait_until_gone(uid)
        for fd in (status_r, status_w):
            if fd >= 0:
                os.close(fd)
        if workdir is not None:
            _remove_tree(workdir)
        if uid is not None:
            _release_uid(uid)


_PROBE_CODE = """\
import json, os, sys
executable = os.path.realpath(sys.executable)
print(json.dumps({"version": sys.version, "consistent": executable.startswith(sys.base_prefix)}))
"""


def _python_candidates() -> list[str]:
    """Interpreters the program may run under, best first: ours, then the system's (as a dropped uid may not be
    able to read ours, e.g. a pyenv install under /root)."""
    major, minor = sys.version_info[:2]
    names = [
        sys.executable,
        os.path.realpath(sys.executable),
        shutil.which("python3", path=SAFE_PATH) or "",
        f"/usr/bin/python{major}.{minor}",
        "/usr/bin/python3",
        f"/usr/local/bin/python{major}.{minor}",
        "/usr/local/bin/python3",
    ]
    seen: set[str] = set()
    candidates = []
    for name in names:
        if name and os.path.isfile(name) and os.path.realpath(name) not in seen:
            seen.add(os.path.realpath(name))
            candidates.append(name)
    return candidates


def _plan_variants(isolation: Isolation) -> list[_Plan]:
    root = os.geteuid() == 0
    unshare = shutil.which("unshare", path=SAFE_PATH + ":/usr/sbin:/sbin")
    variants = []
    if isolation in ("auto", "namespace") and unshare is not None and sys.platform.startswith("linux"):
        variants.append(_Plan(namespace=True, user_namespace=not root, drop_uid=root, python="", unshare=unshare))
    if isolation in ("auto", "basic"):
        if root:
            variants.append(_Plan(namespace=False, user_namespace=False, drop_uid=True, python=""))
        variants.append(_Plan(namespace=False, user_namespace=False, drop_uid=False, python=""))
    return variants


def _notes(plan: _Plan, setup: dict[str, Any]) -> tuple[str, ...]:
    notes = []
    if not plan.namespace:
        notes += [
            "no network namespace: sockets are blocked by a Python prelude only; code using ctypes, os.system or "
            "subprocesses can still reach the network",
            "no PID namespace: stragglers are found and killed by "
            + (
                "uid"
                if plan.drop_uid
                else "a marker variable, which a process can lose by exec'ing with a new environment"
            ),
            "no mount namespace: the program can write to world-writable places (/tmp, /dev/shm) and fill the disk "
            "up to its per-file size limit, file after file",
        ]
    else:
        if not setup.get("readonly_filesystem"):
            notes.append("the filesystem could not be made read-only (kernel without mount_setattr)")
        if not setup.get("private_tmp"):
            notes.append("/var/tmp or /dev/shm could not be replaced by a private tmpfs")
    if not plan.drop_uid:
        notes.append(
            "not root: no uid drop; the program runs as the invoking user"
            + (
                " (uid 0 of a user namespace without capabilities)"
                if plan.user_namespace
                else ", can read, change and delete that user's files and signal that user's processes "
                "(kill(-1) included)"
            )
        )
    return tuple(notes)


def _interpreter_note(plan: _Plan, version: str) -> tuple[str, ...]:
    if version == sys.version:
        return ()
    return (
        f"the program runs under {plan.python} (Python {version.split()[0]}), not this process's interpreter "
        f"(Python {sys.version.split()[0]}, {sys.executable}), which the sandbox user cannot fully read",
    )


def _probe(isolation: Isolation) -> tuple[_Plan, SandboxCapabilities]:
    """The best plan for ``isolation`` that actually runs code here, with what it provides."""
    limits = SandboxLimits(timeout_s=20.0)
    failures = []
    for variant in _plan_variants(isolation):
        best: tuple[tuple[bool, bool], _Plan, str, dict[str, Any]] | None = None
        for python in _python_candidates():
            plan = _Plan(variant.namespace, variant.user_namespace, variant.drop_uid, python, variant.unshare)
            try:
                result, setup = _execute(_PROBE_CODE, limits, plan)
                info = json.loads(result.stdout) if result.ok else None
            except (SandboxError, ValueError) as exc:
                failures.append(f"{plan.isolation} with {python}: {exc}")
                continue
            if not isinstance(info, dict):
                failures.append(f"{plan.isolation} with {python}: {result.status}: {result.summary()}")
                continue
            score = (info["version"] == sys.version, bool(info["consistent"]))
            if best is None or score > best[0]:
                best = (score, plan, str(info["version"]), setup)
            if score == (True, True):
                break
        if best is not None:
            _, plan, version, setup = best
            capabilities = SandboxCapabilities(
                isolation=plan.isolation,
                network_namespace=plan.namespace,
                pid_namespace=plan.namespace,
                mount_namespace=plan.namespace,
                user_namespace=plan.user_namespace,
                readonly_filesystem=bool(setup.get("readonly_filesystem")),
                private_tmp=bool(setup.get("private_tmp")),
                uid_drop=plan.drop_uid,
                capabilities_dropped=plan.user_namespace,
                socket_guard=not plan.namespace,
                python=plan.python,
                python_version=version,
                notes=_notes(plan, setup) + _interpreter_note(plan, version),
            )
            return plan, capabilities
    raise SandboxError(f"no sandbox isolation ({isolation}) works on this machine: " + "; ".join(failures))


def _plan_for(isolation: Isolation) -> tuple[_Plan, SandboxCapabilities]:
    if isolation not in ("auto", "namespace", "basic"):
        raise ValueError(f"isolation must be 'auto', 'namespace' or 'basic', got {isolation!r}")
    with _plan_lock:
        if isolation not in _plans:
            _plans[isolation] = _probe(isolation)
        return _plans[isolation]


def sandbox_capabilities(isolation: Isolation = "auto") -> SandboxCapabilities:
    """What the sandbox provides on this machine for ``isolation`` (probed once per process by running code).

    ``auto`` picks the strongest that works: ``namespace`` (needs ``unshare`` and root or unprivileged user
    namespaces), else ``basic``. Raises SandboxError when the requested isolation cannot run code here.
    """
    return _plan_for(isolation)[1]


def run_python(code: str, limits: SandboxLimits | None = None, *, isolation: Isolation = "auto") -> SandboxResult:
    """Run ``code`` as the ``__main__`` script of a fresh sandboxed Python process and report how it ended.

    Whatever the code does (loop forever, fork, allocate, print, delete, kill, connect), this returns a
    SandboxResult once the run is over and everything it started is gone; it raises SandboxError only when the
    sandbox itself cannot be set up (a machine problem, never a property of ``code``).
    """
    plan, _ = _plan_for(isolation)
    return _execute(code, limits or SandboxLimits(), plan)[0]


def run_many(
    codes: Sequence[str],
    limits: SandboxLimits | None = None,
    *,
    workers: int | None = None,
    isolation: Isolation = "auto",
) -> list[SandboxResult]:
    """:func:`run_python` over ``codes``, up to ``workers`` sandboxes at once (default: the CPU count); in order."""
    if not codes:
        return []
    plan, _ = _plan_for(isolation)
    chosen = limits or SandboxLimits()
    workers = max(1, min(workers or os.cpu_count() or 1, len(codes)))
    if workers == 1:
        return [_execute(code, chosen, plan)[0] for code in codes]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="divtrace-sandbox") as pool:
        return list(pool.map(lambda code: _execute(code, chosen, plan)[0], codes))
