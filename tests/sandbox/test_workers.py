"""Sandboxes reused for many programs: each program still starts from a clean sandbox, nothing of one program is
left for the next, identical programs run once, and a dead supervisor is replaced without a silent pass."""

from __future__ import annotations

import json
import os
import secrets
import signal
import textwrap
import threading
from pathlib import Path
from typing import cast

import pytest

from divtrace.sandbox import SandboxLimits, SandboxResult, run_many, run_python, sandbox_capabilities
from divtrace.sandbox import host as sandbox_host
from divtrace.sandbox import worker as sandbox_worker
from divtrace.sandbox.limits import Isolation, Plan
from tests.sandbox.test_sandbox import name_process, process_names

LIMITS = SandboxLimits(timeout_s=10)


def _plan(isolation: str) -> Plan:
    return sandbox_host._plan_for(cast(Isolation, isolation))[0]


def _sandbox_id(isolation: str) -> str:
    """Python lines printing ``sandbox <identity>``: the same value in two programs means that the same sandbox ran
    both (its PID namespace, else the program's parent, the supervisor, by pid and start time)."""
    if sandbox_capabilities(cast(Isolation, isolation)).pid_namespace:
        return "import os\nprint('sandbox', os.readlink('/proc/self/ns/pid'))\n"
    return (
        "import os\nparent = os.getppid()\n"
        "start = open(f'/proc/{parent}/stat').read().rsplit(')', 1)[1].split()[19]\n"
        "print('sandbox', f'{parent}-{start}')\n"
    )


def _sandbox_ids(stdouts: list[str]) -> set[str]:
    return {line.split()[1] for out in stdouts for line in out.splitlines() if line.startswith("sandbox ")}


def test_programs_in_one_sandbox_cannot_see_each_others_files(isolation: str) -> None:
    token = secrets.token_hex(6)
    private_tmp = sandbox_capabilities(cast(Isolation, isolation)).private_tmp
    places = ["/tmp", "/var/tmp", "/dev/shm"] if private_tmp else []
    writer = _sandbox_id(isolation) + textwrap.dedent(
        f"""
        open("left-{token}.txt", "w").write("x")
        print("cwd", os.getcwd())
        for place in {places!r}:
            open(os.path.join(place, "left-{token}.txt"), "w").write("x")
        """
    )
    reader = _sandbox_id(isolation) + textwrap.dedent(
        f"""
        import json
        seen = {{place: sorted(os.listdir(place)) for place in {[*places, "."]!r} if os.path.isdir(place)}}
        print("cwd", os.getcwd())
        print("seen", json.dumps(seen))
        """
    )
    results = run_many([writer, reader, writer + "\n", reader + "\n"], LIMITS, workers=1, isolation=isolation)
    assert [result.status for result in results] == ["ok"] * 4, [result.stderr for result in results]
    assert len(_sandbox_ids([result.stdout for result in results])) == 1  # one sandbox ran all four
    cwds = [line.split()[1] for result in results for line in result.stdout.splitlines() if line.startswith("cwd ")]
    assert len(set(cwds)) == 4  # a fresh working directory per program
    for reader_result in (results[1], results[3]):
        seen = json.loads(reader_result.stdout.split("seen ", 1)[1])
        assert seen["."] == ["main.py"]
        for place in places:
            assert not [name for name in seen[place] if token in name], (place, seen[place])


