"""What the report and ``summary.md`` open with: one sentence per lineage and metric, then Table 1.

Both read the analysis' ``table1`` (:data:`divtrace.analysis.TABLE1_COLUMNS`: per lineage or group, metric and
stage, the change as % of base averaged over tasks, with task-stratified CIs). A stage's change is negative when
diversity is lost (:data:`divtrace.analysis.SIGN_CONVENTION`); the collapse site of a row is its largest significant
loss (:func:`divtrace.analysis.collapse_step`, the same rule as the per-task ``collapse_sites``), so a row without a
significant loss has none and a stage that gained never is one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from divtrace.analysis import collapse_step
from divtrace.analysis.collapse import significant_gain, significant_loss
from divtrace.analysis.table1 import PAPER_METRIC, PAPER_SOURCE, paper_row
from divtrace.report.numbers import missing, signed_pct_ci

#: A stage whose change is not significant and smaller than this (in % of base, either sign) is "< 5%".
SMALL_CHANGE_PCT = 5.0


@dataclass(frozen=True)
class Finding:
    """One opening sentence: ``subject`` (``think · sbert``) and ``text`` (``collapses at sft ...``)."""

    lineage: str
    metric: str
    subject: str
    text: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.text}"


def ordered_metrics(present: Sequence[str], metrics: Sequence[str] | None = None) -> list[str]:
    """``present`` metrics in reading order: the paper's (SBERT) first, then ``metrics``' order, then sorted."""
    preferred = [PAPER_METRIC, *(metrics or [])]
    first = [m for m in dict.fromkeys(preferred) if m in present]
    return first + sorted(set(present) - set(first))


def table1_view(table1: pd.DataFrame, study_name: Any, metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """What the report and summary.md show of Table 1: every metric (:func:`ordered_metrics`), then within a
    metric one entry per row group (lineages, then groups), with the published row under each SBERT row of the
    ``olmo3-7b`` study (:func:`divtrace.analysis.table1.paper_row`, from the study name, so it shows whether or not
    the analysis was given the name).

    Returns ``{"metrics", "n_steps", "rows", "paper_source", "has_site"}``; each row is ``{lineage, kind,
    members, path, metric, steps: [{stage, child, value, low, high, site}], retained, retained_low, retained_high,
    n_tasks, tasks, paper}`` with ``site`` True on the row's collapse site (computed from the CIs, so a table
    written before the ``is_collapse_site`` column reads the same) and ``paper`` None or ``{"changes": [value or
    None per step], "retained": value}``. ``has_site``: some row has a site. Empty ``rows`` without data.
    """
    view: dict[str, Any] = {"metrics": [], "n_steps": 0, "rows": [], "paper_source": None, "has_site": False}
    if table1 is None or table1.empty:
        return view
    chosen = ordered_metrics([str(m) for m in table1["metric"].dropna().unique()], metrics)
    order = {"lineage": 0, "group": 1}
    labels = table1[["lineage", "kind"]].drop_duplicates()
    labels = labels.assign(_o=labels["kind"].map(lambda k: order.get(k, 2)))
    lineages = list(labels.sort_values("_o", kind="stable")["lineage"])
    for metric in chosen:
        frame = table1[table1["metric"] == metric]
        for lineage in lineages:
            rows = frame[frame["lineage"] == lineage].sort_values("step")
            if rows.empty:
                continue
            view["rows"].append(_view_row(rows, metric, study_name, view))
    view["metrics"] = chosen
    view["n_steps"] = max(len(r["steps"]) for r in view["rows"])
    view["has_site"] = any(step["site"] for r in view["rows"] for step in r["steps"])
    return view


def _view_row(rows: pd.DataFrame, metric: str, study_name: Any, view: dict[str, Any]) -> dict[str, Any]:
    """One Table 1 row of the view (``rows``: its steps in order); records the paper's source in ``view``."""
    first = rows.iloc[0]
    lineage = str(first["lineage"])
    steps: list[dict[str, Any]] = [
        {
            "stage": str(r["stage"]),
            "child": str(r["child"]),
            "value": _float(r["change_pct_base"]),
            "low": _float(r["change_pct_base_ci_low"]),
            "high": _float(r["change_pct_base_ci_high"]),
        }
        for r in rows.to_dict("records")
    ]
    site = collapse_step(*(_finite_or_nan([s[key] for s in steps]) for key in ("value", "low", "high")))
    for i, step in enumerate(steps):
        step["site"] = i == site
    paper = None
    published = paper_row(study_name, metric, lineage, len(rows))
    if published is not None:
        changes, retained = published
        paper = {"changes": list(changes) if changes else [None] * len(rows), "retained": retained}
        view["paper_source"] = PAPER_SOURCE
    return {
        "lineage": lineage,
        "kind": str(first["kind"]),
        "members": str(first["members"]),
        "path": str(first["path"]),
        "metric": metric,
        "steps": steps,
        "retained": _float(first["retained_pct"]),
        "retained_low": _float(first["retained_pct_ci_low"]),
        "retained_high": _float(first["retained_pct_ci_high"]),
        "n_tasks": int(first["n_tasks"]),
        "tasks": str(first["tasks"]),
        "paper": paper,
    }


