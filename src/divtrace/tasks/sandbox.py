"""Run model-written Python code, treated as hostile input, in a throwaway sandbox.

Every run gets a fresh supervisor process (the first part of this file, run by ``python -I -S``: standard library
only) that prepares the sandbox, forks the program (``main.py`` in an empty working directory) with resource limits
and without privileges, waits for it and reports how it ended on a private pipe. The best isolation the machine
allows is chosen once per process (see :func:`sandbox_capabilities`):

``namespace``
    The supervisor runs under ``unshare`` in new network, PID, mount, IPC and UTS namespaces (as root; otherwise
    inside a new user namespace too). No network interface but a down loopback; the supervisor is PID 1, so when it
    exits the kernel kills every process left in the namespace (detached ``setsid`` children included), and the
    program cannot see or signal any host process. The whole filesystem is remounted read-only and nosuid, with
    small private tmpfs mounts on ``/tmp``, ``/var/tmp`` and ``/dev/shm`` (the working directory lives there and
    vanishes with the namespace).
``basic``
    No namespaces: a private working directory removed afterwards, sockets disabled by a Python prelude (which
    code can undo), and stragglers found and killed by uid (when running as root) or by a marker environment
    variable (otherwise).

In both, as root the program runs under a fresh unprivileged uid/gid (one per run, so ``RLIMIT_NPROC`` is enforced
and parallel runs cannot signal each other), with ``no_new_privs``, rlimits on CPU time, address space, processes,
file size and open files, a minimal environment, stdin from ``/dev/null``, stdout/stderr captured up to a cap, and a
wall-clock timeout after which the whole process tree is killed. docs/sandbox.md lists the guarantees and the gaps.
"""

from __future__ import annotations

import ctypes
import marshal
import os
import resource
import select
import sys
import time

TYPE_CHECKING = False  # not ``typing``'s: the supervisor imports as little as it can (type checkers know the name)
if TYPE_CHECKING:  # typeshed has no stub for the C module ``_signal``; the values are the same
    from signal import SIGKILL, SIGSTOP
    from typing import Any
else:  # not ``signal``: its enums cost milliseconds on every sandbox start
    from _signal import SIGKILL, SIGSTOP

# --------------------------------------------------------------------------------------------------------------
# The supervisor. This part runs inside the sandbox, loaded by _BOOTSTRAP under the name _SUPERVISOR_NAME with
# ``python -I -S``: standard library only, and few imports (it starts once per run).
# --------------------------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_PR_SET_SECUREBITS = 28
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_DUMPABLE = 4
_SECBITS_LOCKED_NOROOT = 0x2F  # NOROOT, NO_SETUID_FIXUP and KEEP_CAPS_LOCKED, each locked
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_NOSUID = 0x2
_SYS_MOUNT_SETATTR = 442  # the same number on every Linux architecture
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
_MARKER_VAR = "DIVTRACE_SANDBOX_RUN"
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_SUPERVISOR_GRACE_S = 3.0
_SUPERVISOR_NAME = "_divtrace_sandbox_supervisor"

