"""The Ray executor on a real local cluster (``ray start --head`` on 127.0.0.1 with 4 CPU workers).

The study is the quickstart cut down (3 prompts per task, K = 3, one prompt per shard so there are 12 generation
shards); the reference is the same study run by the local executor. The Ray run goes through the same driver: it
must write the same files and markers, the same samples and the same scores; a shard made with other settings is
refused naming the setting, as it is locally; a generator worker killed (SIGKILL) in the middle of the run must
cost only its shard, retried, with every shard complete, none duplicated, and a second run must do nothing.

The clusters and the driver (this process, and the subprocesses it starts) live in a temporary HOME, so the suite
never reads or writes the real ``~/.ray`` (Ray's token file ``~/.ray/auth_token`` decides whether a cluster from
``ray start --head`` requires token authentication).
"""

from __future__ import annotations

import contextlib
import json
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

import divtrace
from divtrace.cli import app
from divtrace.errors import DivtraceError
from divtrace.generate.resume import ResumeMismatchError
from divtrace.generate.store import read_shard_keys
from divtrace.samples import read_samples
from divtrace.study import ExecutorSpec, Study, small_quickstart_study
from divtrace.study.spec import JudgeSpec
from divtrace.study.sweep import SweepSpec
from tests.interrupt import check_interrupted, check_resumed, interrupt_run
from tests.judge import judges
from tests.judge_server import JudgeServer

pytest.importorskip("ray")

PROMPTS = 3
K = 3
CHECKPOINTS = ("base", "sft")
TASKS = ("open_ended", "arithmetic")


def small_study() -> Study:
    """The quickstart cut down, one prompt per shard, on the Ray executor with 2 replicas per checkpoint."""
    study = small_quickstart_study(PROMPTS, K, 8, seed=11, name="ray-small")
    return study.model_copy(update={"executor": ExecutorSpec(type="ray", replicas=2, cpus_per_worker=1)})