def headline_findings(view: Mapping[str, Any]) -> list[Finding]:
    """One sentence per Table 1 row (lineage or group) and metric, from :func:`table1_view`'s ``view``: lineages in
    Table 1's order, each with its metrics in the view's order.

    A sentence says where the row collapsed (its site's stage, and checkpoint when named differently) and by how
    much, as % of base with the 95% CI, or "no significant loss"; then the other stages: further significant
    losses ("also loses at"), significant gains ("gains at"), changes that are not significant but reach
    :data:`SMALL_CHANGE_PCT` (with their CI, "not significant"), and the rest together ("dpo and rl change < 5%").
    """
    rows = sorted(
        view.get("rows", []),
        key=lambda r: (_first_index(view["rows"], r["lineage"]), view["metrics"].index(r["metric"])),
    )
    return [_finding(row) for row in rows]


def _first_index(rows: Sequence[Mapping[str, Any]], lineage: str) -> int:
    return next(i for i, r in enumerate(rows) if r["lineage"] == lineage)


def _finding(row: Mapping[str, Any]) -> Finding:
    """The sentence of one view row."""
    steps = row["steps"]
    stages = [s["stage"] for s in steps]
    unique = len(set(stages)) == len(stages)

    def name(step: Mapping[str, Any], full: bool = False) -> str:
        named = step["child"] != step["stage"] and (full or not unique)
        return f"{step['stage']} ({step['child']})" if named else str(step["stage"])

    def change(step: Mapping[str, Any]) -> str:
        return signed_pct_ci(step["value"], step["low"], step["high"])

    site = next((s for s in steps if s["site"]), None)
    clauses = [f"collapses at {name(site, full=True)}: {change(site)} of base" if site else "no significant loss"]
    others = [s for s in steps if s is not site]
    losses = [s for s in others if significant_loss(*_ci(s))]
    gains = [s for s in others if significant_gain(*_ci(s))]
    rest = [s for s in others if s not in losses and s not in gains]
    small = [s for s in rest if not missing(s["value"]) and abs(s["value"]) < SMALL_CHANGE_PCT]
    unclear = [s for s in rest if s not in small]
    if losses:
        clauses.append("also loses " + " and ".join(f"at {name(s)}: {change(s)}" for s in losses))
    if gains:
        clauses.append("gains " + " and ".join(f"at {name(s)}: {change(s)}" for s in gains))
    clauses += [f"{name(s)}: {change(s)}, not significant" for s in unclear]
    if small:
        verb = "changes" if len(small) == 1 else "change"
        clauses.append(f"{_and([name(s) for s in small])} {verb} < {SMALL_CHANGE_PCT:.0f}%")
    label = f"{row['lineage']} (mean)" if row["kind"] == "group" else str(row["lineage"])
    return Finding(str(row["lineage"]), str(row["metric"]), f"{label} · {row['metric']}", "; ".join(clauses) + ".")


def _ci(step: Mapping[str, Any]) -> tuple[float, float, float]:
    value, low, high = _finite_or_nan([step["value"], step["low"], step["high"]])
    return value, low, high


def _and(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _finite_or_nan(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def _float(value: Any) -> float | None:
    return None if missing(value) else float(value)
