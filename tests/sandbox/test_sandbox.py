"""The sandbox against hostile programs: each must end as a SandboxResult with the host intact."""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import socket
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from divtrace.sandbox import (
    SandboxLimits,
    run_many,
    run_python,
    sandbox_capabilities,
)

FAST = SandboxLimits(timeout_s=1.5)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside the sandbox that any uid may enter (under /dev/shm when it exists), removed after."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="divtrace-test-", dir=base))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def process_names() -> set[str]:
    """``comm`` of every live (non-zombie) process on the host."""
    names = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state not in ("Z", "X"):
                names.add(Path(f"/proc/{entry}/comm").read_text().strip())
        except (OSError, IndexError):
            continue
    return names


def name_process(token: str) -> str:
    """Python lines that rename the current process (and its future forks) to ``token`` (<= 15 chars)."""
    return f"import ctypes\nctypes.CDLL(None).prctl(15, {token.encode()!r}, 0, 0, 0)\n"


def strongly_isolated(isolation: str) -> bool:
    """Whether this isolation protects the invoking user's own files and processes (namespaces or a uid drop)."""
    capabilities = sandbox_capabilities(isolation)
    return capabilities.pid_namespace or capabilities.uid_drop


def test_normal_code_runs_ok(isolation: str) -> None:
    result = run_python("import sys\nprint('hello', sys.argv[0])\nprint('warn', file=sys.stderr)", isolation=isolation)
    assert result.status == "ok" and result.ok and result.returncode == 0
    assert result.stdout.split() == ["hello", "main.py"]
    assert result.stderr.strip() == "warn"
    assert result.isolation == isolation
    assert not result.stdout_truncated and result.duration_s < 5


def test_exception_is_an_error_with_its_message(isolation: str) -> None:
    result = run_python("raise ValueError('boom')", isolation=isolation)
    assert result.status == "error" and result.returncode == 1
    assert result.summary() == "ValueError: boom"


def test_limits_are_applied(isolation: str) -> None:
    limits = SandboxLimits(timeout_s=5, memory_mb=300, max_processes=20, max_file_mb=2, max_open_files=32)
    code = textwrap.dedent(
        """
        import json, resource
        names = ["RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CPU", "RLIMIT_CORE"]
        print(json.dumps({name: resource.getrlimit(getattr(resource, name))[0] for name in names}))
        """
    )
    values = json.loads(run_python(code, limits, isolation=isolation).stdout)
    assert values["RLIMIT_AS"] == 300 * 1024 * 1024
    assert values["RLIMIT_FSIZE"] == 2 * 1024 * 1024
    assert values["RLIMIT_NOFILE"] == 32
    assert values["RLIMIT_CPU"] == 6
    assert values["RLIMIT_CORE"] == 0
    if sandbox_capabilities(isolation).uid_drop or sandbox_capabilities(isolation).user_namespace:
        assert values["RLIMIT_NPROC"] == 20


def test_infinite_loop_times_out_promptly(isolation: str) -> None:
    result = run_python("while True:\n    pass", SandboxLimits(timeout_s=1.0), isolation=isolation)
    assert result.status == "timeout" and result.returncode is None
    assert 1.0 <= result.duration_s < 3.5
    assert result.summary().startswith("timeout after")


