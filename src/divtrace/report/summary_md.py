"""``summary.md``: one sentence per lineage and metric first, then Table 1, the per-task headline tables, collapse
sites and the decomposition.

Inputs are the analysis tables (canonical columns as in :func:`divtrace.report.html.report_tables`): ``table1``
(per lineage, each stage's change as % of base averaged over tasks; with the published row for the ``olmo3-7b``
study), ``headline`` (one Markdown table per lineage with one column per stage of its path, per task and metric),
``collapse_sites``, ``diversity_quality`` and ``quality_edges`` (diversity against quality: a table per task and a
sentence per stage, only when some checkpoint has a quality), ``recovery`` (the recovery frontier, only for a study
with a sweep: a line per post-trained swept checkpoint, task and metric), ``homogenization`` and ``qfd`` (the
quality-filtered decomposition, shares outside [0, 1] and shares of a ΔD_all whose CI includes 0 flagged and
explained). Every change has one sign, stated once at the top (:data:`divtrace.analysis.SIGN_CONVENTION`: negative
= diversity lost), and every number is written by :mod:`divtrace.report.numbers`. A footnote or legend appears only
when some cell uses its mark.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from divtrace.analysis import GAINED, NO_SIGNIFICANT_LOSS, SIGN_CONVENTION
from divtrace.analysis.qfd import CI_INCLUDES_ZERO_EXPLANATION, OUTSIDE_UNIT_EXPLANATION
from divtrace.analysis.quality import BASELINE_NOTE, points_per_unit
from divtrace.analysis.sweep import NOT_REACHED
from divtrace.report.findings import headline_findings, ordered_metrics, table1_view
from divtrace.report.numbers import (
    DASH,
    MINUS,
    absent,
    missing,
    pct_ci,
    plain,
    plain_ci,
    share_ci,
    signed,
    signed_ci,
    signed_pct_ci,
)
from divtrace.report.study_info import StudyInfo
from divtrace.study import RecordedSampling, SamplingSpec
from divtrace.study.sweep import SWEEP_PARAMETERS, format_value

#: How a collapse-site row without a site reads, by its ``status``.
NO_SITE_TEXT = {
    NO_SIGNIFICANT_LOSS: "none: no significant loss",
    GAINED: "none: no significant loss, diversity gained",
}
#: The definition of a collapse site, stated with the sign convention.
SITE_DEFINITION = (
    "A collapse site is the stage with the largest loss whose 95% CI excludes 0; a lineage without a significant "
    "loss has none, and a stage that gained never is one."
)


def render_summary_md(
    headline: pd.DataFrame,
    *,
    study_info: StudyInfo,
    collapse_sites: pd.DataFrame | None = None,
    metrics: Sequence[str] | None = None,
    unclosed_thinking: Sequence[Mapping[str, Any]] | None = None,
    indistinguishable: Sequence[Mapping[str, Any]] | None = None,
    table1: pd.DataFrame | None = None,
    qfd: pd.DataFrame | None = None,
    diversity_quality: pd.DataFrame | None = None,
    quality_edges: pd.DataFrame | None = None,
    homogenization: pd.DataFrame | None = None,
    checkpoint_order: Sequence[str] = (),
    recovery: pd.DataFrame | None = None,
) -> str:
    """The Markdown summary of a study.

    Args:
        headline: columns lineage, task, metric, step, parent, child, stage, change_pct_base,
            change_pct_base_ci_low, change_pct_base_ci_high, is_collapse_site, retained_pct (``change_pct_base``
            negative = diversity lost).
        study_info: its title, caveat (quoted at the top), description and sampling are shown.
        collapse_sites: optional; columns lineage, task, metric, status, parent, child, stage, delta_pct_base and
            its CI (``delta_pct_base_ci_low``/``_high``), loss_share (:data:`divtrace.analysis.COLLAPSE_COLUMNS`).
        metrics: order of the metrics in each table (others follow, sorted; SBERT, the paper's, first in Table 1).
        unclosed_thinking: optional; ``{checkpoint, task, unclosed, outputs}`` per (checkpoint, task) with outputs
            whose thinking never closed (see :func:`divtrace.report.html.unclosed_thinking_cells`): a warning
            naming each, since the token cap may be too small there.
        indistinguishable: optional; ``{checkpoint, task, outputs}`` per cell with outputs the sentence embedder
            cannot tell apart (see :func:`divtrace.report.html.indistinguishable_cells`): a warning naming each.
        table1: optional; the analysis' ``table1`` (:data:`divtrace.analysis.TABLE1_COLUMNS`): one sentence per
            lineage and metric (:func:`divtrace.report.findings.headline_findings`) opens the summary, and Table 1
            (:func:`divtrace.report.findings.table1_view`) follows. None leaves both out; an empty table says it is
            missing.
        qfd: optional; the analysis' ``qfd`` table: one row per comparison, task and metric, every share with its
            CI, shares outside [0, 1] and shares of a ΔD_all whose CI includes 0 marked and explained.
        diversity_quality: optional; the analysis' ``diversity_quality`` table: per task, a table of each
            checkpoint's quality (with its CI and what it measures) and its diversity in each metric. None or empty
            leaves the section out.
        quality_edges: optional; the analysis' ``quality_edges`` table: per task, each stage's quality change next
            to its diversity change in each metric, and the sentence of the first metric (SBERT first).
        homogenization: optional; the analysis' ``homogenization`` table: per task and metric, a checkpoint x
            checkpoint table of how alike their outputs are (mean similarity [95% CI]), rows and columns in
            ``checkpoint_order`` (the lineage order; others follow, sorted). None or empty leaves the section out.
        recovery: optional; the analysis' ``recovery`` table (a study with a sweep): the "Recovery frontier"
            section, one line per checkpoint, task and metric (:func:`recovery_line`). None or empty leaves it out.

    Returns:
        Markdown text: title, caveat, the sentences and the sign convention, warnings, Table 1, then per lineage a
        table ``task | metric | <stage> ... | retained``, each change cell ``-12.3% [-16.4, -8.1]`` (95% CI, true
        minus signs), the collapse site in bold, then collapse sites and the decomposition. Every cell is escaped.
    """
    lines = [f"# {_cell(study_info.title)}: diversity along the lineage", ""]
    if study_info.caveat:
        lines += [f"> **Caveat:** {_cell(study_info.caveat)}", ""]
    view = table1_view(table1, study_info.name, metrics) if table1 is not None else None
    if view is not None and view["rows"]:
        lines += ["## Where diversity collapses", ""]
        lines += [f"- **{_cell(f.subject)}**: {_cell(f.text)}" for f in headline_findings(view)]
        lines.append("")
    lines += [f"{SIGN_CONVENTION} {SITE_DEFINITION} 95% bootstrap CIs in brackets.", ""]
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
    if view is not None:
        lines += _table1_lines(view, table1 is None or table1.empty)
    if study_info.description:
        lines += [_cell(study_info.description), ""]
    sampling = sampling_text(study_info.sampling)
    if sampling:
        lines += [f"**Sampling:** {_cell(sampling)}", ""]
    lines += _per_task_lines(headline, metrics)
    if collapse_sites is not None and not collapse_sites.empty:
        lines += _collapse_site_lines(collapse_sites)
    if diversity_quality is not None and not diversity_quality.empty:
        lines += _quality_lines(diversity_quality, quality_edges, metrics)
    if recovery is not None and not recovery.empty:
        lines += _recovery_lines(recovery, metrics)
    if homogenization is not None and not homogenization.empty:
        lines += _homogenization_lines(homogenization, checkpoint_order)
    if qfd is not None and not qfd.empty:
        lines += _qfd_lines(qfd, metrics)
    return "\n".join(lines)


def sampling_settings(sampling: SamplingSpec | RecordedSampling | None) -> tuple[str, dict[str, Any]]:
    """How to show a study's ``sampling``: a heading and the settings (as their JSON dump); empty for None.

    An imported study's sampling (``from_records``, see :class:`divtrace.study.RecordedSampling`) is headed "as
    the imported records carry it" (with the tool, and "requested" when the values are what the tool was asked
    for); its values may read ``unknown`` or ``mixed: ...``. A study's own sampling is headed "study settings".
    A setting that is not set (None, e.g. ``top_k`` without top-k sampling) is left out.
    """
    if sampling is None:
        return "", {}
    dumped = sampling.model_dump(mode="json")
    settings = {
        key: value
        for key, value in dumped.items()
        if key not in ("from_records", "source", "requested") and value is not None
    }
    if not isinstance(sampling, RecordedSampling):
        return "study settings", settings
    if settings.pop("mixed_k", None):
        cut = (f"{cell.checkpoint}/{cell.task} to {cell.common_k}" for cell in sampling.mixed_k)
        settings["cut to a common K"] = ", ".join(cut)
    heading = f"as the imported records carry it ({sampling.source or 'unknown source'}"
    heading += ", as requested from the tool)" if sampling.requested else ")"
    return heading, settings


def sampling_text(sampling: SamplingSpec | RecordedSampling | None) -> str:
    """``sampling`` in one line: ``k = 4; temperature = 0.8; ... (as the imported records carry it (lm-eval))``;
    empty when there is none."""
    heading, settings = sampling_settings(sampling)
    if not settings:
        return ""
    body = "; ".join(f"{key} = {value}" for key, value in settings.items())
    return f"{body} ({heading})"


def site_text(row: Mapping[Any, Any]) -> str:
    """A collapse-site row's site: ``parent → child (stage)``, or why there is none (:data:`NO_SITE_TEXT`).

    A row whose status is :data:`divtrace.analysis.SITE` (or missing) reads as a site when it names an edge."""
    status = row.get("status")
    if status in NO_SITE_TEXT:
        return NO_SITE_TEXT[str(status)]
    if absent(row.get("child")):
        return DASH
    return f"{row['parent']} → {row['child']} ({row['stage']})"


def quality_level(source: Any, value: Any, low: Any = None, high: Any = None) -> str:
    """A quality in its unit (``source``: ``quality_source``): a win rate or pass@1 in % (``62.0% [55.0, 69.0]``),
    the WB-Score on its 1-10 scale (``6.42 [6.10, 6.75]``); the CI left out when not given."""
    scale = points_per_unit(str(source))
    if scale == 1.0:
        return plain_ci(value, low, high, 2)
    percent = [None if missing(v) else scale * float(v) for v in (value, low, high)]
    return pct_ci(percent[0], percent[1], percent[2])


def quality_text(row: Mapping[Any, Any]) -> str:
    """A checkpoint's quality with its CI (:func:`quality_level`); a baseline's reads ``50.0% [50.0, 50.0], the
    baseline (by definition)``."""
    text = quality_level(
        row.get("quality_source"), row.get("quality"), row.get("quality_ci_low"), row.get("quality_ci_high")
    )
    note = row.get("quality_note")
    return f"{text}, {note}" if isinstance(note, str) and note else text


def quality_change_text(row: Mapping[Any, Any]) -> str:
    """A stage's quality change in points: ``+21.0 points`` (percentage points for win rates and pass@1)."""
    points = row.get("quality_change_points")
    return DASH if missing(points) else f"{signed(points, 1)} points"


