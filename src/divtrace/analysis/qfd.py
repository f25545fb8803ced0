"""Quality-filtered decomposition: is a diversity loss wrong answers removed, or correct answers narrowing?

For a verifiable task, D_all is a prompt's diversity over all K responses and D_correct its diversity over the
correct responses only (defined for prompts with at least 2 correct). For base -> c, on the prompts valid in both
(>= 2 correct for base and for c): ΔD_all = mean D_all(c) - mean D_all(base) and ΔD_correct likewise over
D_correct. The residual share ΔD_correct / ΔD_all is the part of the loss that remains among correct answers; the
quality-control share 1 - residual share is the part explained by removing wrong answers. Both deltas are computed
on the same prompts, so the shares compare like with like; ``delta_all_all_prompts`` also gives ΔD_all on every
paired prompt for reference. K-dependent metrics (Vendi) are subsampled to equal K by the scorer; this module
records the mean number of correct outputs per valid prompt.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import pandas as pd

from divtrace.analysis.lineage import Estimate, bootstrap_means, excludes_zero
from divtrace.lineage import LineageGraph
from divtrace.scoring.bootstrap import BootstrapSettings

QFD_COLUMNS = [
    "base", "checkpoint", "stage", "task", "metric",
    "n_prompts_total", "n_prompts_unpaired", "n_valid_base", "n_valid_checkpoint", "n_valid_both", "n_dropped",
    "mean_n_correct_base", "mean_n_correct_checkpoint",
    "delta_all_all_prompts", "delta_all", "delta_all_ci_low", "delta_all_ci_high",
    "delta_correct", "delta_correct_ci_low", "delta_correct_ci_high",
    "residual_share", "residual_share_ci_low", "residual_share_ci_high",
    "quality_control_share", "quality_control_share_ci_low", "quality_control_share_ci_high", "note",
]  # fmt: skip

#: |ΔD_all| at or below this (relative to the base's mean D_all, at least 1) counts as no change at all.
ZERO_TOLERANCE = 1e-12


def _qfd_stats(mu: np.ndarray) -> np.ndarray:
    """Samples (all base, all c, correct base, correct c): ΔD_all, ΔD_correct, residual share."""
    delta_all = mu[1] - mu[0]
    delta_correct = mu[3] - mu[2]
    return np.stack([delta_all, delta_correct, delta_correct / delta_all])


def quality_filtered_decomposition(
    wide_all: Mapping[tuple[str, str], pd.DataFrame],
    wide_correct: Mapping[tuple[str, str], pd.DataFrame],
    n_correct: Mapping[tuple[str, str], pd.DataFrame],
    graph: LineageGraph,
    settings: BootstrapSettings,
) -> pd.DataFrame:
    """ΔD_all, ΔD_correct and their shares for base -> c, every non-base tree checkpoint c, per task x metric.

    Args:
        wide_all: subset ``all`` from :func:`divtrace.analysis.lineage.wide_scores`.
        wide_correct: subset ``correct`` likewise; a (task, metric) without any ``correct`` row is not verifiable
            and has no rows here. A prompt is valid for a checkpoint when its ``correct`` value is finite.
        n_correct: ``n_outputs`` of the ``correct`` rows in the same wide shape (the number of correct outputs).
        graph: the lineage graph (variants are not decomposed).
        settings: bootstrap settings.

    Returns columns :data:`QFD_COLUMNS`. Counts: ``n_prompts_total`` prompts with D_all finite for both,
    ``n_prompts_unpaired`` with D_all for only one, ``n_valid_base``/``n_valid_checkpoint``/``n_valid_both``
    among the total, ``n_dropped`` = total - valid in both (< 2 correct in base or c). ``delta_all`` and
    ``delta_correct`` (with paired bootstrap CIs) are on the valid-in-both prompts. ``residual_share`` =
    delta_correct / delta_all (CI: ratio over the same resamples), ``quality_control_share`` = 1 - it. The shares
    are NaN, with the reason in ``note``, when fewer than 2 prompts are valid in both, when ΔD_all is 0, or when
    the CI of ΔD_all includes 0 (no change to decompose: a ratio over a near-zero denominator means nothing).
    ``note`` also flags a diversity gain (ΔD_all > 0). Empty ``note`` = the shares are well defined.
    """
    jobs: dict[Hashable, np.ndarray] = {}
    meta: dict[Hashable, dict[str, object]] = {}
    checkpoints = [node.name for node in graph.tree_nodes() if node.parent is not None]
    for (task, metric), correct in wide_correct.items():
        frame = wide_all.get((task, metric))
        if frame is None:
            continue
        correct = correct.reindex(frame.index)
        counts = n_correct.get((task, metric), pd.DataFrame(index=frame.index)).reindex(frame.index)
        for name in checkpoints:
            base = graph.base_of(name)
            if base not in frame.columns or name not in frame.columns:
                continue
            all_values = frame[[base, name]].to_numpy(dtype=np.float64)
            paired = np.isfinite(all_values).all(axis=1)
            unpaired = int((np.isfinite(all_values).any(axis=1) & ~paired).sum())
            valid_base = paired & _finite(correct, base)
            valid_name = paired & _finite(correct, name)
            both = valid_base & valid_name
            correct_values = correct.reindex(columns=[base, name]).to_numpy(dtype=np.float64)
            values = np.concatenate([all_values[both], correct_values[both]], axis=1).T  # (4, n_valid_both)
            key = (name, task, metric)
            jobs[key] = values
            meta[key] = {
                "base": base,
                "n_prompts_total": int(paired.sum()),
                "n_prompts_unpaired": unpaired,
                "n_valid_base": int(valid_base.sum()),
                "n_valid_checkpoint": int(valid_name.sum()),
                "n_valid_both": int(both.sum()),
                "n_dropped": int(paired.sum() - both.sum()),
                "mean_n_correct_base": _masked_mean(counts, base, both),
                "mean_n_correct_checkpoint": _masked_mean(counts, name, both),
                "delta_all_all_prompts": float(all_values[paired, 1].mean() - all_values[paired, 0].mean())
                if paired.any()
                else float("nan"),
            }
    estimates = bootstrap_means(jobs, _qfd_stats, settings)
    records = []
    for key, info in meta.items():
        name, task, metric = key
        estimate = estimates[key]
        delta_all, delta_correct, share = (float(x) for x in estimate.point)
        share_low, share_high = float(estimate.low[2]), float(estimate.high[2])
        note = _share_note(int(jobs[key].shape[1]), estimate, _mean_base_all(jobs[key]))
        if note and not note.startswith("diversity increased"):
            share = share_low = share_high = float("nan")
        records.append(
            {
                **info,
                "checkpoint": name,
                "stage": graph.nodes[name].stage,
                "task": task,
                "metric": metric,
                "delta_all": delta_all,
                "delta_all_ci_low": float(estimate.low[0]),
                "delta_all_ci_high": float(estimate.high[0]),
                "delta_correct": delta_correct,
                "delta_correct_ci_low": float(estimate.low[1]),
                "delta_correct_ci_high": float(estimate.high[1]),
                "residual_share": share,
                "residual_share_ci_low": share_low,
                "residual_share_ci_high": share_high,
                "quality_control_share": 1.0 - share,
                "quality_control_share_ci_low": 1.0 - share_high,
                "quality_control_share_ci_high": 1.0 - share_low,
                "note": note,
            }
        )
    frame = pd.DataFrame(records, columns=QFD_COLUMNS)
    return frame.sort_values(["task", "metric"], kind="stable").reset_index(drop=True)


def _share_note(n_both: int, estimate: Estimate, mean_base_all: float) -> str:
    """Why the shares are undefined, or that they decompose a gain ('' when they are well defined)."""
    delta_all = float(estimate.point[0])
    if n_both < 2:
        return "fewer than 2 prompts with >= 2 correct outputs in both checkpoints: shares undefined"
    if not np.isfinite(delta_all) or abs(delta_all) <= ZERO_TOLERANCE * max(1.0, abs(mean_base_all)):
        return "delta_all is 0: no change to decompose, shares undefined"
    if not excludes_zero(estimate.low[0], estimate.high[0]):
        return "delta_all CI includes 0: no clear change to decompose, shares undefined"
    if delta_all > 0:
        return "diversity increased: the shares decompose a gain, not a loss"
    return ""


def _finite(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return np.isfinite(frame[column].to_numpy(dtype=np.float64))


def _masked_mean(frame: pd.DataFrame, column: str, mask: np.ndarray) -> float:
    if column not in frame.columns or not mask.any():
        return float("nan")
    return float(np.nanmean(frame[column].to_numpy(dtype=np.float64)[mask]))


def _mean_base_all(values: np.ndarray) -> float:
    return float(values[0].mean()) if values.shape[1] else float("nan")
