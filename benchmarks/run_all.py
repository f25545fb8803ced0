"""The performance record: every benchmark in one command, and one table of where the time goes.

Runs, each in its own process (so one's caches and threads do not disturb the next):

1. ``bench_score.py``: scoring throughput (texts/s) and its ratio to the bare encoder forward pass;
2. ``bench_generate.py``: generation overhead vs a bare transformers ``generate`` (SmolLM2-135M);
3. ``bench_verify.py --cold``: sandboxed HumanEval verification throughput, 4 parallel sandboxes, warm and cold;
4. ``bench_executors.py``: the same small study under the local executor and the Ray executor (2 and 4 workers);
5. ``bench_first_run.py``: the quickstart from an empty divtrace cache, warm, and with one scoring setting changed;
6. ``bench_scaling.py``: time and peak memory of scoring, the analysis and the report from 1x the quickstart to
   the ``olmo3-7b`` study's shape (``--quick``: scoring up to 10x, no olmo3-7b shape);
7. the cost model (:mod:`divtrace.plan.cost`): generated tokens and GPU-hours of the full ``olmo3-7b`` study.

The GPU rate of the cost model is ``--gpu-tokens-per-s`` per model replica: a measured vLLM figure when one is at
hand (``benchmarks/results/vllm.json`` with ``tokens_per_s``, written when a GPU was available), else the
stated assumption, labelled as such. ``--quick`` scores 100 prompts instead of the issue's 500 and shortens the
scaling record.

Run: ``python benchmarks/run_all.py [--quick] [--skip score generate verify executors first_run scaling]``.
Prints the table and writes ``benchmarks/results/record.md`` and ``record.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from divtrace.plan.cost import estimate_cost
from divtrace.plan.throughput import rate_for
from divtrace.study import load_study

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def run(script: str, *args: str) -> float:
    """Run one benchmark script; its wall time."""
    started = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / script), *args], check=True)
    return time.perf_counter() - started


def load(name: str) -> dict:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="score 100 prompts instead of 500")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["score", "generate", "verify", "executors", "first_run", "scaling"]
    )
    parser.add_argument("--gpu-tokens-per-s", type=float, default=None, help="vLLM tokens/s per model replica")
    parser.add_argument("--length-fraction", type=float, default=0.5, help="mean sample length / max_new_tokens")
    args = parser.parse_args()

    if "score" not in args.skip:
        run("bench_score.py", "--prompts", "100" if args.quick else "500")
    if "generate" not in args.skip:
        run("bench_generate.py")
    if "verify" not in args.skip:
        run("bench_verify.py", "--cold")
    if "executors" not in args.skip:
        run("bench_executors.py")
    if "first_run" not in args.skip:
        run("bench_first_run.py")
    if "scaling" not in args.skip:
        run("bench_scaling.py", *(["--score-sizes", "1", "10", "--no-olmo"] if args.quick else []))

    score, generate, verify, executors = (
        load(n) for n in ("score.json", "generate.json", "verify.json", "executors.json")
    )
    vllm = load("vllm.json")
    rows: list[tuple[str, str, str]] = []
    if score:
        rows.append(
            (
                "scoring: EAD + SBERT + Vendi (MiniLM)",
                f"{score['input']['prompts']} prompts x {score['input']['k']} outputs, "
                f"{score['input']['unique']} unique texts",
                f"{score['texts_per_s_cold']} texts/s cold; {score['ratio_cold_to_baseline']} x the bare encode; "
                f"warm {score['divtrace_warm_s']} s; EAD alone {score['ead_only_s']} s",
            )
        )
    if generate:
        rows.append(
            (
                "generation overhead (transformers, CPU)",
                f"{generate['model']}, {generate['input']['prompts']} prompts x K={generate['input']['k']} x "
                f"{generate['input']['max_new_tokens']} tokens",
                f"{generate['ratio_divtrace_to_baseline']} x the bare generate; "
                f"{generate['tokens_per_s_divtrace']} tok/s",
            )
        )
    if verify:
        rows.append(
            (
                "sandboxed verification (HumanEval)",
                f"{verify['input']['samples']} samples, {verify['input']['workers']} sandboxes, "
                f"{verify['sandbox']['isolation']} isolation",
                f"{verify['divtrace_samples_per_s']} samples/s, {verify['throughput_ratio_divtrace_to_baseline']} x "
                f"bare subprocesses ({verify['baseline_samples_per_s']}/s)"
                + (f"; cold sandboxes {verify['cold_samples_per_s']}/s" if "cold_samples_per_s" in verify else ""),
            )
        )
    for entry in executors.get("runs", []):
        study = executors["study"]
        rows.append(
            (
                f"executor: {entry['executor']}"
                + (f", {entry['workers']} workers" if entry["executor"] == "ray" else ""),
                f"small quickstart: {study['shards']} shards, K={study['k']}, {study['max_new_tokens']} tokens",
                f"{entry['run_s']} s ({entry['ratio_to_local']} x local)"
                + (f"; same samples: {entry['same_samples_as_local']}" if "same_samples_as_local" in entry else ""),
            )
        )
    first_run = load("first_run.json")
    if first_run:
        rows.append(
            (
                "first divtrace run (quickstart)",
                "3 checkpoints x 2 tasks x 8 prompts x K=8, empty divtrace cache; then warm; then a changed study",
                f"fresh {first_run['fresh_s']} s (target {first_run['target_s']} s: "
                f"{'met' if first_run['meets_target'] else 'missed'}), warm {first_run['warm_s']} s, "
                f"changed {first_run['changed_s']} s",
            )
        )
    for entry in load("scaling.json").get("rows", []):
        metrics = f", {entry['metrics']}" if entry.get("metrics") else ""
        rows.append(
            (
                f"scaling: {entry['step']}",
                f"{entry['size']} ({entry['outputs']:,} outputs){metrics}",
                f"{entry['seconds']} s, peak {entry['peak_mib']:,.0f} MiB",
            )
        )
    olmo = load_study("olmo3-7b")
    if args.gpu_tokens_per_s is not None:
        rate, source = args.gpu_tokens_per_s, "given"
    elif vllm.get("tokens_per_s"):
        rate, source = float(vllm["tokens_per_s"]), f"measured ({vllm.get('device', 'GPU')})"
    else:
        assumed = rate_for("vllm", "gpu", "allenai/Olmo-3-7B-Think")
        rate, source = assumed.tokens_per_s, f"ASSUMED (no GPU measurement here): {assumed.explanation}"
    for fraction in (1.0, args.length_fraction):
        cost = estimate_cost(olmo, rate, length_fraction=fraction)
        rows.append(
            (
                "cost model: olmo3-7b study",
                f"{cost.samples:,} samples, {cost.tokens / 1e9:.2f} B tokens (mean length {fraction:g} x max)",
                f"{cost.gpu_hours:,.0f} GPU-hours at {rate:,.0f} tok/s per replica, {source}",
            )
        )

    lines = ["| what | input | result |", "| --- | --- | --- |", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    table = "\n".join(lines)
    print(table)
    (RESULTS / "record.md").write_text(table + "\n")
    (RESULTS / "record.json").write_text(
        json.dumps({"rows": rows, "gpu_rate": {"tokens_per_s": rate, "source": source}}, indent=2) + "\n"
    )
    print(f"\nwritten: {RESULTS / 'record.md'}")


if __name__ == "__main__":
    main()
