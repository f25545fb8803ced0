"""The study's headline, Table 1: per lineage, each stage's diversity change as % of the base, averaged over tasks.

Definition (FIDELITY.md, "Headline (Table 1)"). For a lineage base -> c1 -> ... -> cn, a metric (the paper's table is
SBERT; every metric gets rows here) and a task t, with D_t(c) a checkpoint's mean over the task's prompts:

- change_t(ci) = 100 * (D_t(ci) - D_t(c(i-1))) / D_t(base), for each stage i;
- retained_t = 100 * D_t(cn) / D_t(base).

Table 1 is the mean over tasks of each (every task weighs the same, whatever its number of prompts). Within a task,
every checkpoint of the path is averaged over the same prompts (those with a finite value for all of them), so the
stage changes add up to retained - 100 exactly. The tasks of a row are those where every checkpoint of the path has
at least one such prompt (``tasks``, ``n_tasks``): with a complete study, every task of the study.

Lineages: each base-to-leaf path of the graph (``kind = "lineage"``, named by its leaf). Groups
(``kind = "group"``): single-stage lineages that leave the same base with the same stage label, when there are at
least two of them, are also summarised together under the stage's name. That is Olmo 3's RL-Zero: six RL-Zero
checkpoints (Math, Code, IF, General; 3.1 Math and Code) trained from the base in parallel, not one after another,
so no single path stands for them and the paper's "RL-Zero: 93% retained" is one number for all of them. A group's
change (and retained) per task is the mean over its members, then the mean over tasks is taken; its prompts per
task are those with a finite value for the base and every member. Each member also keeps its own lineage row.

Signs (:data:`divtrace.analysis.collapse.SIGN_CONVENTION`): a change is negative when diversity is lost. A step is
``significant`` when its change's CI excludes 0; a row's collapse site (``is_collapse_site``) is its largest
significant loss (:func:`divtrace.analysis.collapse.collapse_step`): a row without a significant loss has none, and a
step that gained is never one.

Confidence intervals: percentile bootstrap stratified by task. Each resample redraws every task's prompts with
replacement *within that task* (n_t draws from its n_t prompts), jointly for all checkpoints of the row, and takes
the mean over tasks again: the tasks are fixed (the study's tasks are not a sample of tasks), prompt sampling is
what the interval reflects.

For the ``olmo3-7b`` study (the preset's name), ``paper_change_pct_base`` and ``paper_retained_pct`` carry the
published SBERT row next to ours (:data:`PAPER_TABLE1`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from divtrace.analysis.collapse import collapse_step, excludes_zero
from divtrace.stats.bootstrap import BootstrapSettings, percentile_interval, resample_counts
from divtrace.study.lineage import LineageGraph

TABLE1_COLUMNS = [
    "lineage", "kind", "members", "base", "path", "metric", "step", "parent", "child", "stage",
    "n_tasks", "tasks", "n_prompts",
    "change_pct_base", "change_pct_base_ci_low", "change_pct_base_ci_high", "significant", "is_collapse_site",
    "retained_pct", "retained_pct_ci_low", "retained_pct_ci_high",
    "paper_change_pct_base", "paper_retained_pct",
]  # fmt: skip

#: The study whose published Table 1 is shown next to ours.
PAPER_STUDY = "olmo3-7b"
#: The metric of the published Table 1.
PAPER_METRIC = "sbert"
#: Where the published numbers come from.
PAPER_SOURCE = "Karouzos, Tan, Aletras (2026), Table 1"
#: The published Table 1 (SBERT change per stage as % of base, mean over the 15 tasks; retained %), keyed by the
#: ``olmo3-7b`` preset's lineage names: ``(changes per stage or None, retained %)``.
PAPER_TABLE1: dict[str, tuple[tuple[float, ...] | None, float]] = {
    "think": ((-62.0, -4.0, 4.0), 38.0),
    "instruct": ((-38.0, -23.0, -5.0), 34.0),
    "rl-zero": (None, 93.0),
}

#: Per-task statistics from means of shape (S, B): rows (change per stage..., retained), shape (m, B).
_Stats = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Row:
    """One Table 1 row group: the checkpoints it reads and how its per-task statistics are formed."""

    label: str
    kind: str
    base: str
    checkpoints: tuple[str, ...]  # base first
    members: tuple[str, ...]
    steps: tuple[tuple[str, str, str], ...]  # (parent, child, stage) per reported step
    stats: _Stats


def _path_stats(mu: np.ndarray) -> np.ndarray:
    """Means along a path (base, c1, ..., cn): 100 * stage deltas / base, then 100 * leaf / base."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.concatenate([100.0 * np.diff(mu, axis=0) / mu[0], 100.0 * mu[-1:] / mu[0]])


