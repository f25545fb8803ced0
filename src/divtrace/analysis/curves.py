"""Diversity versus the number of samples k, and pass@k at the same k next to diversity.

A diversity-vs-K curve uses the scorer's ``k=N`` subsets (the metric over the first N responses of each prompt) plus
subset ``all`` placed at k = K. pass@k is the unbiased estimator 1 - C(n-c, k) / C(n, k) per prompt (n samples,
c correct; :func:`divtrace.stats.pass_at_k`), averaged over prompts, at the levels of
:func:`divtrace.stats.default_k_levels` (``diversity_k`` is NaN at a level without a curve
point, e.g. k = 5 and 10).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from divtrace.stats import cell_k_levels, mean_pass_at_k
from divtrace.stats.bootstrap import BootstrapSettings, cell_mean_cis

CURVE_COLUMNS = ["checkpoint", "task", "metric", "k", "subset", "n_prompts", "mean", "ci_low", "ci_high"]
PASSK_COLUMNS = [
    "checkpoint", "task", "k", "n_prompts", "n_samples", "pass_at_k", "metric", "diversity_k", "diversity_all",
]  # fmt: skip
CORRECT_PER_PROMPT_COLUMNS = ["checkpoint", "task", "prompt_id", "n_samples", "n_correct", "first_correct"]

_K_SUBSET = re.compile(r"^k=(\d+)$")


def correct_per_prompt(verdicts: pd.DataFrame | None) -> pd.DataFrame:
    """Per (checkpoint, task, prompt_id): samples, correct samples, and whether the first sample is correct.

    ``first_correct`` is the verdict of the lowest ``sample_index``. Returns columns
    :data:`CORRECT_PER_PROMPT_COLUMNS` (empty for no verdicts).
    """
    if verdicts is None or verdicts.empty:
        return pd.DataFrame(columns=CORRECT_PER_PROMPT_COLUMNS)
    ordered = verdicts.sort_values(["checkpoint", "task", "prompt_id", "sample_index"], kind="stable")
    ordered = ordered.assign(correct=ordered["correct"].astype(bool))
    grouped = ordered.groupby(["checkpoint", "task", "prompt_id"], sort=True)["correct"]
    frame = pd.DataFrame(
        {"n_samples": grouped.size(), "n_correct": grouped.sum(), "first_correct": grouped.first().astype(float)}
    ).reset_index()
    return frame[CORRECT_PER_PROMPT_COLUMNS]


def diversity_curves(scores: pd.DataFrame, settings: BootstrapSettings) -> pd.DataFrame:
    """Mean diversity per checkpoint x task x metric x k, with a bootstrap CI over prompts.

    Levels: every ``k=N`` subset, plus subset ``all`` at k = K, K being the largest ``n_outputs`` among that
    group's ``all`` rows; only the ``all`` rows computed on K outputs are used (a metric subsampled below K for
    some prompts, such as Vendi for the quality-filtered decomposition, does not mix sample sizes), and the
    ``all`` point is left out when a ``k=K`` subset exists. Returns columns :data:`CURVE_COLUMNS` (``subset``
    says where the point came from), sorted by checkpoint, task, metric, k.
    """
    finite = scores[np.isfinite(scores["value"].to_numpy(dtype=np.float64))]
    finite = finite.sort_values("prompt_id", kind="stable")  # the resamples must not depend on input row order
    levels = finite["subset"].str.extract(_K_SUBSET, expand=False)
    at_k = finite[levels.notna()].assign(k=levels[levels.notna()].astype(int))
    everything = finite[finite["subset"] == "all"]
    everything = everything[everything["n_outputs"].notna()]
    if not everything.empty:
        k_max = everything.groupby(["checkpoint", "task", "metric"])["n_outputs"].transform("max")
        everything = everything[everything["n_outputs"] == k_max].assign(k=k_max.astype(int))
        keys = ["checkpoint", "task", "metric", "k"]
        explicit = at_k[keys].drop_duplicates()
        marked = everything.merge(explicit, on=keys, how="left", indicator=True)
        everything = everything[(marked["_merge"] == "left_only").to_numpy()]
    points = pd.concat([at_k, everything], ignore_index=True)
    if points.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    groups = {key: frame for key, frame in points.groupby(["checkpoint", "task", "metric", "k"], sort=True)}
    estimates = cell_mean_cis(
        {key: frame["value"].to_numpy(dtype=np.float64) for key, frame in groups.items()}, settings
    )
    records = []
    for key, frame in groups.items():
        checkpoint, task, metric, k = key
        estimate = estimates[key]
        records.append(
            {
                "checkpoint": checkpoint,
                "task": task,
                "metric": metric,
                "k": int(k),
                "subset": str(frame["subset"].iloc[0]),
                "n_prompts": len(frame),
                "mean": estimate.mean,
                "ci_low": estimate.low,
                "ci_high": estimate.high,
            }
        )
    return pd.DataFrame(records, columns=CURVE_COLUMNS)


def passk_table(per_prompt: pd.DataFrame, curves: pd.DataFrame, means: pd.DataFrame) -> pd.DataFrame:
    """pass@k next to diversity, long form: one row per checkpoint x task x k x metric.

    Args:
        per_prompt: from :func:`correct_per_prompt`.
        curves: from :func:`diversity_curves`.
        means: the ``checkpoint_means`` table (``checkpoint, task, metric, mean``).

    k levels per (checkpoint, task): :func:`divtrace.stats.default_k_levels` of K, the largest
    number of samples of a prompt (K = 16: 1, 2, 4, 5, 8, 10, 16), the same levels ``divtrace verify`` reports.
    Returns columns :data:`PASSK_COLUMNS`: ``pass_at_k`` averaged
    over the ``n_prompts`` prompts with at least k samples (``n_samples`` is the most samples of a prompt);
    ``diversity_k`` the metric's curve mean at k (NaN when it has no point there), ``diversity_all`` its mean
    over all K (subset ``all``). pass@k repeats on every metric row; a task with verdicts but no scores has
    one row per k with ``metric`` NaN. Empty without verdicts.
    """
    if per_prompt.empty:
        return pd.DataFrame(columns=PASSK_COLUMNS)
    records = []
    for (checkpoint, task), frame in per_prompt.groupby(["checkpoint", "task"], sort=True):
        n = frame["n_samples"].to_numpy()
        c = frame["n_correct"].to_numpy()
        for k in cell_k_levels(n.tolist()):
            value, prompts = mean_pass_at_k(n, c, k)
            records.append(
                {
                    "checkpoint": checkpoint,
                    "task": task,
                    "k": k,
                    "n_prompts": prompts,
                    "n_samples": int(n.max()),
                    "pass_at_k": value,
                }
            )
    passes = pd.DataFrame(records, columns=["checkpoint", "task", "k", "n_prompts", "n_samples", "pass_at_k"])
    metrics = means[["checkpoint", "task", "metric", "mean"]].rename(columns={"mean": "diversity_all"})
    at_k = curves[["checkpoint", "task", "metric", "k", "mean"]].rename(columns={"mean": "diversity_k"})
    table = passes.merge(metrics, on=["checkpoint", "task"], how="left")
    table = table.merge(at_k, on=["checkpoint", "task", "metric", "k"], how="left")
    return table[PASSK_COLUMNS].sort_values(["checkpoint", "task", "metric", "k"], kind="stable").reset_index(drop=True)
