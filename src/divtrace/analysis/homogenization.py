"""Homogenisation: how alike two checkpoints' outputs are, per task and metric, for every pair of checkpoints.

From the per-prompt similarities of the homogenisation stage (:func:`divtrace.score.homogenization.
prompt_similarities`): per (task, metric, pair) the mean over the prompts both checkpoints have, with a percentile
bootstrap CI over prompts (:func:`divtrace.stats.bootstrap.cell_mean_cis`). Pairs are unordered (each checkpoint
with itself included: 1 - its SBERT diversity for ``sbert``); ``checkpoint_a`` comes first in the lineage graph's
node order, and rows follow that order.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

from divtrace.stats.bootstrap import BootstrapSettings, cell_mean_cis

HOMOGENIZATION_COLUMNS = [
    "task",
    "metric",
    "checkpoint_a",
    "checkpoint_b",
    "similarity",
    "ci_low",
    "ci_high",
    "n_prompts",
]
_PROMPT_COLUMNS = ["task", "prompt_id", "checkpoint_a", "checkpoint_b", "metric", "similarity"]


def homogenization_table(prompt_rows: pd.DataFrame, order: Sequence[str], settings: BootstrapSettings) -> pd.DataFrame:
    """The homogenisation table (:data:`HOMOGENIZATION_COLUMNS`) of ``prompt_rows`` (one row per task, prompt, pair
    and metric: columns ``task, prompt_id, checkpoint_a, checkpoint_b, metric, similarity``).

    ``order`` is the checkpoints' lineage order (the graph's nodes); checkpoints not in it come after, by name.
    A pair's value is the mean over its prompts with a finite similarity (``n_prompts`` of them). Empty in, empty
    (with the columns) out.
    """
    if prompt_rows.empty:
        return pd.DataFrame(columns=HOMOGENIZATION_COLUMNS)
    rows = prompt_rows[_PROMPT_COLUMNS].copy()
    for column in ("task", "prompt_id", "checkpoint_a", "checkpoint_b", "metric"):
        rows[column] = rows[column].astype(str)
    rows["similarity"] = pd.to_numeric(rows["similarity"], errors="coerce").astype(np.float64)
    known = list(dict.fromkeys(order))
    extra = sorted((set(rows["checkpoint_a"]) | set(rows["checkpoint_b"])) - set(known))
    rank = {name: index for index, name in enumerate([*known, *extra])}
    swap = rows["checkpoint_a"].map(rank) > rows["checkpoint_b"].map(rank)
    rows.loc[swap, ["checkpoint_a", "checkpoint_b"]] = rows.loc[swap, ["checkpoint_b", "checkpoint_a"]].to_numpy()
    rows = rows.drop_duplicates(["task", "prompt_id", "checkpoint_a", "checkpoint_b", "metric"], keep="first")
    metric_rank = {name: index for index, name in enumerate(dict.fromkeys(rows["metric"]))}
    task_rank = {name: index for index, name in enumerate(dict.fromkeys(rows["task"]))}
    cells: dict[Hashable, np.ndarray] = {}
    for key, group in rows.groupby(["task", "metric", "checkpoint_a", "checkpoint_b"], sort=False):
        values = group["similarity"].to_numpy()
        cells[key] = values[np.isfinite(values)]
    estimates = cell_mean_cis(cells, settings)
    table = pd.DataFrame(
        [
            (*key, estimate.mean, estimate.low, estimate.high, len(cells[key]))  # type: ignore[misc]
            for key, estimate in estimates.items()
        ],
        columns=HOMOGENIZATION_COLUMNS,
    )
    table = table.sort_values(
        ["task", "metric", "checkpoint_a", "checkpoint_b"],
        key=lambda column: column.map({"task": task_rank, "metric": metric_rank}.get(str(column.name), rank)),
        kind="stable",
    )
    table["n_prompts"] = table["n_prompts"].astype("int64")
    return table.reset_index(drop=True)
