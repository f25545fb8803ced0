"""Confidence intervals by resampling prompts (the unit every divtrace comparison is paired on)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class BootstrapSettings:
    """How CIs are computed: percentile bootstrap over prompts."""

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 1234


def bootstrap_mean_ci(values: np.ndarray, settings: BootstrapSettings) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (NaNs dropped); (nan, nan) with fewer than 2 values.

    The generator is seeded from ``settings.seed`` on every call, so a CI depends only on its inputs.
    """
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return float("nan"), float("nan")
    result = stats.bootstrap(
        (finite,),
        np.mean,
        n_resamples=settings.resamples,
        confidence_level=settings.confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(settings.seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