def quality_metric(frame: pd.DataFrame, metrics: Sequence[str] | None) -> str | None:
    """The metric a diversity-against-quality sentence or plot uses: the first present of SBERT, then ``metrics``."""
    present = [str(m) for m in frame["metric"].dropna().unique()]
    return ordered_metrics(present, metrics)[0] if present else None


#: What the recovery frontier answers, in one sentence (the report's section and summary.md's say it the same way).
RECOVERY_QUESTION = (
    'Karouzos, Tan and Aletras conclude that the collapse "cannot be addressed at inference time alone": this '
    "tests it on this study's models, each swept checkpoint sampled again at every setting of the sweep."
)
#: The rule that says where a checkpoint's diversity is recovered.
RECOVERY_RULE = (
    "A checkpoint reaches its base at the first setting, in the sweep's order, whose mean diversity is at least the "
    "base's mean diversity at the study's setting; the quality change is how the quality of the same samples moves "
    "from the study's setting to there (percentage points for win rates and pass@1, score points for the WB-Score)."
)


def sweep_parameters(table: pd.DataFrame) -> list[str]:
    """The swept parameters of a ``sweep`` or ``recovery`` table: those of
    :data:`~divtrace.study.sweep.SWEEP_PARAMETERS` it has a column for, in that order."""
    return [name for name in SWEEP_PARAMETERS if name in table.columns]