def test_a_daemon_left_by_one_program_is_dead_before_the_next_runs(isolation: str) -> None:
    token = "dtdm" + secrets.token_hex(5)
    daemon = name_process(token) + textwrap.dedent(
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        print("left a daemon", flush=True)
        """
    )
    looker = textwrap.dedent(
        f"""
        import os
        names = []
        for entry in os.listdir("/proc"):
            try:
                stat = open(f"/proc/{{entry}}/stat").read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                names.append(stat.split("(", 1)[1].rsplit(")", 1)[0])
        print({token!r} in names)
        """
    )
    first, second = run_many([daemon, looker], LIMITS, workers=1, isolation=isolation)
    assert first.status == "ok" and first.stdout == "left a daemon\n"
    assert second.status == "ok", second.stderr
    assert second.stdout == "False\n"
    assert token not in process_names()


def test_each_program_gets_its_own_uid(isolation: str) -> None:
    if not sandbox_capabilities(cast(Isolation, isolation)).uid_drop:
        pytest.skip("per-program uids need root")
    codes = [_sandbox_id(isolation) + f"print('uid', os.getuid(), os.getgid(), {i})\n" for i in range(6)]
    results = run_many(codes, LIMITS, workers=1, isolation=isolation)
    assert len(_sandbox_ids([result.stdout for result in results])) == 1
    ids = [line.split()[1:3] for result in results for line in result.stdout.splitlines() if line.startswith("uid")]
    assert len(ids) == 6
    assert len({uid for uid, _ in ids}) == 6
    assert all(uid == gid and int(uid) >= 2_000_000_000 for uid, gid in ids)


def test_identical_programs_run_once(isolation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    real_run = sandbox_worker.Worker.run

    def counting_run(self: sandbox_worker.Worker, code: str, limits: SandboxLimits, python: str) -> SandboxResult:
        ran.append(code)
        return real_run(self, code, limits, python)

    monkeypatch.setattr(sandbox_worker.Worker, "run", counting_run)
    random_line = "import os\nprint(os.urandom(16).hex())\n"
    other = "import os\nprint(os.urandom(16).hex(), 'other')\n"
    results = run_many([random_line, other, random_line, random_line, other], LIMITS, workers=2, isolation=isolation)
    assert sorted(ran) == sorted([random_line, other])
    assert all(result.status == "ok" for result in results)
    assert results[0] is results[2] is results[3] and results[1] is results[4]
    assert results[1].stdout.endswith(" other\n") and not results[0].stdout.endswith(" other\n")
    again = run_python(random_line, LIMITS, isolation=cast(Isolation, isolation))
    assert again.stdout != results[0].stdout  # a separate call runs it again: a new random value
    assert ran.count(random_line) == 2


def _supervisor_pid(runner: sandbox_worker.Runner) -> int:
    """The supervisor of ``runner``'s worker: the child of ``unshare`` with namespaces, else the process itself."""
    assert runner._worker is not None
    pid = runner._worker._proc.pid
    if not runner.plan.namespace:
        return pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_a_supervisor_killed_during_a_run_is_reported_and_replaced(isolation: str) -> None:
    runner = sandbox_worker.Runner(_plan(isolation))
    try:
        warm = runner.run(_sandbox_id(isolation), LIMITS)
        assert warm.status == "ok"
        first_worker = runner._worker
        supervisor = _supervisor_pid(runner)
        killer = threading.Timer(0.5, os.kill, (supervisor, signal.SIGKILL))
        killer.start()
        try:
            victim = runner.run("import time\nprint('running', flush=True)\ntime.sleep(30)\n", LIMITS)
        finally:
            killer.join()
        assert victim.status == "killed" and not victim.ok and victim.returncode is None
        assert victim.stderr.rstrip().endswith(sandbox_worker.SUPERVISOR_DIED)
        assert victim.summary() == sandbox_worker.SUPERVISOR_DIED
        after = runner.run(_sandbox_id(isolation), LIMITS)
        assert after.status == "ok", after.stderr
        assert runner._worker is not first_worker
        assert _sandbox_ids([warm.stdout]) != _sandbox_ids([after.stdout])  # a new sandbox
    finally:
        runner.close()


def test_a_supervisor_that_died_while_idle_is_replaced_transparently(isolation: str) -> None:
    runner = sandbox_worker.Runner(_plan(isolation))
    try:
        assert runner.run("print(1)", LIMITS).stdout == "1\n"
        first_worker = runner._worker
        supervisor = _supervisor_pid(runner)
        os.kill(supervisor, signal.SIGKILL)
        assert first_worker is not None
        first_worker._proc.wait(timeout=10)
        result = runner.run("print(2)", LIMITS)  # the program never reached the dead one: it runs on a new one
        assert result.status == "ok" and result.stdout == "2\n"
        assert runner._worker is not first_worker
    finally:
        runner.close()


def test_no_ipc_object_is_left_for_the_next_program(isolation: str) -> None:
    if not sandbox_capabilities(cast(Isolation, isolation)).pid_namespace:
        pytest.skip("without an IPC namespace, System V objects are the host's")
    key = 0x5D000000 + secrets.randbelow(1 << 20)
    ipc = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]\n"
    )
    creator = (
        _sandbox_id(isolation)
        + ipc
        + textwrap.dedent(
            f"""
        os.umask(0)
        print("shm", libc.shmget({key}, 4096, 0o1000 | 0o666) >= 0)
        print("msg", libc.msgget({key}, 0o1000 | 0o666) >= 0)
        print("sem", libc.semget({key}, 1, 0o1000 | 0o666) >= 0)
        print("mq", libc.mq_open(b"/divtrace-{key}", os.O_CREAT | os.O_RDWR, 0o666, None) >= 0)
        """
        )
    )
    finder = (
        _sandbox_id(isolation)
        + ipc
        + textwrap.dedent(
            f"""
        print("shm", libc.shmget({key}, 0, 0) >= 0)
        print("msg", libc.msgget({key}, 0) >= 0)
        print("sem", libc.semget({key}, 0, 0) >= 0)
        print("mq", libc.mq_open(b"/divtrace-{key}", os.O_RDONLY, 0, None) >= 0)
        """
        )
    )
    created, found = run_many([creator, finder], LIMITS, workers=1, isolation=isolation)
    assert created.status == "ok" and found.status == "ok", (created.stderr, found.stderr)
    assert len(_sandbox_ids([created.stdout, found.stdout])) == 1
    assert "shm True" in created.stdout and "msg True" in created.stdout and "sem True" in created.stdout
    assert [line for line in found.stdout.splitlines() if not line.startswith("sandbox")] == [
        "shm False",
        "msg False",
        "sem False",
        "mq False",
    ]


