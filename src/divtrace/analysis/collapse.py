"""Diversity along a lineage: checkpoint means, retained fraction of base, edge deltas, collapse sites, headline.

Sign convention (:data:`SIGN_CONVENTION`, the same in every table, plot and file): a change is diversity after a
stage minus diversity before it, so it is negative when diversity is lost. A *collapse site* is the stage whose loss
is the largest among the losses that are significant (the change's CI lies below 0, :func:`collapse_step`); a
lineage with no significant loss has none, and a stage that gained diversity never is one.

Every comparison between checkpoints is paired over prompts: the same prompts are sampled for every checkpoint of a
task, so a comparison uses the prompts on which every checkpoint involved has a finite value (an inner join on
``prompt_id``); prompts present for some of them only are dropped and counted (``n_dropped``). Confidence intervals
are percentile bootstraps that resample prompts jointly across the checkpoints compared
(:func:`divtrace.stats.bootstrap_means`); every statistic is a function of per-checkpoint means
over the resampled prompts (a difference of means, a ratio of means).

The helpers :func:`wide_scores` and :func:`paired_values` are shared by the other analysis
modules (quality-filtered decomposition, thinking ablation, curves).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from divtrace.stats.bootstrap import BootstrapSettings, bootstrap_means, cell_mean_cis
from divtrace.study.lineage import LineageGraph

CHECKPOINT_MEANS_COLUMNS = [
    "checkpoint", "task", "metric", "stage", "n_prompts", "mean", "std", "ci_low", "ci_high", "mean_n_outputs",
    "unclosed_thinking",
]  # fmt: skip
RETAINED_COLUMNS = [
    "checkpoint", "task", "metric", "stage", "base", "n_prompts", "n_dropped", "mean", "mean_base",
    "retained", "retained_ci_low", "retained_ci_high",
]  # fmt: skip
EDGE_COLUMNS = [
    "parent", "child", "stage", "base", "task", "metric", "n_prompts", "n_dropped",
    "mean_parent", "mean_child", "mean_base", "delta", "delta_ci_low", "delta_ci_high",
    "delta_pct_base", "delta_pct_base_ci_low", "delta_pct_base_ci_high", "significant",
]  # fmt: skip
COLLAPSE_COLUMNS = [
    "lineage", "task", "metric", "base", "status", "parent", "child", "stage", "n_prompts",
    "delta", "delta_ci_low", "delta_ci_high", "delta_pct_base", "delta_pct_base_ci_low", "delta_pct_base_ci_high",
    "n_edges", "n_edges_with_data", "n_significant_losses", "n_significant_gains", "lineage_delta", "loss_share",
]  # fmt: skip
HEADLINE_COLUMNS = [
    "lineage", "task", "metric", "step", "parent", "child", "stage", "n_prompts",
    "change_pct_base", "change_pct_base_ci_low", "change_pct_base_ci_high", "significant", "is_collapse_site",
    "retained_pct", "retained_pct_ci_low", "retained_pct_ci_high",
]  # fmt: skip

#: The one statement of the sign of every change divtrace reports (tables, plots, files, sentences).
SIGN_CONVENTION = (
    "A change is the diversity after a stage minus the diversity before it, as % of the base model's diversity: "
    "negative = diversity lost, positive = diversity gained."
)
#: ``collapse_sites.status``: the row names the lineage's collapse site (its largest significant loss).
SITE = "collapse site"
#: ``collapse_sites.status``: no edge lost diversity significantly, and none gained significantly.
NO_SIGNIFICANT_LOSS = "no significant loss"
#: ``collapse_sites.status``: no edge lost diversity significantly, and at least one gained significantly.
GAINED = "gained"


def wide_scores(scores: pd.DataFrame, subset: str) -> dict[tuple[str, str], pd.DataFrame]:
    """Per-prompt values of one ``subset`` as one wide frame per (task, metric).

    Args:
        scores: the long score table (``checkpoint, task, prompt_id, metric, subset, value``), one row per key.
        subset: ``"all"``, ``"correct"`` or ``"k=N"``.

    Returns:
        ``{(task, metric): frame}``, each frame indexed by ``prompt_id`` with one float column per checkpoint that
        has rows for that task and metric; NaN where a checkpoint has no (or a NaN) value for the prompt.
    """
    rows = scores[scores["subset"] == subset]
    if rows.empty:
        return {}
    wide = rows.pivot(index=["task", "metric", "prompt_id"], columns="checkpoint", values="value")
    frames: dict[tuple[str, str], pd.DataFrame] = {}
    for (task, metric), frame in wide.groupby(level=["task", "metric"], sort=True):
        frames[(str(task), str(metric))] = frame.droplevel(["task", "metric"]).dropna(axis=1, how="all")
    return frames


def paired_values(frame: pd.DataFrame, checkpoints: Sequence[str]) -> tuple[np.ndarray, int]:
    """The values of ``checkpoints`` on the prompts where every one of them is finite (the paired prompts).

    Args:
        frame: a wide frame from :func:`wide_scores` (or any prompt x checkpoint frame).
        checkpoints: the checkpoints compared (a name may repeat).

    Returns:
        ``(values, n_dropped)``: ``values`` has shape (len(checkpoints), n_paired) in frame row order;
        ``n_dropped`` counts prompts with a finite value for some but not all of them. A checkpoint absent from
        ``frame`` gives zero paired prompts.
    """
    missing = [name for name in checkpoints if name not in frame.columns]
    if missing:
        present = [name for name in checkpoints if name in frame.columns]
        n_any = int(np.isfinite(frame[present].to_numpy(dtype=np.float64)).any(axis=1).sum()) if present else 0
        return np.empty((len(checkpoints), 0)), n_any
    values = frame[list(checkpoints)].to_numpy(dtype=np.float64).T
    finite = np.isfinite(values)
    keep = finite.all(axis=0)
    n_dropped = int((finite.any(axis=0) & ~keep).sum())
    return values[:, keep], n_dropped


def _ratio(mu: np.ndarray) -> np.ndarray:
    """Samples (base, c): D(c) / D(base)."""
    return np.stack([mu[1] / mu[0]])


def _edge_stats(mu: np.ndarray) -> np.ndarray:
    """Samples (base, parent, child): delta and delta as % of base."""
    delta = mu[2] - mu[1]
    return np.stack([delta, 100.0 * delta / mu[0]])


def excludes_zero(low: float, high: float) -> bool:
    """Whether the interval [low, high] excludes 0 (False when either end is NaN)."""
    return bool(low > 0 or high < 0)


def significant_loss(change: float, low: float, high: float) -> bool:
    """Whether a change is a significant loss: negative, with a CI that excludes 0."""
    return bool(change < 0 and excludes_zero(low, high))


def significant_gain(change: float, low: float, high: float) -> bool:
    """Whether a change is a significant gain: positive, with a CI that excludes 0."""
    return bool(change > 0 and excludes_zero(low, high))


def collapse_step(changes: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> int | None:
    """The collapse site among the stages of one lineage: the index of the most negative change among the
    significant losses (:func:`significant_loss`), the first on a tie; None when no stage lost significantly.

    Args:
        changes: each stage's change (any unit; negative = diversity lost), in path order.
        lows: the lower ends of their CIs.
        highs: the upper ends of their CIs.

    Raises:
        ValueError: the three sequences differ in length.
    """
    if not len(changes) == len(lows) == len(highs):
        raise ValueError(f"collapse_step: {len(changes)} changes but {len(lows)} / {len(highs)} CI ends")
    losses = [i for i, (c, lo, hi) in enumerate(zip(changes, lows, highs, strict=True)) if significant_loss(c, lo, hi)]
    return min(losses, key=lambda i: (changes[i], i)) if losses else None


def checkpoint_means(scores: pd.DataFrame, graph: LineageGraph | None, settings: BootstrapSettings) -> pd.DataFrame:
    """Mean diversity per checkpoint x task x metric over its prompts (subset ``all``; NaN values skipped).

    Returns columns :data:`CHECKPOINT_MEANS_COLUMNS`: ``stage`` from the graph (None for a checkpoint not in it),
    ``n_prompts`` finite values, ``mean``, ``std`` (ddof 1), ``ci_low``/``ci_high`` (bootstrap CI of the mean over
    prompts, in ``prompt_id`` order), ``mean_n_outputs`` (mean number of outputs the values were computed on) and
    ``unclosed_thinking``: the outputs of the checkpoint x task whose thinking never closed, summed over its
    prompts (the same for every metric; <NA> when the scores lack the per-prompt count, e.g. older score tables).
    """
    unclosed = unclosed_per_cell(scores)
    rows = scores[(scores["subset"] == "all") & np.isfinite(scores["value"].to_numpy(dtype=np.float64))]
    rows = rows.sort_values("prompt_id", kind="stable")  # the resamples must not depend on input row order
    groups = {key: frame for key, frame in rows.groupby(["checkpoint", "task", "metric"], sort=True)}
    estimates = cell_mean_cis(
        {key: frame["value"].to_numpy(dtype=np.float64) for key, frame in groups.items()}, settings
    )
    records = []
    for (checkpoint, task, metric), frame in groups.items():
        values = frame["value"].to_numpy(dtype=np.float64)
        estimate = estimates[(checkpoint, task, metric)]
        records.append(
            {
                "checkpoint": checkpoint,
                "task": task,
                "metric": metric,
                "stage": _stage(graph, checkpoint),
                "n_prompts": int(values.size),
                "mean": estimate.mean,
                "std": float(np.std(values, ddof=1)) if values.size > 1 else float("nan"),
                "ci_low": estimate.low,
                "ci_high": estimate.high,
                "mean_n_outputs": float(frame["n_outputs"].mean()),
                "unclosed_thinking": unclosed.get((checkpoint, task)),
            }
        )
    means = pd.DataFrame(records, columns=CHECKPOINT_MEANS_COLUMNS)
    means["unclosed_thinking"] = means["unclosed_thinking"].astype("Int64")
    return means


def unclosed_per_cell(scores: pd.DataFrame) -> dict[tuple[str, str], int]:
    """``{(checkpoint, task): outputs whose thinking never closed}`` from the per-prompt ``unclosed_thinking`` of
    the scores (subset ``all``, each prompt once); a cell without any known count is left out."""
    if "unclosed_thinking" not in scores.columns:
        return {}
    rows = scores[scores["subset"] == "all"].drop_duplicates(["checkpoint", "task", "prompt_id"])
    counts = pd.to_numeric(rows["unclosed_thinking"], errors="coerce")
    known = rows.assign(unclosed_thinking=counts).dropna(subset=["unclosed_thinking"])
    return {
        (str(checkpoint), str(task)): int(frame["unclosed_thinking"].sum())
        for (checkpoint, task), frame in known.groupby(["checkpoint", "task"], sort=True)
    }


def retained_table(
    wide: Mapping[tuple[str, str], pd.DataFrame], graph: LineageGraph, settings: BootstrapSettings
) -> pd.DataFrame:
    """retained(c) = D(c) / D(base) per graph checkpoint x task x metric, paired over prompts.

    Args:
        wide: subset ``all`` from :func:`wide_scores`.
        graph: the lineage graph; ``base`` is ``graph.base_of(c)`` (variants included; the base itself gives 1).
        settings: bootstrap settings.

    Returns columns :data:`RETAINED_COLUMNS`: ``mean`` and ``mean_base`` on the paired prompts (``n_prompts``;
    ``n_dropped`` prompts had a value for only one of the two), ``retained`` = mean / mean_base and its CI
    (prompts resampled jointly, ratio of means).
    """
    jobs: dict[tuple[str, ...], np.ndarray] = {}
    meta: dict[Hashable, tuple[str, int]] = {}
    for (task, metric), frame in wide.items():
        for name in graph.nodes:
            if name not in frame.columns:
                continue
            base = graph.base_of(name)
            values, dropped = paired_values(frame, [base, name])
            jobs[(name, task, metric)] = values
            meta[(name, task, metric)] = (base, dropped)
    estimates = bootstrap_means(jobs, _ratio, settings)
    records = []
    for key, values in jobs.items():
        name, task, metric = key
        base, dropped = meta[key]
        estimate = estimates[key]
        records.append(
            {
                "checkpoint": name,
                "task": task,
                "metric": metric,
                "stage": graph.nodes[name].stage,
                "base": base,
                "n_prompts": int(values.shape[1]),
                "n_dropped": dropped,
                "mean": _mean(values[1]),
                "mean_base": _mean(values[0]),
                "retained": float(estimate.point[0]),
                "retained_ci_low": float(estimate.low[0]),
                "retained_ci_high": float(estimate.high[0]),
            }
        )
    return _sorted(pd.DataFrame(records, columns=RETAINED_COLUMNS), ["task", "metric", "checkpoint"])


def edge_table(
    wide: Mapping[tuple[str, str], pd.DataFrame], graph: LineageGraph, settings: BootstrapSettings
) -> pd.DataFrame:
    """Per edge parent -> child x task x metric: delta = D(child) - D(parent), also as % of D(base).

    The prompts are those where base, parent and child are all finite (``n_prompts``; ``n_dropped`` had some but
    not all), so ``delta`` is exactly ``mean_child - mean_parent`` and ``delta_pct_base`` is
    ``100 * delta / mean_base`` on the same prompts. CIs resample those prompts jointly; ``significant`` means the
    delta CI excludes 0. Returns columns :data:`EDGE_COLUMNS`; an edge whose parent or child has no value for a
    task and metric has no row.
    """
    jobs: dict[tuple[str, ...], np.ndarray] = {}
    meta: dict[Hashable, tuple[str, int]] = {}
    for (task, metric), frame in wide.items():
        for parent, child in graph.edges():
            if parent not in frame.columns or child not in frame.columns:
                continue
            base = graph.base_of(child)
            values, dropped = paired_values(frame, [base, parent, child])
            jobs[(parent, child, task, metric)] = values
            meta[(parent, child, task, metric)] = (base, dropped)
    estimates = bootstrap_means(jobs, _edge_stats, settings)
    records = []
    for key, values in jobs.items():
        parent, child, task, metric = key
        base, dropped = meta[key]
        estimate = estimates[key]
        records.append(
            {
                "parent": parent,
                "child": child,
                "stage": graph.nodes[child].stage,
                "base": base,
                "task": task,
                "metric": metric,
                "n_prompts": int(values.shape[1]),
                "n_dropped": dropped,
                "mean_parent": _mean(values[1]),
                "mean_child": _mean(values[2]),
                "mean_base": _mean(values[0]),
                "delta": float(estimate.point[0]),
                "delta_ci_low": float(estimate.low[0]),
                "delta_ci_high": float(estimate.high[0]),
                "delta_pct_base": float(estimate.point[1]),
                "delta_pct_base_ci_low": float(estimate.low[1]),
                "delta_pct_base_ci_high": float(estimate.high[1]),
                "significant": excludes_zero(estimate.low[0], estimate.high[0]),
            }
        )
    return _sorted(pd.DataFrame(records, columns=EDGE_COLUMNS), ["task", "metric"])


def collapse_sites(edges: pd.DataFrame, lineages: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Per lineage x task x metric: the collapse site, the edge of the base-to-leaf path with the largest
    significant loss (:func:`collapse_step` on the edges' deltas and delta CIs), or why there is none.

    Args:
        edges: the table from :func:`edge_table`.
        lineages: ``{leaf: [base, ..., leaf]}`` (``LineageGraph.lineages()``); a lineage with no edge is skipped,
            and so is a task and metric where no edge of the path has data.

    Returns columns :data:`COLLAPSE_COLUMNS`. ``status`` is :data:`SITE` when the row names a site, else
    :data:`GAINED` (no edge lost significantly, some edge gained significantly) or :data:`NO_SIGNIFICANT_LOSS`
    (no edge changed significantly); without a site the edge fields (``parent`` to ``delta_pct_base_ci_high``)
    are empty (None / NaN). ``delta`` and ``delta_pct_base`` (with CIs) are signed: negative = diversity lost.
    ``n_edges`` on the path, ``n_edges_with_data``, ``n_significant_losses`` and ``n_significant_gains`` among
    them; ``lineage_delta`` = the sum of the path's edge deltas (NaN unless every edge has data); ``loss_share`` =
    delta / lineage_delta, the share of the lineage's total loss the site accounts for (NaN without a site or
    unless the lineage lost overall; above 1 when other edges gained diversity).
    """
    records = []
    # Rows as Any: pandas-stubs types every itertuples field as any scalar; the columns are documented above.
    indexed: dict[tuple[Any, ...], Any] = {
        (r.parent, r.child, r.task, r.metric): r for r in edges.itertuples(index=False)
    }
    pairs: list[tuple[str, str]] = sorted({(str(r.task), str(r.metric)) for r in edges.itertuples(index=False)})
    for leaf, path in lineages.items():
        path_edges = list(pairwise(path))
        if not path_edges:
            continue
        for task, metric in pairs:
            found = [indexed[(p, c, task, metric)] for p, c in path_edges if (p, c, task, metric) in indexed]
            if not found:
                continue
            step = collapse_step(
                [r.delta for r in found], [r.delta_ci_low for r in found], [r.delta_ci_high for r in found]
            )
            site = found[step] if step is not None else None
            gains = sum(significant_gain(r.delta, r.delta_ci_low, r.delta_ci_high) for r in found)
            complete = len(found) == len(path_edges)
            total = float(sum(r.delta for r in found)) if complete else float("nan")
            share = site.delta / total if site is not None and complete and total < 0 else float("nan")
            records.append(
                {
                    "lineage": leaf,
                    "task": task,
                    "metric": metric,
                    "base": path[0],
                    "status": SITE if site is not None else GAINED if gains else NO_SIGNIFICANT_LOSS,
                    **_site_fields(site),
                    "n_edges": len(path_edges),
                    "n_edges_with_data": len(found),
                    "n_significant_losses": sum(
                        significant_loss(r.delta, r.delta_ci_low, r.delta_ci_high) for r in found
                    ),
                    "n_significant_gains": gains,
                    "lineage_delta": total,
                    "loss_share": float(share),
                }
            )
    sites = pd.DataFrame(records, columns=COLLAPSE_COLUMNS)
    sites["n_prompts"] = sites["n_prompts"].astype("Int64")
    return sites