def setting_text(values: Mapping[str, Any]) -> str:
    """A sweep setting as condition names write it: ``temperature=1.4, min_p=off`` (a missing value is off)."""
    return ", ".join(
        f"{name}={format_value(None if absent(value) else float(value))}" for name, value in values.items()
    )


def recovery_setting_text(row: Mapping[Any, Any], parameters: Sequence[str]) -> str:
    """Where a ``recovery`` row's checkpoint reaches its base: its setting (``temperature=1.4``), with ``(the
    study's setting)`` when the study's own setting already does; the row's note (not reached, with the sweep's
    highest mean) when no setting does."""
    if not _true(row.get("reached")):
        return _text(row.get("note")) or NOT_REACHED
    text = setting_text({name: row.get(name) for name in parameters})
    return f"{text} (the study's setting)" if _text(row.get("note")) else text


def recovery_quality_text(row: Mapping[Any, Any]) -> str:
    """A ``recovery`` row's quality change where its diversity is recovered: ``pass@1 -12.5 points`` (a true
    minus sign); empty without a quality there."""
    if missing(row.get("quality_change_points")):
        return ""
    return f"{_text(row.get('quality_kind')) or 'quality'} {quality_change_text(row)}"


def recovery_line(row: Mapping[Any, Any], parameters: Sequence[str]) -> str:
    """One ``recovery`` row in a sentence: ``sft on gsm8k (sbert): reaches base's 0.410 at temperature=1.6 (0.430
    [0.400, 0.460]); pass@1 -12.5 points`` (true minus signs), or ``sft on gsm8k (sbert): base's 0.410 not
    reached in the sweep (highest: ...)``."""
    subject = f"{row['checkpoint']} on {row['task']} ({row['metric']})"
    base = f"{row['base']}'s {plain(row.get('base_mean'), 3)}"
    if not _true(row.get("reached")):
        return f"{subject}: {base} {_text(row.get('note')) or NOT_REACHED}"
    there = plain_ci(row.get("mean"), row.get("ci_low"), row.get("ci_high"))
    setting = setting_text({name: row.get(name) for name in parameters})
    where = f"at the study's setting, {setting}" if _text(row.get("note")) else f"at {setting}"
    quality = recovery_quality_text(row)
    return f"{subject}: reaches {base} {where} ({there})" + (f"; {quality}" if quality else "")


