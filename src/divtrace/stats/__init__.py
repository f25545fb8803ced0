"""The statistics every divtrace table shares, each defined once: pass@k and its levels, the diversity-vs-K curve
levels, and percentile-bootstrap CIs over prompts (one engine: :func:`resample_counts` draws every resample,
:func:`percentile_interval` makes every CI)."""

from divtrace.stats.bootstrap import (
    BootstrapSettings,
    Estimate,
    MeanCI,
    bootstrap_means,
    cell_mean_cis,
    masked_means,
    percentile_interval,
    resample_counts,
)
from divtrace.stats.passk import (
    CURVE_FIRST_LEVEL,
    PASS_AT_K_LEVELS,
    cell_k_levels,
    curve_levels,
    default_k_levels,
    mean_pass_at_k,
    pass_at_k,
    pass_at_k_per_prompt,
)

__all__ = [
    "CURVE_FIRST_LEVEL",
    "PASS_AT_K_LEVELS",
    "BootstrapSettings",
    "Estimate",
    "MeanCI",
    "bootstrap_means",
    "cell_k_levels",
    "cell_mean_cis",
    "curve_levels",
    "default_k_levels",
    "masked_means",
    "mean_pass_at_k",
    "pass_at_k",
    "pass_at_k_per_prompt",
    "percentile_interval",
    "resample_counts",
]
