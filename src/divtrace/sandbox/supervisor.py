"""The sandbox supervisor: the program that runs inside the sandbox, one long-lived process per worker.

It is loaded by :mod:`divtrace.sandbox.worker` under the programs' interpreter with their flags (``python -I
-B``: a *warm* worker), or under the host's interpreter with ``python -I -S`` (a *cold* one), so it may import the
standard library only, and few modules of it; tests/sandbox/test_layout.py checks this. The supervisor prepares
the sandbox once, then serves the host's requests one at a time over a private control socket: for each program it
empties the temporary directories, writes the code to ``main.py`` in a fresh working directory, forks a child that
takes the program's resource limits, drops its privileges (a fresh uid per program as root) and becomes the
program, waits for it within its wall-clock limit, kills everything the program left, and reports how it ended. In
a warm worker the child runs main.py itself (:func:`run_as_main`: no interpreter start-up per program, which is
most of a short program's cost); in a cold one, or for a program under another interpreter, it execs
``python -I -B main.py``. The best isolation the machine allows is chosen once per
process (see :func:`divtrace.sandbox.sandbox_capabilities`):

``namespace``
    The supervisor runs under ``unshare`` in new network, PID, mount, IPC and UTS namespaces (as root; otherwise
    inside a new user namespace too). No network interface but a down loopback; the supervisor is PID 1, so after
    each program it kills every other process of the namespace (``kill(-1)``: detached ``setsid`` children
    included) and reaps them all before the next program starts, and the program cannot see or signal any host
    process. The whole filesystem is remounted read-only and nosuid, with small private tmpfs mounts on ``/tmp``,
    ``/var/tmp`` and ``/dev/shm``, replaced by empty ones before each program (the working directory lives in
    ``/tmp``).
``basic``
    No namespaces: a private working directory per program (made and removed by the host), sockets disabled by a
    Python prelude (which code can undo), and stragglers killed by uid (as root: a helper with the run's uid calls
    ``kill(-1)``) or found in /proc by a marker environment variable (otherwise).

In both, as root the program runs under a fresh unprivileged uid/gid (one per program, so ``RLIMIT_NPROC`` is
enforced and parallel runs cannot signal each other), with ``no_new_privs``, rlimits on CPU time, address space,
processes, file size and open files, a minimal environment, stdin from ``/dev/null``, stdout/stderr on pipes of
the host's (passed with the request), and a wall-clock timeout after which the whole process tree is killed.
docs/sandbox.md lists the guarantees and the gaps.
"""

from __future__ import annotations

import _socket
import array
import ctypes
import gc
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
# The supervisor. It runs inside the sandbox, loaded by divtrace.sandbox.worker._BOOTSTRAP under the name
# SUPERVISOR_NAME with ``python -I -S``: standard library only, and few imports (it starts once per worker).
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
_MS_REMOUNT = 0x20
_CLEAR_BUDGET = 10_000  # entries deleted one by one after a program; past it, the tmpfs is replaced
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_NOSUID = 0x2
_SYS_MOUNT_SETATTR = 442  # the same number on every Linux architecture
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
_MNT_DETACH = 2
_IPC_RMID = 0
_TMP_MOUNTS = ("/tmp", "/var/tmp", "/dev/shm")
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


_LIBC: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL:
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


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
    _reap_children()


def _umount(target: str) -> None:
    if _libc().umount2(target.encode(), ctypes.c_int(_MNT_DETACH)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _prepare_namespace() -> dict[str, Any]:
    """Once per sandbox, inside fresh namespaces: the filesystem read-only, private tmpfs mounts on the temporary
    directories, POSIX message queues disabled. What worked, as ``readonly_filesystem``, ``private_tmp``,
    ``no_mqueue`` and ``tmp_mounts`` (the mount points)."""
    try:  # POSIX message queues off in this IPC namespace (per-namespace sysctl): none can outlive a program
        with open("/proc/sys/fs/mqueue/queues_max", "w") as handle:
            handle.write("0")
        no_mqueue = True
    except OSError:
        no_mqueue = False
    setup: dict[str, Any] = {"readonly_filesystem": _make_filesystem_readonly(), "private_tmp": True}
    setup["no_mqueue"] = no_mqueue
    mounts = []
    for target in _TMP_MOUNTS:
        if not os.path.isdir(target):
            continue
        try:
            _mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=1777")
        except OSError:
            if target == "/tmp":
                raise
            setup["private_tmp"] = False
            continue
        mounts.append(target)
    setup["tmp_mounts"] = mounts
    setup["tmp_sizes"] = dict.fromkeys(mounts, 1)
    return setup


def _clear_directory(top: str, budget: int) -> None:
    """Delete everything in ``top`` (not ``top`` itself), depth first, without following symbolic links.

    Raises OSError when something cannot be deleted (e.g. a path longer than PATH_MAX) or when there are more than
    ``budget`` entries; the caller then replaces the whole mount.
    """
    pending = [(top, False)]
    while pending:
        path, visited = pending.pop()
        if visited:
            os.rmdir(path)
            continue
        if path != top:
            pending.append((path, True))
        with os.scandir(path) as entries:
            for entry in entries:
                budget -= 1
                if budget < 0:
                    raise OSError(f"more than {_CLEAR_BUDGET} entries in {top}: replacing the mount instead")
                if entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, False))
                else:
                    os.unlink(entry.path)


