"""Percentile-bootstrap confidence intervals over prompts (the unit every divtrace comparison is paired on).

One engine for every CI: :func:`resample_counts` draws the resamples (how often each prompt is drawn) and
:func:`percentile_interval` turns the statistic over them into the CI. On it: :func:`bootstrap_means` (statistics of
per-sample means, paired across the samples compared, many groups in one matrix product), :func:`cell_mean_cis`
(the mean of each cell with its CI: the scorer's summary, the analysis' checkpoint means and diversity-vs-K curves),
:func:`masked_means` (each row's mean over its own prompts: the quality-filtered decomposition), and Table 1's
bootstrap stratified by task (:mod:`divtrace.analysis.table1`).

Written by hand because no library does all of it: ``scipy.stats.bootstrap`` draws the same resamples
(``rng.integers(0, n, (resamples, n))`` in one batch) and, as of scipy 1.17, takes the same percentile
(``scipy.stats.quantile``, used here), but it makes the whole CI NaN (with a ``DegenerateDataWarning``) as soon as
one resample's statistic is NaN, with no option to skip those resamples, which masked means and ratios of means need
(a resample that drew none of a row's prompts, or whose base mean is 0); and it hands the statistic index arrays,
which would only be turned back into these counts. So the CIs are scipy's percentile bootstrap, NaN resamples
skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class BootstrapSettings:
    """How CIs are computed: percentile bootstrap over prompts."""

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 1234


#: Combines per-sample means, shape (S, ...), into the statistics of one comparison, shape (m, ...).
MeanCombiner = Callable[[np.ndarray], np.ndarray]
_Key = TypeVar("_Key", bound=Hashable)

#: Most bootstrap means one matrix product may hold (samples x groups x resamples).
_BOOTSTRAP_BUDGET = 8_000_000


@dataclass(frozen=True)
class Estimate:
    """Point estimates of a comparison's statistics and their percentile bootstrap CI (arrays of shape (m,))."""

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray


