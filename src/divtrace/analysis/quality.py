"""Diversity against quality: each checkpoint's diversity next to how good its outputs are, and each stage's change
of both.

Quality comes from one of two places, per task:

- an LLM judge (the judge package's quality table, :data:`QUALITY_INPUT_COLUMNS`, one row per checkpoint, task and
  protocol): ``kirk_summary`` is the win rate against the dataset's reference summary, ``arena_hard_creative`` the
  win rate against a baseline checkpoint's output (the lineage's base by default; the baseline itself is not judged
  and has a win rate of 0.5 by definition, with a CI of [0.5, 0.5]), ``wb_score`` the mean WB-Score (1-10);
- the verdicts, on a verifiable task the judge did not rate: pass@1 (per prompt the fraction of correct samples,
  the unbiased pass@1 of :func:`divtrace.stats.pass_at_k_per_prompt`, averaged over prompts), with its bootstrap CI
  over prompts (:func:`divtrace.stats.bootstrap.cell_mean_cis`).

Diversity is the checkpoint's mean (subset ``all``) with its CI from ``checkpoint_means``; a stage's diversity change
is the ``edges`` table's ``delta_pct_base`` (after minus before as % of the base's diversity, negative = lost:
:data:`divtrace.analysis.SIGN_CONVENTION`). A stage's quality change is the child's quality minus the parent's, in
points: percentage points (x 100) for win rates and pass@1, score points for the WB-Score.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from divtrace.stats import pass_at_k_per_prompt
from divtrace.stats.bootstrap import BootstrapSettings, cell_mean_cis
from divtrace.study.lineage import LineageGraph

#: The judge's quality table, one row per (checkpoint, task, protocol); ``baseline`` (the checkpoint an
#: ``arena_hard_creative`` row is compared against) and ``n_empty`` may be present too.
QUALITY_INPUT_COLUMNS = [
    "checkpoint", "task", "protocol", "n_prompts", "value", "ci_low", "ci_high", "n_unparseable",
]  # fmt: skip
#: Optional columns of the judge's quality table.
OPTIONAL_QUALITY_COLUMNS = ["baseline", "n_empty"]

DIVERSITY_QUALITY_COLUMNS = [
    "task", "metric", "checkpoint", "stage", "diversity_n_prompts", "diversity", "diversity_ci_low",
    "diversity_ci_high", "quality", "quality_ci_low", "quality_ci_high", "quality_kind", "quality_source",
    "quality_n_prompts", "n_unparseable", "n_empty", "is_baseline", "quality_note",
]  # fmt: skip
QUALITY_EDGES_COLUMNS = [
    "parent", "child", "stage", "base", "task", "metric", "n_prompts", "diversity_parent", "diversity_child",
    "diversity_change_pct_base", "diversity_change_pct_base_ci_low", "diversity_change_pct_base_ci_high",
    "diversity_significant", "quality_kind", "quality_source", "quality_parent", "quality_child",
    "quality_change_points", "sentence",
]  # fmt: skip

KIRK_SUMMARY = "kirk_summary"
ARENA_HARD_CREATIVE = "arena_hard_creative"
WB_SCORE = "wb_score"
#: ``quality_source`` of pass@1 from the verdicts (a judge's is ``judge:<protocol>``).
VERIFIER_SOURCE = "verifier"
#: ``quality_kind`` per protocol (the Arena-Hard kind names its baseline: ``win rate vs base``).
QUALITY_KINDS = {KIRK_SUMMARY: "win rate vs reference", WB_SCORE: "WB-Score (1-10)", VERIFIER_SOURCE: "pass@1"}
#: ``quality_note`` of a baseline's row: it is not judged against itself.
BASELINE_NOTE = "the baseline (by definition)"
#: A baseline's win rate against itself.
BASELINE_WIN_RATE = 0.5
#: What a quality change is measured in, per source: points of 1/100 for rates, score points for the WB-Score.
_POINTS_PER_UNIT = {f"judge:{WB_SCORE}": 1.0}
#: How a sentence names the quality measure (shorter than the kind where the unit is said by "points").
_SENTENCE_NAMES = {QUALITY_KINDS[WB_SCORE]: "WB-Score"}


def quality_protocols() -> list[str]:
    """The judge protocols the analysis knows."""
    return [KIRK_SUMMARY, ARENA_HARD_CREATIVE, WB_SCORE]


def points_per_unit(source: str) -> float:
    """How many points one unit of quality is (100 for a win rate or pass@1, 1 for the WB-Score)."""
    return _POINTS_PER_UNIT.get(source, 100.0)


def diversity_quality_table(
    means: pd.DataFrame,
    quality: pd.DataFrame | None,
    per_prompt_correct: pd.DataFrame,
    graph: LineageGraph,
    settings: BootstrapSettings,
) -> pd.DataFrame:
    """Per task x metric x checkpoint: the diversity mean and the quality, each with its CI.

    Args:
        means: the ``checkpoint_means`` table (subset ``all``: ``checkpoint, task, metric, stage, n_prompts,
            mean, ci_low, ci_high``).
        quality: the judge's quality table (:data:`QUALITY_INPUT_COLUMNS`, protocols of
            :func:`quality_protocols`), or None / empty when no judge ran. A task may have one protocol.
        per_prompt_correct: :func:`divtrace.analysis.curves.correct_per_prompt` of the verdicts.
        graph: the lineage graph (an Arena-Hard row without a ``baseline`` is compared with its lineage's base).
        settings: bootstrap settings of the pass@1 CIs.

    Returns columns :data:`DIVERSITY_QUALITY_COLUMNS`, one row per (task, metric, checkpoint) with both a diversity
    mean and a quality (finite, but for a judged cell whose answers could not be read): ``quality_kind`` (``win
    rate vs reference``, ``win rate vs <baseline>``, ``WB-Score (1-10)``, ``pass@1``), ``quality_source``
    (``judge:<protocol>`` or ``verifier``), the judge's ``n_unparseable`` and ``n_empty`` (<NA> for the verifier,
    or where the judge does not say), ``is_baseline`` and ``quality_note`` (:data:`BASELINE_NOTE` on an
    Arena-Hard baseline's row, 0.5 with CI [0.5, 0.5]; ``no readable judgment (N unparseable)`` on a judged cell
    whose quality is NaN, kept so that a judge that failed shows; else empty). A task the judge rated takes its
    quality from the judge only; a task with verdicts and no judge rows, pass@1. Sorted by task, metric, then the
    graph's checkpoint order.
    """
    cells = quality_cells(quality, per_prompt_correct, graph, settings)
    if means.empty or cells.empty:
        return pd.DataFrame(columns=DIVERSITY_QUALITY_COLUMNS)
    diversity = means[["checkpoint", "task", "metric", "stage", "n_prompts", "mean", "ci_low", "ci_high"]].rename(
        columns={
            "n_prompts": "diversity_n_prompts",
            "mean": "diversity",
            "ci_low": "diversity_ci_low",
            "ci_high": "diversity_ci_high",
        }
    )
    table = diversity.merge(cells, on=["checkpoint", "task"], how="inner")
    order = {name: i for i, name in enumerate(graph.nodes)}
    table = table.assign(_order=table["checkpoint"].map(lambda name: order.get(name, len(order))))
    table = table.sort_values(["task", "metric", "_order", "checkpoint"], kind="stable")
    table = table[DIVERSITY_QUALITY_COLUMNS].reset_index(drop=True)
    for column in ("quality_n_prompts", "n_unparseable", "n_empty"):
        table[column] = table[column].astype("Int64")
    table["is_baseline"] = table["is_baseline"].astype(bool)
    return table


def quality_edges_table(edges: pd.DataFrame, diversity_quality: pd.DataFrame) -> pd.DataFrame:
    """Per lineage edge x task x metric where parent and child both have a quality of the same kind: the stage's
    diversity change (the ``edges`` row: % of base, negative = lost) and its quality change (child minus parent).

    Args:
        edges: the ``edges`` table (:data:`divtrace.analysis.EDGE_COLUMNS`).
        diversity_quality: from :func:`diversity_quality_table`.

    Returns columns :data:`QUALITY_EDGES_COLUMNS`: ``n_prompts`` and ``diversity_parent`` / ``diversity_child`` are
    the edge's paired prompts and means; ``diversity_change_pct_base`` (+ CI) and ``diversity_significant`` its
    ``delta_pct_base`` and ``significant``; ``quality_change_points`` = (child - parent) x 100 for win rates and
    pass@1, child - parent for the WB-Score; ``sentence`` says both in one line
    (``sft: sbert -38% of base, win rate vs reference +21 points``; true minus signs, as the report writes numbers).
    In the order of ``edges``.
    """
    if edges.empty or diversity_quality.empty:
        return pd.DataFrame(columns=QUALITY_EDGES_COLUMNS)
    rated: dict[tuple[Any, ...], Any] = {
        (r.task, r.metric, r.checkpoint): r for r in diversity_quality.itertuples(index=False)
    }
    records = []
    # Rows as Any: pandas-stubs types every itertuples field as any scalar; the columns are documented above.
    rows: list[Any] = list(edges.itertuples(index=False))
    for edge in rows:
        parent = rated.get((edge.task, edge.metric, edge.parent))
        child = rated.get((edge.task, edge.metric, edge.child))
        if parent is None or child is None or parent.quality_kind != child.quality_kind:
            continue
        if not (np.isfinite(float(parent.quality)) and np.isfinite(float(child.quality))):
            continue  # a judged cell whose answers could not be read has no change to give
        points = points_per_unit(str(child.quality_source)) * (float(child.quality) - float(parent.quality))
        records.append(
            {
                "parent": edge.parent,
                "child": edge.child,
                "stage": edge.stage,
                "base": edge.base,
                "task": edge.task,
                "metric": edge.metric,
                "n_prompts": edge.n_prompts,
                "diversity_parent": edge.mean_parent,
                "diversity_child": edge.mean_child,
                "diversity_change_pct_base": edge.delta_pct_base,
                "diversity_change_pct_base_ci_low": edge.delta_pct_base_ci_low,
                "diversity_change_pct_base_ci_high": edge.delta_pct_base_ci_high,
                "diversity_significant": bool(edge.significant),
                "quality_kind": child.quality_kind,
                "quality_source": child.quality_source,
                "quality_parent": float(parent.quality),
                "quality_child": float(child.quality),
                "quality_change_points": points,
                "sentence": edge_sentence(
                    str(edge.stage),
                    str(edge.child),
                    str(edge.metric),
                    float(edge.delta_pct_base),
                    child.quality_kind,
                    points,
                ),
            }
        )
    return pd.DataFrame(records, columns=QUALITY_EDGES_COLUMNS)


def edge_sentence(stage: str, child: str, metric: str, change_pct: float, kind: str, points: float) -> str:
    """``sft: sbert -38% of base, win rate vs reference +21 points`` (``stage (child)`` when the checkpoint is named
    otherwise; whole numbers, a WB-Score change with one decimal; an en dash for a missing number)."""
    name = stage if stage == child else f"{stage} ({child})"
    digits = 1 if kind == QUALITY_KINDS[WB_SCORE] else 0
    quality = _SENTENCE_NAMES.get(kind, kind)
    return f"{name}: {metric} {_signed(change_pct, 0)}% of base, {quality} {_signed(points, digits)} points"


def _signed(value: float, digits: int) -> str:
    """A signed number with a true minus sign (as :func:`divtrace.report.numbers.signed` writes it)."""
    if not np.isfinite(value):
        return "\N{EN DASH}"
    return f"{value:+.{digits}f}".replace("-", "\N{MINUS SIGN}")


def quality_cells(
    quality: pd.DataFrame | None,
    per_prompt_correct: pd.DataFrame,
    graph: LineageGraph,
    settings: BootstrapSettings,
) -> pd.DataFrame:
    """Per (checkpoint, task): its quality (the judge's where the judge rated the task, else pass@1 from
    ``per_prompt_correct``), with the :data:`DIVERSITY_QUALITY_COLUMNS` that describe it (``quality``, its CI,
    ``quality_kind``, ``quality_source``, ...). A judged cell whose answers could not be read stays, with a NaN
    quality and its note; a verified cell needs a pass@1."""
    judged = _judge_cells(quality, graph) if quality is not None and not quality.empty else []
    rated_tasks = {cell["task"] for cell in judged}
    verified = _verifier_cells(per_prompt_correct[~per_prompt_correct["task"].isin(rated_tasks)], settings)
    columns = [c for c in DIVERSITY_QUALITY_COLUMNS if c.startswith(("quality", "n_", "is_"))]
    cells = pd.DataFrame(judged + verified, columns=["checkpoint", "task", *columns])
    # A judged cell stays without a value (no answer could be read: the note says how many), so a judge that failed
    # is seen; a verified cell needs a pass@1.
    finite = np.isfinite(cells["quality"].to_numpy(dtype=np.float64))
    kept: pd.DataFrame = cells.loc[finite | cells["quality_source"].str.startswith("judge:").to_numpy()]
    return kept


def _judge_cells(quality: pd.DataFrame, graph: LineageGraph) -> list[dict[str, Any]]:
    """The judge's rows as quality cells, plus each Arena-Hard baseline's row (0.5 by definition)."""
    cells = []
    baselines: dict[tuple[str, str], str] = {}
    for row in quality.to_dict("records"):
        protocol = str(row["protocol"])
        checkpoint, task = str(row["checkpoint"]), str(row["task"])
        kind = QUALITY_KINDS.get(protocol, "")
        baseline = ""
        if protocol == ARENA_HARD_CREATIVE:
            baseline = _baseline(row.get("baseline"), checkpoint, graph)
            kind = f"win rate vs {baseline}"
            baselines.setdefault((baseline, task), kind)
        cells.append(
            {
                "checkpoint": checkpoint,
                "task": task,
                "quality": row["value"],
                "quality_ci_low": row["ci_low"],
                "quality_ci_high": row["ci_high"],
                "quality_kind": kind,
                "quality_source": f"judge:{protocol}",
                "quality_n_prompts": row["n_prompts"],
                "n_unparseable": row["n_unparseable"],
                "n_empty": row.get("n_empty"),
                "is_baseline": checkpoint == baseline,
                "quality_note": BASELINE_NOTE if checkpoint == baseline else _unread_note(row),
            }
        )
    judged = {(cell["checkpoint"], cell["task"]) for cell in cells}
    for (baseline, task), kind in baselines.items():
        if (baseline, task) in judged:
            continue
        cells.append(
            {
                "checkpoint": baseline,
                "task": task,
                "quality": BASELINE_WIN_RATE,
                "quality_ci_low": BASELINE_WIN_RATE,
                "quality_ci_high": BASELINE_WIN_RATE,
                "quality_kind": kind,
                "quality_source": f"judge:{ARENA_HARD_CREATIVE}",
                "quality_n_prompts": None,
                "n_unparseable": None,
                "n_empty": None,
                "is_baseline": True,
                "quality_note": BASELINE_NOTE,
            }
        )
    return cells


def _baseline(given: Any, checkpoint: str, graph: LineageGraph) -> str:
    """The baseline an Arena-Hard row names, else its lineage's base (the judge's default)."""
    if isinstance(given, str) and given:
        return given
    return graph.base_of(checkpoint) if checkpoint in graph.nodes else "baseline"


def _verifier_cells(per_prompt_correct: pd.DataFrame, settings: BootstrapSettings) -> list[dict[str, Any]]:
    """pass@1 per (checkpoint, task) from the verdicts, with its bootstrap CI over prompts (``prompt_id`` order)."""
    if per_prompt_correct.empty:
        return []
    ordered = per_prompt_correct.sort_values(["checkpoint", "task", "prompt_id"], kind="stable")
    groups = {key: frame for key, frame in ordered.groupby(["checkpoint", "task"], sort=True)}
    estimates = cell_mean_cis(
        {
            key: pass_at_k_per_prompt(frame["n_samples"].to_numpy(), frame["n_correct"].to_numpy(), 1)
            for key, frame in groups.items()
        },
        settings,
    )
    cells = []
    for (checkpoint, task), frame in groups.items():
        estimate = estimates[(checkpoint, task)]
        cells.append(
            {
                "checkpoint": str(checkpoint),
                "task": str(task),
                "quality": estimate.mean,
                "quality_ci_low": estimate.low,
                "quality_ci_high": estimate.high,
                "quality_kind": QUALITY_KINDS[VERIFIER_SOURCE],
                "quality_source": VERIFIER_SOURCE,
                "quality_n_prompts": len(frame),
                "n_unparseable": None,
                "n_empty": None,
                "is_baseline": False,
                "quality_note": "",
            }
        )
    return cells


def _unread_note(row: Mapping[Hashable, Any]) -> str:
    """The note of a judged cell without a value: no answer could be read (how many were not)."""
    value = row.get("value")
    if value is not None and np.isfinite(float(value)):
        return ""
    count = row.get("n_unparseable")
    shown = int(count) if count is not None and np.isfinite(float(count)) else "?"
    return f"no readable judgment ({shown} unparseable)"