def _group_stats(mu: np.ndarray) -> np.ndarray:
    """Means (base, members...): the members' mean change and mean retained, both as % of base."""
    with np.errstate(divide="ignore", invalid="ignore"):
        kept = 100.0 * mu[1:] / mu[0]
    return np.stack([kept.mean(axis=0) - 100.0, kept.mean(axis=0)])


def table1_rows(graph: LineageGraph) -> list[_Row]:
    """The lineages (base-to-leaf paths with at least one stage) and groups of parallel single-stage lineages."""
    lineages = {leaf: path for leaf, path in graph.lineages().items() if len(path) > 1}
    rows = [
        _Row(
            label=leaf,
            kind="lineage",
            base=path[0],
            checkpoints=tuple(path),
            members=(leaf,),
            steps=tuple((p, c, graph.nodes[c].stage) for p, c in pairwise(path)),
            stats=_path_stats,
        )
        for leaf, path in lineages.items()
    ]
    parallel: dict[tuple[str, str], list[str]] = {}
    for leaf, path in lineages.items():
        if len(path) == 2:
            parallel.setdefault((path[0], graph.nodes[leaf].stage), []).append(leaf)
    for (base, stage), members in parallel.items():
        if len(members) < 2:
            continue
        label = stage if stage not in graph.nodes else f"{stage} (mean)"
        rows.append(
            _Row(
                label=label,
                kind="group",
                base=base,
                checkpoints=(base, *members),
                members=tuple(members),
                steps=((base, label, stage),),
                stats=_group_stats,
            )
        )
    return rows


