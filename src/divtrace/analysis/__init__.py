"""The analyze stage: where along a lineage diversity drops, by how much, and why.

One entry point, :func:`analyze` (per-prompt scores, verdicts and the lineage graph in; an :class:`AnalysisResult`
of tables out); :func:`write_analysis` and :func:`read_analysis` store and load it; :func:`headline_table` gives
Table 1 per task and ``AnalysisResult.table1`` the study's Table 1 (mean over tasks). The building blocks live one
concept per module: ``pipeline`` (the entry point), ``collapse`` (means, retained, edge deltas, collapse sites),
``qfd`` (quality-filtered decomposition), ``table1`` (the headline averaged over tasks), ``cot`` (thinking
ablation), ``curves`` (diversity vs k, pass@k), ``quality`` (diversity against quality: a judge's or pass@1).
"""

from divtrace.analysis.collapse import (
    CHECKPOINT_MEANS_COLUMNS,
    COLLAPSE_COLUMNS,
    EDGE_COLUMNS,
    GAINED,
    HEADLINE_COLUMNS,
    NO_SIGNIFICANT_LOSS,
    RETAINED_COLUMNS,
    SIGN_CONVENTION,
    SITE,
    collapse_step,
)
from divtrace.analysis.cot import THINKING_COLUMNS, thinking_ablation
from divtrace.analysis.curves import CURVE_COLUMNS, PASSK_COLUMNS, diversity_curves, passk_table
from divtrace.analysis.pipeline import AnalysisResult, analyze, headline_table, read_analysis, write_analysis
from divtrace.analysis.qfd import (
    CI_INCLUDES_ZERO_EXPLANATION,
    OUTSIDE_UNIT_EXPLANATION,
    PAIRINGS,
    QFD_COLUMNS,
    quality_filtered_decomposition,
)
from divtrace.analysis.quality import (
    DIVERSITY_QUALITY_COLUMNS,
    QUALITY_EDGES_COLUMNS,
    QUALITY_INPUT_COLUMNS,
    diversity_quality_table,
    quality_edges_table,
)
from divtrace.analysis.table1 import PAPER_TABLE1, TABLE1_COLUMNS, table_one

__all__ = [
    "CHECKPOINT_MEANS_COLUMNS",
    "CI_INCLUDES_ZERO_EXPLANATION",
    "COLLAPSE_COLUMNS",
    "CURVE_COLUMNS",
    "DIVERSITY_QUALITY_COLUMNS",
    "EDGE_COLUMNS",
    "GAINED",
    "HEADLINE_COLUMNS",
    "NO_SIGNIFICANT_LOSS",
    "OUTSIDE_UNIT_EXPLANATION",
    "PAIRINGS",
    "PAPER_TABLE1",
    "PASSK_COLUMNS",
    "QFD_COLUMNS",
    "QUALITY_EDGES_COLUMNS",
    "QUALITY_INPUT_COLUMNS",
    "RETAINED_COLUMNS",
    "SIGN_CONVENTION",
    "SITE",
    "TABLE1_COLUMNS",
    "THINKING_COLUMNS",
    "AnalysisResult",
    "analyze",
    "collapse_step",
    "diversity_curves",
    "diversity_quality_table",
    "headline_table",
    "passk_table",
    "quality_edges_table",
    "quality_filtered_decomposition",
    "read_analysis",
    "table_one",
    "thinking_ablation",
    "write_analysis",
]
