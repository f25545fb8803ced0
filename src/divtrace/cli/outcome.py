"""What a run-directory command (run, analyze, report) prints at the end: each stage's work, the headline table and
where the report is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from divtrace.cli.console import OutputFormat, note, print_frame, say
from divtrace.cli.progress import progress_display
from divtrace.cli.tables import collapse_frame, collapse_table
from divtrace.progress import ProgressEvent, ProgressSink

if TYPE_CHECKING:
    from divtrace.runs.stages import RunProgress, StageReport


@dataclass(frozen=True)
class _Bridge:
    """TEMPORARY: see :func:`run_progress_bridge`."""

    sink: ProgressSink

    def __call__(self, stage: str, description: str, done: int, total: int) -> None:
        self.sink(ProgressEvent(stage, description, done, total or None, ""))


def run_progress_bridge(sink: ProgressSink) -> RunProgress:
    """TEMPORARY (issue 21): the stage functions of :mod:`divtrace.runs.stages` and the executors still take the
    old :data:`~divtrace.runs.stages.RunProgress` ``(stage, description, done, total)``; this one hands ``sink``
    on to them. Their components report to ``sink`` directly (``stages._events`` finds it on the bridge); the few
    calls the executors make themselves arrive as events whose unit is the description, counting nothing named.
    It goes away once the stages take a :data:`~divtrace.progress.ProgressSink` (the stage rewrite)."""
    return _Bridge(sink)


def run_stages(stages: list[tuple[str, Callable[[RunProgress], StageReport]]]) -> list[StageReport]:
    """Run ``stages`` in order under one progress display (a line per stage); what each did."""
    reports = []
    with progress_display() as display:
        for name, stage in stages:
            display.begin(name)
            reports.append(stage(run_progress_bridge(display)))
    return reports


def print_outcome(reports: list[StageReport], directory: Path, output_format: OutputFormat) -> None:
    """What each stage did, the headline table (retained diversity and collapse sites), and where the report is."""
    for stage_report in reports:
        say(f"{stage_report.stage}: ran {len(stage_report.ran)}, already done {len(stage_report.skipped)}")
        for line in stage_report.notes:
            note(line, stage_report.stage)
    headline = directory / "analysis" / "collapse_sites.parquet"
    retained = directory / "analysis" / "retained.parquet"
    if headline.exists() and retained.exists():
        print_frame(collapse_frame(headline, retained), output_format, collapse_table)
    report_dir = directory / "report"
    if (report_dir / "index.html").exists():
        say(f"report: {report_dir / 'index.html'}  summary: {report_dir / 'summary.md'}")
