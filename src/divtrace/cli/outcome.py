"""What a run-directory command (run, analyze, report) prints at the end: each stage's work, the headline table and
where the report is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from divtrace.cli.console import OutputFormat, note, print_frame, say
from divtrace.cli.progress import ProgressDisplay, progress_display
from divtrace.cli.tables import collapse_frame, collapse_table

if TYPE_CHECKING:
    from divtrace.runs.stages import RunProgress, StageReport

#: The unit each stage's progress counts, unless its description ends with one in parentheses (``(texts)``).
STAGE_UNITS = {"generate": "samples", "verify": "samples", "score": "cells", "analyze": "steps", "report": "steps"}


def run_progress(display: ProgressDisplay) -> RunProgress:
    """The :data:`~divtrace.runs.stages.RunProgress` callback that drives ``display``."""
    from divtrace.progress import UNITS

    def report(stage: str, description: str, done: int, total: int) -> None:
        unit = STAGE_UNITS.get(stage, "items")
        head, _, tail = description.rpartition(" (")
        if head and tail.endswith(")") and tail[:-1] in UNITS:
            description, unit = head, tail[:-1]
        display.update(f"{stage}: {description}", done, total or None, unit)

    return report


def run_stages(stages: list[tuple[str, Callable[[RunProgress], StageReport]]]) -> list[StageReport]:
    """Run ``stages`` in order under one progress display; what each did."""
    from divtrace.cli.console import stderr_console

    reports = []
    with progress_display() as display:
        for name, stage in stages:
            stderr_console().log(f"stage {name}")
            reports.append(stage(run_progress(display)))
    return reports


def findings(table1_path: Path) -> list[str]:
    """The report's opening sentences (one per lineage and metric, mean over tasks) from a stored ``table1``; none
    when it is missing."""
    if not table1_path.exists():
        return []
    import pandas as pd

    from divtrace.report.findings import headline_findings, table1_view

    return [str(finding) for finding in headline_findings(table1_view(pd.read_parquet(table1_path), None))]


def print_outcome(reports: list[StageReport], directory: Path, output_format: OutputFormat) -> None:
    """What each stage did, the headline table (retained diversity and collapse sites), one sentence per lineage and
    metric (where it collapsed, mean over tasks), and where the report is."""
    for stage_report in reports:
        say(f"{stage_report.stage}: ran {len(stage_report.ran)}, already done {len(stage_report.skipped)}")
        for line in stage_report.notes:
            note(line, stage_report.stage)
    headline = directory / "analysis" / "collapse_sites.parquet"
    retained = directory / "analysis" / "retained.parquet"
    if headline.exists() and retained.exists():
        print_frame(collapse_frame(headline, retained), output_format, collapse_table)
    for sentence in findings(directory / "analysis" / "table1.parquet"):
        say(sentence)
    report_dir = directory / "report"
    if (report_dir / "index.html").exists():
        say(f"report: {report_dir / 'index.html'}  summary: {report_dir / 'summary.md'}")
