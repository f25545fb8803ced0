"""Scaling record: how the time and peak memory of scoring, the analysis and the report grow with the study.

Every measured step runs the real stage (``ScoreStage``, ``AnalyzeStage``, ``ReportStage`` through
``divtrace.executors.driver.run_stages`` and the local executor) on a synthetic run directory
(:mod:`synthetic_run`: seeded samples, verdicts and per-prompt scores in the run-directory formats), each in its
own subprocess: seconds are the stage's wall time inside that process (imports and the run directory's writing
excluded), peak MiB is the process's peak RSS (``os.wait4``'s ``ru_maxrss``; ``base MiB`` is the peak before the
step: the interpreter and imports, plus the loaded models for scoring).

Sizes: ``Nx`` is the quickstart (3 checkpoints x 2 tasks x K = 8, 384 outputs at 1x) with N x 8 prompts per task;
``olmo3-7b`` is that preset's shape (16 checkpoints x 15 tasks x 500 prompts x K = 16, its ten metrics: 1.92 M
outputs). Scoring: EAD, SBERT (the packaged all-MiniLM-L6-v2), Vendi and NLI with a tiny random 2-layer
cross-encoder (the tests' ``tests/nli_model.py``), cold embedding cache; at sizes above ``--nli-up-to`` NLI is left
out (slowest metric; the row says which metrics ran). The analysis and report run at every size and at the
``olmo3-7b`` shape (``--no-olmo`` skips it).

Growth: for each step, the time ratio between consecutive sizes divided by the ratio of their outputs, as a power
(``exponent`` 1 = linear, 2 = quadratic; ``per 10x`` = the time ratio for 10 x the outputs).

Run: ``python benchmarks/bench_scaling.py [--sizes 1 10 100] [--score-sizes 1 10 100] [--nli-up-to 10]
[--no-olmo]``. Prints the table and writes ``benchmarks/results/scaling.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # tests/nli_model.py: the tiny NLI model the tests build

from synthetic_run import Shape, olmo_shape, quickstart_shape, write_synthetic_run  # noqa: E402

SCORE_METRICS = ("ead", "sbert", "vendi", "nli")
STEPS = ("score", "analyze", "report")


def shape_of(label: str) -> Shape:
    """The shape named ``label``: ``Nx`` or ``olmo3-7b``."""
    return olmo_shape() if label == "olmo3-7b" else quickstart_shape(int(label.rstrip("x")))


def peak_mib() -> float:
    """This process's peak RSS so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score_step(shape: Shape, root: Path, metrics: tuple[str, ...], scratch: Path) -> float:
    """Score the samples under ``root`` with the real score stage; its seconds (the models loaded beforehand)."""
    from tests.nli_model import build_tiny_nli_model

    from divtrace.executors.driver import run_stages
    from divtrace.executors.local import LocalExecutor
    from divtrace.runs.layout import RunLayout
    from divtrace.samples import SampleRecord
    from divtrace.score.settings import NLISettings
    from divtrace.score.stage import ScorerSpec, ScoreStage

    nli = NLISettings(model=str(build_tiny_nli_model(scratch / "nli"))) if "nli" in metrics else None
    spec = ScorerSpec(metrics=metrics, nli=nli)
    warm = SampleRecord(prompt_id="w", prompt="w", outputs=["yes no", "no maybe", "maybe yes"], checkpoint="w")
    spec.scorer().score([warm])  # loads the models (kept in the process); its texts are not in the study
    stage = ScoreStage(spec, tuple(c.name for c in shape.study.checkpoints), shape.tasks)
    started = time.perf_counter()
    run_stages([stage], RunLayout(root), LocalExecutor())
    return time.perf_counter() - started


def analysis_step(step: str, shape: Shape, root: Path) -> float:
    """Run the analyze or report stage on the run under ``root``; its seconds."""
    from divtrace.analysis.stage import AnalyzeStage
    from divtrace.executors.driver import run_stages
    from divtrace.executors.local import LocalExecutor
    from divtrace.report.stage import ReportStage
    from divtrace.runs.layout import RunLayout

    if step == "analyze":
        stage: Any = AnalyzeStage(shape.study, shape.tasks)
    else:
        stage = ReportStage(shape.study, dict.fromkeys(shape.tasks, "synthetic"))
    started = time.perf_counter()
    (report,) = run_stages([stage], RunLayout(root), LocalExecutor())
    if report.ran != [step if step == "analyze" else "report"] and report.ran != ["analysis"]:
        raise RuntimeError(f"{step} did not run: {report}")
    return time.perf_counter() - started


def child(args: argparse.Namespace) -> None:
    """One measured step in this process; writes its figures as JSON to ``args.child_out``."""
    shape = shape_of(args.size)
    root = Path(args.run)
    if args.step == "build":
        started = time.perf_counter()
        write_synthetic_run(root, shape, scores=args.with_scores)
        seconds, base = time.perf_counter() - started, 0.0
    elif args.step == "score":
        os.environ["DIVTRACE_CACHE_DIR"] = str(root / "cache")  # cold: a fresh embedding cache
        import divtrace.score.stage  # imports before the base figure

        base = peak_mib()
        seconds = score_step(shape, root, tuple(args.metrics), root)
    else:
        import divtrace.analysis.stage
        import divtrace.report.stage  # noqa: F401

        base = peak_mib()
        seconds = analysis_step(args.step, shape, root)
    Path(args.child_out).write_text(json.dumps({"seconds": seconds, "base_mib": base}))