def judged(study: Study, endpoint: str) -> Study:
    """``study`` with a judge at ``endpoint``: open_ended by Arena-Hard against the base (the judge stage, which
    runs in the driver's process on either executor)."""
    spec = JudgeSpec(endpoint=endpoint, model="judge", protocols={"open_ended": "arena_hard_creative"})
    return study.model_copy(update={"judge": spec})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_members(group: int) -> list[int]:
    """PIDs of the live processes in process group ``group``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == group and fields[0] != "Z":
                    members.append(int(entry))
    return members


def stop_group(group: int) -> None:
    """End every process of ``group`` (one cluster's head processes and workers): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        for _ in range(100):
            if not group_members(group):
                return
            time.sleep(0.1)


@contextlib.contextmanager
def isolated_home(home: Path) -> Iterator[Path]:
    """This process (a Ray driver) with HOME ``home`` and no Ray address or auth variables, for the block; the
    embedding cache stays where it was."""
    from divtrace.cache import cache_dir

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIVTRACE_CACHE_DIR", str(cache_dir()))
        patch.setenv("HOME", str(home))
        for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            patch.delenv(name, raising=False)
        yield home


@contextlib.contextmanager
def ray_cluster(home: Path | None = None, **env_vars: str) -> Iterator[str]:
    """A local Ray cluster: a head node on 127.0.0.1 with 4 CPU workers and no GPU, HOME ``home`` (default: a
    fresh directory, made this process's HOME too for the block, so neither side reads the real ``~/.ray``),
    plus ``env_vars``. Stopped afterwards by killing its own process group (never ``ray stop``, which ends every
    Ray on the machine)."""
    ray_cli = Path(sys.executable).with_name("ray")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # Ray's socket paths under it must stay < 108 bytes
    with contextlib.ExitStack() as stack:
        if home is None:
            home = stack.enter_context(isolated_home(Path(temp) / "home"))
            home.mkdir()
        env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", **env_vars}
        start = [str(ray_cli), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                 "--num-cpus=4", "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp}",
                 "--disable-usage-stats"]  # fmt: skip
        starter = subprocess.Popen(
            start, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            output, _ = starter.communicate(timeout=120)
            assert starter.returncode == 0, output.decode(errors="replace")
            yield f"127.0.0.1:{port}"
        finally:
            stop_group(starter.pid)  # the new session's id: ray start's daemons keep it
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh HOME for the module's clusters and drivers (this process included), the real one untouched."""
    with isolated_home(tmp_path_factory.mktemp("home")) as home:
        yield home


@pytest.fixture(scope="module")
def ray_address(ray_home: Path) -> Iterator[str]:
    """The address of a :func:`ray_cluster` kept for the module."""
    with ray_cluster(ray_home) as address:
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


def generation_files(run: Path) -> tuple[list[str], dict[str, object], dict[str, object]]:
    """What generation left under ``run/samples``: every file name, each unit marker's content and each shard's
    sample keys (by path relative to ``samples``)."""
    samples = run / "samples"
    names = sorted(str(path.relative_to(samples)) for path in samples.rglob("*") if path.is_file())
    markers = {str(p.relative_to(samples)): json.loads(p.read_text()) for p in samples.rglob("_complete.json")}
    keys = {str(p.relative_to(samples)): read_shard_keys(p) for p in samples.rglob("shard-*.parquet")}
    return names, markers, keys


def scores_of(run: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(run / "scores" / c / f"{t}.parquet") for c in CHECKPOINTS for t in TASKS]
    keys = ["checkpoint", "task", "prompt_id", "metric", "subset"]
    return pd.concat(frames).sort_values(keys).reset_index(drop=True)


@pytest.fixture(scope="module")
def judge_endpoint() -> Iterator[str]:
    """A deterministic judge server on 127.0.0.1 for the module (tests/judge/judges.py's rules)."""
    with JudgeServer(lambda body: judges.route(body["messages"])) as server:
        yield server.base_url


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, judge_endpoint: str) -> Path:
    run = tmp_path_factory.mktemp("local") / "run"
    divtrace.run(judged(small_study(), judge_endpoint).model_copy(update={"executor": ExecutorSpec()}), run)
    return run


def markers_of(run: Path) -> dict[str, object]:
    """Every unit marker of the run but the analysis' and the report's (their keys hash the score files, whose
    last digits may differ between machines' BLAS), by path relative to the run; the score markers' outputs by path
    only, for the same reason."""
    found = [*run.glob("samples/*/*/_complete.json"), *run.glob("verdicts/*/*.json"), *run.glob("scores/*/*.json"),
             *run.glob("judgments/*/*.json")]  # fmt: skip
    markers = {str(p.relative_to(run)): json.loads(p.read_text()) for p in found}
    for name, marker in markers.items():
        if name.startswith("scores/"):
            marker["outputs"] = [output["path"] for output in marker["outputs"]]
    return markers


def files_of(run: Path) -> list[str]:
    """Every file of the run directory, relative to it."""
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


@pytest.mark.slow
def test_ray_run_matches_local_and_second_run_does_nothing(
    ray_address: str, local_run: Path, judge_endpoint: str, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    study = judged(small_study(), judge_endpoint)
    outcome = divtrace.run(study, run, address=ray_address)  # the study's executor: ray
    reports = {r.stage: r for r in outcome.reports}
    assert len(reports["generate"].ran) == 4 and len(reports["score"].ran) == 4 and len(reports["verify"].ran) == 2
    assert reports["judge"].ran == ["sft/open_ended"]  # the base is the baseline
    assert samples_of(run) == samples_of(local_run)
    names, markers, keys = generation_files(run)
    assert (names, markers, keys) == generation_files(local_run)  # same shard files, keys and unit markers
    assert files_of(run) == files_of(local_run)  # the same files everywhere (one driver writes them)
    assert markers_of(run) == markers_of(local_run)  # the same unit keys and facts
    for checkpoint in CHECKPOINTS:  # verdicts are exact: the same bytes
        verdicts = f"verdicts/{checkpoint}/arithmetic.parquet"
        assert (run / verdicts).read_bytes() == (local_run / verdicts).read_bytes()
    judgments = "judgments/sft/open_ended.parquet"  # the same answers (from the run's own cache)
    assert (
        pd.read_parquet(run / judgments)
        .drop(columns="source")
        .equals(pd.read_parquet(local_run / judgments).drop(columns="source"))
    )
    assert len(markers) == len(CHECKPOINTS) * len(TASKS) and len(keys) == len(markers) * PROMPTS  # multi-shard
    ours, theirs = scores_of(run), scores_of(local_run)
    assert ours[["checkpoint", "task", "prompt_id", "metric", "subset"]].equals(
        theirs[["checkpoint", "task", "prompt_id", "metric", "subset"]]
    )
    pd.testing.assert_series_equal(ours["value"], theirs["value"], rtol=1e-6, atol=1e-9)
    assert (run / "report" / "index.html").exists()

    # Again, through the command line: nothing to do, nothing rewritten.
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    study_file = tmp_path / "study.yaml"
    study_file.write_text(study.to_yaml())
    result = CliRunner().invoke(
        app, ["run", str(study_file), "--out", str(run), "--executor", "ray", "--address", ray_address],
        env={"COLUMNS": "400"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for stage in ("generate", "verify", "judge", "score", "analyze", "report"):
        assert f"{stage}: ran 0" in result.output
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_a_shard_made_with_other_settings_is_refused_naming_the_setting(
    ray_address: str, local_run: Path, tmp_path: Path
) -> None:
    """The local run's shards, resumed on Ray with another temperature: the Ray actor that loads the model names
    the setting, as the local executor does (tests/generate/test_shards.py)."""
    run = tmp_path / "run"
    shutil.copytree(local_run / "samples", run / "samples")
    study = small_study()
    hotter = study.model_copy(update={"sampling": study.sampling.model_copy(update={"temperature": 0.5})})
    named = r"shard-\d+ .* was generated with temperature=0\.8, now 0\.5"  # whichever shard's actor answers first
    with pytest.raises(ResumeMismatchError, match=named):
        divtrace.run(hotter, run, address=ray_address)


@pytest.mark.slow
def test_an_adapter_checkpoint_draws_on_ray_what_it_draws_locally(
    ray_address: str, lora_adapter: Path, tmp_path: Path
) -> None:
    """A checkpoint that is gemma-3-270m + a LoRA adapter: the Ray actor gets the adapter with the checkpoint's
    model (``CheckpointModel``), loads and merges it as the local worker does, and draws the same samples."""
    from divtrace.executors.driver import run_stages
    from divtrace.executors.local import LocalExecutor
    from divtrace.executors.ray_executor import RayExecutor
    from divtrace.generate.models import resolve_adapter
    from divtrace.runs.layout import RunLayout
    from divtrace.study import CheckpointSpec
    from divtrace.study.planned import plan_tasks
    from divtrace.study.stages import generate_stage

    small = small_quickstart_study(2, 2, 6, seed=3, name="ray-adapter")
    tuned = CheckpointSpec(name="gemma-sft", model="quickstart:gemma-3-270m", adapter=str(lora_adapter), stage="sft")
    study = small.model_copy(update={"checkpoints": [tuned], "tasks": small.tasks[:1]})
    tasks = plan_tasks(study)
    drawn = {}
    for name, executor in (("local", LocalExecutor()), ("ray", RayExecutor(address=ray_address))):
        layout = RunLayout(tmp_path / name)
        stage = generate_stage(study, tasks, layout)
        assert stage.model("gemma-sft").adapter == str(lora_adapter)
        with executor:
            [report] = run_stages([stage], layout, executor)
        assert len(report.ran) == 1
        drawn[name] = read_samples(sorted((tmp_path / name / "samples").rglob("shard-*.parquet"))).records
    digest = resolve_adapter(str(lora_adapter)).identity["adapter_dir_sha256"]
    assert all((record.model_ref or {})["adapter_dir_sha256"] == digest for record in drawn["ray"])
    assert [(r.outputs, r.sample_keys) for r in drawn["ray"]] == [(r.outputs, r.sample_keys) for r in drawn["local"]]


def generator_workers() -> list[int]:
    """PIDs of Ray worker processes running a stage's actor (Ray names them ``ray::StageWorker...``); while nothing
    is scored yet, the generate stage's."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(b"ray::StageWorker"):
                pids.append(int(entry))
    return pids


@pytest.mark.slow
def test_worker_killed_mid_run_loses_only_its_shard(ray_address: str, local_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    killed: list[int] = []
    shards_at_kill: list[int] = []

    def kill_a_busy_generator() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            written = list((run / "samples").rglob("shard-*.parquet")) if (run / "samples").exists() else []
            busy = [pid for pid in generator_workers() if b"compute" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            if written and busy and not (run / "scores").exists():  # some shards done, a worker in the next one
                shards_at_kill.append(len(written))
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_generator, daemon=True)
    killer.start()
    divtrace.run(small_study(), run, address=ray_address)
    killer.join(timeout=5)
    assert killed, "no generator worker was caught mid-shard"
    assert shards_at_kill[0] < len(CHECKPOINTS) * len(TASKS) * PROMPTS
    assert samples_of(run) == samples_of(local_run)  # complete, no duplicates, same samples as the local run
    for checkpoint in CHECKPOINTS:
        for task in TASKS:
            assert (run / "samples" / checkpoint / task / "_complete.json").exists()


# ------------------------------------------------------------------------------------------------- connecting


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """A TCP port on 127.0.0.1 that accepts connections and never says a word (not a Ray cluster)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"127.0.0.1:{server.getsockname()[1]}"


def test_no_cluster_at_the_address_fails_at_once_before_any_work(tmp_path: Path) -> None:
    from divtrace.executors.ray_connect import check_ray_address
    from divtrace.executors.ray_executor import RayExecutor

    closed = f"127.0.0.1:{free_port()}"
    with pytest.raises(DivtraceError, match=f"no Ray cluster answers at {closed} within 3s.*ray start --head"):
        check_ray_address(closed, timeout_s=3)
    with pytest.raises(DivtraceError, match="no Ray cluster answers"), RayExecutor(address=closed, connect_timeout_s=3):
        pass
    # The Python API and the command line get the same error from that one check.
    with pytest.raises(DivtraceError, match=f"no Ray cluster answers at {closed}"):
        divtrace.run(small_study(), tmp_path / "api", executor="ray", address=closed)
    study_file = tmp_path / "study.yaml"
    study_file.write_text(small_study().to_yaml())
    command = ["run", str(study_file), "--out", str(tmp_path / "cli"), "--executor", "ray", "--address", closed]
    result = CliRunner().invoke(app, command, env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert f"no Ray cluster answers at {closed}" in result.output and "ray start --head" in result.output
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()
    with pytest.raises(DivtraceError, match="expected HOST:PORT"):
        check_ray_address("no-port-here", timeout_s=3)


def test_a_port_that_is_not_a_ray_cluster_fails_within_the_timeout() -> None:
    from divtrace.executors.ray_connect import check_ray_address

    with silent_listener() as address, pytest.raises(DivtraceError, match="does not answer as a Ray cluster"):
        check_ray_address(address, timeout_s=2)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_a_process_waiting_for_a_cluster(sig: signal.Signals) -> None:
    source = str(Path(__file__).resolve().parents[2] / "src")
    with silent_listener() as address:
        waiter = subprocess.Popen(
            [sys.executable, "-c", "import sys; from divtrace.executors.ray_connect import check_ray_address; "
             "print('waiting', flush=True); check_ray_address(sys.argv[1], timeout_s=600)", address],
            env={**os.environ, "PYTHONPATH": source}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert waiter.stdout is not None and waiter.stdout.readline() == "waiting\n"
            time.sleep(1)  # into the wait (the signal must end it wherever it lands)
            waiter.send_signal(sig)
            _, stderr = waiter.communicate(timeout=60)  # TimeoutExpired: the signal was swallowed
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.communicate()
    if sig == signal.SIGINT:
        assert "KeyboardInterrupt" in stderr
    else:
        assert waiter.returncode == -signal.SIGTERM


# ------------------------------------------------------------------------------------------ token authentication


def write_token(home: Path, token: str) -> Path:
    """Put ``token`` where Ray 2.60 keeps it (``~/.ray/auth_token``), as ``ray.init()`` does."""
    path = home / ".ray" / "auth_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token)
    return path


def answers(address: str) -> int:
    """Join the cluster the way divtrace does and run one task on it."""
    from divtrace.executors.ray_executor import RayExecutor

    with RayExecutor(small_study().executor, address=address) as executor:
        return executor.ray.get(executor.ray.remote(lambda: 41).remote()) + 1


@pytest.mark.slow
def test_stale_token_in_home_token_clusters_and_refusals(ray_home: Path, tmp_path: Path) -> None:
    """Issue 14: a token left in ~/.ray (by an earlier local run) makes `ray start --head` require it; divtrace
    must then send it, and say what to do when a cluster refuses it."""
    from divtrace.executors.ray_connect import check_ray_address

    home = tmp_path / "home"
    write_token(home, "stale0123456789abcdef0123456789ab")
    # token mode: the token was there when the cluster started
    with isolated_home(home), pytest.MonkeyPatch.context() as patch, ray_cluster(home) as address:
        assert answers(address) == 42
        patch.setenv("RAY_AUTH_TOKEN", "not-the-clusters-token-0123456789")
        with pytest.raises(DivtraceError, match=r"refused divtrace's connection.*is not this cluster's"):
            check_ray_address(address, timeout_s=5)
        patch.delenv("RAY_AUTH_TOKEN")
        patch.setenv("HOME", str(tmp_path / "empty-home"))
        with pytest.raises(DivtraceError, match=r"divtrace has no token.*RAY_AUTH_TOKEN"):
            check_ray_address(address, timeout_s=5)
    assert not (ray_home / ".ray" / "auth_token").exists()


@pytest.mark.slow
def test_a_local_ray_leaves_no_token_behind(tmp_path: Path) -> None:
    """divtrace's own local Ray authenticates like `ray start --head`: no token in HOME means none is written,
    so a cluster started afterwards does not require one."""
    from divtrace.executors.ray_executor import RayExecutor

    home = tmp_path / "home"
    home.mkdir()
    with isolated_home(home), pytest.MonkeyPatch.context() as patch:
        with RayExecutor(ExecutorSpec(type="ray")):
            pass  # ray.init() of a local instance, then ray.shutdown()
        assert not (home / ".ray" / "auth_token").exists()
        with ray_cluster(home) as address:
            assert answers(address) == 42
            patch.setenv("RAY_AUTH_TOKEN", "a-token-this-cluster-does-not-ask-for")
            assert answers(address) == 42  # a driver with a token joins a cluster without authentication


# ----------------------------------------------------------------------------------------------------- Ctrl-C


@pytest.mark.slow
def test_ctrl_c_ends_the_ray_run_with_units_done_and_a_rerun_resumes(
    ray_address: str, local_run: Path, tmp_path: Path
) -> None:
    study_file = tmp_path / "study.yaml"
    study_file.write_text(small_study().to_yaml())
    run = tmp_path / "run"
    done_before = check_interrupted(*interrupt_run(study_file, run, "ray", ray_address), run)
    divtrace.run(small_study(), run, address=ray_address)
    check_resumed(done_before, run)
    assert samples_of(run) == samples_of(local_run)


@pytest.mark.slow
def test_a_sweep_and_homogenisation_run_on_ray_like_every_stage(
    ray_address: str, local_run: Path, judge_endpoint: str, tmp_path: Path
) -> None:
    """The finished local run gains a sweep of the instruct model and homogenisation, run on Ray: only the
    condition's units and the new tasks' homogenisation run (the condition drawn by its checkpoint's actors, judged
    against the base); the local executor then finds nothing to do (the same keys on both executors)."""
    run = Path(shutil.copytree(local_run, tmp_path / "run"))
    swept = "sft+temperature=1.4"
    study = judged(small_study(), judge_endpoint).model_copy(
        update={"sweep": SweepSpec(temperature=[1.4], checkpoints=["sft"]), "homogenization": True}
    )
    reports = {r.stage: r for r in divtrace.run(study, run, address=ray_address).reports}
    # units finish on Ray in any order: compare them as sets
    assert sorted(reports["generate"].ran) == sorted(f"{swept}/{task}" for task in TASKS)
    assert reports["verify"].ran == [f"{swept}/arithmetic"] and reports["judge"].ran == [f"{swept}/open_ended"]
    assert sorted(reports["score"].ran) == sorted(f"{swept}/{task}" for task in TASKS)
    assert sorted(reports["homogenize"].ran) == sorted(f"homogenization/{task}" for task in TASKS)
    records = read_samples(sorted((run / "samples" / swept / "open_ended").glob("shard-*.parquet"))).records
    assert len(records) == PROMPTS and all(r.sampling and r.sampling["temperature"] == 1.4 for r in records)
    sweep = pd.read_csv(run / "analysis" / "sweep.csv")
    assert set(sweep["condition"]) == {*CHECKPOINTS, swept}
    judged_row = sweep[(sweep["condition"] == swept) & (sweep["task"] == "open_ended")].iloc[0]
    assert judged_row["quality_kind"] == "win rate vs base"
    assert (run / "analysis" / "homogenization.csv").exists() and (run / "analysis" / "recovery.csv").exists()

    local = divtrace.run(study.model_copy(update={"executor": ExecutorSpec()}), run)
    assert all(not report.ran for report in local.reports)
