"""One run at a time in a run directory: ``RUN/divtrace.lock``, held for the whole of a run that writes it.

:func:`hold_run_directory` is taken by ``divtrace run``, ``divtrace analyze``, ``divtrace report`` and the Python
API (``divtrace.run``, ``divtrace.analyze``; :func:`~divtrace.executors.driver.run_study` too). Its contract:

- **Exclusive, released on every exit.** The lock is an ``flock`` on the lock file (through ``filelock``'s
  :class:`~filelock.UnixFileLock`, without its soft fallback). It is released when the block ends, normally, by an
  error or by Ctrl-C; when the process dies any other way (``kill -9``, a crash) the kernel releases it.
- **Busy: refused at once, or waited for.** Another process holding the directory raises
  :class:`RunDirectoryInUse`, naming the holder (command, pid, host, since when) and how to wait; ``wait=True``
  says once that it waits (through ``say``), then waits until the holder is done.
- **Nested holds are free.** A thread that already holds the directory holds it again at no cost (the command
  line takes the lock before loading task data, then calls the Python API, which takes it too). Another thread of
  the same process is a holder like any other.
- **Who holds it is in the file.** The holder writes one JSON line (:class:`Holder`: pid, host, command, since)
  into the lock file once it holds the lock, and removes the file, still holding the lock, when it is done (and
  the directory, when the hold created it and nothing was written in it: a run refused or failed before its first
  output leaves no trace). A waiter that had opened the removed file finds it unlinked after locking it and tries
  again on a new one (``filelock`` checks the link count; a removed directory is made again), so two holders never
  overlap.
- **Stale locks are taken over, saying so.** A lock file that still names a holder when its lock is free was left
  by a process that ended without releasing it (killed): the next run takes it over and says whose it was.
  Should the lock be busy although its named holder is no longer running on this host, a process that holder
  started (a forked child) still has the lock file open, and the message says so.

Network file systems: on NFS, Linux emulates ``flock`` with byte-range locks that the server arbitrates, so runs on
two machines exclude each other as long as the mount has locking (not ``nolock`` or ``local_lock=flock|all``, where
locks are only seen on one machine). A client that dies holds its lock until the server expires its lease (NFSv4,
about 90 s), then the next run takes it over. Where ``flock`` is not supported at all (some FUSE file systems) the
run goes on without a lock and ``say`` tells the user that nothing stops another run from writing the directory at
the same time. Whether a named holder is still running can only be checked on its own host.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from divtrace.errors import DivtraceError
from divtrace.runs.layout import RunLayout

#: Where the lock's messages go (waiting, a stale lock taken over, no lock possible).
Say = Callable[[str], None]

#: How often a waiting run tries the lock again, in seconds.
POLL_SECONDS = 0.2
#: errnos of a file system that cannot flock.
_NO_FLOCK = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK})

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holder:
    """Who holds a run directory: ``command`` (``divtrace run``...), its ``pid`` on ``host``, since (UTC) when."""

    pid: int
    host: str
    command: str
    since: datetime

    @classmethod
    def this_process(cls, command: str) -> Holder:
        """This process, holding from now on, for ``command``."""
        return cls(os.getpid(), socket.gethostname(), command, datetime.now(UTC).replace(microsecond=0))

    def to_json(self) -> str:
        """One JSON line, as the lock file holds it."""
        fields = {"pid": self.pid, "host": self.host, "command": self.command, "since": self.since.isoformat()}
        return json.dumps(fields) + "\n"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder a lock file's ``text`` names; None when it names none (empty, or not a holder's line)."""
        try:
            fields = json.loads(text)
            since = datetime.fromisoformat(fields["since"])
            return cls(int(fields["pid"]), str(fields["host"]), str(fields["command"]), since)
        except (ValueError, TypeError, KeyError):
            return None

    def running(self) -> bool | None:
        """Whether its process still runs; None when it runs on another host (it cannot be told from here)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            return True
        return True

    def describe(self) -> str:
        """``divtrace run (pid 4242 on host h, since 05:12:03 UTC)`` (the date too when it is not today's)."""
        since = self.since.astimezone(UTC)
        when = since.strftime("%H:%M:%S" if since.date() == datetime.now(UTC).date() else "%Y-%m-%d %H:%M:%S")
        return f"{self.command} (pid {self.pid} on host {self.host}, since {when} UTC)"


class RunDirectoryInUse(DivtraceError):
    """Another process holds the run directory.

    Attributes:
        directory: the run directory.
        holder: who holds it, as its lock file says (None when the file names nobody yet).
    """

    def __init__(self, directory: Path, holder: Holder | None, wait_flag: str) -> None:
        self.directory = directory
        self.holder = holder
        super().__init__(f"{directory} is in use by {_who(holder)}; wait for it, or pass {wait_flag}")


def _who(holder: Holder | None) -> str:
    """The holder in words, saying when its named process is gone but the lock is still held."""
    if holder is None:
        return "another divtrace process (it has not written who it is yet)"
    if holder.running() is False:
        return f"{holder.describe()}: that process has ended, but a process it started still has the lock file open"
    return holder.describe()


@dataclass
class _Hold:
    """This process's hold on one directory: the thread that holds it and how many times."""

    thread: int
    depth: int = 1


#: The directories this process holds, by resolved path.
_HELD: dict[Path, _Hold] = {}
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def hold_run_directory(
    root: str | Path,
    command: str,
    *,
    wait: bool = False,
    say: Say | None = None,
    wait_flag: str = "--wait",
) -> Iterator[None]:
    """Hold the run directory ``root`` (created if missing) for the block, as ``command`` (see the module
    documentation for the contract).

    Args:
        root: the run directory.
        command: what holds it, in words for the user (``divtrace run``, ``divtrace.analyze``).
        wait: when another process holds it, wait until it is free instead of raising.
        say: where the messages go (that it waits, that a stale lock is taken over, that no lock is possible);
            default: a warning of the ``divtrace.runs.lock`` logger.
        wait_flag: how the user asks to wait, for the refusal (``--wait``; ``wait=True`` in Python).

    Raises:
        RunDirectoryInUse: another process (or another thread of this one) holds it and ``wait`` is False.
    """
    tell = say or _logger.warning
    directory = Path(root)
    created = _make_directory(directory)
    key = directory.resolve()
    with _HELD_LOCK:
        nested = key in _HELD and _HELD[key].thread == threading.get_ident()
        if nested:
            _HELD[key].depth += 1
    if nested:
        try:
            yield
        finally:
            with _HELD_LOCK:
                _HELD[key].depth -= 1
        return
    lock = _FileLock(RunLayout(directory).lock_file, Holder.this_process(command))
    try:
        locked = lock.acquire(directory, wait=wait, say=tell, wait_flag=wait_flag)  # False: no flock here (said)
    except BaseException:
        if created:
            _remove_if_empty(directory)
        raise
    with _HELD_LOCK:
        _HELD[key] = _Hold(threading.get_ident())
    try:
        yield
    finally:
        with _HELD_LOCK:
            del _HELD[key]
        if locked:
            lock.release(directory if created else None)
        elif created:
            _remove_if_empty(directory)


def _make_directory(directory: Path) -> bool:
    """Create ``directory`` (and its parents) unless it exists; whether this call created it."""
    try:
        directory.mkdir(parents=True)
    except FileExistsError:
        return False
    return True


def _remove_if_empty(directory: Path) -> None:
    """Remove ``directory`` when nothing was written in it (a run refused or failed before its first output leaves
    no trace of a directory it created)."""
    with contextlib.suppress(OSError):
        directory.rmdir()


class _FileLock:
    """The flock on one lock file, with the holder's line written into it (see the module documentation)."""

    def __init__(self, path: Path, holder: Holder) -> None:
        from filelock import UnixFileLock

        self.path, self.holder = path, holder
        self.previous: Holder | None = None
        self._fd: int | None = None
        self._lock = UnixFileLock(
            path, thread_local=False, fallback_to_soft=False, poll_interval=POLL_SECONDS, on_acquired=self._claim
        )

    def acquire(self, directory: Path, *, wait: bool, say: Say, wait_flag: str) -> bool:
        """Take the lock (see :func:`hold_run_directory`); False when the file system cannot flock (said)."""
        from filelock import Timeout

        try:
            try:
                self._take(blocking=False)
            except Timeout:
                holder = self._holder_of_busy_lock()
                if not wait:
                    raise RunDirectoryInUse(directory, holder, wait_flag) from None
                say(f"{directory} is in use by {_who(holder)}; waiting until it is free (Ctrl-C to stop)")
                self._take(blocking=True)
        except OSError as err:
            if err.errno not in _NO_FLOCK:
                raise
            say(
                f"cannot lock {directory} ({self.path}: {err.strerror}): its file system does not support flock, "
                "so nothing stops another run from writing the directory at the same time"
            )
            return False
        if self.previous is not None:
            say(f"{directory}: taking over the lock of {self.previous.describe()}, which ended without releasing it")
        return True

    def release(self, created: Path | None = None) -> None:
        """Remove the lock file (still holding the lock, and only if it is still this lock's file), and the
        directory ``created`` when it is empty, then unlock."""
        try:
            if self._fd is not None and os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                self.path.unlink()
                if created is not None:
                    _remove_if_empty(created)
        except FileNotFoundError:
            pass
        finally:
            self._fd = None
            self._lock.release()

    def _take(self, *, blocking: bool) -> None:
        """Take the flock, recreating the directory when the holder this one waited for removed it (it created
        the directory and left it empty)."""
        while True:
            try:
                self._lock.acquire(blocking=blocking)
                return
            except FileNotFoundError:
                if self.path.parent.exists():
                    raise
                self.path.parent.mkdir(parents=True, exist_ok=True)

    def _claim(self, fd: int) -> None:
        """Once the flock is held: remember a stale holder's line, then write this holder's."""
        self.previous = Holder.parse(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
        line = self.holder.to_json().encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, line, 0)
        self._fd = fd

    def _holder_of_busy_lock(self) -> Holder | None:
        """The holder the lock file names, giving a holder that just took the lock a moment to write its line."""
        for _ in range(20):
            try:
                holder = Holder.parse(self.path.read_text(encoding="utf-8", errors="replace"))
            except FileNotFoundError:
                holder = None
            if holder is not None:
                return holder
            time.sleep(0.05)
        return None