def ordered_recovery(
    recovery: pd.DataFrame, metrics: Sequence[str] | None, tasks: Sequence[str] | None = None
) -> pd.DataFrame:
    """``recovery``'s rows by task (``tasks``' order, then sorted), metric (:func:`ordered_metrics`), then as they
    are (the lineage order of the checkpoints)."""
    present_tasks = [str(t) for t in recovery["task"].dropna().unique()]
    task_order = [t for t in (tasks or []) if t in present_tasks] + sorted(set(present_tasks) - set(tasks or []))
    metric_order = ordered_metrics([str(m) for m in recovery["metric"].dropna().unique()], metrics)
    keys = recovery.assign(
        _t=recovery["task"].astype(str).map(task_order.index), _m=recovery["metric"].astype(str).map(metric_order.index)
    )
    return keys.sort_values(["_t", "_m"], kind="stable").drop(columns=["_t", "_m"]).reset_index(drop=True)


def _recovery_lines(recovery: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    """The recovery frontier: what it answers, its rule, then one line per checkpoint, task and metric."""
    parameters = sweep_parameters(recovery)
    lines = ["## Recovery frontier", "", f"{RECOVERY_QUESTION} {RECOVERY_RULE}", ""]
    lines += [
        f"- {_cell(recovery_line(r, parameters))}" for r in ordered_recovery(recovery, metrics).to_dict("records")
    ]
    lines.append("")
    return lines


def _homogenization_lines(homogenization: pd.DataFrame, order: Sequence[str]) -> list[str]:
    """The homogenisation section: per task and metric, a checkpoint x checkpoint table of mean similarity."""
    lines = [
        "## Homogenisation",
        "",
        "How alike two checkpoints' outputs are, per task: mean over the prompts both have of the similarity "
        "between their output sets (sbert: mean cosine of sentence embeddings; ngram: mean Jaccard of word "
        "1-4-gram sets), 95% CI in brackets. The diagonal compares a checkpoint with itself over its distinct "
        f"pairs of outputs (for sbert: 1 {MINUS} its SBERT diversity).",
        "",
    ]
    for (task, metric), frame in homogenization.groupby(["task", "metric"], sort=False):
        present = set(frame["checkpoint_a"].astype(str)) | set(frame["checkpoint_b"].astype(str))
        names = [c for c in order if c in present] + sorted(present - set(order))
        cells: dict[tuple[str, str], str] = {}
        for r in frame.to_dict("records"):
            text = plain_ci(r["similarity"], r["ci_low"], r["ci_high"])
            cells[(str(r["checkpoint_a"]), str(r["checkpoint_b"]))] = text
            cells[(str(r["checkpoint_b"]), str(r["checkpoint_a"]))] = text
        lines += [f"### {_cell(task)}: {_cell(metric)}", ""]
        lines += [_row(["", *(_cell(n) for n in names)]), _row(["---"] + ["---:"] * len(names))]
        lines += [_row([_cell(a), *(cells.get((a, b), DASH) for b in names)]) for a in names]
        lines.append("")
    return lines


def _quality_lines(
    diversity_quality: pd.DataFrame, quality_edges: pd.DataFrame | None, metrics: Sequence[str] | None
) -> list[str]:
    """The diversity-against-quality section: per task, a table of checkpoints, then each stage's change of both."""
    present = ordered_metrics([str(m) for m in diversity_quality["metric"].dropna().unique()], metrics)
    lines = [
        "## Diversity against quality",
        "",
        "Each checkpoint's quality (95% CI; a judge's win rate or WB-Score, pass@1 from the verdicts on verifiable "
        "tasks) next to its diversity (mean over prompts, 95% CI), then each stage's quality change (child "
        f"{MINUS} parent: percentage points for win rates and pass@1, score points for the WB-Score) next to its "
        "diversity change (% of base).",
        "",
    ]
    edges = quality_edges if quality_edges is not None else pd.DataFrame()
    for task, frame in diversity_quality.groupby("task", sort=True):
        lines += [f"### {_cell(task)}", ""]
        header = [
            "checkpoint",
            "quality",
            "measure",
            *(f"{_cell(m)} diversity" for m in present if (frame["metric"] == m).any()),
        ]
        lines += [_row(header), _row(["---"] + ["---:"] + ["---"] + ["---:"] * (len(header) - 3))]
        for checkpoint, rows in frame.groupby("checkpoint", sort=False):
            first = rows.iloc[0]
            by_metric = rows.set_index("metric")
            cells = [_cell(checkpoint), _cell(quality_text(first.to_dict())), _cell(first["quality_kind"])]
            for metric in (m for m in present if (frame["metric"] == m).any()):
                r = by_metric.loc[metric] if metric in by_metric.index else None
                cells.append(
                    DASH if r is None else plain_ci(r["diversity"], r["diversity_ci_low"], r["diversity_ci_high"])
                )
            lines.append(_row(cells))
        lines.append("")
        stages = edges[edges["task"] == task] if not edges.empty else edges
        if stages.empty:
            continue
        shown = [m for m in present if (stages["metric"] == m).any()]
        header = ["stage", "quality change", *(f"{_cell(m)} change, % of base" for m in shown)]
        lines += [_row(header), _row(["---"] + ["---:"] * (len(header) - 1))]
        for (parent, child), rows in stages.groupby(["parent", "child"], sort=False):
            by_metric = rows.set_index("metric")
            first = rows.iloc[0]
            cells = [
                f"{_cell(parent)} → {_stage_label(first['stage'], child)}",
                quality_change_text(first.to_dict()),
            ]
            for metric in shown:
                r = by_metric.loc[metric] if metric in by_metric.index else None
                cells.append(
                    DASH
                    if r is None
                    else signed_pct_ci(
                        r["diversity_change_pct_base"],
                        r["diversity_change_pct_base_ci_low"],
                        r["diversity_change_pct_base_ci_high"],
                    )
                )
            lines.append(_row(cells))
        lines.append("")
        headline = quality_metric(stages, metrics)
        lines += [f"- {_cell(r['sentence'])}" for r in stages[stages["metric"] == headline].to_dict("records")]
        lines.append("")
    if diversity_quality["is_baseline"].map(_true).any():
        lines += [
            f"A checkpoint marked _{BASELINE_NOTE}_ is the one the others are compared with: it is not judged "
            "against itself, so its win rate is 50% by definition.",
            "",
        ]
    unparseable = diversity_quality.drop_duplicates(["task", "checkpoint"])
    unparseable = unparseable[pd.to_numeric(unparseable["n_unparseable"], errors="coerce").fillna(0) > 0]
    if len(unparseable):
        counts = ", ".join(
            f"{_cell(r['checkpoint'])} \N{MULTIPLICATION SIGN} {_cell(r['task'])}: {int(r['n_unparseable'])}"
            for r in unparseable.to_dict("records")
        )
        lines += [f"Judgments whose verdict could not be read (as the judge reports them): {counts}.", ""]
    return lines


def _table1_lines(view: Mapping[str, Any], absent: bool) -> list[str]:
    lines = ["## Table 1: diversity change per stage, % of base, mean over tasks", ""]
    if not view["rows"]:
        reason = (
            "not in this analysis (written by an older divtrace, or no lineage has data): run `divtrace analyze` again"
            if absent
            else "no lineage has data"
        )
        return [*lines, f"_Table 1: {reason}._", ""]
    text = (
        "Per lineage and metric, each stage's change in diversity as % of the base model's, averaged over tasks "
        "(each task weighs the same), and the diversity the last checkpoint retains (% of base); prompts resampled "
        "within each task for the CIs."
    )
    if view["has_site"]:
        text += " **Bold**: the row's collapse site."
    if any(r["kind"] == "group" for r in view["rows"]):
        text += (
            " A group row averages parallel single-stage lineages from the same base (e.g. the RL-Zero checkpoints)."
        )
    lines += [text, ""]
    n_steps = view["n_steps"]
    header = ["lineage", "path", "metric", *(f"stage {i}" for i in range(1, n_steps + 1)), "retained", "tasks"]
    lines += [_row(header), _row(["---"] * 3 + ["---:"] * (len(header) - 3))]
    for row in view["rows"]:
        label = _cell(row["lineage"]) + (" (mean)" if row["kind"] == "group" else "")
        cells = [label, _cell(row["path"]), _cell(row["metric"])]
        for i in range(n_steps):
            if i < len(row["steps"]):
                step = row["steps"][i]
                text = f"{_cell(step['stage'])}: {signed_pct_ci(step['value'], step['low'], step['high'])}"
                cells.append(f"**{text}**" if step["site"] else text)
            else:
                cells.append("")
        cells += [pct_ci(row["retained"], row["retained_low"], row["retained_high"]), str(row["n_tasks"])]
        lines.append(_row(cells))
        paper = row["paper"]
        if paper is not None:
            changes = [DASH if v is None else signed(v, 0) for v in paper["changes"]]
            changes += [""] * (n_steps - len(changes))
            lines.append(
                _row(["↳ paper", "published", _cell(row["metric"]), *changes, f"{paper['retained']:.0f}%", "15"])
            )
    lines.append("")
    if view["paper_source"]:
        lines += [
            f"↳ paper: the published row ({_cell(view['paper_source'])}; SBERT, mean over the study's 15 tasks, "
            "rounded) for comparison.",
            "",
        ]
    return lines


def _per_task_lines(headline: pd.DataFrame | None, metrics: Sequence[str] | None) -> list[str]:
    """The per-task section: one table per lineage, a row per task and metric, a column per stage."""
    lines = ["## Per task", ""]
    if headline is None or headline.empty:
        return [*lines, "_No headline rows: the analysis found no edge with data._", ""]
    text = (
        "Each stage's change per task as % of the base model's diversity (CIs over prompts), and the diversity "
        "the leaf retains (% of base)."
    )
    if headline["is_collapse_site"].map(_true).any():
        text += " **Bold**: the lineage's collapse site for that task and metric."
    lines += [text, ""]
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
                    cells.append(DASH)
                    continue
                row = rows.loc[step]
                text = signed_pct_ci(
                    row["change_pct_base"], row["change_pct_base_ci_low"], row["change_pct_base_ci_high"]
                )
                cells.append(f"**{text}**" if _true(row.get("is_collapse_site")) else text)
            cells.append(pct_ci(rows["retained_pct"].iloc[0], None, None))
            lines.append(_row(cells))
        lines.append("")
    return lines


def _collapse_site_lines(collapse_sites: pd.DataFrame) -> list[str]:
    """The collapse-site table: per lineage, task and metric, the site or why there is none."""
    lines = [
        "## Collapse sites",
        "",
        _row(["lineage", "task", "metric", "collapse site", "change, % of base", "share of lineage loss"]),
        _row(["---"] * 4 + ["---:"] * 2),
    ]
    for r in collapse_sites.sort_values(["lineage", "task", "metric"]).to_dict("records"):
        lines.append(
            _row(
                [
                    _cell(r["lineage"]),
                    _cell(r["task"]),
                    _cell(r["metric"]),
                    _cell(site_text(r)),
                    signed_pct_ci(
                        r.get("delta_pct_base"), r.get("delta_pct_base_ci_low"), r.get("delta_pct_base_ci_high")
                    ),
                    _whole_percent(r.get("loss_share")),
                ]
            )
        )
    lines.append("")
    return lines


def _qfd_lines(qfd: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    pairing = ", ".join(sorted(str(p) for p in qfd["pairing"].dropna().unique())) if "pairing" in qfd else ""
    lines = [
        "## Quality-filtered decomposition",
        "",
        f"ΔD_all (all K outputs) split into a quality-control part (ΔD_all {MINUS} ΔD_correct: wrong answers "
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
    outside_any = includes_zero_any = undefined_any = False
    for r in frame.sort_values(["task", "_o", "metric"], kind="stable").to_dict("records"):
        outside = _true(r.get("share_outside_unit"))
        includes_zero = _true(r.get("delta_all_ci_includes_zero"))
        undefined = missing(r.get("residual_share"))
        outside_any, includes_zero_any = outside_any or outside, includes_zero_any or (includes_zero and not undefined)
        undefined_any = undefined_any or undefined
        mark = ("" if undefined else " ‡" if includes_zero else "") + (" †" if outside else "")
        qualifying = f"{_count(r.get('n_qualifying_reference'))} / {_count(r.get('n_qualifying_checkpoint'))}"
        lines.append(
            _row(
                [
                    f"{_cell(r.get('reference'))} → {_cell(r['checkpoint'])}",
                    _cell(r["task"]),
                    _cell(r["metric"]),
                    signed_ci(r.get("delta_all"), r.get("delta_all_ci_low"), r.get("delta_all_ci_high")),
                    signed_ci(r.get("delta_correct"), r.get("delta_correct_ci_low"), r.get("delta_correct_ci_high")),
                    share_ci(
                        r.get("quality_control_share"),
                        r.get("quality_control_share_ci_low"),
                        r.get("quality_control_share_ci_high"),
                    )
                    + mark,
                    share_ci(r.get("residual_share"), r.get("residual_share_ci_low"), r.get("residual_share_ci_high"))
                    + mark,
                    qualifying,
                ]
            )
        )
    lines.append("")
    if includes_zero_any:
        lines += [f"‡ {CI_INCLUDES_ZERO_EXPLANATION}", ""]
    if outside_any:
        lines += [f"† {OUTSIDE_UNIT_EXPLANATION}", ""]
    if undefined_any:
        lines += [f"{DASH} in a share: undefined (fewer than 2 qualifying prompts, or ΔD_all exactly 0).", ""]
    return lines


def _whole_percent(share: Any) -> str:
    """A fraction as a whole percentage (``0.75`` -> ``75%``); an en dash when missing."""
    return DASH if missing(share) else pct_ci(100 * float(share), None, None, 0)


def _count(value: Any) -> str:
    return "?" if missing(value) else str(int(value))


def _stage_label(stage: Any, child: Any) -> str:
    """``stage (child)``, or just the stage when the checkpoint is named after it."""
    return _cell(stage) if str(stage) == str(child) else f"{_cell(stage)} ({_cell(child)})"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: backslashes, pipes and a ``<`` that could open raw HTML or an
    autolink (followed by a letter, ``/``, ``!`` or ``?``: CommonMark's only openings) escaped, newlines
    flattened; ``< 5%`` stays as it is."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    text = re.sub(r"<(?=[A-Za-z/!?])", r"\\<", text)
    return text.replace("\r", " ").replace("\n", " ")


def _text(value: Any) -> str:
    """A text cell as text: empty when it is missing (None, NaN) or not text."""
    return value if isinstance(value, str) else ""


def _true(value: Any) -> bool:
    return not missing(value) and bool(value)
