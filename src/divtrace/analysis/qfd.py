"""Quality-filtered decomposition: is a diversity loss wrong answers removed, or correct answers narrowing?

Definitions (the paper's Table 14 and Figure 6, and its script ``quality_filtered_diversity.py``). For a verifiable
task and a metric, D_all is a prompt's diversity over all K responses (score subset ``all``) and D_correct its
diversity over the correct responses only (subset ``correct``: prompts with K_c >= 2 correct, the *qualifying*
prompts). Any metric the scorer gives on the ``correct`` subset is decomposed: SBERT, and Vendi (V_c) when present.

Comparisons: base -> c for every tree checkpoint c after the base, and parent -> v for every variant v (a
re-sampling of its parent's weights, e.g. thinking suppressed: ``comparison = "variant"``). Below, "reference" is
the base or the variant's parent.

Pairing (``pairing``, recorded in the table and the analysis settings):

- ``"unpaired"`` (default, the paper's form): each checkpoint's D_all is averaged over *its own* prompts with a
  D_all value (the reference script averages every prompt of the checkpoint's file, skipping only NaN values, i.e.
  prompts with fewer than 2 outputs; prompts without a gold answer stay in D_all there, as every prompt does here),
  and each checkpoint's D_correct over *its own* qualifying prompts.
- ``"paired"``: all four means over the prompts qualifying in both checkpoints (with D_all in both).

ΔD_all = D_all(c) - D_all(ref), ΔD_correct = D_correct(c) - D_correct(ref). Shares of ΔD_all: residual
("genuine narrowing") = ΔD_correct / ΔD_all, quality-control = (ΔD_all - ΔD_correct) / ΔD_all = 1 - residual.
A share outside [0, 1] (ΔD_correct larger than ΔD_all, or of the opposite sign: diversity among the correct answers
grew while all answers narrowed) is kept and flagged in ``share_outside_unit``. Every share that is defined
arithmetically is given with its CI, as the paper shows every share; when ΔD_all's CI includes 0 the row is flagged
(``delta_all_ci_includes_zero``, :data:`CI_INCLUDES_ZERO_EXPLANATION`), since the shares then divide by a change
that may be none. A share is undefined (NaN, the reason in ``note``) only when a D_correct rests on fewer than 2
qualifying prompts or ΔD_all is exactly 0.

Bootstrap: one percentile bootstrap over the shared prompt index of the comparison (unpaired: every prompt with a
value in either checkpoint; paired: the prompts qualifying in both). Each resample draws that many prompts
with replacement, *jointly* for both checkpoints; each of the four means is then taken over the drawn prompts that
belong to its own set (a prompt drawn twice counts twice), so each checkpoint's qualifying set is resampled within
the shared index and its size varies across resamples as it would across prompt samples, while prompts scored for
both checkpoints stay paired. A resample that draws none of a set's prompts gives NaN and is skipped by the
percentile (only possible for very small sets). Paired, this is the ordinary paired bootstrap of the means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from divtrace.analysis.collapse import excludes_zero
from divtrace.errors import DivtraceError
from divtrace.stats.bootstrap import BootstrapSettings, masked_means, percentile_interval, resample_counts
from divtrace.study.lineage import LineageGraph

Pairing = Literal["unpaired", "paired"]
PAIRINGS: tuple[str, ...] = ("unpaired", "paired")

QFD_COLUMNS = [
    "reference", "checkpoint", "comparison", "base", "stage", "task", "metric", "pairing",
    "n_prompts_reference", "n_prompts_checkpoint",
    "n_qualifying_reference", "n_qualifying_checkpoint", "n_qualifying_both",
    "mean_n_correct_reference", "mean_n_correct_checkpoint",
    "d_all_reference", "d_all_checkpoint", "d_correct_reference", "d_correct_checkpoint",
    "delta_all", "delta_all_ci_low", "delta_all_ci_high",
    "delta_correct", "delta_correct_ci_low", "delta_correct_ci_high",
    "residual_share", "residual_share_ci_low", "residual_share_ci_high",
    "quality_control_share", "quality_control_share_ci_low", "quality_control_share_ci_high",
    "share_outside_unit", "delta_all_ci_includes_zero", "note",
]  # fmt: skip

#: |ΔD_all| at or below this (relative to the reference's mean D_all, at least 1) counts as no change at all.
ZERO_TOLERANCE = 1e-12

#: The one-sentence explanation of a share outside [0, 1] (the report and summary.md quote it).
OUTSIDE_UNIT_EXPLANATION = (
    "A share outside [0, 1] means ΔD_correct is larger than ΔD_all or of the opposite sign (for instance diversity "
    "among the correct answers grew while diversity over all answers fell), so the two parts are not fractions of "
    "one loss: the residual is negative and the quality-control part exceeds 100%, or the other way round."
)


#: The one-sentence explanation of ``delta_all_ci_includes_zero`` (the report and summary.md quote it).
CI_INCLUDES_ZERO_EXPLANATION = (
    "ΔD_all's 95% CI includes 0, so the change being split is not distinguishable from no change: the shares are "
    "shown, with their (wide) intervals, but they divide by a change that may be none and apportion no clear change."
)


def qfd_comparisons(graph: LineageGraph) -> list[tuple[str, str, str]]:
    """``(reference, checkpoint, comparison)``: (base, c, "lineage") for each tree checkpoint after its base, then
    (parent, v, "variant") for each variant, in definition order."""
    pairs = [(graph.base_of(n.name), n.name, "lineage") for n in graph.tree_nodes() if n.parent is not None]
    pairs += [(str(n.variant_of), n.name, "variant") for n in graph.variants()]
    return pairs


def _qfd_stats(mu: np.ndarray) -> np.ndarray:
    """Means (all ref, all c, correct ref, correct c) -> ΔD_all, ΔD_correct, residual share."""
    delta_all = mu[1] - mu[0]
    delta_correct = mu[3] - mu[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(delta_all == 0, np.nan, delta_correct / delta_all)  # no change: no share (skipped)
    return np.stack([delta_all, delta_correct, share])


def quality_filtered_decomposition(
    wide_all: Mapping[tuple[str, str], pd.DataFrame],
    wide_correct: Mapping[tuple[str, str], pd.DataFrame],
    n_correct: Mapping[tuple[str, str], pd.DataFrame],
    graph: LineageGraph,
    settings: BootstrapSettings,
    *,
    pairing: Pairing = "unpaired",
) -> pd.DataFrame:
    """ΔD_all, ΔD_correct and their shares per comparison (see :func:`qfd_comparisons`) x task x metric.

    Args:
        wide_all: subset ``all`` from :func:`divtrace.analysis.collapse.wide_scores`.
        wide_correct: subset ``correct`` likewise; a (task, metric) without any ``correct`` row is not verifiable
            and has no rows here. A prompt qualifies for a checkpoint when its ``correct`` value is finite.
        n_correct: ``n_outputs`` of the ``correct`` rows in the same wide shape (K_c per prompt).
        graph: the lineage graph.
        settings: bootstrap settings (see the module docstring for the resampling).
        pairing: ``"unpaired"`` (the paper's form, default) or ``"paired"``.

    Returns columns :data:`QFD_COLUMNS`. ``reference`` is the base (``comparison = "lineage"``) or the variant's
    parent (``"variant"``); ``base`` is the lineage's base either way. Counts: ``n_prompts_*`` the prompts each D_all
    is averaged over; ``n_qualifying_*`` each checkpoint's own qualifying prompts, ``n_qualifying_both`` those
    qualifying in both (in paired mode every mean is over these). ``mean_n_correct_*``: mean K_c over the prompts
    of that checkpoint's D_correct. ``d_*``: the four means; ``delta_*``, ``residual_share`` and
    ``quality_control_share`` with percentile CIs (a resample whose ΔD_all is exactly 0 is skipped). The shares are
    NaN, with the reason in ``note``, only when a D_correct rests on fewer than 2 prompts or ΔD_all is 0.
    ``delta_all_ci_includes_zero`` is True when ΔD_all's CI includes 0 or could not be computed: the shares are
    still given but split no clear change (:data:`CI_INCLUDES_ZERO_EXPLANATION`). ``share_outside_unit`` is True
    when defined shares fall outside [0, 1] (:data:`OUTSIDE_UNIT_EXPLANATION`). ``note`` also says when the shares
    decompose a gain (ΔD_all > 0) and when the metric is K-dependent (Vendi: D_correct is over K_c < K outputs, so
    ΔD_correct also moves with the number of correct outputs; compare ``mean_n_correct_*``). Empty ``note``:
    nothing to add.

    Raises:
        DivtraceError: ``pairing`` is not one of :data:`PAIRINGS`.
    """
    if pairing not in PAIRINGS:
        raise DivtraceError(f"qfd pairing must be one of {list(PAIRINGS)}, got {pairing!r}")
    comparisons = qfd_comparisons(graph)
    counts_by_n: dict[int, np.ndarray] = {}  # every group draws from the same seed: same n, same resamples
    records = []
    for (task, metric), correct in sorted(wide_correct.items()):
        frame = wide_all.get((task, metric))
        if frame is None:
            continue
        index = frame.index.union(correct.index).sort_values()  # prompt_id order: resamples ignore row order
        frame = frame.reindex(index)
        correct = correct.reindex(index)
        counts = n_correct.get((task, metric), pd.DataFrame(index=index)).reindex(index)
        for reference, name, comparison in comparisons:
            if reference not in frame.columns or name not in frame.columns:
                continue
            values = np.stack(
                [
                    _column(frame, reference),
                    _column(frame, name),
                    _column(correct, reference),
                    _column(correct, name),
                ]
            )
            finite = np.isfinite(values)
            both = finite.all(axis=0)
            if pairing == "paired":
                masks = np.broadcast_to(both, values.shape).copy()
                shared = both
            else:
                masks = finite
                shared = finite.any(axis=0)
            values, masks = values[:, shared], masks[:, shared]
            used = masks.sum(axis=1)
            point, low, high = _estimate(values, masks, settings, counts_by_n)
            d_all_reference = _masked_mean(values[0], masks[0])
            k_values = np.stack([_column(counts, reference), _column(counts, name)])[:, shared]
            records.append(
                {
                    "reference": reference,
                    "checkpoint": name,
                    "comparison": comparison,
                    "base": graph.base_of(name),
                    "stage": graph.nodes[name].stage,
                    "task": task,
                    "metric": metric,
                    "pairing": pairing,
                    "n_prompts_reference": int(used[0]),
                    "n_prompts_checkpoint": int(used[1]),
                    "n_qualifying_reference": int(finite[2].sum()),
                    "n_qualifying_checkpoint": int(finite[3].sum()),
                    "n_qualifying_both": int(both.sum()),
                    "mean_n_correct_reference": _masked_mean(k_values[0], masks[2]),
                    "mean_n_correct_checkpoint": _masked_mean(k_values[1], masks[3]),
                    "d_all_reference": d_all_reference,
                    "d_all_checkpoint": _masked_mean(values[1], masks[1]),
                    "d_correct_reference": _masked_mean(values[2], masks[2]),
                    "d_correct_checkpoint": _masked_mean(values[3], masks[3]),
                    **_shares(_Pair(point, low, high, used, reference, name, pairing, d_all_reference), metric),
                }
            )
    table = pd.DataFrame(records, columns=QFD_COLUMNS)
    table["share_outside_unit"] = table["share_outside_unit"].astype(bool)
    table["delta_all_ci_includes_zero"] = table["delta_all_ci_includes_zero"].astype(bool)
    return table.sort_values(["task", "metric"], kind="stable").reset_index(drop=True)


def _estimate(
    values: np.ndarray, masks: np.ndarray, settings: BootstrapSettings, cache: dict[int, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimates and percentile CIs of :func:`_qfd_stats` (see the module docstring for the resampling).

    The resamples are drawn from a generator seeded with ``settings.seed`` for each group (so a CI depends only on
    its own inputs); ``cache`` keeps them per number of prompts, since equal n gives equal draws.
    """
    n = values.shape[1]
    point = _qfd_stats(masked_means(values, masks, np.ones(n)))
    if n < 2:
        nan = np.full_like(point, np.nan)
        return point, nan, nan.copy()
    if n not in cache:
        if len(cache) >= 8:
            cache.clear()  # bounded memory: a paired decomposition has a different n almost everywhere
        cache[n] = resample_counts(n, settings.resamples, np.random.default_rng(settings.seed))
    counts = cache[n]
    low, high = percentile_interval(_qfd_stats(masked_means(values, masks, counts)), settings.confidence)
    return point, low, high


@dataclass(frozen=True)
class _Pair:
    """The bootstrap estimate of one (reference, checkpoint) row: point/low/high of (ΔD_all, ΔD_correct, share),
    prompts used per mask, the two checkpoints' names, the pairing and the reference's mean D_all."""

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray
    used: np.ndarray
    reference: str
    name: str
    pairing: str
    mean_reference_all: float


def _shares(pair: _Pair, metric: str) -> dict[str, object]:
    """The delta, share, flag and note fields of one row."""
    point, low, high = pair.point, pair.low, pair.high
    delta_all, delta_correct, share = (float(x) for x in point)
    share_low, share_high = float(low[2]), float(high[2])
    notes = []
    reason = _undefined_reason(pair)
    if reason:
        notes.append(reason)
        share = share_low = share_high = float("nan")
    elif delta_all > 0:
        notes.append("diversity increased: the shares decompose a gain, not a loss")
    outside = bool(np.isfinite(share) and (share < 0 or share > 1))
    if outside:
        if delta_correct > 0 > delta_all:
            why = "of the opposite sign: diversity among the correct answers grew while all answers narrowed"
        elif delta_correct < 0 < delta_all:
            why = "of the opposite sign: diversity among the correct answers fell while all answers diversified"
        else:
            why = "larger than ΔD_all: the correct answers changed more than all answers did"
        notes.append(f"share outside [0, 1]: ΔD_correct is {why}")
    if _k_dependent(metric):
        notes.append(
            "K-dependent metric: D_correct is over the K_c correct outputs, not K, so ΔD_correct also moves with "
            "the number of correct outputs (mean_n_correct_*)"
        )
    return {
        "delta_all": delta_all,
        "delta_all_ci_low": float(low[0]),
        "delta_all_ci_high": float(high[0]),
        "delta_correct": delta_correct,
        "delta_correct_ci_low": float(low[1]),
        "delta_correct_ci_high": float(high[1]),
        "residual_share": share,
        "residual_share_ci_low": share_low,
        "residual_share_ci_high": share_high,
        "quality_control_share": 1.0 - share,
        "quality_control_share_ci_low": 1.0 - share_high,
        "quality_control_share_ci_high": 1.0 - share_low,
        "share_outside_unit": outside,
        "delta_all_ci_includes_zero": not excludes_zero(float(low[0]), float(high[0])),
        "note": "; ".join(notes),
    }


def _undefined_reason(pair: _Pair) -> str:
    """Why the shares are undefined ('' when they are defined)."""
    point, used = pair.point, pair.used
    if pair.pairing == "paired" and used[2] < 2:
        return "fewer than 2 prompts with >= 2 correct outputs in both checkpoints: shares undefined"
    short = [who for who, n in ((pair.reference, used[2]), (pair.name, used[3])) if n < 2]
    if short:
        return f"fewer than 2 prompts with >= 2 correct outputs in {' and '.join(short)}: shares undefined"
    delta_all = float(point[0])
    if not np.isfinite(delta_all) or abs(delta_all) <= ZERO_TOLERANCE * max(1.0, abs(pair.mean_reference_all)):
        return "delta_all is 0: no change to decompose, shares undefined"
    return ""


def _k_dependent(metric: str) -> bool:
    """Whether a registered metric depends on the number of outputs (Vendi); False for an unknown name."""
    from divtrace.score.metrics import metric_class

    try:
        return bool(metric_class(metric).k_dependent)
    except DivtraceError:
        return False


def _column(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return frame[column].to_numpy(dtype=np.float64)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
    chosen = values[mask & np.isfinite(values)]
    return float(chosen.mean()) if chosen.size else float("nan")
