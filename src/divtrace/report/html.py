"""The self-contained HTML report (``index.html``) and its Markdown summary (``summary.md``).

:func:`write_report` turns an analysis result, the samples and the per-prompt scores into one HTML file that opens
from disk with no network: every figure is an inline SVG (see :mod:`divtrace.report.plots`), the style sheet is
inline, there is no script. Model outputs are untrusted text: the template autoescapes everything that is not one
of our own figures.

The analysis tables reach the figures through :func:`report_tables`, which fills in any column a table lacks. The
page opens with one sentence per lineage and metric (:mod:`divtrace.report.findings`) and states the sign of every
change once (:data:`divtrace.analysis.SIGN_CONVENTION`: negative = diversity lost); numbers are written by
:mod:`divtrace.report.numbers`, as in ``summary.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from divtrace.analysis import (
    CHECKPOINT_MEANS_COLUMNS,
    CI_INCLUDES_ZERO_EXPLANATION,
    COLLAPSE_COLUMNS,
    CURVE_COLUMNS,
    DIVERSITY_QUALITY_COLUMNS,
    EDGE_COLUMNS,
    GAINED,
    HEADLINE_COLUMNS,
    NO_SIGNIFICANT_LOSS,
    OUTSIDE_UNIT_EXPLANATION,
    PASSK_COLUMNS,
    QFD_COLUMNS,
    QUALITY_EDGES_COLUMNS,
    RETAINED_COLUMNS,
    SIGN_CONVENTION,
    SITE,
    TABLE1_COLUMNS,
    THINKING_COLUMNS,
    AnalysisResult,
)
from divtrace.analysis.collapse import significant_gain, significant_loss
from divtrace.analysis.homogenization import HOMOGENIZATION_COLUMNS
from divtrace.analysis.sweep import recovery_columns, sweep_columns
from divtrace.errors import DivtraceError
from divtrace.io_atomic import write_atomic
from divtrace.report import plots
from divtrace.report.findings import headline_findings, table1_view
from divtrace.report.numbers import (
    DASH,
    missing,
    pct_ci,
    plain,
    plain_ci,
    share_ci,
    signed,
    signed_ci,
    signed_pct_ci,
)
from divtrace.report.stored_samples import StoredSamples
from divtrace.report.study_info import StudyInfo
from divtrace.report.summary_md import (
    RECOVERY_QUESTION,
    RECOVERY_RULE,
    SITE_DEFINITION,
    ordered_recovery,
    quality_change_text,
    quality_level,
    quality_metric,
    quality_text,
    recovery_quality_text,
    recovery_setting_text,
    render_summary_md,
    sampling_settings,
    setting_text,
    site_text,
    sweep_parameters,
)
from divtrace.samples import SampleRecord
from divtrace.samples.thinking import unclosed_count
from divtrace.study import CheckpointSpec
from divtrace.study.lineage import LineageGraph

_MIN_OUTPUT_CHARS = 200

#: The columns of each analysis table (the analysis package's own lists: one source of truth).
_COLUMNS: dict[str, list[str]] = {
    "checkpoint_means": CHECKPOINT_MEANS_COLUMNS,
    "retained": RETAINED_COLUMNS,
    "edges": EDGE_COLUMNS,
    "collapse_sites": COLLAPSE_COLUMNS,
    "qfd": QFD_COLUMNS,
    "thinking": THINKING_COLUMNS,
    "curves": CURVE_COLUMNS,
    "passk": PASSK_COLUMNS,
    "headline": HEADLINE_COLUMNS,
    "table1": TABLE1_COLUMNS,
    "diversity_quality": DIVERSITY_QUALITY_COLUMNS,
    "quality_edges": QUALITY_EDGES_COLUMNS,
    "homogenization": HOMOGENIZATION_COLUMNS,
    "sweep": sweep_columns(()),  # and one column per swept parameter, which a table with rows has
    "recovery": recovery_columns(()),
}
#: The metric the homogenisation heatmaps show.
HOMOGENIZATION_METRIC = "sbert"


def report_tables(analysis: AnalysisResult) -> AnalysisResult:
    """``analysis`` with every column of the analysis schema present in every table.

    Columns a table lacks are added as NaN (so an empty table, or one an older divtrace wrote, still renders).
    Tables written before one sign convention are read in it: an older ``headline``'s ``loss_pct_base`` (positive
    = lost) becomes ``change_pct_base`` (negative = lost), and an older ``collapse_sites`` (the largest loss of each
    lineage, significant or not, without ``status``) keeps its site only where that loss is significant.
    """
    tables = {}
    for name, table in analysis.tables().items():
        frame = _in_one_sign(name, table.copy())
        for column in _COLUMNS[name]:
            if column not in frame.columns:
                frame[column] = np.nan
        tables[name] = frame.reset_index(drop=True)
    return AnalysisResult(**tables, settings=analysis.settings)


def _in_one_sign(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """An analysis table written before the sign convention and ``collapse_sites.status``, read in today's terms."""
    if name == "headline" and "loss_pct_base" in frame.columns and "change_pct_base" not in frame.columns:
        frame["change_pct_base"] = -frame["loss_pct_base"]
        frame["change_pct_base_ci_low"] = -frame.get("loss_pct_base_ci_high", np.nan)
        frame["change_pct_base_ci_high"] = -frame.get("loss_pct_base_ci_low", np.nan)
    if name == "collapse_sites" and "status" not in frame.columns and {"delta", "delta_ci_low"} <= set(frame.columns):
        args = frame[["delta", "delta_ci_low", "delta_ci_high"]].to_numpy(dtype=np.float64)
        lost = np.array([significant_loss(*row) for row in args], dtype=bool)
        gained = np.array([significant_gain(*row) for row in args], dtype=bool)
        frame["status"] = np.where(lost, SITE, np.where(gained, GAINED, NO_SIGNIFICANT_LOSS))
        edge = [c for c in frame.columns if c in ("parent", "child", "stage") or c.startswith("delta")]
        frame.loc[~lost, edge] = None
        if "loss_share" in frame.columns:
            frame.loc[~lost, "loss_share"] = np.nan
    return frame


