"""What a run-directory command (run, analyze, report) prints at the end: each stage's work, the headline table and
where the report is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from divtrace.cli.console import OutputFormat, note, print_frame, say
from divtrace.cli.tables import collapse_frame, collapse_table
from divtrace.runs.layout import RunLayout

if TYPE_CHECKING:
    from divtrace.runs.stage import StageReport


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
    layout = RunLayout(directory)
    headline, retained = layout.analysis_table("collapse_sites"), layout.analysis_table("retained")
    if headline.exists() and retained.exists():
        print_frame(collapse_frame(headline, retained), output_format, collapse_table)
    for sentence in findings(layout.analysis_table("table1")):
        say(sentence)
    if layout.report_html.exists():
        say(f"report: {layout.report_html}  summary: {layout.report_summary}")
