"""One run at a time in a run directory (``runs/lock.py``): real processes hold ``RUN/divtrace.lock``.

The fast tests hold the directory in a small Python subprocess that says when it holds it and lets go when its
stdin closes; the slow ones run real ``divtrace run`` commands of a small study on one ``--out``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from divtrace.errors import DivtraceError
from divtrace.runs.layout import RunLayout
from divtrace.runs.lock import Holder, RunDirectoryInUse, hold_run_directory
from tests.run_commands import (
    environment,
    flat,
    run_divtrace,
    small_study,
    start_divtrace,
    wait_for_holder,
)

#: Holds argv[1] as "divtrace run", prints "held", and lets go when stdin closes. With argv[2] == "child", it
#: hands its lock descriptor to a child process, prints the child's pid, and dies without letting go.
HOLDER = """
import os, subprocess, sys
from divtrace.runs.lock import hold_run_directory
with hold_run_directory(sys.argv[1], "divtrace run"):
    if sys.argv[2:] == ["child"]:
        lock = os.path.realpath(os.path.join(sys.argv[1], "divtrace.lock"))
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")
               if os.path.realpath(f"/proc/self/fd/{fd}") == lock]
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], pass_fds=fds,
                                 stdout=subprocess.DEVNULL)
        print(child.pid, flush=True)
        os._exit(0)
    print("held", flush=True)
    sys.stdin.read()
"""
SINCE = r"since \d\d:\d\d:\d\d UTC"


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding ``tmp_path / "run"`` until its stdin closes."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "run")],
        env=environment(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    yield process
    assert process.stdin is not None
    if not process.stdin.closed:
        process.stdin.close()  # lets go, if it still holds
    assert process.wait(timeout=60) in (0, -signal.SIGKILL)
    process.stdout.close()


def held_by(run: Path) -> Holder | None:
    """The holder ``run``'s lock file names (None: no file, or it names nobody)."""
    lock = RunLayout(run).lock_file
    return Holder.parse(lock.read_text()) if lock.exists() else None


def test_a_held_directory_is_refused_at_once_naming_the_holder(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    run = tmp_path / "run"
    with pytest.raises(RunDirectoryInUse) as refused, hold_run_directory(run, "divtrace run"):
        pytest.fail("the directory was held twice")
    who = rf"divtrace run \(pid {holder.pid} on host {re.escape(socket.gethostname())}, {SINCE}\)"
    assert re.fullmatch(rf"{re.escape(str(run))} is in use by {who}; wait for it, or pass --wait", str(refused.value))
    assert refused.value.holder is not None and refused.value.holder.pid == holder.pid
    with (
        pytest.raises(RunDirectoryInUse, match=r"wait for it, or pass wait=True$"),
        hold_run_directory(run, "divtrace.run", wait_flag="wait=True"),
    ):
        pytest.fail("the directory was held twice")
    assert held_by(run) == refused.value.holder  # the refused ones left the holder's file alone


def test_wait_says_so_once_and_holds_once_the_holder_is_done(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    run = tmp_path / "run"
    said: list[str] = []

    def say(message: str) -> None:  # told that it waits: now let the holder finish
        said.append(message)
        assert holder.stdin is not None
        holder.stdin.close()

    with hold_run_directory(run, "divtrace run", wait=True, say=say):
        assert holder.wait(timeout=60) == 0
        now = held_by(run)
        assert now is not None and now.pid == os.getpid()
    assert len(said) == 1
    assert re.fullmatch(
        rf"{re.escape(str(run))} is in use by divtrace run \(pid {holder.pid} on host .+, {SINCE}\); waiting until "
        r"it is free \(Ctrl-C to stop\)",
        said[0],
    )
    assert not RunLayout(run).lock_file.exists()


def test_a_lock_left_by_a_killed_holder_is_taken_over_saying_so(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    run = tmp_path / "run"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    left = held_by(run)
    assert left is not None and left.pid == holder.pid and left.running() is False  # the file outlived its holder
    said: list[str] = []
    with hold_run_directory(run, "divtrace run", say=said.append):
        now = held_by(run)
        assert now is not None and now.pid == os.getpid()
    assert said == [f"{run}: taking over the lock of {left.describe()}, which ended without releasing it"]


def test_a_released_directory_keeps_no_lock_file_and_the_next_run_says_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    said: list[str] = []
    with hold_run_directory(run, "divtrace run", say=said.append):
        (run / "study.yaml").write_text("name: x\n")
    assert [path.name for path in run.iterdir()] == ["study.yaml"]
    with hold_run_directory(run, "divtrace run", say=said.append):
        assert RunLayout(run).lock_file.exists()
    assert [path.name for path in run.iterdir()] == ["study.yaml"]
    assert said == []


def test_a_directory_the_hold_created_is_removed_when_nothing_was_written_in_it(tmp_path: Path) -> None:
    run = tmp_path / "new" / "run"
    with pytest.raises(DivtraceError, match="no task data"), hold_run_directory(run, "divtrace run"):
        raise DivtraceError("no task data")  # a run that fails before its first output
    assert not run.exists() and (tmp_path / "new").exists()
    tmp_path.joinpath("kept").mkdir()
    with hold_run_directory(tmp_path / "kept", "divtrace run"):  # one it did not create stays, empty or not
        pass
    assert (tmp_path / "kept").is_dir()


def test_nested_holds_in_one_thread_are_free_and_another_thread_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    refused: list[BaseException] = []

    def other_thread() -> None:
        try:
            with hold_run_directory(run, "divtrace report"):
                pass
        except RunDirectoryInUse as err:
            refused.append(err)

    with hold_run_directory(run, "divtrace run"):
        with hold_run_directory(run, "divtrace.run"):  # the command line holds it, then the Python API
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
        now = held_by(run)
        assert now is not None and now.command == "divtrace run"  # the inner hold left the outer's file alone
    assert len(refused) == 1 and f"in use by divtrace run (pid {os.getpid()} " in str(refused[0])
    assert not RunLayout(run).lock_file.exists()


def test_a_lock_still_held_by_a_child_of_a_dead_holder_says_so(tmp_path: Path) -> None:
    run = tmp_path / "run"
    parent = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run), "child"], env=environment(), stdout=subprocess.PIPE, text=True
    )
    stdout, _ = parent.communicate(timeout=60)
    child = int(stdout)
    try:
        with pytest.raises(RunDirectoryInUse) as refused, hold_run_directory(run, "divtrace run"):
            pytest.fail("the directory was held twice")
        assert f"divtrace run (pid {parent.pid} on host " in str(refused.value)
        assert "that process has ended, but a process it started still has the lock file open" in str(refused.value)
    finally:
        os.kill(child, signal.SIGKILL)
    said: list[str] = []
    with hold_run_directory(run, "divtrace run", wait=True, say=said.append):  # the child's end lets it go
        pass
    assert said[-1].startswith(f"{run}: taking over the lock of divtrace run (pid {parent.pid} ")


