"""The recovery frontier: can a sampling setting undo a collapse?

A study with a ``sweep:`` section samples its swept checkpoints at every combination of the swept values (each a
condition, :mod:`divtrace.study.sweep`). Two tables answer the question:

- ``sweep``: one row per (checkpoint, setting, task, metric), the study's setting included: the mean diversity over
  prompts with its bootstrap CI (``checkpoint_means``' definition), and the quality of the same samples: the
  first-sample accuracy and pass@1 where a verifier exists, and ``quality`` (the judge's value where the judge rated
  the task, else pass@1, as in ``diversity_quality``) with its CI.
- ``recovery``: per post-trained swept checkpoint, task and metric, the first setting (in the sweep's order) at
  which its mean diversity reaches its base's mean diversity at the study's setting, or ``not reached in the
  sweep``, and its quality there against its quality at the study's setting (in points: x 100 for win rates and
  pass@1, score points for the WB-Score).

"Reaches" compares means (the condition's mean >= the base's): the CIs of both are in the table, for a reader who
wants the comparison with its uncertainty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from divtrace.analysis.collapse import checkpoint_means
from divtrace.analysis.curves import correct_per_prompt
from divtrace.analysis.quality import points_per_unit, quality_cells
from divtrace.stats import pass_at_k_per_prompt
from divtrace.stats.bootstrap import BootstrapSettings
from divtrace.study.lineage import LineageGraph
from divtrace.study.sweep import SweepCondition

#: Columns of the ``sweep`` table around the swept parameters' columns (one per swept parameter, after ``metric``).
SWEEP_KEY_COLUMNS = ["checkpoint", "task", "metric"]
SWEEP_VALUE_COLUMNS = [
    "condition", "is_study_setting", "in_sweep", "n_prompts", "mean", "ci_low", "ci_high", "accuracy_first",
    "pass_at_1", "quality", "quality_ci_low", "quality_ci_high", "quality_kind", "quality_source",
]  # fmt: skip
#: Columns of the ``recovery`` table around the swept parameters' columns (the reaching setting's, after
#: ``condition``).
RECOVERY_KEY_COLUMNS = [
    "checkpoint", "task", "metric", "base", "base_mean", "base_ci_low", "base_ci_high", "study_mean",
    "study_quality", "reached", "condition",
]  # fmt: skip
RECOVERY_VALUE_COLUMNS = ["mean", "ci_low", "ci_high", "quality", "quality_change_points", "quality_kind", "note"]
#: ``note`` of a checkpoint whose diversity reaches its base's in none of the sweep's settings.
NOT_REACHED = "not reached in the sweep"


@dataclass(frozen=True)
class SweepInputs:
    """What the sweep's tables are computed from, besides the study's own tables.

    Attributes:
        conditions: every condition of the sweep (:meth:`divtrace.study.Study.sweep_conditions`), in sweep order;
            a condition at the study's setting names the checkpoint itself.
        study_values: the study's value of each swept parameter (the study setting's row of each checkpoint).
        scores: the per-prompt scores of the conditions not at the study's setting (the score stage's rows).
        verdicts: their verdicts (None or empty where nothing is verifiable).
        quality: the judge's quality table of those conditions (None or empty without a judge).
    """

    conditions: tuple[SweepCondition, ...]
    study_values: Mapping[str, float | None]
    scores: pd.DataFrame
    verdicts: pd.DataFrame | None = None
    quality: pd.DataFrame | None = None

    @property
    def parameters(self) -> list[str]:
        """The swept parameters, in the order of their columns."""
        return list(self.study_values)


def sweep_columns(parameters: Sequence[str]) -> list[str]:
    """The ``sweep`` table's columns for these swept ``parameters``."""
    return [*SWEEP_KEY_COLUMNS, *parameters, *SWEEP_VALUE_COLUMNS]


def recovery_columns(parameters: Sequence[str]) -> list[str]:
    """The ``recovery`` table's columns for these swept ``parameters``."""
    return [*RECOVERY_KEY_COLUMNS, *parameters, *RECOVERY_VALUE_COLUMNS]