def measure(step: str, size: str, run: Path, extra: list[str]) -> dict[str, Any]:
    """Run ``step`` at ``size`` in a subprocess; its seconds, base and peak MiB."""
    out = run.parent / f"{run.name}-{step}.json"
    command = [sys.executable, __file__, "--child", step, "--size", size, "--run", str(run), "--child-out", str(out)]
    process = subprocess.Popen([*command, *extra])
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{step} at {size} failed (exit {os.waitstatus_to_exitcode(status)})")
    figures = json.loads(out.read_text())
    return {
        "size": size,
        "outputs": shape_of(size).outputs,
        "step": step,
        "seconds": round(figures["seconds"], 3),
        "base_mib": round(figures["base_mib"], 1),
        "peak_mib": round(usage.ru_maxrss / 1024, 1),
    }


def growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per step (and, for scoring, per set of metrics), between consecutive sizes: the time ratio, the outputs
    ratio, the exponent of the growth and the ratio of the memory above the base."""
    found = []
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        series.setdefault((row["step"], row.get("metrics", "")), []).append(row)
    for mine in series.values():
        for small, large in itertools.pairwise(mine):
            scale = large["outputs"] / small["outputs"]
            ratio = large["seconds"] / max(small["seconds"], 1e-9)
            exponent = math.log(ratio) / math.log(scale)
            above = (large["peak_mib"] - large["base_mib"]) / max(small["peak_mib"] - small["base_mib"], 1.0)
            found.append(
                {
                    "step": small["step"],
                    "from": small["size"],
                    "to": large["size"],
                    "outputs_ratio": round(scale, 1),
                    "time_ratio": round(ratio, 2),
                    "per_10x": round(10**exponent, 1),
                    "exponent": round(exponent, 2),
                    "memory_ratio": round(above, 2),
                    "verdict": verdict(exponent),
                }
            )
    return found


def verdict(exponent: float) -> str:
    """A word for a growth exponent."""
    if exponent < 0.8:
        return "sublinear (fixed costs dominate)"
    if exponent < 1.25:
        return "linear"
    if exponent < 1.7:
        return "superlinear"
    return "quadratic or worse"


def main() -> None:
    """Parse the arguments; run as the parent (every step, the table) or as one step's child."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="*", default=["1", "10", "100"], help="quickstart multiples (analysis)")
    parser.add_argument("--score-sizes", nargs="*", default=["1", "10", "100"], help="quickstart multiples (scoring)")
    parser.add_argument("--nli-up-to", type=int, default=10, help="score NLI at sizes up to this multiple")
    parser.add_argument("--no-olmo", action="store_true", help="skip the olmo3-7b-shaped analysis and report")
    parser.add_argument("--work", type=Path, default=None, help="where the run directories go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scaling.json")
    parser.add_argument("--child", choices=["build", *STEPS], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--with-scores", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--metrics", nargs="*", default=list(SCORE_METRICS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        args.step = args.child
        child(args)
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="divtrace-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for size in (f"{n}x" for n in args.score_sizes):
        run = work / f"score-{size}"
        shutil.rmtree(run, ignore_errors=True)
        measure("build", size, run, [])
        metrics = [m for m in SCORE_METRICS if m != "nli" or int(size[:-1]) <= args.nli_up_to]
        row = measure("score", size, run, ["--metrics", *metrics])
        rows.append({**row, "metrics": "+".join(metrics)})
        print_row(rows[-1])
        shutil.rmtree(run, ignore_errors=True)
    for size in [*(f"{n}x" for n in args.sizes), *([] if args.no_olmo else ["olmo3-7b"])]:
        run = work / f"analysis-{size}"
        shutil.rmtree(run, ignore_errors=True)
        build = measure("build", size, run, ["--with-scores"])
        print(f"  (built the synthetic {size} run in {build['seconds']:.1f} s)", flush=True)
        for step in ("analyze", "report"):
            rows.append(measure(step, size, run, []))
            print_row(rows[-1])
        shutil.rmtree(run, ignore_errors=True)

    ratios = growth(rows)
    print_table(rows, ratios)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": rows,
        "growth": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {args.out}")


def print_row(row: dict[str, Any]) -> None:
    """One measured row, as it finishes."""
    print(f"  {row['step']:<8} {row['size']:>9}: {row['seconds']:.2f} s, peak {row['peak_mib']:.0f} MiB", flush=True)


def print_table(rows: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> None:
    """The table of every row, then the growth between sizes."""
    print(f"\n{'size':>9} {'outputs':>10} {'step':<8} {'seconds':>9} {'base MiB':>9} {'peak MiB':>9}  metrics")
    for r in rows:
        print(
            f"{r['size']:>9} {r['outputs']:>10,} {r['step']:<8} {r['seconds']:>9.2f} {r['base_mib']:>9.0f} "
            f"{r['peak_mib']:>9.0f}  {r.get('metrics', '')}"
        )
    print(f"\n{'step':<8} {'from':>9} {'to':>9} {'outputs x':>9} {'time x':>8} {'per 10x':>8} {'exp':>5}  growth")
    for g in ratios:
        print(
            f"{g['step']:<8} {g['from']:>9} {g['to']:>9} {g['outputs_ratio']:>9} {g['time_ratio']:>8} "
            f"{g['per_10x']:>8} {g['exponent']:>5}  {g['verdict']} (memory above base x {g['memory_ratio']})"
        )


if __name__ == "__main__":
    main()
