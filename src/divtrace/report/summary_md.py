"""``summary.md``: the study's Table 1 first, then the per-task headline tables, collapse sites and decomposition.

Inputs are the analysis tables (canonical columns as in :func:`divtrace.report.html.report_tables`): ``table1``
(per lineage, each stage's change as % of base averaged over tasks; with the published row for the ``olmo3-7b``
study), ``headline`` (one Markdown table per lineage with one column per stage of its path, per task and metric),
``collapse_sites`` and ``qfd`` (the quality-filtered decomposition, shares outside [0, 1] flagged and explained).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from divtrace.analysis.qfd import OUTSIDE_UNIT_EXPLANATION
from divtrace.analysis.table1 import PAPER_METRIC, PAPER_SOURCE, paper_row

_DASH = "\N{EN DASH}"  # a missing value
_MINUS = "\N{MINUS SIGN}"


def render_summary_md(
    headline: pd.DataFrame,
    *,
    study_info: Mapping[str, Any],
    collapse_sites: pd.DataFrame | None = None,
    metrics: Sequence[str] | None = None,
    unclosed_thinking: Sequence[Mapping[str, Any]] | None = None,
    indistinguishable: Sequence[Mapping[str, Any]] | None = None,
    table1: pd.DataFrame | None = None,
    qfd: pd.DataFrame | None = None,
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
        indistinguishable: optional; ``{checkpoint, task, outputs}`` per cell with outputs the sentence embedder
            cannot tell apart (see :func:`divtrace.report.html.indistinguishable_cells`): a warning naming each.
        table1: optional; the analysis' ``table1`` (:data:`divtrace.analysis.TABLE1_COLUMNS`): rendered first, as
            :func:`table1_view` describes. None leaves the section out; an empty table says it is missing.
        qfd: optional; the analysis' ``qfd`` table: one row per comparison, task and metric, shares outside
            [0, 1] marked and explained.

    Returns:
        Markdown text: title, caveat, Table 1, then per lineage a table ``task | metric | <stage> loss ... |
        retained``, each loss cell ``12.3% [8.1, 16.4]`` (95% CI), the collapse site in bold, then collapse sites
        and the decomposition. Every cell is escaped.
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
    if indistinguishable:
        lines += [
            "> **Outputs the embedder cannot tell apart:** some outputs differ as text but get the same sentence "
            "embedding (e.g. emoji-only outputs, mapped to unknown tokens), so SBERT and Vendi understate their "
            "diversity in:",
            ">",
        ]
        for cell in indistinguishable:
            where = f"{_cell(cell['checkpoint'])} \N{MULTIPLICATION SIGN} {_cell(cell['task'])}"
            lines.append(f"> - {where}: {cell['outputs']} outputs")
        lines.append("")
    if table1 is not None:
        lines += _table1_lines(table1_view(table1, study_info.get("name"), metrics), table1.empty)
    if study_info.get("description"):
        lines += [_cell(study_info["description"]), ""]
    sampling = sampling_text(study_info.get("sampling"))
    if sampling:
        lines += [f"**Sampling:** {_cell(sampling)}", ""]
    lines += [
        "## Per task",
        "",
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
            lines += [f"### {_cell(lineage)}: {' → '.join(_cell(p) for p in path)}", ""]
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
                        _DASH if share is None or _missing(share) else f"{100 * float(share):.0f}%",
                    ]
                )
            )
        lines.append("")
    if qfd is not None and not qfd.empty:
        lines += _qfd_lines(qfd, metrics)
    return "\n".join(lines)


def sampling_settings(sampling: Any) -> tuple[str, dict[str, Any]]:
    """How to show a study's ``sampling`` (a dict from ``study.sampling.model_dump()``): a heading and the settings.

    An imported study's sampling (``from_records``, see :class:`divtrace.study.RecordedSampling`) is headed "as
    the imported records carry it" (with the tool, and "requested" when the values are what the tool was asked
    for); its values may read ``unknown`` or ``mixed: ...``. A study's own sampling is headed "study settings".
    """
    if not isinstance(sampling, Mapping) or not sampling:
        return "", {}
    settings = {key: value for key, value in sampling.items() if key not in ("from_records", "source", "requested")}
    if not sampling.get("from_records"):
        return "study settings", settings
    heading = f"as the imported records carry it ({sampling.get('source') or 'unknown source'}"
    heading += ", as requested from the tool)" if sampling.get("requested") else ")"
    return heading, settings


def sampling_text(sampling: Any) -> str:
    """``sampling`` in one line: ``k = 4; temperature = 0.8; ... (as the imported records carry it (lm-eval))``;
    empty when there is none."""
    heading, settings = sampling_settings(sampling)
    if not settings:
        return ""
    body = "; ".join(f"{key} = {'-' if value is None else value}" for key, value in settings.items())
    return f"{body} ({heading})"


def table1_view(table1: pd.DataFrame, study_name: Any, metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """What the report and summary.md show of Table 1: one metric (SBERT, the paper's; else the first of
    ``metrics`` present, else the first present), one entry per row group (lineages, then groups), and the published
    row under each for the ``olmo3-7b`` study (:func:`divtrace.analysis.table1.paper_row`, from the study name, so
    it shows whether or not the analysis was given the name).

    Returns ``{"metric", "n_steps", "rows", "paper_source"}``; each row is ``{lineage, kind, members, path, steps:
    [{stage, child, value, low, high}], retained, retained_low, retained_high, n_tasks, tasks, paper}`` with
    ``paper`` None or ``{"changes": [value or None per step], "retained": value}``. Empty ``rows`` without data.
    """
    view: dict[str, Any] = {"metric": None, "n_steps": 0, "rows": [], "paper_source": None}
    if table1 is None or table1.empty:
        return view
    present = [str(m) for m in table1["metric"].dropna().unique()]
    preferred = [PAPER_METRIC, *(metrics or [])]
    metric = next((m for m in preferred if m in present), present[0] if present else None)
    if metric is None:
        return view
    frame = table1[table1["metric"] == metric]
    order = {"lineage": 0, "group": 1}
    labels = frame[["lineage", "kind"]].drop_duplicates()
    labels = labels.assign(_o=labels["kind"].map(lambda k: order.get(k, 2)))
    for lineage in labels.sort_values("_o", kind="stable")["lineage"]:
        rows = frame[frame["lineage"] == lineage].sort_values("step")
        first = rows.iloc[0]
        paper = None
        published = paper_row(study_name, metric, lineage, len(rows))
        if published is not None:
            changes, retained = published
            paper = {"changes": list(changes) if changes else [None] * len(rows), "retained": retained}
            view["paper_source"] = PAPER_SOURCE
        view["rows"].append(
            {
                "lineage": str(lineage),
                "kind": str(first["kind"]),
                "members": str(first["members"]),
                "path": str(first["path"]),
                "steps": [
                    {
                        "stage": str(r["stage"]),
                        "child": str(r["child"]),
                        "value": _float(r["change_pct_base"]),
                        "low": _float(r["change_pct_base_ci_low"]),
                        "high": _float(r["change_pct_base_ci_high"]),
                    }
                    for r in rows.to_dict("records")
                ],
                "retained": _float(first["retained_pct"]),
                "retained_low": _float(first["retained_pct_ci_low"]),
                "retained_high": _float(first["retained_pct_ci_high"]),
                "n_tasks": int(first["n_tasks"]),
                "tasks": str(first["tasks"]),
                "paper": paper,
            }
        )
    view["metric"] = metric
    view["n_steps"] = max(len(r["steps"]) for r in view["rows"])
    return view


def signed_pct_ci(value: Any, low: Any, high: Any) -> str:
    """``+7.5% [-1.2, +16.0]`` with true minus signs (U+2212) for negatives; an en dash when missing."""
    if _missing(value):
        return _DASH
    text = _signed(value, 1) + "%"
    if _missing(low) or _missing(high):
        return text
    return f"{text} [{_signed(low, 1)}, {_signed(high, 1)}]"


def pct_ci(value: Any, low: Any, high: Any) -> str:
    """``62.5% [58.1, 66.0]``; an en dash when missing."""
    return _pct_ci(value, low, high)


def _signed(value: Any, digits: int) -> str:
    text = f"{float(value):+.{digits}f}"
    return text.replace("-", _MINUS)


def _table1_lines(view: Mapping[str, Any], missing: bool) -> list[str]:
    lines = ["## Table 1: diversity change per stage, % of base, mean over tasks", ""]
    if not view["rows"]:
        reason = (
            "not in this analysis (written by an older divtrace, or no lineage has data): run `divtrace analyze` again"
            if missing
            else "no lineage has data"
        )
        return [*lines, f"_Table 1: {reason}._", ""]
    metric = _cell(view["metric"])
    lines += [
        f"Per lineage, each stage's change in **{metric}** diversity as % of the base model's (negative = diversity "
        "lost), averaged over tasks (each task weighs the same), and the diversity the last checkpoint retains "
        "(% of base). 95% bootstrap CIs in brackets, prompts resampled within each task. A group row averages "
        "parallel single-stage lineages from the same base (e.g. the RL-Zero checkpoints).",
        "",
    ]
    n_steps = view["n_steps"]
    header = ["lineage", "path", *(f"stage {i}" for i in range(1, n_steps + 1)), "retained", "tasks"]
    lines += [_row(header), _row(["---"] * 2 + ["---:"] * (len(header) - 2))]
    for row in view["rows"]:
        cells = [_cell(row["lineage"]) + (" (mean)" if row["kind"] == "group" else ""), _cell(row["path"])]
        for i in range(n_steps):
            if i < len(row["steps"]):
                step = row["steps"][i]
                cells.append(f"{_cell(step['stage'])}: {signed_pct_ci(step['value'], step['low'], step['high'])}")
            else:
                cells.append("")
        cells += [_pct_ci(row["retained"], row["retained_low"], row["retained_high"]), str(row["n_tasks"])]
        lines.append(_row(cells))
        paper = row["paper"]
        if paper is not None:
            changes = [_DASH if v is None else _signed(v, 0) for v in paper["changes"]]
            changes += [""] * (n_steps - len(changes))
            lines.append(_row(["↳ paper", "published", *changes, f"{paper['retained']:.0f}%", "15"]))
    lines.append("")
    if view["paper_source"]:
        lines += [
            f"↳ paper: the published row ({_cell(view['paper_source'])}; SBERT, mean over the study's 15 tasks, "
            "rounded) for comparison.",
            "",
        ]
    return lines


def _qfd_lines(qfd: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    pairing = ", ".join(sorted(str(p) for p in qfd["pairing"].dropna().unique())) if "pairing" in qfd else ""
    lines = [
        "## Quality-filtered decomposition",
        "",
        f"ΔD_all (all K outputs) split into a quality-control part (ΔD_all {_MINUS} ΔD_correct: wrong answers "
        "removed) and a residual, genuine narrowing (ΔD_correct: correct answers narrowing), as shares of ΔD_all; "
        "D_correct over the correct outputs of prompts with at least 2 of them"
        + (
            " (unpaired, as the paper: each checkpoint over its own qualifying prompts)"
            if pairing == "unpaired"
            else f" ({_cell(pairing)})"
            if pairing
            else ""
        )
        + ". Qualifying prompts: reference / checkpoint.",
        "",
        _row(["comparison", "task", "metric", "ΔD_all", "ΔD_correct", "quality control", "residual", "qualifying"]),
        _row(["---"] * 3 + ["---:"] * 5),
    ]
    order = {m: i for i, m in enumerate(metrics or [])}
    frame = qfd.assign(_o=qfd["metric"].map(lambda m: order.get(m, len(order))))
    flagged = False
    for r in frame.sort_values(["task", "_o", "metric"], kind="stable").to_dict("records"):
        outside = _true(r.get("share_outside_unit"))
        flagged = flagged or outside
        mark = " †" if outside else ""
        qualifying = f"{_count(r.get('n_qualifying_reference'))} / {_count(r.get('n_qualifying_checkpoint'))}"
        lines.append(
            _row(
                [
                    f"{_cell(r.get('reference'))} → {_cell(r['checkpoint'])}",
                    _cell(r["task"]),
                    _cell(r["metric"]),
                    _num(r.get("delta_all")),
                    _num(r.get("delta_correct")),
                    _share(r.get("quality_control_share")) + mark,
                    _share(r.get("residual_share")) + mark,
                    qualifying,
                ]
            )
        )
    lines.append("")
    if flagged:
        lines += [f"† {OUTSIDE_UNIT_EXPLANATION}", ""]
    if frame["residual_share"].isna().any():
        lines += [f"{_DASH} in a share: undefined (too few qualifying prompts, or no clear change in D_all).", ""]
    return lines


def _share(value: Any) -> str:
    return _DASH if _missing(value) else f"{100 * float(value):.1f}%".replace("-", _MINUS)


def _num(value: Any) -> str:
    return _DASH if _missing(value) else _signed(value, 3)


def _count(value: Any) -> str:
    return "?" if _missing(value) else str(int(value))


def _float(value: Any) -> float | None:
    return None if _missing(value) else float(value)


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
