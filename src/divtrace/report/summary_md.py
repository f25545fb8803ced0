"""``summary.md``: the study's headline table (Table 1: loss per stage as % of base, retained %) in Markdown.

Input is the analysis' ``headline`` table in long form (one row per lineage x task x metric x edge, canonical
columns as in :func:`divtrace.report.html.report_tables`); the output is one Markdown table per lineage with one
column per stage of its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

_DASH = "\N{EN DASH}"  # a missing value


def render_summary_md(
    headline: pd.DataFrame,
    *,
    study_info: Mapping[str, Any],
    collapse_sites: pd.DataFrame | None = None,
    metrics: Sequence[str] | None = None,
    unclosed_thinking: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """The Markdown summary of a study.

    Args:
        headline: columns lineage, task, metric, step, parent, child, stage, loss_pct_base, loss_pct_base_ci_low,
            loss_pct_base_ci_high, is_collapse_site, retained_pct (``loss_pct_base`` positive = diversity lost).
        study_info: ``name`` and optionally ``caveat`` (quoted at the top) and ``description``.
        collapse_sites: optional; columns lineage, task, metric, parent, child, stage, delta_pct_base and its CI
            (``delta_pct_base_ci_low``/``_high``), loss_share.
        metrics: order of the metrics in each table (others follow, sorted).
        unclosed_thinking: optional; ``{checkpoint, task, unclosed, outputs}`` per (checkpoint, task) with outputs
            whose thinking never closed (see :func:`divtrace.report.html.unclosed_thinking_cells`): a warning
            naming each, since the token cap may be too small there.

    Returns:
        Markdown text: title, caveat, then per lineage a table ``task | metric | <stage> loss ... | retained``,
        each loss cell ``12.3% [8.1, 16.4]`` (95% CI), the collapse site in bold. Every cell is escaped.
    """
    lines = [f"# {_cell(study_info.get('name') or 'divtrace study')}: diversity along the lineage", ""]
    if study_info.get("caveat"):
        lines += [f"> **Caveat:** {_cell(study_info['caveat'])}", ""]
    if unclosed_thinking:
        lines += [
            "> **Unclosed thinking:** some outputs opened a `<think>` block that never closed (most likely the "
            "generation hit the token cap while thinking). Their responses keep the unfinished thinking, as the "
            "study's stripping does, so metrics and verifiers see unfinished reasoning instead of an answer (usually a "
            "wrong one). The token cap (max_new_tokens) may be too small for:",
            ">",
        ]
        for cell in unclosed_thinking:
            of = f" of {cell['outputs']}" if cell.get("outputs") else ""
            where = f"{_cell(cell['checkpoint'])} \N{MULTIPLICATION SIGN} {_cell(cell['task'])}"
            lines.append(f"> - {where}: {cell['unclosed']}{of} outputs")
        lines.append("")
    if study_info.get("description"):
        lines += [_cell(study_info["description"]), ""]
    lines += [
        "Loss per stage as % of the base model's diversity (positive = diversity lost; 95% bootstrap CI over "
        "prompts in brackets; **bold** = the lineage's collapse site) and diversity retained by the leaf "
        "(% of base).",
        "",
    ]
    if headline is None or headline.empty:
        lines += ["_No headline rows: the analysis found no edge with data._", ""]
    else:
        order = {m: i for i, m in enumerate(metrics or [])}
        for lineage, frame in headline.groupby("lineage", sort=False):
            steps = frame.drop_duplicates("step").sort_values("step")
            path = [str(steps["parent"].iloc[0]), *(str(c) for c in steps["child"])]
            lines += [f"## {_cell(lineage)}: {' → '.join(_cell(p) for p in path)}", ""]
            header = ["task", "metric", *(_stage_label(r.stage, r.child) for r in steps.itertuples()), "retained"]
            lines += [_row(header), _row(["---"] * 2 + ["---:"] * (len(header) - 2))]
            keys = frame[["task", "metric"]].drop_duplicates()
            keys = keys.assign(_o=keys["metric"].map(lambda m: order.get(m, len(order))))
            for task, metric in keys.sort_values(["task", "_o", "metric"])[["task", "metric"]].itertuples(index=False):
                rows = frame[(frame["task"] == task) & (frame["metric"] == metric)].set_index("step")
                cells = [_cell(task), _cell(metric)]
                for step in steps["step"]:
                    if step not in rows.index:
                        cells.append(_DASH)
                        continue
                    row = rows.loc[step]
                    text = _pct_ci(row["loss_pct_base"], row["loss_pct_base_ci_low"], row["loss_pct_base_ci_high"])
                    cells.append(f"**{text}**" if _true(row.get("is_collapse_site")) else text)
                cells.append(_pct(rows["retained_pct"].iloc[0]))
                lines.append(_row(cells))
            lines.append("")
    if collapse_sites is not None and not collapse_sites.empty:
        lines += [
            "## Collapse sites",
            "",
            _row(["lineage", "task", "metric", "edge", "change, % of base", "share of lineage loss"]),
            _row(["---"] * 4 + ["---:"] * 2),
        ]
        for r in collapse_sites.sort_values(["lineage", "task", "metric"]).to_dict("records"):
            edge = f"{_cell(r['parent'])} → {_cell(r['child'])} ({_cell(r['stage'])})"
            change = _pct_ci(r["delta_pct_base"], r.get("delta_pct_base_ci_low"), r.get("delta_pct_base_ci_high"))
            share = r.get("loss_share")
            lines.append(
                _row(
                    [
                        _cell(r["lineage"]),
                        _cell(r["task"]),
                        _cell(r["metric"]),
                        edge,
                        change,
                        _DASH if _missing(share) else f"{100 * float(share):.0f}%",
                    ]
                )
            )
        lines.append("")
    return "\n".join(lines)


def _stage_label(stage: Any, child: Any) -> str:
    """``stage (child)``, or just the stage when the checkpoint is named after it."""
    return _cell(stage) if str(stage) == str(child) else f"{_cell(stage)} ({_cell(child)})"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: backslashes, pipes and ``<`` (raw HTML) escaped, newlines flattened."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<")
    return text.replace("\r", " ").replace("\n", " ")


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _true(value: Any) -> bool:
    return not _missing(value) and bool(value)


def _pct(value: Any) -> str:
    return _DASH if _missing(value) else f"{float(value):.1f}%"


def _pct_ci(value: Any, low: Any, high: Any) -> str:
    if _missing(value):
        return _DASH
    if _missing(low) or _missing(high):
        return _pct(value)
    return f"{float(value):.1f}% [{float(low):.1f}, {float(high):.1f}]"
