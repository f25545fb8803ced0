"""The report stage: a self-contained ``index.html`` (inline SVG figures, no network) and ``summary.md``.

Entry point: :func:`write_report`. Figures are in :mod:`divtrace.report.plots` (one function per figure), the page
layout in ``templates/index.html.j2``, the Markdown headline table in :mod:`divtrace.report.summary_md`.
"""

from divtrace.report.html import report_tables, write_report
from divtrace.report.summary_md import render_summary_md

__all__ = ["render_summary_md", "report_tables", "write_report"]