def sweep_table(
    inputs: SweepInputs,
    study_means: pd.DataFrame,
    study_quality: pd.DataFrame,
    study_correct: pd.DataFrame,
    settings: BootstrapSettings,
    graph: LineageGraph,
) -> pd.DataFrame:
    """Every swept checkpoint at every setting of the sweep, plus every checkpoint at the study's setting.

    Args:
        inputs: the sweep's conditions and their scores, verdicts and judge's quality.
        study_means: ``checkpoint_means`` of the study's checkpoints (their study-setting rows, taken as they are).
        study_quality: the quality cells of the study's checkpoints (:func:`~divtrace.analysis.quality.quality_cells`).
        study_correct: :func:`~divtrace.analysis.curves.correct_per_prompt` of the study's verdicts.
        settings: bootstrap settings of the conditions' CIs.
        graph: the lineage graph (checkpoint order, Arena-Hard baselines).

    Returns columns :func:`sweep_columns` of ``inputs.parameters``: every checkpoint's study-setting row (its own
    name as ``condition``, ``is_study_setting`` True, the study's values in the parameter columns) and one row per
    other condition of a swept checkpoint, for every task and metric it was scored on; ``in_sweep`` says whether
    the row's setting is one of the sweep's combinations (a study-setting row is one when the sweep lists the
    study's values). Sorted by task, metric, the graph's checkpoint order, then the sweep's order (a swept
    checkpoint's study setting first when the sweep does not list it).
    """
    parameters = inputs.parameters
    correct = correct_per_prompt(inputs.verdicts)
    swept = [c for c in inputs.conditions if not c.is_study_setting]
    means = pd.concat(
        [study_means, checkpoint_means(inputs.scores, None, settings)] if swept else [study_means], ignore_index=True
    )
    quality = pd.concat(
        [
            study_quality,
            quality_cells(inputs.quality, correct, graph, settings),
        ],
        ignore_index=True,
    )
    accuracy = _accuracy(pd.concat([study_correct, correct], ignore_index=True))
    rows = []
    for position, (checkpoint, condition, values, own, listed) in enumerate(_points(inputs, graph)):
        for record in means[means["checkpoint"] == condition].to_dict("records"):
            task = record["task"]
            judged = quality[(quality["checkpoint"] == condition) & (quality["task"] == task)]
            first = accuracy.get((condition, task), (np.nan, np.nan))
            cell = judged.iloc[0].to_dict() if len(judged) else {}
            rows.append(
                {
                    "checkpoint": checkpoint,
                    "task": task,
                    "metric": record["metric"],
                    **values,
                    "condition": condition,
                    "is_study_setting": own,
                    "in_sweep": listed,
                    "n_prompts": record["n_prompts"],
                    "mean": record["mean"],
                    "ci_low": record["ci_low"],
                    "ci_high": record["ci_high"],
                    "accuracy_first": first[0],
                    "pass_at_1": first[1],
                    "quality": cell.get("quality", np.nan),
                    "quality_ci_low": cell.get("quality_ci_low", np.nan),
                    "quality_ci_high": cell.get("quality_ci_high", np.nan),
                    "quality_kind": cell.get("quality_kind", ""),
                    "quality_source": cell.get("quality_source", ""),
                    "_order": position,
                }
            )
    table = pd.DataFrame(rows, columns=[*sweep_columns(parameters), "_order"])
    table = table.sort_values(["task", "metric", "_order"], kind="stable").drop(columns="_order")
    table["n_prompts"] = table["n_prompts"].astype("Int64")
    for column in ("is_study_setting", "in_sweep"):
        table[column] = table[column].astype(bool)
    return table.reset_index(drop=True)