def write_report(
    out_dir: str | Path,
    *,
    analysis: AnalysisResult,
    samples: Iterable[SampleRecord] | pd.DataFrame,
    per_prompt_scores: pd.DataFrame,
    graph: LineageGraph,
    study_info: StudyInfo,
    primary_metric: str | None = None,
    drilldown_lineages: Sequence[str] | None = None,
    drilldown_n: int = 1,
    max_output_chars: int = 1000,
    max_drilldown_chars: int = 2_000_000,
) -> Path:
    """Write ``out_dir/index.html`` (self-contained, no network) and ``out_dir/summary.md``; return the HTML path.

    Args:
        out_dir: created if missing; both files are written atomically.
        analysis: the analysis tables, read through :func:`report_tables`.
        samples: the sample records (or a DataFrame with checkpoint, task, prompt_id, prompt and responses or
            outputs), for the drill-down (only the prompts shown are used) and the unclosed-thinking counts: a
            collection or a :class:`~divtrace.report.stored_samples.StoredSamples` (read from disk cell by cell,
            only the drill-down's cells for the drill-down), iterated twice.
        per_prompt_scores: checkpoint, task, prompt_id, metric, value (and ``subset``: only ``all`` rows are
            used), to rank prompts by how much their diversity changed from base to leaf.
        graph: the study's lineage graph.
        study_info: what the page says about the study (name, caveat at the top, description, checkpoints,
            tasks and metrics in their order, models, sampling).
        primary_metric: the metric the lineage diagram is coloured by and the drill-down ranks prompts by
            (default: sbert if present, else the study's first metric).
        drilldown_lineages: the lineages (named by their leaf) to drill into; default every lineage.
        drilldown_n: prompts shown per lineage and task at each end (most and least collapsed).
        max_output_chars: a longer output (or prompt) in the drill-down shows its first 70% and last 30% of this
            many characters around a marked cut (the final answer is usually at the end).
        max_drilldown_chars: budget for all drill-down text; when the outputs shown would exceed it, the per-output
            limit is lowered (to no less than 200 characters) and the page says so.

    Raises:
        DivtraceError: ``drilldown_lineages`` names a leaf that is not a lineage of ``graph``, or
            ``primary_metric`` has no per-prompt scores.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = report_tables(analysis)
    context = build_context(
        tables,
        samples=samples,
        per_prompt_scores=per_prompt_scores,
        graph=graph,
        study_info=study_info,
        primary_metric=primary_metric,
        drilldown_lineages=drilldown_lineages,
        drilldown_n=drilldown_n,
        max_output_chars=max_output_chars,
        max_drilldown_chars=max_drilldown_chars,
    )
    html = render_html(context)
    path = out / "index.html"
    write_atomic(path, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    summary = render_summary_md(
        tables.headline,
        study_info=study_info,
        collapse_sites=tables.collapse_sites,
        metrics=context["metrics"],
        unclosed_thinking=context["unclosed_thinking"],
        indistinguishable=context["indistinguishable"],
        table1=tables.table1,
        qfd=tables.qfd,
        diversity_quality=tables.diversity_quality,
        quality_edges=tables.quality_edges,
        homogenization=tables.homogenization,
        checkpoint_order=_checkpoint_order(graph),
        recovery=tables.recovery,
    )
    write_atomic(out / "summary.md", lambda tmp: tmp.write_text(summary, encoding="utf-8"))
    return path


def render_html(context: Mapping[str, Any]) -> str:
    """The template rendered with ``context`` (autoescaped; figures are passed as :class:`Markup`)."""
    source = (resources.files("divtrace.report") / "templates" / "index.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda value, digits=1: pct_ci(value, None, None, digits)
    env.filters["num"] = _num
    env.filters["signed_pct_ci"] = lambda d: signed_pct_ci(d["value"], d["low"], d["high"])
    env.filters["pct_ci"] = lambda d: pct_ci(d["retained"], d["retained_low"], d["retained_high"])
    env.filters["signed0"] = lambda v: signed(v, 0)
    env.filters["change"] = lambda r: signed_pct_ci(
        r["delta_pct_base"], r["delta_pct_base_ci_low"], r["delta_pct_base_ci_high"]
    )
    env.filters["site"] = site_text
    env.filters["delta_ci"] = lambda r, name: signed_ci(r[name], r[f"{name}_ci_low"], r[f"{name}_ci_high"])
    env.filters["share_ci"] = lambda r, name: share_ci(r[name], r[f"{name}_ci_low"], r[f"{name}_ci_high"])
    env.filters["quality"] = quality_text
    env.filters["quality_change"] = quality_change_text
    env.filters["quality_level"] = lambda r, name: quality_level(r["quality_source"], r[name])
    env.filters["diversity"] = lambda r: plain_ci(r["diversity"], r["diversity_ci_low"], r["diversity_ci_high"])
    env.filters["diversity_change"] = lambda r: signed_pct_ci(
        r["diversity_change_pct_base"], r["diversity_change_pct_base_ci_low"], r["diversity_change_pct_base_ci_high"]
    )
    return env.from_string(source).render(**context)


def build_context(
    tables: AnalysisResult,
    *,
    samples: Iterable[SampleRecord] | pd.DataFrame,
    per_prompt_scores: pd.DataFrame,
    graph: LineageGraph,
    study_info: StudyInfo,
    primary_metric: str | None,
    drilldown_lineages: Sequence[str] | None,
    drilldown_n: int,
    max_output_chars: int,
    max_drilldown_chars: int = 2_000_000,
) -> dict[str, Any]:
    """Everything the template needs: study header, figures (SVG :class:`Markup`), tables, drill-down."""
    metrics = _ordered(study_info.metrics, _values(tables, "metric"))
    tasks = _ordered(study_info.tasks, _values(tables, "task"))
    lineages = {leaf: path for leaf, path in graph.lineages().items() if len(path) > 1}

    unknown = sorted(set(drilldown_lineages or []) - set(lineages))
    if unknown:
        raise DivtraceError(
            f"drilldown_lineages: {unknown} are not lineages (their leaves) of this graph: {list(lineages)}"
        )
    scored = set(per_prompt_scores["metric"].astype(str)) if "metric" in per_prompt_scores.columns else set()
    if primary_metric is not None and primary_metric not in scored:
        raise DivtraceError(f"primary_metric: {primary_metric!r} has no per-prompt scores; scored: {sorted(scored)}")
    primary = primary_metric or ("sbert" if "sbert" in metrics else (metrics[0] if metrics else None))

    figures = build_figures(tables, graph, metrics, tasks, primary)
    chosen = {leaf: path for leaf, path in lineages.items() if drilldown_lineages is None or leaf in drilldown_lineages}
    drilldown, output_chars = (
        build_drilldown(per_prompt_scores, samples, chosen, primary, drilldown_n, max_output_chars, max_drilldown_chars)
        if primary is not None
        else ([], max_output_chars)
    )
    table1 = table1_view(tables.table1, study_info.name, metrics)
    qfd = tables.qfd
    shares_defined = qfd["residual_share"].notna()
    quality_order = {m: i for i, m in enumerate(metrics)}
    return {
        "study": _study_header(study_info, graph),
        "findings": headline_findings(table1),
        "sign_convention": f"{SIGN_CONVENTION} {SITE_DEFINITION}",
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "metrics": metrics,
        "tasks": tasks,
        "lineages": lineages,
        "figures": figures,
        "collapse_sites": _records(tables.collapse_sites.sort_values(["lineage", "task", "metric"]))
        if len(tables.collapse_sites)
        else [],
        "qfd_undefined": _records(qfd[~shares_defined & qfd["note"].notna()]),
        "qfd_rows": _records(qfd),
        "qfd_flagged": _records(qfd[qfd["share_outside_unit"].eq(True)]),
        "qfd_includes_zero": _records(qfd[shares_defined & qfd["delta_all_ci_includes_zero"].eq(True)]),
        "qfd_pairing": ", ".join(sorted(str(p) for p in qfd["pairing"].dropna().unique())),
        "outside_unit_explanation": OUTSIDE_UNIT_EXPLANATION,
        "includes_zero_explanation": CI_INCLUDES_ZERO_EXPLANATION,
        "table1": table1,
        "quality_rows": _records(tables.diversity_quality),
        "quality_edges": _records(
            tables.quality_edges.assign(_o=tables.quality_edges["metric"].map(quality_order))
            .sort_values(["task", "_o"], kind="stable")
            .drop(columns="_o")
        ),
        "quality_baseline": bool(tables.diversity_quality["is_baseline"].eq(True).any()),
        "recovery": recovery_view(tables.sweep, tables.recovery, metrics, tasks),
        "recovery_question": RECOVERY_QUESTION,
        "recovery_rule": RECOVERY_RULE,
        "primary_metric": primary,
        "drilldown": drilldown,
        "drilldown_cut": output_chars if output_chars < max_output_chars else None,
        "unclosed_thinking": unclosed_thinking_cells(samples, tables.checkpoint_means),
        "indistinguishable": indistinguishable_cells(per_prompt_scores),
    }


def indistinguishable_cells(per_prompt_scores: pd.DataFrame) -> list[dict[str, Any]]:
    """The (checkpoint, task) cells whose outputs include texts the sentence embedder could not tell apart although
    they differ: ``{checkpoint, task, outputs}``, the count from the scorer's ``indistinguishable_texts`` column
    (subset ``all``; the largest over the embedding metrics, which share one embedder); empty when no cell has any
    or the scores predate the column."""
    if "indistinguishable_texts" not in per_prompt_scores.columns:
        return []
    rows = per_prompt_scores.dropna(subset=["indistinguishable_texts"])
    if "subset" in rows.columns:
        rows = rows[rows["subset"] == "all"]
    per_metric = rows.groupby(["checkpoint", "task", "metric"])["indistinguishable_texts"].sum()
    cells = per_metric.groupby(level=["checkpoint", "task"]).max()
    return [
        {"checkpoint": str(checkpoint), "task": str(task), "outputs": int(count)}
        for (checkpoint, task), count in sorted(cells.items())
        if count > 0
    ]


def unclosed_thinking_cells(
    samples: Iterable[SampleRecord] | pd.DataFrame, checkpoint_means: pd.DataFrame
) -> list[dict[str, Any]]:
    """The (checkpoint, task) cells with outputs whose thinking never closed, for the report's warning.

    Each is ``{checkpoint, task, unclosed, outputs}`` (``outputs``: the cell's number of outputs, None when only
    the analysis table says). Counted from the samples' ``thinking_unclosed`` (records without it count as
    unknown); when no sample says, from ``checkpoint_means.unclosed_thinking`` (NaN there: unknown, as in
    analysis tables written before the column existed). Sorted by checkpoint, then task.
    """
    counts: dict[tuple[str, str], list[int]] = {}
    if isinstance(samples, pd.DataFrame):
        if "thinking_unclosed" in samples.columns:
            for row in samples.to_dict("records"):
                flags = row.get("thinking_unclosed")
                if _is_list(flags):
                    cell = counts.setdefault((str(row.get("checkpoint") or ""), str(row.get("task") or "")), [0, 0])
                    cell[0] += int(sum(bool(flag) for flag in flags))
                    cell[1] += len(flags)
    else:
        for record in samples:
            found = unclosed_count(record)
            if found is not None:
                cell = counts.setdefault((record.checkpoint or "", record.task or ""), [0, 0])
                cell[0] += found
                cell[1] += len(record.outputs)
    if counts:
        rows = [{"checkpoint": c, "task": t, "unclosed": n, "outputs": total} for (c, t), (n, total) in counts.items()]
    elif "unclosed_thinking" in checkpoint_means.columns:
        known = checkpoint_means.dropna(subset=["unclosed_thinking"]).drop_duplicates(["checkpoint", "task"])
        rows = [
            {"checkpoint": str(r["checkpoint"]), "task": str(r["task"]), "unclosed": int(r["unclosed_thinking"]),
             "outputs": None}
            for r in known.to_dict("records")
        ]  # fmt: skip
    else:
        rows = []
    return sorted((r for r in rows if r["unclosed"] > 0), key=lambda r: (r["checkpoint"], r["task"]))


def build_figures(
    tables: AnalysisResult, graph: LineageGraph, metrics: Sequence[str], tasks: Sequence[str], primary: str | None
) -> dict[str, Any]:
    """Every figure as SVG :class:`Markup`, keyed by section; a section without data gets None or an empty list.

    ``lineage`` is coloured by ``primary`` (every metric when None); ``heatmaps`` and ``qfd`` are lists of
    (metric, svg), ``curves`` of (task, svg), ``waterfalls`` of {lineage, path, svg}; ``thinking`` one figure.
    """
    order = _checkpoint_order(graph)
    colours = plots.checkpoint_colours(order)
    figures: dict[str, Any] = {"lineage": None, "heatmaps": [], "waterfalls": [], "qfd": [], "thinking": None}
    figures["curves"] = []
    figures["quality"] = quality_figures(tables.diversity_quality, graph, metrics, tasks, primary, colours)
    figures["homogenization"] = homogenization_figures(tables.homogenization, order, tasks)
    figures["recovery"] = recovery_figures(tables.sweep, graph, metrics, tasks, primary, colours)
    retained = tables.retained.dropna(subset=["retained"])
    if len(retained):
        figures["lineage"] = Markup(plots.plot_lineage(graph, retained, [primary] if primary else metrics))
        for metric in metrics:
            if (retained["metric"] == metric).any():
                figures["heatmaps"].append((metric, Markup(plots.plot_heatmap(retained, metric, order, tasks))))
    edges = tables.edges.dropna(subset=["delta_pct_base"])
    for leaf, path in graph.lineages().items():
        on_path = edges[edges["child"].isin(path[1:])]
        if len(path) > 1 and len(on_path):
            present = [m for m in metrics if (on_path["metric"] == m).any()]
            task_list = [t for t in tasks if (on_path["task"] == t).any()]
            figure = plots.plot_waterfall(on_path, path, present, task_list)
            figures["waterfalls"].append({"lineage": leaf, "path": path, "svg": Markup(figure)})
    qfd_defined = tables.qfd.dropna(subset=["residual_share"])
    for metric in metrics:
        if (qfd_defined["metric"] == metric).any():
            figures["qfd"].append((metric, Markup(plots.plot_qfd(qfd_defined, metric))))
    thinking = tables.thinking.dropna(subset=["diversity_on", "diversity_suppressed"], how="all")
    if len(thinking):
        figures["thinking"] = Markup(plots.plot_thinking(thinking, metrics))
    curves = tables.curves.dropna(subset=["mean"])
    passk = tables.passk.dropna(subset=["pass_at_k"])
    for task in tasks:
        if (curves["task"] == task).any() or (passk["task"] == task).any():
            figures["curves"].append((task, Markup(plots.plot_curves(curves, passk, task, metrics, colours))))
    return figures


def quality_figures(
    diversity_quality: pd.DataFrame,
    graph: LineageGraph,
    metrics: Sequence[str],
    tasks: Sequence[str],
    primary: str | None,
    colours: Mapping[str, tuple[float, float, float, float]],
) -> list[dict[str, Any]]:
    """Per task with a quality, quality against diversity: ``{task, metric, svg}``, the metric being ``primary``
    where the task has it, else the first of SBERT and ``metrics`` (:func:`quality_metric`)."""
    rows = diversity_quality.dropna(subset=["diversity", "quality"])
    figures = []
    for task in tasks:
        frame = rows[rows["task"] == task]
        if frame.empty:
            continue
        metric = figure_metric(frame, metrics, primary)
        svg = plots.plot_diversity_quality(frame, task, str(metric), graph.edges(), colours)
        figures.append({"task": task, "metric": metric, "svg": Markup(svg)})
    return figures


def figure_metric(frame: pd.DataFrame, metrics: Sequence[str], primary: str | None) -> str | None:
    """The metric a per-task quality or recovery figure shows: ``primary`` where ``frame`` (one task's rows, with a
    ``metric`` column) has it, else the first present of SBERT and ``metrics`` (:func:`quality_metric`); None
    when ``frame`` has no metric."""
    if primary is not None and (frame["metric"] == primary).any():
        return primary
    return quality_metric(frame, metrics)


def recovery_figures(
    sweep: pd.DataFrame,
    graph: LineageGraph,
    metrics: Sequence[str],
    tasks: Sequence[str],
    primary: str | None,
    colours: Mapping[str, tuple[float, float, float, float]],
) -> list[dict[str, Any]]:
    """Per task of a sweep, its recovery frontier (:func:`~divtrace.report.plots.plot_recovery`): ``{task,
    metric, svg}``, the metric chosen as the quality section's (:func:`figure_metric`); none when ``sweep`` is
    empty. The lines are the swept checkpoints (those with a row ``in_sweep``) in lineage order; the stars and
    dashed lines their bases (:meth:`LineageGraph.base_of`) at the study's setting."""
    rows = sweep.dropna(subset=["mean"])
    if rows.empty:
        return []
    order = _checkpoint_order(graph)
    present = [str(c) for c in rows.loc[rows["in_sweep"].eq(True), "checkpoint"].unique()]
    swept = [c for c in order if c in present] + [c for c in present if c not in order]
    bases = list(dict.fromkeys(graph.base_of(c) for c in swept if c in graph.nodes))
    parameters = sweep_parameters(rows)
    known = [str(t) for t in rows["task"].unique()]
    figures = []
    for task in [*[t for t in tasks if t in known], *[t for t in known if t not in tasks]]:
        metric = figure_metric(rows[rows["task"] == task], metrics, primary)
        if metric is None:
            continue
        svg = plots.plot_recovery(rows, task, metric, parameters, swept, bases, colours)
        figures.append({"task": task, "metric": metric, "svg": Markup(svg)})
    return figures


