"""``divtrace run`` (a study end to end) and ``divtrace report`` (rewrite a run's report)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from divtrace.cli import checks
from divtrace.cli.app import command
from divtrace.cli.console import OutputFormat, note, print_frame, stderr_console
from divtrace.cli.options import FormatOption, flag
from divtrace.cli.outcome import print_outcome, run_progress, run_stages
from divtrace.cli.progress import progress_display
from divtrace.errors import DivtraceError


class ExecutorOption(str, enum.Enum):
    """``--executor``: this process, or a Ray cluster."""

    local = "local"
    ray = "ray"


@command()
def run(
    study: Annotated[str | None, typer.Argument(help="study .yaml file or preset (default: quickstart)")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default: runs/STUDY-NAME)")] = None,
    dry_run: Annotated[
        bool, flag("print the plan (shards, samples, tokens, time) and stop", "--dry-run/--no-dry-run")
    ] = False,
    executor: Annotated[
        ExecutorOption | None, typer.Option(help="where the work runs (default: the study's executor)")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="ray: the cluster address (HOST:PORT or 'auto'; default: the study's)")
    ] = None,
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """Run a study end to end: plan, generate, verify, score, analyze, report; resumable, skipping done work."""
    from divtrace.executors.local import run_study
    from divtrace.runs.layout import RunLayout
    from divtrace.runs.plan import plan_study, plan_without_data
    from divtrace.runs.stages import plan_tasks
    from divtrace.study import load_study

    chosen = load_study(study or "quickstart")
    use_ray = (executor.value if executor is not None else chosen.executor.type) == "ray"
    directory = out or Path("runs") / chosen.name
    if not dry_run:
        checks.writable_directory(directory, "--out")
    if use_ray and not dry_run:
        from divtrace.executors.ray_connect import check_ray_address

        with stderr_console().status("connecting to the Ray cluster"):
            check_ray_address(address if address is not None else chosen.executor.address)
    try:
        with stderr_console().status("loading task data"):
            tasks = plan_tasks(chosen)
        rows = plan_study(chosen, RunLayout(directory), tasks)
    except DivtraceError as err:
        if not dry_run:
            raise
        note(f"task data is not available here, so the plan uses each task's N: {err}")
        rows = plan_without_data(chosen)
    _print_plan(chosen.name, directory, rows, dry_run, output_format)
    if chosen.caveat:
        note(chosen.caveat, "caveat", "bold yellow")
    if dry_run:
        return
    with progress_display() as display:
        progress = run_progress(display)
        if use_ray:
            from divtrace.executors.ray_executor import run_study_ray

            reports = run_study_ray(
                chosen,
                directory,
                address=address,
                tasks=tasks,
                progress=progress,
                on_stage=lambda name: stderr_console().log(f"stage {name} (ray)"),
            )
        else:
            reports = run_study(
                chosen,
                directory,
                tasks=tasks,
                progress=progress,
                on_stage=lambda name: stderr_console().log(f"stage {name}"),
            )
    print_outcome(reports, directory, output_format)


def _print_plan(name: str, directory: Path, rows: list, dry_run: bool, output_format: OutputFormat) -> None:  # type: ignore[type-arg]
    """The plan: on stdout for ``--dry-run`` (in ``output_format``), on stderr before a real run."""
    import pandas as pd

    from divtrace.cli.console import frame_table, stdout_console
    from divtrace.runs.plan import ASSUMED_TOKENS_PER_S, estimate_seconds

    frame = pd.DataFrame(
        [
            {"checkpoint": r.checkpoint, "task": r.task, "backend": r.backend, "prompts": r.prompts, "K": r.k,
             "samples": r.samples, "shards": r.shards, "max tokens": r.max_tokens,
             "status": "done" if r.done else "to do"}
            for r in rows
        ]
    )  # fmt: skip
    todo = [row for row in rows if not row.done]
    seconds = estimate_seconds(rows)
    if dry_run:
        print_frame(frame, output_format, lambda f: frame_table(f, f"plan of study {name} -> {directory}"))
    else:
        stderr_console().print(frame_table(frame, f"plan of study {name} -> {directory}"))
    console = stdout_console() if dry_run and output_format is OutputFormat.table else stderr_console()
    console.print(
        f"{sum(r.samples for r in todo):,} samples to generate, at most {sum(r.max_tokens for r in todo):,} "
        f"tokens; estimate ~{_duration(seconds)} at "
        + ", ".join(f"{b} {ASSUMED_TOKENS_PER_S[b]:,.0f} tok/s" for b in sorted({r.backend for r in todo}))
        + (" (nothing to generate)" if not todo else ""),
        markup=False,
    )
    vllm_tokens = sum(row.max_tokens for row in todo if row.backend == "vllm")
    if vllm_tokens:
        console.print(
            f"vLLM rows: ~{vllm_tokens / ASSUMED_TOKENS_PER_S['vllm'] / 3600:,.0f} GPU-hours at one GPU per model "
            f"and an ASSUMED {ASSUMED_TOKENS_PER_S['vllm']:,.0f} tok/s, if every sample ran to its task's cap "
            "(the max tokens column; most outputs end sooner, at a stop or end of sequence)",
            markup=False,
        )


def _duration(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``131.1 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


@command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of divtrace run or divtrace analyze")],
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """(Re)write RUN/report/index.html and summary.md from the run directory's stored analysis."""
    from divtrace.runs.imported import run_tasks
    from divtrace.runs.layout import RunLayout
    from divtrace.runs.stages import stage_report
    from divtrace.study import IMPORTED_MODEL, load_study

    layout = RunLayout(run_dir)
    if not layout.study_file.exists():
        raise DivtraceError(f"{layout.study_file}: not found; is {run_dir} a run directory of divtrace run/analyze?")
    checks.writable_directory(run_dir / "report", "report directory")
    chosen = load_study(str(layout.study_file))
    imported = all(c.model == IMPORTED_MODEL for c in chosen.checkpoints)
    tasks = run_tasks(chosen, "imported" if imported else "generated by divtrace run")
    reports = run_stages([("report", lambda p: stage_report(chosen, layout, tasks))])
    print_outcome(reports, run_dir, output_format)
