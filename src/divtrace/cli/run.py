"""``divtrace run`` (a study end to end) and ``divtrace report`` (rewrite a run's report)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from divtrace.cli import checks
from divtrace.cli.app import command
from divtrace.cli.console import OutputFormat, note, print_frame, stderr_console
from divtrace.cli.options import FormatOption, flag
from divtrace.cli.outcome import print_outcome, run_progress
from divtrace.cli.progress import progress_display
from divtrace.errors import DivtraceError

if TYPE_CHECKING:
    from divtrace.plan.rows import PlanRow
    from divtrace.study import Study


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
    from divtrace.api import run as run_study_api
    from divtrace.plan.rows import plan_study, plan_without_data
    from divtrace.runs.layout import RunLayout, default_run_directory
    from divtrace.study import load_study
    from divtrace.study.planned import plan_tasks

    chosen = load_study(study or "quickstart")
    use_ray = (executor.value if executor is not None else chosen.executor.type) == "ray"
    directory = out or default_run_directory(chosen.name)
    if not dry_run:
        checks.writable_directory(directory, "--out")
    if use_ray and not dry_run:  # fail fast: before the task data loads, which can take minutes on a real study
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
    _print_plan(chosen, directory, rows, dry_run, output_format)
    if chosen.caveat:
        note(chosen.caveat, "caveat", "bold yellow")
    if dry_run:
        return
    with progress_display() as display:
        outcome = run_study_api(
            chosen,
            directory,
            executor="ray" if use_ray else "local",
            address=address,
            tasks=tasks,
            progress=run_progress(display),
            on_stage=lambda name: stderr_console().log(f"stage {name}" + (" (ray)" if use_ray else "")),
        )
    print_outcome(outcome.reports, directory, output_format)


def _print_plan(study: Study, directory: Path, rows: list[PlanRow], dry_run: bool, output_format: OutputFormat) -> None:
    """The plan with a subtotal per checkpoint, the total and where each rate comes from: on stdout for
    ``--dry-run`` (in ``output_format``), on stderr before a real run."""
    from rich.table import Table

    from divtrace.cli.console import stdout_console
    from divtrace.plan.summary import summarize_plan
    from divtrace.progress import format_duration

    summary = summarize_plan(study, rows)
    if dry_run and output_format is not OutputFormat.table:
        print_frame(summary.frame(), output_format, lambda frame: Table())
        return
    console = stdout_console() if dry_run else stderr_console()
    table = Table("checkpoint", "task", "backend", "prompts", "K", "samples", "shards", "max tokens", "status",
                  "estimate", title=f"plan of study {study.name} -> {directory}")  # fmt: skip
    for subtotal in summary.checkpoints:
        for estimate in summary.rows:
            row = estimate.row
            if row.checkpoint == subtotal.checkpoint:
                table.add_row(escape(row.checkpoint), escape(row.task), row.backend, str(row.prompts), str(row.k),
                              f"{row.samples:,}", str(row.shards), f"{row.max_tokens:,}",
                              "done" if row.done else "to do", format_duration(estimate.seconds))  # fmt: skip
        table.add_row(
            f"[bold]{escape(subtotal.checkpoint)}[/]", f"{subtotal.tasks} task(s)", subtotal.backend,
            str(subtotal.prompts), "", f"{subtotal.samples:,}", str(subtotal.shards), f"{subtotal.max_tokens:,}",
            subtotal.status, f"{format_duration(subtotal.seconds)} at {escape(subtotal.rate.label)}",
            end_section=True,
        )  # fmt: skip
    console.print(table)
    total = (
        f"{summary.samples_to_do:,} samples to generate, at most {summary.max_tokens_to_do:,} tokens; "
        f"estimate ~{format_duration(summary.seconds)}"
    )
    if summary.gpu_hours:
        total += f", ~{summary.gpu_hours:,.0f} GPU-hours"
    console.print(total + (" (nothing to generate)" if not summary.samples_to_do else ""), markup=False)
    for line in summary.notes:
        console.print(f"note: {line}", markup=False)


@command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of divtrace run or divtrace analyze")],
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """(Re)write RUN/report/index.html and summary.md from the run directory's stored analysis."""
    from divtrace.executors.driver import run_stages
    from divtrace.executors.local import LocalExecutor
    from divtrace.report.stage import ReportStage
    from divtrace.runs.layout import RunLayout
    from divtrace.study import IMPORTED_MODEL, load_study
    from divtrace.study.planned import generated_tasks, run_tasks

    layout = RunLayout(run_dir)
    if not layout.study_file.exists():
        raise DivtraceError(f"{layout.study_file}: not found; is {run_dir} a run directory of divtrace run/analyze?")
    checks.writable_directory(layout.report_dir, "report directory")
    chosen = load_study(str(layout.study_file))
    imported = all(c.model == IMPORTED_MODEL for c in chosen.checkpoints)
    tasks = run_tasks(chosen) if imported else generated_tasks(chosen)
    stage = ReportStage(chosen, {planned.name: planned.origin for planned in tasks})
    with progress_display() as display:
        reports = run_stages(
            [stage], layout, LocalExecutor(), progress=run_progress(display),
            on_stage=lambda name: stderr_console().log(f"stage {name}"),
        )  # fmt: skip
    print_outcome(reports, run_dir, output_format)