def recovery_view(
    sweep: pd.DataFrame, recovery: pd.DataFrame, metrics: Sequence[str], tasks: Sequence[str]
) -> dict[str, Any] | None:
    """What the recovery section writes besides its figures, None without a sweep: ``study_setting`` (the
    study's values of the swept parameters, :func:`setting_text`) and ``rows``, one per ``recovery`` row
    (:func:`ordered_recovery`) with its numbers as text: ``base_mean`` and ``there`` (mean [95% CI]),
    ``study_mean``, ``setting`` (:func:`recovery_setting_text`), ``quality_change``
    (:func:`recovery_quality_text`, an en dash without a quality), ``reached``."""
    if sweep.empty:
        return None
    parameters = sweep_parameters(sweep)
    own = sweep[sweep["is_study_setting"].eq(True)]
    study = own.iloc[0] if len(own) else None
    rows = []
    for r in ordered_recovery(recovery, metrics, tasks).to_dict("records") if len(recovery) else []:
        rows.append(
            {
                "checkpoint": r["checkpoint"],
                "task": r["task"],
                "metric": r["metric"],
                "base": r["base"],
                "base_mean": plain_ci(r["base_mean"], r["base_ci_low"], r["base_ci_high"]),
                "study_mean": plain(r["study_mean"], 3),
                "reached": not missing(r["reached"]) and bool(r["reached"]),
                "setting": recovery_setting_text(r, parameters),
                "there": plain_ci(r["mean"], r["ci_low"], r["ci_high"]),
                "quality_change": recovery_quality_text(r) or DASH,
            }
        )
    return {
        "study_setting": setting_text({p: study[p] for p in parameters}) if study is not None else "",
        "rows": rows,
    }


