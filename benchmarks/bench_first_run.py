"""A newcomer's first ``divtrace run``: the quickstart from an empty divtrace cache, then warm, then a changed study.

Three runs of the built-in ``quickstart`` study, each ``divtrace run`` in its own process, as a user types it:

1. **fresh**: ``DIVTRACE_CACHE_DIR`` empty (the packaged GGUF model is de-quantised, the adapters merged, the
   embedder loaded cold), a fresh run directory: the first five minutes of a new user;
2. **warm**: the same study into a fresh run directory with the cache the first run left (the baseline of the
   ratio: what the first run costs beyond a warm one);
3. **changed**: the warm run's directory again with one scoring setting changed in its study (EAD with each
   generator's own tokenizer): only scoring, the analysis and the report are redone; the benchmark checks that
   generation and verification ran nothing.

Each run's wall time, and each stage's (from the ``STAGE: done, N unit(s) in T`` lines divtrace prints), are printed
and written to ``benchmarks/results/first_run.json``; the fresh run's samples are compared with the warm run's (the
cache changes nothing drawn). The target of the first run is 180 s on 2 CPU cores.

Run: ``python benchmarks/bench_first_run.py [--work DIR]`` (about 10 minutes on 2 idle cores; needs the machine to
itself: its figures are wall times).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
RESULTS = HERE / "results"
TARGET_S = 180.0
#: ``generate: done, 6 unit(s) in 1.2 min`` / ``score: done, 6 unit(s) in 5 s`` / ``report: done in 1 s``
DONE = re.compile(r"^(\w+): done(?:, \d+ unit\(s\))? in ([\d.]+) (s|min|h)\b", re.MULTILINE)
RAN = re.compile(r"^(\w+): ran (\d+), already done (\d+)", re.MULTILINE)
UNIT_S = {"s": 1.0, "min": 60.0, "h": 3600.0}


def divtrace_run(study: str, out: Path, cache: Path) -> dict[str, Any]:
    """``divtrace run STUDY --out OUT`` with ``DIVTRACE_CACHE_DIR=cache``: wall seconds, per-stage seconds (as
    divtrace reports them, rounded as printed), units run per stage; raises SystemExit when it fails."""
    env = {**os.environ, "DIVTRACE_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", "divtrace.cli", "run", study, "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    output = done.stdout + done.stderr
    stages = {name: float(value) * UNIT_S[unit] for name, value, unit in DONE.findall(output)}
    ran = {name: int(count) for name, count, _ in RAN.findall(output)}
    return {"wall_s": round(wall, 1), "stages_s": stages, "ran": ran}


def samples_of(run: Path) -> dict[str, list[str]]:
    """``{shard/prompt id: outputs}`` of a run directory (to check that two runs drew the same)."""
    from divtrace.samples import read_samples

    shards = sorted((run / "samples").rglob("shard-*.parquet"))
    return {f"{p.relative_to(run)}/{r.prompt_id}": r.outputs for p in shards for r in read_samples(p).records}


def main() -> None:
    """Run the three runs, print a table, write ``benchmarks/results/first_run.json``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=None, help="where the runs and the cache go, kept (default: a temp dir, removed)"
    )
    args = parser.parse_args()
    if args.work is None:  # a temp dir of its own, removed at the end (the runs and the cache take over 1 GB)
        with tempfile.TemporaryDirectory(prefix="bench-first-run-") as work:
            run_benchmark(Path(work))
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        run_benchmark(args.work)


def run_benchmark(work: Path) -> None:
    """The three runs in ``work`` (its ``cache`` must be empty or absent), the table and the results file."""
    cache = work / "cache"
    if cache.exists() and any(cache.iterdir()):
        raise SystemExit(f"{cache} is not empty: the first run must start from an empty cache")

    results: dict[str, Any] = {}
    results["fresh"] = divtrace_run("quickstart", work / "fresh", cache)
    print(f"fresh: {results['fresh']['wall_s']:.0f} s wall {results['fresh']['stages_s']}", flush=True)
    results["warm"] = divtrace_run("quickstart", work / "warm", cache)
    print(f"warm: {results['warm']['wall_s']:.0f} s wall {results['warm']['stages_s']}", flush=True)
    if samples_of(work / "fresh") != samples_of(work / "warm"):
        raise SystemExit("the fresh and the warm run drew different samples")

    study = yaml.safe_load((work / "warm" / "study.yaml").read_text(encoding="utf-8"))
    # EAD with the generator's own tokenizer in place of the study's fixed V: a scoring setting, nothing upstream.
    generator_ead = {"name": "ead", "args": {"tokenizer": "generator"}}
    study["metrics"] = [generator_ead if m == "ead" else m for m in study["metrics"]]
    changed_study = work / "changed.yaml"
    changed_study.write_text(yaml.safe_dump(study), encoding="utf-8")
    results["changed"] = divtrace_run(str(changed_study), work / "warm", cache)
    ran = results["changed"]["ran"]
    print(f"changed: {results['changed']['wall_s']:.0f} s wall, ran {ran}", flush=True)
    if ran.get("generate") or ran.get("verify") or not ran.get("score"):
        raise SystemExit(f"a scoring setting changed should redo scoring and what follows only: ran {ran}")

    fresh, warm = results["fresh"]["wall_s"], results["warm"]["wall_s"]
    summary = {
        "fresh_s": fresh,
        "warm_s": warm,
        "changed_s": results["changed"]["wall_s"],
        "fresh_over_warm": round(fresh / warm, 2),
        "target_s": TARGET_S,
        "meets_target": fresh <= TARGET_S,
        "runs": results,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "load_average_after": os.getloadavg(),
    }
    verdict = "met" if fresh <= TARGET_S else "MISSED"
    print(f"\nfirst run (empty cache): {fresh:.0f} s (target {TARGET_S:.0f} s: {verdict})")
    print(f"warm run (fresh run directory): {warm:.0f} s; first / warm = {fresh / warm:.2f}")
    print(f"changed study (EAD's tokenizer): {results['changed']['wall_s']:.0f} s, ran {ran}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "first_run.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