def test_hostile_leftovers_in_tmp_are_cleared_and_its_size_follows_the_limits(isolation: str) -> None:
    if not sandbox_capabilities(cast(Isolation, isolation)).private_tmp:
        pytest.skip("no private /tmp: the program writes to the host's")
    litter = textwrap.dedent(
        """
        import os
        os.makedirs("/tmp/locked/inner")
        open("/tmp/locked/inner/file", "w").write("x")
        os.chmod("/tmp/locked/inner", 0)
        os.chmod("/tmp/locked", 0)
        os.symlink("/", "/tmp/root-link")
        os.symlink("/tmp/loop", "/tmp/loop")
        os.mkfifo("/dev/shm/fifo")
        os.chdir("/var/tmp")
        for _ in range(40):  # deeper than PATH_MAX from /var/tmp: only replacing the mount removes it
            os.mkdir("d" * 200)
            os.chdir("d" * 200)
        print("littered")
        """
    )
    lister = textwrap.dedent(
        """
        import json, os
        print(json.dumps([sorted(os.listdir("/tmp")), os.listdir("/var/tmp"), os.listdir("/dev/shm")]))
        """
    )
    small, large = SandboxLimits(timeout_s=10, tmp_mb=1), SandboxLimits(timeout_s=10, tmp_mb=8)
    write = "open('/tmp/big', 'wb').write(b'x' * 3 * 1024 * 1024)\nprint('wrote')\n"
    runner = sandbox_worker.Runner(_plan(isolation))
    try:
        littered = runner.run(litter, LIMITS)
        assert littered.status == "ok", littered.stderr
        sandbox = runner._worker
        listed = runner.run(lister, LIMITS)
        assert listed.status == "ok", listed.stderr
        tmp, var_tmp, shm = json.loads(listed.stdout)
        assert len(tmp) == 1 and tmp[0].startswith("divtrace-sandbox-")  # its own working directory only
        assert var_tmp == [] and shm == []
        too_big = runner.run(write, small)
        assert too_big.status == "error" and "No space left on device" in too_big.stderr
        fits = runner.run(write, large)
        assert fits.status == "ok" and fits.stdout == "wrote\n", fits.stderr
        assert runner._worker is sandbox  # one sandbox ran all four
    finally:
        runner.close()