def homogenization_figures(
    homogenization: pd.DataFrame, order: Sequence[str], tasks: Sequence[str]
) -> list[dict[str, Any]]:
    """Per task with a homogenisation, the checkpoint x checkpoint heatmap of SBERT similarity, lineage order on
    both axes: ``{task, metric, svg}`` (none when the table is empty)."""
    rows = homogenization[homogenization["metric"] == HOMOGENIZATION_METRIC].dropna(subset=["similarity"])
    present = [str(t) for t in rows["task"].unique()]
    figures = []
    for task in [*[t for t in tasks if t in present], *[t for t in present if t not in tasks]]:
        svg = plots.plot_homogenization(rows, task, HOMOGENIZATION_METRIC, order)
        figures.append({"task": task, "metric": HOMOGENIZATION_METRIC, "svg": Markup(svg)})
    return figures


def build_drilldown(
    per_prompt_scores: pd.DataFrame,
    samples: Iterable[SampleRecord] | pd.DataFrame,
    lineages: Mapping[str, Sequence[str]],
    metric: str,
    n: int,
    max_chars: int,
    budget_chars: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Per lineage (base -> leaf) and task: the ``n`` prompts whose ``metric`` dropped most and the ``n`` least.

    Returns one dict per (lineage, task) with ``base``, ``leaf``, ``task``, ``n_prompts`` and ``most``/``least``:
    lists of ``{prompt_id, prompt, base_value, leaf_value, delta, base_outputs, leaf_outputs}``; outputs are
    ``[{text, count}]`` with identical responses merged (plain, unescaped strings, cut to ``max_chars``), or None
    when the samples lack that prompt. Only ``subset == "all"`` scores are used when the column exists; prompts
    need a finite value for both checkpoints. When the distinct texts shown would exceed ``budget_chars``,
    ``max_chars`` is lowered until they fit (not below 200). Returns ``(blocks, the max_chars applied)``.
    """
    scores = per_prompt_scores
    if "subset" in scores.columns:
        scores = scores[scores["subset"] == "all"]
    scores = scores[scores["metric"] == metric]
    blocks = []
    for leaf, path in lineages.items():
        base = path[0]
        for task, frame in scores[scores["checkpoint"].isin([base, leaf])].groupby("task", sort=True):
            wide = frame.pivot_table(index="prompt_id", columns="checkpoint", values="value", aggfunc="mean")
            if base not in wide.columns or leaf not in wide.columns:
                continue
            wide = wide[[base, leaf]].dropna()
            if wide.empty:
                continue
            wide = wide.assign(delta=wide[leaf] - wide[base]).sort_values("delta", kind="stable")
            most = list(wide.index[:n])
            least = [p for p in wide.index[::-1][:n] if p not in most]
            blocks.append(
                {
                    "lineage": leaf,
                    "base": base,
                    "leaf": leaf,
                    "task": str(task),
                    "n_prompts": len(wide),
                    "most": most,
                    "least": least,
                    "wide": wide,
                }
            )
    wanted = {
        (checkpoint, block["task"], str(p))
        for block in blocks
        for p in block["most"] + block["least"]
        for checkpoint in (block["base"], block["leaf"])
    }
    texts = _sample_texts(samples, wanted)
    if budget_chars is not None:
        lengths = np.array([len(t) for prompt, outputs in texts.values() for t in {prompt, *outputs}], dtype=np.int64)
        max_chars = _fit_budget(lengths, max_chars, budget_chars)
    for block in blocks:
        wide = block.pop("wide")
        for kind in ("most", "least"):
            block[kind] = [
                _drill_entry(wide, p, block["base"], block["leaf"], block["task"], texts, max_chars)
                for p in block[kind]
            ]
    return blocks, max_chars


def _fit_budget(lengths: np.ndarray, max_chars: int, budget: int) -> int:
    """The largest cut length L <= ``max_chars`` with sum(min(length, L)) <= ``budget`` (at least 200)."""
    if int(np.minimum(lengths, max_chars).sum()) <= budget:
        return max_chars
    low, high = _MIN_OUTPUT_CHARS, max_chars
    while low < high:
        middle = (low + high + 1) // 2
        if int(np.minimum(lengths, middle).sum()) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def _drill_entry(
    wide: pd.DataFrame,
    prompt_id: Any,
    base: str,
    leaf: str,
    task: str,
    texts: Mapping[tuple[str, str, str], tuple[str, list[str]]],
    max_chars: int,
) -> dict[str, Any]:
    """One drill-down prompt: its text, base and leaf values, and both sides' outputs (None when not sampled)."""
    prompt, base_outputs = texts.get((base, task, str(prompt_id)), (None, None))
    leaf_prompt, leaf_outputs = texts.get((leaf, task, str(prompt_id)), (None, None))
    return {
        "prompt_id": str(prompt_id),
        "prompt": _cut(prompt if prompt is not None else leaf_prompt, max_chars),
        "base_value": float(wide.at[prompt_id, base]),
        "leaf_value": float(wide.at[prompt_id, leaf]),
        "delta": float(wide.at[prompt_id, "delta"]),
        "base_outputs": _grouped(base_outputs, max_chars),
        "leaf_outputs": _grouped(leaf_outputs, max_chars),
    }


def _sample_texts(
    samples: Iterable[SampleRecord] | pd.DataFrame, wanted: set[tuple[str, str, str]]
) -> dict[tuple[str, str, str], tuple[str, list[str]]]:
    """``{(checkpoint, task, prompt_id): (prompt, responses)}`` for the ``wanted`` keys found in ``samples``.

    The texts are ``responses`` (reasoning stripped, what the metrics saw) when present, else ``outputs``.
    """
    out: dict[tuple[str, str, str], tuple[str, list[str]]] = {}
    if isinstance(samples, pd.DataFrame):
        for row in samples.to_dict("records"):
            key = (str(row.get("checkpoint") or ""), str(row.get("task") or ""), str(row["prompt_id"]))
            if key not in wanted:
                continue
            responses = row.get("responses")
            texts = responses if _is_list(responses) else row.get("outputs")
            out[key] = (str(row.get("prompt", "")), [str(t) for t in (texts if _is_list(texts) else [])])
        return out
    records = samples.of_cells({key[:2] for key in wanted}) if isinstance(samples, StoredSamples) else samples
    for record in records:
        key = (record.checkpoint or "", record.task or "", record.prompt_id)
        if key in wanted:
            out[key] = (record.prompt, list(record.scored_texts()))
    return out


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _grouped(texts: Sequence[str] | None, max_chars: int) -> list[dict[str, Any]] | None:
    """Identical responses merged, in order of first appearance: ``[{text, count}]`` (None stays None)."""
    if texts is None:
        return None
    counts: dict[str, int] = {}
    for text in texts:
        counts[text] = counts.get(text, 0) + 1
    return [{"text": _cut(text, max_chars), "count": count} for text, count in counts.items()]


def _cut(text: str | None, max_chars: int) -> str | None:
    """``text`` unchanged up to ``max_chars``; else its head (70%) and tail (30%) around a marked cut."""
    if text is None or len(text) <= max_chars:
        return text
    head = int(max_chars * 0.7)
    tail = max_chars - head
    return f"{text[:head]} [… {len(text) - max_chars} characters cut …] {text[len(text) - tail :]}"


#: Checkpoint fields the checkpoint table shows in their own columns (or that the graph already shows).
_CHECKPOINT_COLUMNS = frozenset({"name", "model", "stage", "parent", "variant_of", "thinking"})


def checkpoint_settings(spec: CheckpointSpec) -> str:
    """What the checkpoint table's ``settings`` column shows: each setting of ``spec`` (as its JSON dump) that no
    other column shows, as ``key = value`` joined by ``; ``,
    backend options (``options``) inline with the rest; an unset one (None, empty text, list or mapping) is left
    out, a flag reads yes / no and a list its items. Empty when nothing is set."""
    items: list[str] = []
    for key, value in spec.model_dump(mode="json").items():
        if key in _CHECKPOINT_COLUMNS:
            continue
        nested = value.items() if isinstance(value, Mapping) else [(key, value)]
        items += [f"{k} = {_setting(v)}" for k, v in nested if not _unset(v)]
    return "; ".join(items)


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple, dict)) and not value) or _isnan(value)


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _study_header(study_info: StudyInfo, graph: LineageGraph) -> dict[str, Any]:
    specs = {spec.name: spec for spec in study_info.checkpoints}
    checkpoints = []
    for name in _checkpoint_order(graph):
        node = graph.nodes[name]
        spec = specs.get(name)
        checkpoints.append(
            {
                "name": name,
                "stage": node.stage,
                "parent": node.parent or (f"variant of {node.variant_of}" if node.variant_of else ""),
                "model": spec.model if spec is not None else "",
                "thinking": node.thinking,
                "settings": checkpoint_settings(spec) if spec is not None else "",
            }
        )
    embedder = study_info.embedder
    if isinstance(embedder, Mapping):
        embedder = ", ".join(f"{k}: {v}" for k, v in embedder.items())
    heading, sampling = sampling_settings(study_info.sampling)
    return {
        "name": study_info.title,
        "description": study_info.description,
        "caveat": study_info.caveat or "",
        "embedder": embedder or "default",
        "nli_model": study_info.nli_model or "",
        "sampling": sampling,
        "sampling_heading": heading,
        "checkpoints": checkpoints,
    }


