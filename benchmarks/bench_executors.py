"""Local vs Ray executor on the same small study: wall time of ``divtrace run`` end to end.

The study is the quickstart cut down (``--prompts`` per task, K = ``--k``, ``--max-new-tokens``, one prompt per
shard). A warm-up local run fills the model and embedding caches first (not timed), so every timed run starts
from the same warm caches; each timed run writes a fresh run directory. The Ray runs use a local cluster started
with ``ray start --head --num-cpus=W`` on 127.0.0.1 (start-up reported separately, not in the run time), with
``replicas = W / 2`` generator actors per checkpoint (2 checkpoints) and ``W`` scorer replicas at most.

Every run's samples are compared with the local run's: the executors must agree exactly.

Run: ``python benchmarks/bench_executors.py [--workers 2 4 --prompts 4 --k 4 --max-new-tokens 16]``; prints a
table and writes ``benchmarks/results/executors.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from divtrace.api import run
from divtrace.samples import read_samples
from divtrace.study import ExecutorSpec, small_quickstart_study


def all_samples(run: Path) -> dict[str, list[str]]:
    """``{shard path/prompt id: outputs}`` of a run directory."""
    shards = sorted((run / "samples").rglob("shard-*.parquet"))
    return {f"{path.relative_to(run)}/{r.prompt_id}": r.outputs for path in shards for r in read_samples(path).records}


def start_cluster(workers: int, temp: Path) -> tuple[str, float]:
    """A head node on 127.0.0.1 with ``workers`` CPUs; (address, seconds it took)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray = str(Path(sys.executable).with_name("ray"))
    started = time.perf_counter()
    done = subprocess.run(
        [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={workers}",
         "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"],
        capture_output=True, text=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"ray start failed:\n{done.stderr[-2000:]}")
    return f"127.0.0.1:{port}", time.perf_counter() - started


def stop_cluster() -> None:
    subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "executors.json")
    args = parser.parse_args()

    study = small_quickstart_study(args.prompts, args.k, args.max_new_tokens, seed=5, name="bench-executors")
    root = Path(tempfile.mkdtemp(prefix="divtrace-bench-executors-"))
    run(study, root / "warm-up", executor="local")  # fills the model and embedding caches
    rows = []
    started = time.perf_counter()
    run(study, root / "local", executor="local")
    rows.append({"executor": "local", "workers": 1, "run_s": round(time.perf_counter() - started, 2)})
    reference = all_samples(root / "local")
    for workers in args.workers:
        # Ray's socket paths live under the temp dir and must stay under 108 bytes (AF_UNIX): keep it short.
        address, startup = start_cluster(workers, Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp")))
        try:
            spec = ExecutorSpec(type="ray", address=address, replicas=max(1, workers // 2), cpus_per_worker=1)
            started = time.perf_counter()
            run(study.model_copy(update={"executor": spec}), root / f"ray-{workers}", executor="ray")
            elapsed = time.perf_counter() - started
        finally:
            stop_cluster()
        same = all_samples(root / f"ray-{workers}") == reference
        rows.append(
            {"executor": "ray", "workers": workers, "run_s": round(elapsed, 2), "cluster_start_s": round(startup, 2),
             "same_samples_as_local": same}
        )  # fmt: skip
    local_s = rows[0]["run_s"]
    for row in rows:
        row["ratio_to_local"] = round(row["run_s"] / local_s, 3)
    result = {
        "study": {"checkpoints": 2, "tasks": 2, "prompts_per_task": args.prompts, "k": args.k,
                  "max_new_tokens": args.max_new_tokens, "shards": 4 * args.prompts},
        "machine": {"cpu_threads": os.cpu_count(), "python": platform.python_version()},
        "runs": rows,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print("  ".join(f"{key}={value}" for key, value in row.items()))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
