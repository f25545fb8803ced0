"""The Ray executor on a real local cluster (``ray start --head`` on 127.0.0.1 with 4 CPU workers).

The study is the quickstart cut down (3 prompts per task, K = 3, one prompt per shard so there are 12 generation
shards); the reference is the same study run by the local executor. The Ray run must give the same samples and
the same scores; a generator worker killed (SIGKILL) in the middle of the run must cost only its shard, retried,
with every shard complete, none duplicated, and a second run must do nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from divtrace.cli import app
from divtrace.executors.local import run_study
from divtrace.samples import read_samples
from divtrace.study import ExecutorSpec, Study, small_quickstart_study

pytest.importorskip("ray")

PROMPTS = 3
K = 3
CHECKPOINTS = ("gemma-3-270m", "smollm2-135m-instruct")
TASKS = ("open_ended", "arithmetic")


def small_study() -> Study:
    """The quickstart cut down, one prompt per shard, on the Ray executor with 2 replicas per checkpoint."""
    study = small_quickstart_study(PROMPTS, K, 8, seed=11, name="ray-small")
    return study.model_copy(update={"executor": ExecutorSpec(type="ray", replicas=2, cpus_per_worker=1)})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def ray_cluster() -> Iterator[str]:
    """A local Ray cluster: a head node on 127.0.0.1 with 4 CPU workers and no GPU, stopped afterwards."""
    ray_cli = Path(sys.executable).with_name("ray")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # Ray's socket paths under it must stay < 108 bytes
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [str(ray_cli), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=4",
             "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"]  # fmt: skip
    subprocess.run(start, check=True, env=env, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """The address of a :func:`ray_cluster` kept for the module."""
    with ray_cluster() as address:
        yield address


def samples_of(run: Path) -> dict[tuple[str, str, str], list[str]]:
    found = {}
    for checkpoint in CHECKPOINTS:
        for task in TASKS:
            shards = sorted((run / "samples" / checkpoint / task).glob("shard-*.parquet"))
            assert len(shards) == PROMPTS  # one prompt per shard, all there
            for record in read_samples(shards).records:
                key = (checkpoint, task, record.prompt_id)
                assert key not in found  # no duplicated prompt
                found[key] = record.outputs
            assert not list((run / "samples" / checkpoint / task).glob(".*tmp"))  # no partial shard left
    return found


def scores_of(run: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(run / "scores" / c / f"{t}.parquet") for c in CHECKPOINTS for t in TASKS]
    keys = ["checkpoint", "task", "prompt_id", "metric", "subset"]
    return pd.concat(frames).sort_values(keys).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("local") / "run"
    run_study(small_study().model_copy(update={"executor": ExecutorSpec()}), run)
    return run


@pytest.mark.slow
def test_ray_run_matches_local_and_second_run_does_nothing(ray_address: str, local_run: Path, tmp_path: Path) -> None:
    from divtrace.executors.ray_executor import run_study_ray

    run = tmp_path / "run"
    reports = {r.stage: r for r in run_study_ray(small_study(), run, address=ray_address)}
    assert len(reports["generate"].ran) == 4 and len(reports["score"].ran) == 4 and len(reports["verify"].ran) == 2
    assert samples_of(run) == samples_of(local_run)
    ours, theirs = scores_of(run), scores_of(local_run)
    assert ours[["checkpoint", "task", "prompt_id", "metric", "subset"]].equals(
        theirs[["checkpoint", "task", "prompt_id", "metric", "subset"]]
    )
    pd.testing.assert_series_equal(ours["value"], theirs["value"], rtol=1e-6, atol=1e-9)
    assert (run / "report" / "index.html").exists()

    # Again, through the command line: nothing to do, nothing rewritten.
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    study_file = tmp_path / "study.yaml"
    study_file.write_text(small_study().to_yaml())
    result = CliRunner().invoke(
        app, ["run", str(study_file), "--out", str(run), "--executor", "ray", "--address", ray_address],
        env={"COLUMNS": "400"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for stage in ("generate", "verify", "score", "analyze", "report"):
        assert f"{stage}: ran 0" in result.output
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


def generator_workers() -> list[int]:
    """PIDs of Ray worker processes running a ShardGenerator actor (Ray names them ``ray::ShardGenerator...``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(b"ray::ShardGenerator"):
                pids.append(int(entry))
    return pids


@pytest.mark.slow
def test_worker_killed_mid_run_loses_only_its_shard(ray_address: str, local_run: Path, tmp_path: Path) -> None:
    from divtrace.executors.ray_executor import run_study_ray

    run = tmp_path / "run"
    killed: list[int] = []
    shards_at_kill: list[int] = []

    def kill_a_busy_generator() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            written = list((run / "samples").rglob("shard-*.parquet")) if (run / "samples").exists() else []
            busy = [pid for pid in generator_workers() if b"generate" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            if written and busy:  # some shards done, a worker in the middle of the next one
                shards_at_kill.append(len(written))
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_generator, daemon=True)
    killer.start()
    run_study_ray(small_study(), run, address=ray_address)
    killer.join(timeout=5)
    assert killed, "no generator worker was caught mid-shard"
    assert shards_at_kill[0] < len(CHECKPOINTS) * len(TASKS) * PROMPTS
    assert samples_of(run) == samples_of(local_run)  # complete, no duplicates, same samples as the local run
    for checkpoint in CHECKPOINTS:
        for task in TASKS:
            assert (run / "samples" / checkpoint / task / "_complete.json").exists()