def _checkpoint_order(graph: LineageGraph) -> list[str]:
    """Tree checkpoints depth-first from each base (so a lineage reads left to right), each variant after its source."""
    order: list[str] = []

    def visit(name: str) -> None:
        order.append(name)
        order.extend(v.name for v in graph.variants() if v.variant_of == name)
        for child in graph.children(name):
            visit(child)

    for node in graph.tree_nodes():
        if node.parent is None:
            visit(node.name)
    return order


def _values(tables: AnalysisResult, column: str) -> list[str]:
    """The values of ``column`` over the diversity tables (not the homogenisation's, whose metrics are its own)."""
    seen: list[str] = []
    for name, frame in tables.tables().items():
        if column in frame.columns and name != "homogenization":
            seen.extend(str(v) for v in frame[column].dropna().unique())
    return list(dict.fromkeys(seen))


def _ordered(preferred: Sequence[Any], present: Sequence[str]) -> list[str]:
    """``present`` values, those named in ``preferred`` first in its order, the rest sorted."""
    names = [getattr(item, "name", item) for item in preferred]
    first = [str(n) for n in names if str(n) in present]
    return first + sorted(set(present) - set(first))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if _isnan(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _num(value: Any, digits: int = 3) -> str:
    """A table value: yes / no, an integer, or a number with ``digits`` decimals; an en dash when missing."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return plain(value, digits)
