"""The sandbox supervisor: the program that runs inside the sandbox, one process per run.

It is loaded by :mod:`divtrace.sandbox.host` with ``python -I -S``, so it may import the standard library only, and
few modules of it (it starts once per run); tests/sandbox/test_layout.py checks this. The supervisor prepares the
sandbox, forks the program (``main.py`` in an empty working directory) with resource limits and without privileges,
waits for it and reports how it ended on a private pipe. The best isolation the machine allows is chosen once per
process (see :func:`divtrace.sandbox.sandbox_capabilities`):

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
    from collections.abc import Callable, Iterator
    from signal import SIGKILL, SIGSTOP
    from typing import Any
else:  # not ``signal``: its enums cost milliseconds on every sandbox start
    from _signal import SIGKILL, SIGSTOP

# --------------------------------------------------------------------------------------------------------------
# The supervisor. It runs inside the sandbox, loaded by divtrace.sandbox.host._BOOTSTRAP under the name
# SUPERVISOR_NAME with ``python -I -S``: standard library only, and few imports (it starts once per run).
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
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
SUPERVISOR_GRACE_S = 3.0
SUPERVISOR_NAME = "_divtrace_sandbox_supervisor"

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


def process_statuses() -> Iterator[tuple[int, dict[bytes, bytes]]]:
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
    for pid, fields in process_statuses():
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


def kill_stragglers(uid: int | None, run_id: str, exclude: frozenset[int] = frozenset()) -> int:
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
        "PATH": SAFE_PATH,
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
        kill_stragglers(uid, config["run_id"], exclude=frozenset({os.getpid()}))
    returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    report("exited", returncode, int(timed_out))
    return 0


if __name__ == SUPERVISOR_NAME:  # inside the sandbox; what follows is neither needed nor importable (-S) there
    sys.exit(_supervise(marshal.loads(bytes.fromhex(sys.argv[1]))))