def _clear_tmp(setup: dict[str, Any]) -> None:
    """After a program, with none of its processes alive (so nothing can be added meanwhile): empty each private
    tmpfs, so nothing the program wrote there is left for the next; a mount that cannot be emptied quickly is
    replaced by a new one."""
    for target in setup["tmp_mounts"]:
        try:
            _clear_directory(target, _CLEAR_BUDGET)
        except OSError:
            _umount(target)
            size = setup["tmp_sizes"][target]
            _mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size}m,mode=1777")


def _size_tmp(setup: dict[str, Any], tmp_mb: int) -> None:
    """Before a program: give the (empty) ``/tmp`` the program's size limit, ``tmp_mb`` MiB."""
    if "/tmp" in setup["tmp_sizes"] and setup["tmp_sizes"]["/tmp"] != int(tmp_mb):
        _mount("tmpfs", "/tmp", "tmpfs", _MS_REMOUNT | _MS_NOSUID | _MS_NODEV, f"size={int(tmp_mb)}m,mode=1777")
        setup["tmp_sizes"]["/tmp"] = int(tmp_mb)


def _become_uid(uid: int) -> None:
    """As root: take ``uid`` as every user and group id, with no supplementary groups (and so no capability)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _enter_program(config: dict[str, Any], request: dict[str, Any], fds: tuple[int, int, int], workdir: str) -> None:
    """In the forked child: stdio, limits, credentials, then either exec the interpreter on main.py (never returns)
    or, when the program runs under this very interpreter (:func:`_runs_here`), make this process the program's
    environment and return, the failure pipe closed: the caller then runs main.py in this process.

    ``fds``: the program's stdout and stderr (pipes the host reads) and the close-on-exec pipe that reports a
    failure before the program starts. Every other descriptor is closed.
    """
    out, err, failure = fds
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    low, high = sorted((3, failure))
    os.closerange(low, high)
    os.closerange(failure + 1, 1 << 20)
    os.chdir(workdir)
    os.umask(0o077)
    for name, (soft, hard) in request["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    uid = request["uid"]
    if uid is not None:
        _become_uid(uid)
    elif config["drop_capabilities"]:
        _drop_capabilities()
    _prctl(_PR_SET_PDEATHSIG, SIGKILL)  # after the uid change, which clears it
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    python = request["python"]
    env = {
        "PATH": SAFE_PATH,
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        _MARKER_VAR: request["run_id"],
    }
    if _runs_here(config, request):
        os.environ.clear()
        os.environ.update(env)
        os.close(failure)  # the program starts: what fails from here on is the program's
        return
    prelude = config["socket_prelude"]
    argv = [python, "-I", "-B", "-c", _SOCKET_PRELUDE] if prelude else [python, "-I", "-B", "main.py"]
    os.execve(python, argv, env)


def _runs_here(config: dict[str, Any], request: dict[str, Any]) -> bool:
    """Whether the program runs in a fork of this supervisor (started under the program's interpreter with the
    program's flags, ``-I -B``) rather than in a newly exec'd interpreter."""
    return bool(config.get("python")) and config["python"] == request["python"]


class _BecomeProgram(BaseException):
    """Raised in a forked child that is now the program (:func:`_runs_here`): it unwinds the supervisor's frames up
    to the top level, where :func:`run_as_main` runs main.py; args: (path of main.py, socket prelude or not)."""


def _program_excepthook(main_globals: dict[str, Any]) -> Callable[..., None]:
    """``sys.excepthook`` for a program run by :func:`run_as_main`: the traceback as ``python main.py`` prints it,
    without the supervisor's frames (every frame before the first of the program's own module)."""

    def excepthook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        while traceback is not None and traceback.tb_frame.f_globals is not main_globals:
            traceback = traceback.tb_next
        sys.__excepthook__(kind, value.with_traceback(traceback), traceback)

    return excepthook


def run_as_main(path: str, socket_prelude: bool) -> None:
    """In a forked child that is the program (limits, uid and environment already set, see :func:`_enter_program`):
    run ``path`` (main.py) as ``python -I -B main.py`` would, in a fresh ``__main__`` module (``__file__`` its
    absolute path, ``sys.argv`` ``["main.py"]``); with ``socket_prelude``, run :data:`_SOCKET_PRELUDE` as ``-c``
    would instead (``basic`` isolation). Exceptions propagate: at the top level the interpreter prints them and
    exits as it would after the program, with its usual finalisation (non-daemon threads joined, atexit, flushes).
    Written by hand: no library runs a file as ``__main__`` in an already started interpreter without frames of
    its own in tracebacks (``runpy`` keeps its frames and a temporary module)."""
    import builtins
    from _frozen_importlib import BuiltinImporter
    from _frozen_importlib_external import SourceFileLoader

    main = type(sys)("__main__")
    namespace = main.__dict__  # the names ``python main.py`` (or ``-c``) gives its __main__ module
    namespace.update(__builtins__=builtins, __annotations__={})
    if socket_prelude:
        source, filename = _SOCKET_PRELUDE.encode(), "<string>"
        namespace["__loader__"] = BuiltinImporter
    else:
        with open(path, "rb") as handle:
            source = handle.read()
        filename = path
        namespace.update(__file__=path, __loader__=SourceFileLoader("__main__", path), __cached__=None)
    sys.modules["__main__"] = main
    sys.argv[:] = ["-c" if socket_prelude else "main.py"]
    sys.excepthook = _program_excepthook(namespace)
    code = compile(source, filename, "exec", dont_inherit=True)
    exec(code, namespace)


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


def _kill_namespace() -> None:
    """As PID 1 of the sandbox's PID namespace: kill every other process in it and reap them all.

    ``kill(-1)`` from the namespace's init reaches every process of the namespace (and nothing outside it); every
    orphan is re-parented to init, so once ``waitpid`` reports no child left, nothing the program started lives.
    """
    while True:
        _signal_quietly(-1, SIGKILL)  # ESRCH when nothing is left to signal; zombies may still wait to be reaped
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _remove_sysv_ipc() -> None:
    """Remove every System V shared memory segment, message queue and semaphore set of this IPC namespace (the
    sandbox's own), so that a program cannot leave one for the next."""
    libc = _libc()
    for kind in ("shm", "msg", "sem"):
        try:  # os.open/os.read: no buffered file object (this runs after every program)
            fd = os.open(f"/proc/sysvipc/{kind}", os.O_RDONLY)
            try:
                listing = b""
                while chunk := os.read(fd, 65536):
                    listing += chunk
            finally:
                os.close(fd)
        except OSError:
            continue
        rows = listing.split(b"\n")[1:]
        for row in rows:
            fields = row.split()
            if len(fields) > 1 and fields[1].isdigit():
                ident = ctypes.c_int(int(fields[1]))
                if kind == "sem":
                    libc.semctl(ident, ctypes.c_int(0), ctypes.c_int(_IPC_RMID))
                else:  # shmctl / msgctl (id, IPC_RMID, NULL)
                    getattr(libc, f"{kind}ctl")(ident, ctypes.c_int(_IPC_RMID), None)


def _clean_up(config: dict[str, Any], setup: dict[str, Any], uid: int | None, run_id: str) -> None:
    """After a program: kill everything it left (a detached daemon, a fork bomb), then, in the namespace, remove its
    IPC objects and files, before the next one starts."""
    if config["namespace"]:
        _kill_namespace()
        _remove_sysv_ipc()
        _clear_tmp(setup)
    elif uid is not None and _kill_uid(uid):
        _reap_children()
    else:
        _kill_descendants()
        kill_stragglers(uid, run_id, exclude=frozenset({os.getpid()}))


def _kill_uid(uid: int) -> bool:
    """SIGKILL every process of ``uid`` (a per-run uid, as root): a forked helper takes the uid and calls
    ``kill(-1)``, which reaches exactly the processes it may signal, i.e. that uid's, except itself. One call is
    enough: a process with SIGKILL pending cannot fork any more. False when the helper failed (scan /proc instead).
    """
    pid = os.fork()
    if pid == 0:
        try:
            _become_uid(uid)
            _signal_quietly(-1, SIGKILL)  # ESRCH: nothing of the uid's was left
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return status == 0


def _reap_children() -> None:
    """Wait for every child of ours (the killed program's processes, re-parented to us as child subreaper) to exit,
    for at most 2 s; a process killed but not our descendant is not waited for."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.001)
        except ChildProcessError:
            return


def _receive(sock: Any) -> tuple[dict[str, Any], list[int]] | None:
    """The next request from the host: its fields and the descriptors sent with it; None at EOF (host gone)."""
    header, ancillary, _, _ = sock.recvmsg(8, _socket.CMSG_SPACE(2 * 4))
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += array.array("i", data[: len(data) - len(data) % 4]).tolist()
    while header and len(header) < 8:
        more = sock.recv(8 - len(header))
        if not more:
            break
        header += more
    if len(header) < 8:
        for fd in fds:
            os.close(fd)
        return None
    size = int.from_bytes(header, "big")
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return marshal.loads(b"".join(chunks)), fds


def _run_one(config: dict[str, Any], setup: dict[str, Any], request: dict[str, Any], fds: list[int]) -> str:
    """Run one program (``request``) with ``fds`` (its stdout and stderr) and clean up after it; the report line."""
    uid = request["uid"]
    try:
        if len(fds) != 2:
            raise ValueError(f"expected 2 descriptors with the request, got {len(fds)}")
        if config["namespace"]:
            _size_tmp(setup, request["tmp_mb"])
            workdir = f"/tmp/divtrace-sandbox-{request['run_id']}"
            os.mkdir(workdir, 0o700)
            if uid is not None:
                os.chown(workdir, uid, uid)
        else:
            workdir = request["workdir"]
        main = os.path.join(workdir, "main.py")
        with open(main, "wb") as handle:
            handle.write(request["code"])
        if uid is not None:
            os.chown(main, uid, uid)
    except Exception as exc:
        for fd in fds:
            os.close(fd)
        if config["namespace"]:
            _clear_tmp(setup)
        return f"setup_error preparing the run: {type(exc).__name__}: {exc}"
    err_r, err_w = os.pipe()  # close-on-exec: EOF without data means the program started
    pid = os.fork()
    if pid == 0:
        # The supervisor's objects out of the child's cyclic GC: a collection writes to every object it visits,
        # which would copy nearly every page of the supervisor into the child (measured: 2 ms of a 5 ms program).
        gc.freeze()
        try:
            os.close(err_r)
            _enter_program(config, request, (fds[0], fds[1], err_w), workdir)
        except BaseException as exc:
            os.write(err_w, f"{type(exc).__name__}: {exc}".encode()[:2000])
            os._exit(127)
        raise _BecomeProgram(os.path.join(workdir, "main.py"), config["socket_prelude"])
    for fd in (err_w, *fds):
        os.close(fd)
    failure = b""
    while chunk := os.read(err_r, 4096):
        failure += chunk
    os.close(err_r)
    if failure:
        os.waitpid(pid, 0)
        _clean_up(config, setup, uid, request["run_id"])
        return f"setup_error starting the program: {failure.decode(errors='replace')}"
    status = _wait_for(pid, request["timeout_s"])
    timed_out = status is None
    if status is None:
        os.kill(pid, SIGKILL)
        _, status = os.waitpid(pid, 0)
    _clean_up(config, setup, uid, request["run_id"])
    returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return f"exited {returncode} {int(timed_out)}"


def _supervise(config: dict[str, Any]) -> int:
    """Prepare the sandbox once, then run one program per request from the host until it closes the control
    socket; one report line per event on that socket. The exit status means nothing."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, config["control_fd"])
    os.set_inheritable(config["control_fd"], False)

    def report(line: str) -> None:  # "ready RO TMP", "exited RC TIMED_OUT", "setup_error MESSAGE"
        sock.sendall((line.replace("\n", " ") + "\n").encode())

    _prctl(_PR_SET_DUMPABLE, 0)  # the program may share our uid: keep it out of /proc/<us>/fd and ptrace
    try:
        if config["namespace"]:
            setup = _prepare_namespace()
        else:
            setup = {"readonly_filesystem": False, "private_tmp": False, "tmp_mounts": [], "tmp_sizes": {}}
            _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # detached descendants become our children, so we can kill them
    except Exception as exc:
        report(f"setup_error preparing the sandbox: {type(exc).__name__}: {exc}")
        return 70
    gc.freeze()  # what the supervisor has built stays out of later collections, here and in forked children
    report(f"ready {int(setup['readonly_filesystem'])} {int(setup['private_tmp'])} {int(setup.get('no_mqueue', 0))}")
    try:
        while (received := _receive(sock)) is not None:
            request, fds = received
            report(_run_one(config, setup, request, fds))
    except _BecomeProgram:
        sock.detach()  # already closed in this child: its number may be the program's next file
        raise
    return 0


if __name__ == SUPERVISOR_NAME:  # inside the sandbox; what follows is neither needed nor importable (-S) there
    try:
        _status: int | None = _supervise(marshal.loads(bytes.fromhex(sys.argv[1])))
        _program: tuple[Any, ...] = ()
    except _BecomeProgram as _child:  # a forked child, now the program: run it outside this handler
        _status, _program = None, _child.args
    if _status is not None:
        sys.exit(_status)
    del _status
    run_as_main(*_program)