def recovery_table(sweep: pd.DataFrame, parameters: Sequence[str], graph: LineageGraph) -> pd.DataFrame:
    """Per post-trained swept checkpoint x task x metric: the first setting reaching its base's diversity.

    Args:
        sweep: the :func:`sweep_table`.
        parameters: the swept parameters.
        graph: the lineage graph (each checkpoint's base: :meth:`LineageGraph.base_of`).

    Returns columns :func:`recovery_columns` of ``parameters``: the base and its mean (with CI) at the study's
    setting, the checkpoint's mean and quality at the study's setting; ``reached`` and, when reached, the first
    setting in the sweep's order (``in_sweep``: the study's setting counts when the sweep lists it) whose mean is
    at least the
    base's: its condition, parameter values, mean with CI, quality and ``quality_change_points`` (quality there
    minus quality at the study's setting, in points); else ``note`` :data:`NOT_REACHED` with the sweep's highest
    mean. A checkpoint that is its own base (or whose base has no study-setting row), or that the sweep leaves out,
    has no row.
    """
    rows = []
    if sweep.empty:
        return pd.DataFrame(columns=recovery_columns(parameters))
    for (checkpoint, task, metric), frame in sweep.groupby(["checkpoint", "task", "metric"], sort=False):
        if checkpoint not in graph.nodes or graph.base_of(checkpoint) == checkpoint:
            continue
        base = graph.base_of(checkpoint)
        base_rows = sweep[
            (sweep["checkpoint"] == base)
            & (sweep["task"] == task)
            & (sweep["metric"] == metric)
            & sweep["is_study_setting"]
        ]
        own = frame[frame["is_study_setting"]]
        if base_rows.empty or own.empty:
            continue
        swept = frame[frame["in_sweep"]]
        if swept.empty:  # not swept: only its study-setting row is in the table (a base's point for the others)
            continue
        base_row, study_row = base_rows.iloc[0], own.iloc[0]
        hits = swept[swept["mean"].to_numpy(dtype=np.float64) >= float(base_row["mean"])]
        row: dict[str, Any] = {
            "checkpoint": checkpoint,
            "task": task,
            "metric": metric,
            "base": base,
            "base_mean": base_row["mean"],
            "base_ci_low": base_row["ci_low"],
            "base_ci_high": base_row["ci_high"],
            "study_mean": study_row["mean"],
            "study_quality": study_row["quality"],
            "reached": not hits.empty,
        }
        if hits.empty:
            means = swept["mean"].to_numpy(dtype=np.float64)
            best = swept.iloc[int(np.nanargmax(means))] if np.isfinite(means).any() else None
            shown = "" if best is None else f" (highest: {best['mean']:.3f} at {best['condition']})"
            row.update({"condition": "", **dict.fromkeys(parameters, np.nan), "note": NOT_REACHED + shown})
        else:
            hit = hits.iloc[0]
            points = points_per_unit(str(hit["quality_source"])) if hit["quality_source"] else np.nan
            row.update(
                {
                    "condition": hit["condition"],
                    **{name: hit[name] for name in parameters},
                    "mean": hit["mean"],
                    "ci_low": hit["ci_low"],
                    "ci_high": hit["ci_high"],
                    "quality": hit["quality"],
                    "quality_change_points": (float(hit["quality"]) - float(study_row["quality"])) * points,
                    "quality_kind": hit["quality_kind"],
                    "note": "reached at the study's setting" if bool(hit["is_study_setting"]) else "",
                }
            )
        rows.append(row)
    table = pd.DataFrame(rows, columns=recovery_columns(parameters))
    table["reached"] = table["reached"].astype(bool)
    return table


def _points(inputs: SweepInputs, graph: LineageGraph) -> list[tuple[str, str, dict[str, Any], bool, bool]]:
    """(checkpoint, condition, parameter values, is the study's setting, is a setting of the sweep) of every point:
    checkpoint by checkpoint in the graph's order, a swept checkpoint's conditions in the sweep's order (its study
    setting first when the sweep does not list it), a checkpoint not swept at its study setting only."""
    by_checkpoint: dict[str, list[SweepCondition]] = {}
    for condition in inputs.conditions:
        by_checkpoint.setdefault(condition.checkpoint, []).append(condition)
    study = dict(inputs.study_values)
    points: list[tuple[str, str, dict[str, Any], bool, bool]] = []
    for checkpoint in [*graph.nodes, *(name for name in by_checkpoint if name not in graph.nodes)]:
        conditions = by_checkpoint.get(checkpoint, [])
        if not any(condition.is_study_setting for condition in conditions):
            points.append((checkpoint, checkpoint, study, True, False))
        points += [(checkpoint, c.name, c.values(), c.is_study_setting, True) for c in conditions]
    return points


def _accuracy(correct: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(checkpoint, task): (first-sample accuracy, pass@1)}``, each a mean over prompts; pass@1 per prompt by
    :func:`~divtrace.stats.pass_at_k_per_prompt`, as ``diversity_quality`` takes it."""
    if correct.empty:
        return {}
    rate = pass_at_k_per_prompt(correct["n_samples"].to_numpy(), correct["n_correct"].to_numpy(), 1)
    frame = correct.assign(rate=rate)
    grouped = frame.groupby(["checkpoint", "task"], sort=False)
    return {
        (str(key[0]), str(key[1])): (float(group["first_correct"].mean()), float(group["rate"].mean()))
        for key, group in grouped
    }