def table_one(
    wide_all: Mapping[tuple[str, str], pd.DataFrame],
    graph: LineageGraph,
    settings: BootstrapSettings,
    *,
    study_name: str | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Table 1 in long form: one row per (lineage or group) x metric x step (see the module docstring).

    Args:
        wide_all: subset ``all`` from :func:`divtrace.analysis.collapse.wide_scores`.
        graph: the lineage graph.
        settings: bootstrap settings (stratified by task).
        study_name: the study's name; ``"olmo3-7b"`` fills the ``paper_*`` columns of the SBERT rows.
        metrics: the metrics to tabulate (default: every metric in ``wide_all``).

    Returns columns :data:`TABLE1_COLUMNS`: ``lineage`` (the leaf, or the stage for a group), ``kind``,
    ``members`` (comma-separated), ``base``, ``path`` (``base → ... → leaf``), ``metric``, ``step`` (1 = the stage
    leaving the base), ``parent``/``child``/``stage`` of the step, ``n_tasks`` and ``tasks`` (comma-separated)
    averaged over, ``n_prompts`` (summed over those tasks), ``change_pct_base`` (negative = diversity lost) with its
    CI, ``significant`` (that CI excludes 0), ``is_collapse_site`` (the row's largest significant loss; no step of
    a row without one), ``retained_pct`` (the same on each step of a row) with its CI, and the published
    ``paper_*`` values or NaN.
    A row without any task with data is left out.
    """
    chosen = sorted({metric for _, metric in wide_all}) if metrics is None else list(metrics)
    records = []
    for row in table1_rows(graph):
        for metric in chosen:
            tasks, sizes, point, low, high = _estimate(wide_all, row, metric, settings)
            if not tasks:
                continue
            paper_changes, paper_retained = _paper(study_name, metric, row)
            n = len(row.steps)
            site = collapse_step(list(point[:n]), list(low[:n]), list(high[:n]))
            for step, (parent, child, stage) in enumerate(row.steps, start=1):
                records.append(
                    {
                        "lineage": row.label,
                        "kind": row.kind,
                        "members": ", ".join(row.members),
                        "base": row.base,
                        "path": _path_text(row),
                        "metric": metric,
                        "step": step,
                        "parent": parent,
                        "child": child,
                        "stage": stage,
                        "n_tasks": len(tasks),
                        "tasks": ", ".join(tasks),
                        "n_prompts": int(sum(sizes)),
                        "change_pct_base": float(point[step - 1]),
                        "change_pct_base_ci_low": float(low[step - 1]),
                        "change_pct_base_ci_high": float(high[step - 1]),
                        "significant": excludes_zero(float(low[step - 1]), float(high[step - 1])),
                        "is_collapse_site": site == step - 1,
                        "retained_pct": float(point[-1]),
                        "retained_pct_ci_low": float(low[-1]),
                        "retained_pct_ci_high": float(high[-1]),
                        "paper_change_pct_base": paper_changes[step - 1] if paper_changes else float("nan"),
                        "paper_retained_pct": paper_retained,
                    }
                )
    return pd.DataFrame(records, columns=TABLE1_COLUMNS)


def _estimate(
    wide_all: Mapping[tuple[str, str], pd.DataFrame], row: _Row, metric: str, settings: BootstrapSettings
) -> tuple[list[str], list[int], np.ndarray, np.ndarray, np.ndarray]:
    """(tasks, prompts per task, point, CI low, CI high) of one row and metric; empty tasks when none has data."""
    tasks, sizes, points, samples = [], [], [], []
    rng = np.random.default_rng(settings.seed)
    for task in sorted(task for task, m in wide_all if m == metric):
        frame = wide_all[(task, metric)]
        if any(name not in frame.columns for name in row.checkpoints):
            continue
        frame = frame.sort_index()  # prompt_id order: the resamples must not depend on input row order
        values = frame[list(row.checkpoints)].to_numpy(dtype=np.float64).T
        values = values[:, np.isfinite(values).all(axis=0)]
        n = values.shape[1]
        if n == 0:
            continue
        tasks.append(task)
        sizes.append(n)
        points.append(row.stats(values.mean(axis=1, keepdims=True))[:, 0])
        counts = resample_counts(n, settings.resamples, rng)
        samples.append(row.stats(values @ counts.T / n))
    if not tasks:
        empty = np.empty(0)
        return [], [], empty, empty, empty
    point = np.mean(points, axis=0)
    low, high = percentile_interval(np.mean(samples, axis=0), settings.confidence)
    return tasks, sizes, point, low, high


def paper_row(
    study_name: object, metric: object, lineage: object, n_steps: int
) -> tuple[tuple[float, ...] | None, float] | None:
    """The published ``(changes per stage or None, retained %)`` of a Table 1 row, or None when there is none.

    There is one for the ``olmo3-7b`` study's SBERT rows of its lineages ``think`` and ``instruct`` and its group
    ``rl-zero`` (:data:`PAPER_TABLE1`); the changes are left out (None) when the row's number of stages differs
    from the published one (a different graph under the preset's name).
    """
    if str(study_name) != PAPER_STUDY or str(metric) != PAPER_METRIC or str(lineage) not in PAPER_TABLE1:
        return None
    changes, retained = PAPER_TABLE1[str(lineage)]
    if changes is not None and len(changes) != n_steps:
        changes = None
    return changes, retained


def _paper(study_name: str | None, metric: str, row: _Row) -> tuple[tuple[float, ...] | None, float]:
    """:func:`paper_row` for one row, as ``(None, NaN)`` when there is none."""
    found = paper_row(study_name, metric, row.label, len(row.steps))
    return found if found is not None else (None, float("nan"))


def _path_text(row: _Row) -> str:
    if row.kind == "group":
        return f"{row.base} → {{{', '.join(row.members)}}}"
    return " → ".join(row.checkpoints)