_SITE_FIELDS = (
    "parent", "child", "stage", "n_prompts", "delta", "delta_ci_low", "delta_ci_high",
    "delta_pct_base", "delta_pct_base_ci_low", "delta_pct_base_ci_high",
)  # fmt: skip


def _site_fields(site: Any) -> dict[str, Any]:
    """The edge fields of a collapse-site row: the site's, or empty (None for names, NaN for numbers)."""
    if site is None:
        names = ("parent", "child", "stage", "n_prompts")
        return {name: None if name in names else float("nan") for name in _SITE_FIELDS}
    return {name: getattr(site, name) for name in _SITE_FIELDS}


def headline(
    edges: pd.DataFrame, retained: pd.DataFrame, sites: pd.DataFrame, lineages: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """The study's Table 1 in long form: per lineage x task x metric, one row per edge of the path.

    Returns columns :data:`HEADLINE_COLUMNS`: ``step`` (1 for the edge leaving the base), the edge and its
    ``stage``; ``change_pct_base`` = the edge's ``delta_pct_base`` (negative = diversity lost, as % of the base's
    diversity, :data:`SIGN_CONVENTION`) with its CI; ``significant`` (the delta's CI excludes 0);
    ``is_collapse_site`` (the lineage's largest significant loss, see :func:`collapse_sites`);
    ``retained_pct`` = 100 * retained(leaf) with its CI, repeated on every row of the lineage. Lineages, tasks and
    metrics without edge data have no rows.
    """
    # Rows as Any: pandas-stubs types every itertuples field as any scalar; the columns are documented above.
    indexed: dict[tuple[Any, ...], Any] = {
        (r.parent, r.child, r.task, r.metric): r for r in edges.itertuples(index=False)
    }
    kept: dict[tuple[Any, ...], Any] = {(r.checkpoint, r.task, r.metric): r for r in retained.itertuples(index=False)}
    site: dict[tuple[Any, ...], tuple[Any, Any]] = {
        (r.lineage, r.task, r.metric): (r.parent, r.child) for r in sites.itertuples(index=False) if r.status == SITE
    }
    pairs: list[tuple[str, str]] = sorted({(str(r.task), str(r.metric)) for r in edges.itertuples(index=False)})
    records = []
    for leaf, path in lineages.items():
        for task, metric in pairs:
            leaf_row = kept.get((leaf, task, metric))
            for step, (parent, child) in enumerate(pairwise(path), start=1):
                edge = indexed.get((parent, child, task, metric))
                if edge is None:
                    continue
                records.append(
                    {
                        "lineage": leaf,
                        "task": task,
                        "metric": metric,
                        "step": step,
                        "parent": parent,
                        "child": child,
                        "stage": edge.stage,
                        "n_prompts": edge.n_prompts,
                        "change_pct_base": edge.delta_pct_base,
                        "change_pct_base_ci_low": edge.delta_pct_base_ci_low,
                        "change_pct_base_ci_high": edge.delta_pct_base_ci_high,
                        "significant": edge.significant,
                        "is_collapse_site": site.get((leaf, task, metric)) == (parent, child),
                        "retained_pct": 100.0 * leaf_row.retained if leaf_row else float("nan"),
                        "retained_pct_ci_low": 100.0 * leaf_row.retained_ci_low if leaf_row else float("nan"),
                        "retained_pct_ci_high": 100.0 * leaf_row.retained_ci_high if leaf_row else float("nan"),
                    }
                )
    return pd.DataFrame(records, columns=HEADLINE_COLUMNS)


def _stage(graph: LineageGraph | None, name: str) -> str | None:
    if graph is None or name not in graph.nodes:
        return None
    return graph.nodes[name].stage


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _sorted(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Stable sort (keeps graph order within each group), fresh index."""
    return frame.sort_values(by, kind="stable").reset_index(drop=True)