#: Disables Python-level network access when no network namespace is available (``basic`` isolation).
_SOCKET_PRELUDE = """\
def _divtrace_block_network():
    import _socket, socket
    def refuse(*args, **kwargs):
        raise PermissionError(1, "network access is disabled in the sandbox")
    class NoSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            refuse()
    for module in (socket, _socket):
        module.socket = NoSocket
        module.SocketType = NoSocket
        for name in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo", "gethostbyname",
                     "gethostbyname_ex", "gethostbyaddr", "getnameinfo"):
            if hasattr(module, name):
                setattr(module, name, refuse)
_divtrace_block_network()
del _divtrace_block_network
import sys
sys.argv[0] = __file__ = "main.py"
with open(__file__, "rb") as _divtrace_source:
    _divtrace_code = compile(_divtrace_source.read(), __file__, "exec")
del _divtrace_source, sys
exec(_divtrace_code)
"""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg: int) -> None:
    if (
        _libc().prctl(
            ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)
        )
        != 0
    ):
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    if _libc().mount(source.encode(), target.encode(), fstype.encode(), ctypes.c_ulong(flags), data.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def _make_filesystem_readonly() -> bool:
    """Recursively remount ``/`` read-only and nosuid in this (private) mount namespace; False when unsupported."""
    attr = (ctypes.c_uint64 * 4)(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, 0, 0, 0)
    result = _libc().syscall(
        ctypes.c_long(_SYS_MOUNT_SETATTR),
        ctypes.c_long(_AT_FDCWD),
        ctypes.c_char_p(b"/"),
        ctypes.c_ulong(_AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    return bool(result == 0)


def _drop_capabilities() -> None:
    """Leave no capability, now or after execve (for uid 0 inside a user namespace, where no other uid exists)."""
    for cap in range(64):
        try:
            _prctl(_PR_CAPBSET_DROP, cap)
        except OSError:
            break  # EINVAL: past the last capability this kernel knows
    _prctl(_PR_SET_SECUREBITS, _SECBITS_LOCKED_NOROOT)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (x2): all empty
    number = _SYS_CAPSET.get(os.uname().machine)
    if number is None or _libc().syscall(ctypes.c_long(number), ctypes.byref(header), ctypes.byref(data)) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _process_statuses() -> Iterator[tuple[int, dict[bytes, bytes]]]:
    """(pid, fields of /proc/<pid>/status) for every process still there."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as handle:
                status = handle.read()
        except OSError:
            continue  # gone
        yield int(entry), dict(line.split(b":", 1) for line in status.split(b"\n") if b":" in line)


def _process_table() -> dict[int, tuple[int, int, bytes]]:
    """pid -> (real uid, parent pid, state letter) for every process in /proc."""
    table = {}
    for pid, fields in _process_statuses():
        try:
            uid = int(fields[b"Uid"].split()[0])
            ppid = int(fields[b"PPid"].split()[0])
            state = fields[b"State"].split()[0]
        except (KeyError, IndexError, ValueError):
            continue
        table[pid] = (uid, ppid, state)
    return table


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return marker in handle.read().split(b"\0")
    except OSError:
        return False


def _descendants(table: dict[int, tuple[int, int, bytes]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _signal_quietly(pid: int, signal_number: int) -> bool:
    try:
        os.kill(pid, signal_number)
    except OSError:
        return False
    return True


def _stop_and_kill(choose: Callable[[dict[int, tuple[int, int, bytes]]], set[int]]) -> int:
    """Freeze (SIGSTOP) the processes ``choose`` picks until none of them runs, then SIGKILL them; how many.

    Frozen processes cannot fork, so this converges even against a fork bomb; repeated until nothing is left.
    """
    killed = 0
    for _ in range(100):
        for _ in range(2000):
            table = _process_table()
            running = [pid for pid in choose(table) if table[pid][2] not in (b"T", b"t", b"Z", b"X")]
            for pid in running:
                _signal_quietly(pid, SIGSTOP)
            if not running:
                break
        table = _process_table()
        chosen = [pid for pid in choose(table) if table[pid][2] not in (b"Z", b"X")]
        if not chosen:
            return killed
        for pid in chosen:
            _signal_quietly(pid, SIGKILL)
        killed += len(chosen)
        time.sleep(0.001)
    return killed


def _kill_stragglers(uid: int | None, run_id: str, exclude: frozenset[int] = frozenset()) -> int:
    """Kill every process of ``uid`` (a per-run uid) or, without one, every process of ours carrying this run's
    marker variable; how many were killed."""
    if uid is not None:
        return _stop_and_kill(lambda table: {pid for pid, info in table.items() if info[0] == uid} - exclude)
    marker = f"{_MARKER_VAR}={run_id}".encode()
    me = os.getuid()
    return _stop_and_kill(
        lambda table: {pid for pid, info in table.items() if info[0] == me and _has_marker(pid, marker)} - exclude
    )


def _kill_descendants() -> None:
    """As a child subreaper: kill every descendant (orphans are re-parented to us) and reap them all."""
    me = os.getpid()
    _stop_and_kill(lambda table: _descendants(table, me))
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.002)
        except ChildProcessError:
            return


def _prepare_namespace(config: dict[str, Any], uid: int | None) -> tuple[str, dict[str, Any]]:
    """Inside fresh namespaces: read-only filesystem, private tmpfs mounts, the working directory on one of them."""
    setup = {"readonly_filesystem": _make_filesystem_readonly(), "private_tmp": False}
    tmp_size = f"size={int(config['tmp_mb'])}m,mode=1777"
    _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, tmp_size)
    setup["private_tmp"] = True
    for extra in ("/var/tmp", "/dev/shm"):
        if os.path.isdir(extra):
            try:
                _mount("tmpfs", extra, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=1777")
            except OSError:
                setup["private_tmp"] = False
    workdir = f"/tmp/divtrace-sandbox-{config['run_id']}"
    os.mkdir(workdir, 0o700)
    if uid is not None:
        os.chown(workdir, uid, uid)
    return workdir, setup


def _set_limits(config: dict[str, Any]) -> None:
    limits = config["rlimits"]
    for name, value in limits.items():
        soft, hard = value
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _exec_program(config: dict[str, Any], workdir: str, uid: int | None) -> None:
    """In the forked child: limits, credentials, then exec the interpreter on main.py. Never returns."""
    os.close(config["status_fd"])
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.chdir(workdir)
    os.umask(0o077)
    _set_limits(config)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    elif config["drop_capabilities"]:
        _drop_capabilities()
    _prctl(_PR_SET_PDEATHSIG, SIGKILL)  # after the uid change, which clears it
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    python = config["python"]
    argv = [python, "-I", "-B", "-c", _SOCKET_PRELUDE] if config["socket_prelude"] else [python, "-I", "-B", "main.py"]
    env = {
        "PATH": _SAFE_PATH,
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        _MARKER_VAR: config["run_id"],
    }
    os.execve(python, argv, env)


def _wait_for(pid: int, timeout_s: float) -> int | None:
    """The wait status of child ``pid``, or None if it is still running after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if pidfd is not None:
                select.select([pidfd], [], [], remaining)
            else:
                time.sleep(min(remaining, 0.01))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _supervise(config: dict[str, Any]) -> int:
    """Prepare the sandbox, run the program, report on the status pipe; the exit status means nothing."""
    status_fd = config["status_fd"]

    def report(*words: object) -> None:  # one line per event: "started RO TMP", "exited RC TIMED_OUT", ...
        os.write(status_fd, (" ".join(str(word).replace("\n", " ") for word in words) + "\n").encode())

    _prctl(_PR_SET_DUMPABLE, 0)  # the program may share our uid: keep it out of /proc/<us>/fd and ptrace
    code = sys.stdin.buffer.read()
    uid = config["uid"]
    try:
        if config["namespace"]:
            workdir, setup = _prepare_namespace(config, uid)
        else:
            workdir, setup = config["workdir"], {"readonly_filesystem": False, "private_tmp": False}
        main = os.path.join(workdir, "main.py")
        with open(main, "wb") as handle:
            handle.write(code)
        if uid is not None:
            os.chown(main, uid, uid)
    except Exception as exc:
        report("setup_error", f"preparing the sandbox: {type(exc).__name__}: {exc}")
        return 70
    if not config["namespace"]:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # detached descendants become our children, so we can kill them
    err_r, err_w = os.pipe()  # close-on-exec: EOF without data means the exec worked
    pid = os.fork()
    if pid == 0:
        try:
            os.close(err_r)
            _exec_program(config, workdir, uid)
        except BaseException as exc:
            os.write(err_w, f"{type(exc).__name__}: {exc}".encode()[:2000])
        os._exit(127)
    os.close(err_w)
    failure = b""
    while chunk := os.read(err_r, 4096):
        failure += chunk
    os.close(err_r)
    if failure:
        os.waitpid(pid, 0)
        report("setup_error", f"starting the program: {failure.decode(errors='replace')}")
        return 70
    report("started", int(setup["readonly_filesystem"]), int(setup["private_tmp"]))
    status = _wait_for(pid, config["timeout_s"])
    timed_out = status is None
    if status is None:
        os.kill(pid, SIGKILL)
        _, status = os.waitpid(pid, 0)
    if not config["namespace"]:  # in a PID namespace, our exit kills everything left
        _kill_descendants()
        _kill_stragglers(uid, config["run_id"], exclude=frozenset({os.getpid()}))
    returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    report("exited", returncode, int(timed_out))
    return 0


if __name__ == _SUPERVISOR_NAME:  # inside the sandbox; what follows is neither needed nor importable (-S) there
    sys.exit(_supervise(marshal.loads(bytes.fromhex(sys.argv[1]))))

# --------------------------------------------------------------------------------------------------------------
# The host side: the public API.
# --------------------------------------------------------------------------------------------------------------

import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import secrets  # noqa: E402
import selectors  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Literal  # noqa: E402

from divtrace.errors import DivtraceError  # noqa: E402

Isolation = Literal["auto", "namespace", "basic"]
Status = Literal["ok", "error", "timeout", "killed", "output_limit"]

#: Loads this file's compiled code (the .pyc cache, not a fresh compile) as _SUPERVISOR_NAME, which runs it.
_BOOTSTRAP = (
    "import _frozen_importlib_external as e\n"
    f"path = {str(Path(__file__).resolve())!r}\n"
    f"code = e.SourceFileLoader({_SUPERVISOR_NAME!r}, path).get_code({_SUPERVISOR_NAME!r})\n"
    f"exec(code, {{'__name__': {_SUPERVISOR_NAME!r}, '__file__': path, '__builtins__': __builtins__}})\n"
)
_UID_RANGE = (2_000_000_000, 2_100_000_000)  # far above real users, subuid ranges and systemd's dynamic uids
_DRAIN_GRACE_S = 2.0


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


def _release_uid(uid: int) -> None:
    with _uid_lock:
        _uids_in_use.discard(uid)


def _user_tasks(uid: int) -> int:
    """Tasks (processes and threads) that ``uid`` runs now: RLIMIT_NPROC counts them all."""
    total = 0
    for _, fields in _process_statuses():
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
        environment = {"PATH": _SAFE_PATH, "LANG": "C.UTF-8"}
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
        deadline = start + limits.timeout_s + _SUPERVISOR_GRACE_S  # the supervisor enforces timeout_s itself
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if outcome is not None:
                    break  # killed, and stragglers still hold the pipes: stop listening
                outcome = "timeout"
                _kill_group(proc)
                if not plan.namespace:
                    _kill_stragglers(uid, run_id)
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
                            _kill_stragglers(uid, run_id)
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
            _kill_stragglers(uid, run_id)
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
        shutil.which("python3", path=_SAFE_PATH) or "",
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
    unshare = shutil.which("unshare", path=_SAFE_PATH + ":/usr/sbin:/sbin")
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
