"""``divtrace report``: rewrite a run directory's report from its stored analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from divtrace.cli import checks
from divtrace.cli.app import command
from divtrace.cli.console import OutputFormat, note
from divtrace.cli.options import FormatOption, WaitOption
from divtrace.cli.outcome import print_outcome
from divtrace.cli.progress import progress_display
from divtrace.errors import DivtraceError


@command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of divtrace run or divtrace analyze")],
    output_format: FormatOption = OutputFormat.table,
    wait: WaitOption = False,
) -> None:
    """(Re)write RUN/report/index.html and summary.md from the run directory's stored analysis."""
    from divtrace.executors.driver import run_stages
    from divtrace.executors.local import LocalExecutor
    from divtrace.report.stage import ReportStage
    from divtrace.runs.layout import RunLayout
    from divtrace.runs.lock import hold_run_directory
    from divtrace.study import load_study
    from divtrace.study.ownership import of_imported_samples
    from divtrace.study.planned import generated_tasks, run_tasks

    layout = RunLayout(run_dir)
    if not layout.study_file.exists():
        raise DivtraceError(f"{layout.study_file}: not found; is {run_dir} a run directory of divtrace run/analyze?")
    checks.writable_directory(layout.report_dir, "report directory")
    with hold_run_directory(run_dir, "divtrace report", wait=wait, say=note):  # the study and analysis stay put
        chosen = load_study(str(layout.study_file))
        tasks = run_tasks(chosen) if of_imported_samples(chosen) else generated_tasks(chosen)
        stage = ReportStage(chosen, {planned.name: planned.origin for planned in tasks})
        with progress_display() as display:
            reports = run_stages(
                [stage], layout, LocalExecutor(), progress=display, on_stage=display.begin,
            )  # fmt: skip
    print_outcome(reports, run_dir, output_format)
