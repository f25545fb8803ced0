"""The command line as a user meets it: the real ``divtrace`` process, bad input, pipes and a terminal (a pty).

Each test runs ``python -m divtrace.cli`` in a subprocess and checks the first line the user sees, the exit code,
and that nothing was computed before a problem visible at the start was reported.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from divtrace import __version__
from divtrace.samples import read_samples
from divtrace.study import PRESETS

EXAMPLE = Path(__file__).parents[2] / "examples" / "quickstart_samples.jsonl"
SRC = str(Path(__file__).parents[2] / "src")
INSTRUCT = "quickstart:smollm2-135m-instruct"


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``divtrace ARGS`` in a subprocess with stdout and stderr piped (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "divtrace.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def assert_user_error(result: subprocess.CompletedProcess[str], starts: str, code: int = 2) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert first_line(result.stderr).startswith(starts), result.stderr


def test_short_help_and_version() -> None:
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"divtrace {__version__}"
    for args in (["-h"], ["score", "-h"], ["tasks", "show", "-h"]):
        helped = cli(*args)
        assert helped.returncode == 0 and "Usage:" in helped.stdout, args
        assert "<bool>" not in helped.stdout  # flags are shown as flags, not as options taking a value
    generate_help = cli("generate", "-h", env={"COLUMNS": "200"}).stdout
    assert "--limit" in generate_help and "--task-label" in generate_help
    assert "--cache" in cli("score", "-h", env={"COLUMNS": "200"}).stdout
    assert "--no-no-cache" not in cli("score", "-h", env={"COLUMNS": "200"}).stdout


@pytest.mark.parametrize(
    "command",
    [
        ["score", str(EXAMPLE)],
        ["verify", str(EXAMPLE)],
        ["generate", "--model", INSTRUCT, "--prompts", str(EXAMPLE)],
        ["analyze", str(EXAMPLE), "--lineage", "gemma-3-270m>smollm2-135m-instruct"],
        ["run", "quickstart"],
    ],
    ids=lambda command: command[0],
)
def test_out_that_is_a_file_is_refused_before_any_work(command: list[str], tmp_path: Path) -> None:
    taken = tmp_path / "taken.txt"
    taken.write_text("not a directory\n")
    result = cli(*command, "--out", str(taken))
    assert_user_error(result, f"error: --out {taken}: is a file, not a directory")
    assert "loading" not in result.stderr and "stage" not in result.stderr  # nothing started
    under = cli(*command, "--out", str(taken / "sub"))
    assert_user_error(under, f"error: --out {taken / 'sub'}: cannot be created, because {taken} is a file")


def test_out_in_a_read_only_directory_is_refused_before_any_work() -> None:
    # Root writes anywhere: when the tests run as root, the process runs as root without the capabilities that
    # override file permissions (not as another user, who may not be able to read a checkout in a private directory).
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: a read-only directory cannot be made")
        as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    top = Path(tempfile.mkdtemp(prefix="divtrace-ro-"))
    try:
        top.chmod(0o755)
        locked = top / "locked"
        locked.mkdir(mode=0o555)
        locked.chmod(0o555)
        example = top / "samples.jsonl"
        shutil.copy(EXAMPLE, example)
        example.chmod(0o644)
        result = subprocess.run(
            [*as_user, sys.executable, "-m", "divtrace.cli", "score", str(example), "--out", str(locked / "scores")],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, "PYTHONPATH": SRC, "HOME": str(top), "DIVTRACE_CACHE_DIR": str(top / "cache")},
        )
        assert_user_error(result, f"error: --out {locked / 'scores'}: cannot write there (it would be created in")
        assert "Permission denied" in result.stderr
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_mistyped_input_is_an_error_even_when_skipping_invalid_records(tmp_path: Path) -> None:
    result = cli("score", str(EXAMPLE), str(tmp_path / "typo.jsonl"), "--skip-invalid")
    assert_user_error(result, f"error: no such input file or directory: {tmp_path / 'typo.jsonl'}")


def test_empty_or_unknown_metrics_are_refused() -> None:
    assert_user_error(cli("score", str(EXAMPLE), "--metrics", ""), "error: --metrics is empty")
    assert_user_error(cli("score", str(EXAMPLE), "--metrics", "ead,sbret"), "error: --metrics: unknown metric(s) sbret")


def test_bad_sampling_values_name_their_flag(tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello\n")
    result = cli("generate", "--model", INSTRUCT, "--prompts", str(prompts), "--temperature", "-1", "--out",
                 str(tmp_path / "o"))  # fmt: skip
    assert_user_error(result, "error: invalid value for --temperature:")
    assert "loading" not in result.stderr  # refused before the model was loaded
    unknown = cli("generate", "--model", "quickstart:nope", "--prompts", str(prompts), "--out", str(tmp_path / "o"))
    assert_user_error(unknown, "error: --model quickstart:nope: unknown quickstart model; known: quickstart:")
    missing = cli("generate", "--model", "./nowhere.gguf", "--prompts", str(prompts), "--out", str(tmp_path / "o"))
    assert_user_error(missing, "error: --model ./nowhere.gguf: no such file or directory")
    limit = cli("generate", "--model", INSTRUCT, "--prompts", str(prompts), "--limit", "0", "--out", str(tmp_path),
                env={"COLUMNS": "200"})  # fmt: skip
    assert limit.returncode == 2 and "'--limit'" in limit.stderr and "greater than or equal to 1" in limit.stderr


def test_install_hints_keep_their_brackets(tmp_path: Path) -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed in this environment")
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello\n")
    result = cli("generate", "--backend", "vllm", "--model", INSTRUCT, "--prompts", str(prompts), "--out",
                 str(tmp_path / "o"))  # fmt: skip
    assert_user_error(result, "error: the vllm backend needs vllm")
    assert "loading" not in result.stderr  # refused before any model was loaded
    assert "pip install 'divtrace[vllm]'" in result.stderr


def test_piped_tables_keep_every_cell() -> None:
    listing = cli("lineages")
    assert listing.returncode == 0, listing.stderr
    for make in PRESETS.values():
        for checkpoint in make().checkpoints:
            assert checkpoint.model in listing.stdout  # no "allenai/Olmo…" cut at 80 columns
    assert "…" not in listing.stdout


def test_tables_as_csv_and_json() -> None:
    import io

    tasks = pd.read_csv(io.StringIO(cli("tasks", "--format", "csv").stdout))
    assert {"gsm8k", "humaneval", "writingprompts"} <= set(tasks["task"])
    metrics = json.loads(cli("metrics", "--format", "json").stdout)
    assert {"ead", "sbert", "vendi", "nli"} <= {row["name"] for row in metrics}
    # Which definitions are the study's and which are divtrace's own (the study's code has no answer metrics).
    definition = {row["name"]: row["definition"] for row in metrics}
    assert {definition[name] for name in ("ead", "sbert", "vendi", "nli", "ast", "code-sbert")} == {"the study"}
    assert definition["answer-distinct"] == definition["answer-entropy"] == "divtrace's own (not in the study)"
    presets = json.loads(cli("lineages", "--format", "json").stdout)
    assert {row["preset"] for row in presets} == set(PRESETS)
    plan = pd.read_csv(io.StringIO(cli("run", "olmo3-7b", "--dry-run", "--format", "csv").stdout))
    assert {"checkpoint", "task", "samples"} <= set(plan.columns) and len(plan) > 100


def test_progress_is_a_plain_periodic_line_off_a_terminal(tmp_path: Path) -> None:
    result = cli(
        "score", str(EXAMPLE), "--metrics", "ead,sbert", "--format", "json",
        env={"DIVTRACE_PROGRESS_INTERVAL": "0", "DIVTRACE_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "elapsed" in line]
    assert len(lines) >= 3, result.stderr  # it starts, moves and ends, each on its own line
    assert all("\r" not in line and "━" not in line for line in lines)  # no bar redrawing in a log file
    assert any("(100%)" in line for line in lines)
    json.loads(result.stdout)  # stdout holds only the result


def _read_pty(fd: int, process: subprocess.Popen[bytes], timeout: float) -> bytes:
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    return b"".join(chunks)


def test_progress_bars_with_a_rate_on_a_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "divtrace.cli", "score", str(EXAMPLE), "--metrics", "ead,sbert"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "DIVTRACE_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "160", "TERM": "xterm"},
    )
    os.close(follower)
    try:
        output = _read_pty(leader, process, timeout=300).decode(errors="replace")
    finally:
        os.close(leader)
        process.wait(timeout=60)
    assert process.returncode == 0, output
    assert "━" in output  # rich's bar was drawn on the terminal
    assert "/s" in output  # with a rate
    assert "diversity per checkpoint and task" in output


@pytest.fixture
def prompts_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"Say a word about the number {i}.\n" for i in range(6)))
    yield path


@pytest.mark.slow
def test_ctrl_c_during_generate_says_what_is_kept_and_a_rerun_resumes(prompts_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [sys.executable, "-m", "divtrace.cli", "generate", "--model", INSTRUCT, "--prompts", str(prompts_file),
            "-k", "2", "--max-new-tokens", "24", "--shard-size", "1", "--out", str(out)]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shards = out / "samples" / "smollm2-135m-instruct" / "prompts"
    deadline = time.monotonic() + 300
    while not (shards / "shard-00000.parquet").exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    message = next(line for line in stderr.splitlines() if line.startswith("interrupted:"))
    assert "during generate:" in message and "of 6 shard(s)" in message and "rerun the same command" in message
    kept = len(list(shards.glob("shard-*.parquet")))
    assert message.startswith(f"interrupted: during generate: {kept} of 6")

    resumed = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{kept} of 6 shard(s) were already done" in resumed.stderr
    records = read_samples(out / "samples").records
    assert len(records) == 6 and len({r.prompt_id for r in records}) == 6
    assert all(len(r.outputs) == 2 for r in records)


def test_verify_lmeval_logs_with_a_task_map_and_a_renamed_log_with_task(tmp_path: Path) -> None:
    from tests.samples.test_importers import lmeval_line, write_lmeval

    logs = tmp_path / "logs"
    written = write_lmeval(logs, "base", "my_word_problems", [lmeval_line(i) for i in range(2)])
    unmapped = cli("verify", str(logs), "--format", "json")
    assert unmapped.returncode == 0 and json.loads(unmapped.stdout) == []
    assert "--task-map my_word_problems=TASK" in " ".join(unmapped.stderr.split())
    mapped = cli("verify", str(logs), "--task-map", "my_word_problems=gsm8k", "--format", "json")
    assert mapped.returncode == 0, mapped.stderr
    [row] = json.loads(mapped.stdout)
    assert (row["task"], row["verified_as"], row["prompts"]) == ("my_word_problems", "gsm8k", 2)
    bad = cli("verify", str(logs), "--task-map", "my_word_problems")
    assert_user_error(bad, "error:")
    assert "SOURCE=TASK" in bad.stderr

    renamed = tmp_path / "renamed.jsonl"  # the name no longer says lm-eval, nor the task: the content and --task do
    shutil.copy(written, renamed)
    read = cli("verify", str(renamed), "--input-format", "lm-eval", "--task", "gsm8k", "--format", "json")
    assert read.returncode == 0, read.stderr
    [row] = json.loads(read.stdout)
    assert (row["task"], row["verified_as"], row["prompts"]) == ("gsm8k", "gsm8k", 2)


def test_a_full_disk_is_a_system_error_with_its_path_not_a_traceback() -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    result = cli("init", "/dev/full", "--force")  # every write to /dev/full fails with ENOSPC
    assert_user_error(result, "error: No space left on device", code=1)


def test_flags_typer_refuses_get_the_same_one_line_error() -> None:
    choice = cli("score", str(EXAMPLE), "--format", "xml")
    assert_user_error(choice, "error: Invalid value for '--format':")
    assert "score -h" in choice.stderr and "╭" not in choice.stderr
    assert_user_error(cli("scor"), "error: No such command 'scor'. Did you mean 'score'?")