def bootstrap_means(
    jobs: Mapping[_Key, np.ndarray], combine: MeanCombiner, settings: BootstrapSettings
) -> dict[_Key, Estimate]:
    """Point estimates and paired percentile bootstrap CIs of statistics of per-sample means, many groups at once.

    Args:
        jobs: ``{key: values}``, each ``values`` of shape (S, n): S paired samples (checkpoints, subsets) over the
            same n prompts, all finite. Every job must have the same S.
        combine: maps means of shape (S, ...) to statistics of shape (m, ...), elementwise over the trailing axes
            (e.g. ``lambda mu: np.stack([mu[1] - mu[0]])``).
        settings: resamples, confidence level and seed.

    Returns:
        ``{key: Estimate}`` with arrays of shape (m,). The point estimate is ``combine`` of the plain means.
        The CI resamples the prompts (jointly across the S samples, :func:`resample_counts`) from a generator
        seeded from ``settings.seed`` for every group, so a CI depends only on its own inputs and equals (to
        rounding, see :func:`cell_mean_cis`) what a separate call per group would give; a resample whose statistic
        is NaN (a ratio over a resample whose base mean is 0) is skipped (:func:`percentile_interval`). Groups with
        the same n share the resamples and matrix products. With n < 2 the CI is NaN; with n = 0 the point is NaN
        too.
    """
    by_n: dict[int, list[_Key]] = {}
    for key, values in jobs.items():
        by_n.setdefault(int(values.shape[-1]), []).append(key)
    out: dict[_Key, Estimate] = {}
    for n, keys in by_n.items():
        stacked = np.stack([jobs[key] for key in keys], axis=1)  # (S, G, n)
        samples = stacked.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            point = combine(stacked.mean(axis=-1)) if n else None
        if point is None:
            m = combine(np.ones((samples, 1))).shape[0]
            point = np.full((m, len(keys)), np.nan)
        low = np.full_like(point, np.nan)
        high = np.full_like(point, np.nan)
        if n >= 2:
            counts = resample_counts(n, settings.resamples, np.random.default_rng(settings.seed))
            per_call = max(1, _BOOTSTRAP_BUDGET // (samples * settings.resamples))
            for start in range(0, len(keys), per_call):
                chunk = slice(start, start + per_call)
                flat = stacked[:, chunk, :].reshape(-1, n)  # (S * G, n)
                means = (flat @ counts.T / n).reshape(samples, -1, settings.resamples)  # (S, G, resamples)
                with np.errstate(divide="ignore", invalid="ignore"):
                    low[:, chunk], high[:, chunk] = percentile_interval(combine(means), settings.confidence)
        for position, key in enumerate(keys):
            out[key] = Estimate(point[:, position], low[:, position], high[:, position])
    return out


def resample_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n`` prompts is drawn in each resample: shape (resamples, n), float.

    Each resample draws ``n`` prompt indices uniformly with replacement (the ordinary nonparametric bootstrap), all
    of them in one ``rng.integers(0, n, (resamples, n))``, the draws of ``scipy.stats.bootstrap`` with the same
    generator; a mean over a resample is then ``counts @ values / counts.sum()``.
    """
    draws = rng.integers(0, n, size=(resamples, n))
    offsets = (draws + n * np.arange(resamples)[:, None]).ravel()
    return np.bincount(offsets, minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def masked_means(values: np.ndarray, masks: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-row means of ``values`` (S, n) over the prompts of each row's ``masks`` (S, n), weighted by ``counts``.

    ``counts`` is (B, n) (from :func:`resample_counts`) or (n,) (plain means: ones). Returns (S, B) or (S,);
    NaN where a row has no prompt of weight > 0 (a resample that drew none of its prompts).
    """
    filled = np.where(masks, values, 0.0)
    weights = masks.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        means: np.ndarray = (filled @ counts.T) / (weights @ counts.T)
    return means


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The percentile CI of bootstrap statistics along the last axis (the resamples), as (low, high).

    The ``(1 - confidence) / 2`` and ``1 - (1 - confidence) / 2`` quantiles (``scipy.stats.quantile``, linear
    interpolation, as ``scipy.stats.bootstrap(method="percentile")`` takes them) over the resamples whose statistic
    is not NaN; NaN where every resample is NaN. Infinite statistics take part (an end can be +-inf).
    """
    alpha = (1.0 - confidence) / 2.0
    ends = stats.quantile(samples, np.array([alpha, 1.0 - alpha]), axis=-1, nan_policy="omit")
    return np.asarray(ends[..., 0], dtype=np.float64), np.asarray(ends[..., 1], dtype=np.float64)


@dataclass(frozen=True)
class MeanCI:
    """The mean of one cell's values and the percentile bootstrap CI of that mean (NaN where undefined)."""

    mean: float
    low: float
    high: float


def cell_mean_cis(cells: Mapping[Hashable, np.ndarray], settings: BootstrapSettings) -> dict[Hashable, MeanCI]:
    """The mean of each cell's values (1-D, over prompts; NaNs dropped) with its percentile bootstrap CI.

    The one definition of "mean over prompts with a 95% CI" of every divtrace table. Each cell is bootstrapped on
    its own (resampling its prompts, generator seeded from ``settings.seed``), so a cell's CI depends only on its
    values in the order given, up to rounding: cells of equal size share one vectorised call
    (:func:`bootstrap_means`), whose matrix product may round the last bit differently from a call with the cell
    alone; pass one cell per call where that bit must not depend on the other cells. A cell with fewer than 2
    values has a NaN CI, with none a NaN mean too.
    """
    jobs = {}
    for key, values in cells.items():
        values = np.asarray(values, dtype=np.float64)
        jobs[key] = values[np.isfinite(values)][None, :]
    estimates = bootstrap_means(jobs, _identity, settings)
    return {
        key: MeanCI(float(estimate.point[0]), float(estimate.low[0]), float(estimate.high[0]))
        for key, estimate in estimates.items()
    }


def _identity(mu: np.ndarray) -> np.ndarray:
    return mu