@pytest.mark.slow
def test_a_second_run_stops_at_once_and_a_waiting_one_finds_everything_done(tmp_path: Path) -> None:
    """Three ``divtrace run`` on one --out: the first holds it (paused with SIGSTOP while the others try, so it
    provably holds it); the second stops at once, exit 2, naming it; the third (--wait) says that it waits, and once
    the first is done finds every unit done."""
    study = small_study(tmp_path / "study.yaml")
    run = tmp_path / "run"
    first = start_divtrace("run", study, "--out", run, log=tmp_path / "first.log")
    third = None
    try:
        holder = wait_for_holder(run, first)
        first.send_signal(signal.SIGSTOP)
        second = run_divtrace("run", study, "--out", run)
        assert second.returncode == 2, second.stderr
        assert second.stderr.endswith(f"error: {run} is in use by {holder.describe()}; wait for it, or pass --wait\n")
        assert "plan of study" not in second.stderr  # it stopped before loading task data

        third = start_divtrace("run", study, "--out", run, "--wait", log=tmp_path / "third.log", stderr=subprocess.PIPE)
        assert third.stderr is not None
        said = ""
        while "(Ctrl-C to stop)" not in flat(said):
            line = third.stderr.readline()
            assert line, f"the waiting run ended without saying that it waits: {said}"
            said += line
        assert flat(said) == f"note: {run} is in use by {holder.describe()}; waiting until it is free (Ctrl-C to stop)"
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=1800) == 0, (tmp_path / "first.log").read_text()
    _, rest = third.communicate(timeout=1800)
    assert third.returncode == 0, rest
    assert "waiting" not in rest  # said once
    first_log = (tmp_path / "first.log").read_text()
    for stage, units in (("generate", 4), ("verify", 2), ("score", 4), ("analyze", 1), ("report", 1)):
        assert f"{stage}: ran {units}, already done 0" in first_log
        assert f"{stage}: ran 0, already done {units}" in rest
    assert not RunLayout(run).lock_file.exists()


@pytest.mark.slow
def test_a_run_killed_with_sigkill_leaves_a_lock_the_next_run_takes_over(
    small_run_copy: tuple[Path, Path], tmp_path: Path
) -> None:
    """The run directory is a copy of the session's finished ``small_run`` without its report: the next run takes
    the lock over and still has a stage to run (the lock, not generation, is what this test is about)."""
    study, run = small_run_copy
    shutil.rmtree(run / "report")
    killed = start_divtrace("run", study, "--out", run, log=tmp_path / "killed.log")
    holder = wait_for_holder(run, killed)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert held_by(run) == holder

    after = run_divtrace("run", study, "--out", run)
    assert after.returncode == 0, after.stderr
    taken = f"note: {run}: taking over the lock of {holder.describe()}, which ended without releasing it"
    assert flat(after.stderr).startswith(taken)
    assert "report: ran 1" in after.stderr and not RunLayout(run).lock_file.exists()


def test_without_flock_the_run_goes_on_unlocked_saying_so_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that cannot flock (some FUSE mounts): ENOSYS from flock, as filelock's native lock sees it."""
    import errno

    from filelock._native import _unix

    def no_flock(fd: int) -> bool:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(_unix, "lock_fd_nonblocking", no_flock)
    run = tmp_path / "run"
    said: list[str] = []
    with (
        hold_run_directory(run, "divtrace run", say=said.append),
        hold_run_directory(run, "divtrace.run", say=said.append),  # nested: nothing more to say
    ):
        pass
    assert said == [
        f"cannot lock {run} ({run / 'divtrace.lock'}: Function not implemented): its file system does not support "
        "flock, so nothing stops another run from writing the directory at the same time"
    ]