def test_fork_bomb_is_bounded_and_cleaned_up(isolation: str) -> None:
    token = "dtfb" + secrets.token_hex(5)
    code = (
        name_process(token) + "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    result = run_python(code, SandboxLimits(timeout_s=1.0, max_processes=16), isolation=isolation)
    assert result.status in ("timeout", "killed", "error")  # bounded: the limit ended it
    assert token not in process_names()
    assert run_python("print('still fine')", isolation=isolation).stdout == "still fine\n"


def test_memory_bomb_fails_inside_the_sandbox(isolation: str) -> None:
    limits = SandboxLimits(timeout_s=10, memory_mb=256)
    one_shot = run_python("x = bytearray(8 * 1024 ** 3)", limits, isolation=isolation)
    assert one_shot.status == "error" and "MemoryError" in one_shot.stderr
    growing = run_python("chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))", limits, isolation=isolation)
    assert growing.status in ("error", "killed")
    assert growing.status == "killed" or "MemoryError" in growing.stderr


def test_huge_output_is_capped(isolation: str) -> None:
    limits = SandboxLimits(timeout_s=10, max_output_bytes=10_000)
    endless = run_python("while True:\n    print('x' * 10000)", limits, isolation=isolation)
    assert endless.status == "output_limit" and endless.stdout_truncated
    assert len(endless.stdout) == 10_000 and endless.duration_s < 5
    one_write = run_python("import sys\nsys.stderr.write('y' * 10 ** 7)", limits, isolation=isolation)
    assert one_write.status == "output_limit" and one_write.stderr_truncated and len(one_write.stderr) == 10_000
    exact = run_python("import sys\nsys.stdout.write('z' * 10_000)", limits, isolation=isolation)
    assert exact.status == "ok" and not exact.stdout_truncated and len(exact.stdout) == 10_000


def test_files_outside_the_sandbox_survive(isolation: str, shared_dir: Path, tmp_path: Path) -> None:
    private = shared_dir / "private"
    private.mkdir(mode=0o700)
    victims = [private / "keep.txt", tmp_path / "keep.txt"]
    open_dir = shared_dir / "open"  # world-writable: only a private filesystem view protects it
    open_dir.mkdir()
    open_dir.chmod(0o777)
    victims_open = [open_dir / "keep.txt"]
    for victim in victims + victims_open:
        victim.write_text("precious")
        victim.chmod(0o666)
    code = textwrap.dedent(
        f"""
        import os, shutil
        for path in {[str(v) for v in victims + victims_open]!r}:
            attempts = (os.remove, lambda p: open(p, "w").write("gone"), lambda p: shutil.rmtree(os.path.dirname(p)))
            for attempt in attempts:
                try:
                    attempt(path)
                    print("did", path)
                except Exception as exc:
                    print("refused", path, type(exc).__name__)
        """
    )
    result = run_python(code, isolation=isolation)
    assert result.status == "ok", result.stderr
    if strongly_isolated(isolation):
        for victim in victims:
            assert victim.read_text() == "precious"
    if sandbox_capabilities(isolation).readonly_filesystem:
        for victim in victims_open:
            assert victim.read_text() == "precious"


def test_killing_its_parent_leaves_the_host_alive(isolation: str) -> None:
    if not strongly_isolated(isolation):
        pytest.skip("without a uid drop or PID namespace, kill(-1) reaches the invoking user's processes")
    me = os.getpid()
    code = textwrap.dedent(
        f"""
        import os, signal
        attempts = [
            lambda: os.kill(os.getppid(), signal.SIGKILL),
            lambda: os.killpg(os.getpgid(os.getppid()), signal.SIGKILL),
            lambda: os.kill({me}, signal.SIGKILL),
            lambda: os.killpg(os.getpgid({me}), signal.SIGKILL),
            lambda: os.kill(1, signal.SIGKILL),
            lambda: os.kill(-1, signal.SIGKILL),
        ]
        for attempt in attempts:
            try:
                attempt()
            except Exception as exc:
                print(type(exc).__name__, flush=True)
        """
    )
    result = run_python(code, isolation=isolation)
    assert result.status in ("ok", "killed", "error")
    assert os.getpid() == me  # still here
    assert run_python("print(1)", isolation=isolation).stdout == "1\n"


def test_network_is_unreachable(isolation: str) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    code = textwrap.dedent(
        f"""
        import socket
        try:
            connection = socket.create_connection(("127.0.0.1", {port}), timeout=2)
            print("CONNECTED")
        except Exception as exc:
            print("blocked", type(exc).__name__)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(2)
            sock.connect(("127.0.0.1", {port}))
            print("CONNECTED")
        except Exception as exc:
            print("blocked", type(exc).__name__)
        try:
            print("RESOLVED", socket.getaddrinfo("pypi.org", 443))
        except Exception as exc:
            print("blocked", type(exc).__name__)
        """
    )
    try:
        result = run_python(code, isolation=isolation)
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert result.status == "ok", result.stderr
    assert "CONNECTED" not in result.stdout and "RESOLVED" not in result.stdout
    assert result.stdout.count("blocked") == 3


@pytest.mark.parametrize("main_times_out", [False, True])
def test_detached_child_is_killed_with_the_run(isolation: str, shared_dir: Path, main_times_out: bool) -> None:
    token = "dtbg" + secrets.token_hex(5)
    marker_dir = shared_dir / "markers"
    marker_dir.mkdir()
    marker_dir.chmod(0o777)
    marker = marker_dir / "survived"
    code = name_process(token) + textwrap.dedent(
        f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(1.5)
                open({str(marker)!r}, "w").write("I escaped")
            os._exit(0)
        print("parent done", flush=True)
        """
    )
    if main_times_out:
        code += "time.sleep(60)\n"
    start = time.monotonic()
    result = run_python(code, SandboxLimits(timeout_s=1.0 if main_times_out else 10), isolation=isolation)
    assert result.status == ("timeout" if main_times_out else "ok") and result.stdout == "parent done\n"
    assert result.duration_s < 1.5 or main_times_out  # the run did not wait for the grandchild
    assert token not in process_names()
    time.sleep(max(0.0, start + 2.0 - time.monotonic()))  # past the grandchild's 1.5 s sleep
    assert not marker.exists()
    assert token not in process_names()


def test_environment_secrets_are_not_inherited(isolation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cret-" + secrets.token_hex(8)
    monkeypatch.setenv("DIVTRACE_TEST_SECRET", secret)
    code = textwrap.dedent(
        f"""
        import os
        print(dict(os.environ))
        for pid in ({os.getpid()}, os.getppid(), 1):
            try:
                print(open(f"/proc/{{pid}}/environ", "rb").read())
            except Exception as exc:
                print(type(exc).__name__)
        """
    )
    result = run_python(code, isolation=isolation)
    assert result.status == "ok", result.stderr
    assert secret not in result.stdout + result.stderr
    assert "DIVTRACE_TEST_SECRET" not in result.stdout


def test_working_directory_is_private_and_removed(isolation: str) -> None:
    code = "import os\nprint(os.getcwd())\nprint(sorted(os.listdir('.')))\nopen('scratch.txt', 'w').write('x' * 100)"
    result = run_python(code, isolation=isolation)
    assert result.status == "ok", result.stderr
    cwd, listing = result.stdout.splitlines()
    assert listing == "['main.py']"
    assert "divtrace-sandbox-" in cwd
    assert not os.path.exists(cwd)


def test_parallel_runs(isolation: str) -> None:
    # Each program prints its index and when it was sleeping; with 4 workers the four sleeps overlap (one after
    # the other, each would start after the previous one ended). Overlap is asserted, not a duration.
    codes = [f"import time\nt0 = time.time()\ntime.sleep(1.0)\nprint({i}, t0, time.time())" for i in range(4)]
    results = run_many(codes, SandboxLimits(timeout_s=30), workers=4, isolation=isolation)
    assert all(r.status == "ok" for r in results)
    spans = [r.stdout.split() for r in results]
    assert [int(span[0]) for span in spans] == [0, 1, 2, 3]  # results in input order
    starts, ends = [float(span[1]) for span in spans], [float(span[2]) for span in spans]
    assert max(starts) < min(ends)  # all four were asleep at the same moment
    assert run_many([], isolation=isolation) == []


def test_capabilities_describe_the_isolation() -> None:
    capabilities = sandbox_capabilities()
    record = capabilities.as_dict()
    json.dumps(record)
    assert record["isolation"] in ("namespace", "basic")
    assert record["network_namespace"] == (record["isolation"] == "namespace")
    assert record["socket_guard"] == (record["isolation"] == "basic")
    if os.geteuid() == 0:
        assert record["uid_drop"]
    assert record["python"] and record["python_version"]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxLimits(timeout_s=0)
    with pytest.raises(ValueError, match="cpu_s"):
        SandboxLimits(cpu_s=-1)
    with pytest.raises(ValueError, match="isolation"):
        run_python("print(1)", isolation="docker")  # type: ignore[arg-type]


def test_cleanup_when_the_caller_fails_mid_run(isolation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception in the calling process (here: from the output reader) still kills everything and cleans up."""

    class FailingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
        def select(self, timeout: float | None = None) -> list[Any]:
            time.sleep(0.5)  # let the program start, name itself and fork
            raise RuntimeError("caller interrupted")

    token = "dtcl" + secrets.token_hex(5)
    code = name_process(token) + "import os, time\nif os.fork() == 0:\n    os.setsid()\ntime.sleep(30)\n"
    before = set(os.listdir(tempfile.gettempdir()))
    sandbox_capabilities(isolation)  # probe before the selector is broken
    monkeypatch.setattr(selectors, "DefaultSelector", FailingSelector)
    with pytest.raises(RuntimeError, match="caller interrupted"):
        run_python(code, SandboxLimits(timeout_s=30), isolation=isolation)
    monkeypatch.undo()
    deadline = time.monotonic() + 2
    while token in process_names() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert token not in process_names()
    leftovers = {
        name for name in set(os.listdir(tempfile.gettempdir())) - before if name.startswith("divtrace-sandbox-")
    }
    assert not {name for name in leftovers if os.path.exists(os.path.join(tempfile.gettempdir(), name))}
