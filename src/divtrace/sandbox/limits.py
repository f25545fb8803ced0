"""The sandbox's vocabulary: limits, results, errors, the plan of a run (which isolation, which interpreter), and
the per-program uids and rlimits that every worker hands to its supervisor."""

from __future__ import annotations

import math
import os
import secrets
import signal
import threading
from dataclasses import dataclass
from typing import Literal

from divtrace.errors import DivtraceError
from divtrace.sandbox.supervisor import process_statuses

Isolation = Literal["auto", "namespace", "basic"]
Status = Literal["ok", "error", "timeout", "killed", "output_limit"]
_UID_RANGE = (2_000_000_000, 2_100_000_000)  # far above real users, subuid ranges and systemd's dynamic uids


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
class Plan:
    """How to start a run: the isolation, the interpreter, the credentials."""

    namespace: bool
    user_namespace: bool
    drop_uid: bool
    python: str
    unshare: str | None = None

    @property
    def isolation(self) -> str:
        """``namespace`` or ``basic``."""
        return "namespace" if self.namespace else "basic"

    def prefix(self) -> list[str]:
        """The command that puts the supervisor in new namespaces (``unshare ... --``); empty for ``basic``."""
        if not self.namespace:
            return []
        assert self.unshare is not None
        command = [self.unshare]
        if self.user_namespace:
            command += ["--user", "--map-root-user"]
        return [*command, "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount", "--ipc", "--uts", "--"]


_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()


def allocate_uid() -> int:
    """A fresh uid/gid for one program, not in use by another run of this process (release it after)."""
    rng = secrets.SystemRandom()
    with _uid_lock:
        while True:
            uid = rng.randrange(*_UID_RANGE)
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def release_uid(uid: int) -> None:
    """Give back a uid from :func:`allocate_uid` once nothing of its program is left."""
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


def rlimits(limits: SandboxLimits, plan: Plan) -> dict[str, tuple[int, int]]:
    """The rlimits of one program under ``limits`` and ``plan``: name -> (soft, hard)."""
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
