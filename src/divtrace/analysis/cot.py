"""Chain-of-thought ablation: the same weights sampled with thinking on and with the thinking block suppressed.

Response-level diversity (reasoning stripped) and accuracy are compared paired over prompts: a change here comes
from the generation format, not from the weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from divtrace.analysis.collapse import excludes_zero, paired_values
from divtrace.stats.bootstrap import BootstrapSettings, bootstrap_means
from divtrace.study.lineage import LineageGraph

THINKING_COLUMNS = [
    "checkpoint", "variant", "task", "metric", "n_prompts", "n_dropped",
    "diversity_on", "diversity_suppressed", "delta", "delta_ci_low", "delta_ci_high", "significant",
    "n_prompts_accuracy", "accuracy_first_on", "accuracy_first_suppressed", "accuracy_on", "accuracy_suppressed",
    "accuracy_delta", "accuracy_delta_ci_low", "accuracy_delta_ci_high",
]  # fmt: skip

_ACCURACY_FIELDS = THINKING_COLUMNS[12:]


def _difference(mu: np.ndarray) -> np.ndarray:
    """Samples (on, suppressed): suppressed - on."""
    return np.stack([mu[1] - mu[0]])


def thinking_ablation(
    wide_all: Mapping[tuple[str, str], pd.DataFrame],
    correct_per_prompt: pd.DataFrame,
    graph: LineageGraph,
    settings: BootstrapSettings,
) -> pd.DataFrame:
    """Diversity and accuracy of each ``graph.thinking_pairs()`` (checkpoint, suppressed variant) x task x metric.

    Args:
        wide_all: subset ``all`` from :func:`divtrace.analysis.collapse.wide_scores`.
        correct_per_prompt: from :func:`divtrace.analysis.curves.correct_per_prompt` (may be empty).
        graph: the lineage graph.
        settings: bootstrap settings.

    Returns columns :data:`THINKING_COLUMNS`, ``checkpoint`` being the thinking-on one. Diversity on the paired
    prompts (``n_prompts``; ``n_dropped`` scored for only one of the two): ``diversity_on``,
    ``diversity_suppressed``, ``delta`` = suppressed - on with its paired CI, ``significant`` (CI excludes 0).
    Accuracy, on the prompts verified for both (``n_prompts_accuracy``; NaN without verdicts): first sample
    (``accuracy_first_*``), mean per-sample accuracy (``accuracy_on``/``accuracy_suppressed``) and
    ``accuracy_delta`` = suppressed - on with its paired CI; repeated on each metric's row of the task.
    """
    pairs = graph.thinking_pairs()
    accuracy = _accuracy(correct_per_prompt, pairs, settings)
    jobs: dict[tuple[str, str, str, str], np.ndarray] = {}
    dropped: dict[tuple[str, str, str, str], int] = {}
    for (task, metric), frame in wide_all.items():
        for on, off in pairs:
            if on in frame.columns and off in frame.columns:
                key = (on, off, task, metric)
                jobs[key], dropped[key] = paired_values(frame, [on, off])
    estimates = bootstrap_means(jobs, _difference, settings)
    records = []
    for key, values in jobs.items():
        on, off, task, metric = key
        estimate = estimates[key]
        records.append(
            {
                "checkpoint": on,
                "variant": off,
                "task": task,
                "metric": metric,
                "n_prompts": int(values.shape[1]),
                "n_dropped": dropped[key],
                "diversity_on": float(values[0].mean()) if values.size else float("nan"),
                "diversity_suppressed": float(values[1].mean()) if values.size else float("nan"),
                "delta": float(estimate.point[0]),
                "delta_ci_low": float(estimate.low[0]),
                "delta_ci_high": float(estimate.high[0]),
                "significant": excludes_zero(estimate.low[0], estimate.high[0]),
                **accuracy.get((on, off, task), dict.fromkeys(_ACCURACY_FIELDS, float("nan"))),
            }
        )
    return pd.DataFrame(records, columns=THINKING_COLUMNS)


def _accuracy(
    correct_per_prompt: pd.DataFrame, pairs: list[tuple[str, str]], settings: BootstrapSettings
) -> dict[tuple[str, str, str], dict[str, float]]:
    """Per (on, off, task): accuracy fields of :data:`THINKING_COLUMNS` on prompts verified for both."""
    if correct_per_prompt.empty or not pairs:
        return {}
    indexed = (
        correct_per_prompt.assign(accuracy=correct_per_prompt["n_correct"] / correct_per_prompt["n_samples"])
        .set_index(["checkpoint", "task", "prompt_id"])
        .sort_index()
    )
    jobs: dict[tuple[str, str, str], np.ndarray] = {}
    firsts: dict[tuple[str, str, str], np.ndarray] = {}
    for on, off in pairs:
        for task in sorted(set(correct_per_prompt["task"])):
            try:
                left, right = indexed.loc[(on, task)], indexed.loc[(off, task)]
            except KeyError:
                continue
            joined = left.merge(right, how="inner", left_index=True, right_index=True, suffixes=("_on", "_off"))
            jobs[(on, off, task)] = joined[["accuracy_on", "accuracy_off"]].to_numpy(dtype=np.float64).T
            firsts[(on, off, task)] = joined[["first_correct_on", "first_correct_off"]].to_numpy(dtype=np.float64).T
    estimates = bootstrap_means(jobs, _difference, settings)
    out = {}
    for key, values in jobs.items():
        first = firsts[key]
        estimate = estimates[key]
        empty = values.shape[1] == 0
        out[key] = {
            "n_prompts_accuracy": int(values.shape[1]),
            "accuracy_first_on": float("nan") if empty else float(first[0].mean()),
            "accuracy_first_suppressed": float("nan") if empty else float(first[1].mean()),
            "accuracy_on": float("nan") if empty else float(values[0].mean()),
            "accuracy_suppressed": float("nan") if empty else float(values[1].mean()),
            "accuracy_delta": float(estimate.point[0]),
            "accuracy_delta_ci_low": float(estimate.low[0]),
            "accuracy_delta_ci_high": float(estimate.high[0]),
        }
    return out
