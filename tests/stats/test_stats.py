"""divtrace.stats: the shared formulas (pass@k, levels, bootstrap CIs)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from divtrace.stats import (
    PASS_AT_K_LEVELS,
    BootstrapSettings,
    bootstrap_means,
    cell_mean_cis,
    curve_levels,
    default_k_levels,
    pass_at_k,
    pass_at_k_per_prompt,
    percentile_interval,
)


def test_pass_at_k_per_prompt_is_the_scalar_estimator_exactly() -> None:
    n = np.array([[16, 16, 6], [4, 3, 1]])
    c = np.array([[0, 7, 6], [2, 3, 0]])
    for k in (1, 2, 4, 5):
        values = pass_at_k_per_prompt(n, c, k)
        assert values.shape == n.shape
        for index in np.ndindex(n.shape):
            if n[index] >= k:
                assert values[index] == pass_at_k(int(n[index]), int(c[index]), k)  # bit for bit
            else:
                assert np.isnan(values[index])


def test_pass_at_k_per_prompt_of_many_prompts_with_repeated_counts_is_the_scalar_estimator() -> None:
    rng = np.random.default_rng(3)
    n = rng.integers(1, 17, size=5000)  # K from 1 to 16: each (n, c) pair repeats many times
    c = rng.integers(0, n + 1)
    for k in (1, 5, 16):
        values = pass_at_k_per_prompt(n, c, k)
        expected = [pass_at_k(int(a), int(b), k) if a >= k else np.nan for a, b in zip(n, c, strict=True)]
        np.testing.assert_array_equal(values, np.array(expected))  # bit for bit, NaN where n < k
    assert np.isnan(pass_at_k_per_prompt(np.array([2, 3]), np.array([1, 1]), 4)).all()  # no prompt has k samples


def test_pass_at_k_per_prompt_rejects_bad_budgets() -> None:
    with pytest.raises(ValueError):
        pass_at_k_per_prompt(np.array([4]), np.array([1]), 0)
    with pytest.raises(ValueError):
        pass_at_k_per_prompt(np.array([4]), np.array([5]), 2)


def test_curve_levels_are_the_powers_of_two_below_k() -> None:
    assert curve_levels(16) == [2, 4, 8]
    assert curve_levels(17) == [2, 4, 8, 16]
    assert curve_levels(2) == []
    assert curve_levels(0) == []


def test_curve_levels_are_pass_at_k_levels_without_5_and_10() -> None:
    # the known difference: the scorer's curves stop at powers of two, pass@k adds the reference's 5 and 10
    pass_levels = set(default_k_levels(16))
    curve = set(curve_levels(16)) | {16}
    assert curve <= pass_levels
    assert pass_levels - curve == {1, 5, 10}
    assert set(PASS_AT_K_LEVELS) - curve == {1, 5, 10}


def test_cell_mean_cis_drop_nans_and_leave_small_cells_without_a_ci() -> None:
    rng = np.random.default_rng(0)
    values = rng.random(30)
    settings = BootstrapSettings(resamples=200)
    cells = {"a": values, "a+nan": np.append(values, np.nan), "one": np.array([0.5, np.nan]), "none": np.array([])}
    out = cell_mean_cis(cells, settings)
    assert out["a"] == out["a+nan"]
    assert out["a"].mean == np.mean(values) and out["a"].low < out["a"].mean < out["a"].high
    assert out["one"].mean == 0.5 and np.isnan(out["one"].low) and np.isnan(out["one"].high)
    assert np.isnan(out["none"].mean) and np.isnan(out["none"].low)


def test_cell_mean_cis_of_a_cell_do_not_depend_on_the_other_cells() -> None:
    rng = np.random.default_rng(1)
    settings = BootstrapSettings(resamples=200, seed=9)
    a, b = rng.random(20), rng.random(20)
    together, alone = cell_mean_cis({"a": a, "b": b}, settings)["a"], cell_mean_cis({"a": a}, settings)["a"]
    assert together.mean == alone.mean
    # stacked into one matrix product, the CI may differ in the last bit only
    assert (together.low, together.high) == pytest.approx((alone.low, alone.high), abs=1e-12)


def test_bootstrap_means_is_scipys_paired_percentile_bootstrap() -> None:
    """Same generator, same draws, same percentile: scipy.stats.bootstrap's CI, up to the rounding of the means."""
    rng = np.random.default_rng(3)
    values = rng.random((2, 25))
    settings = BootstrapSettings(resamples=300, confidence=0.9, seed=5)
    ours = bootstrap_means({"a": values}, lambda mu: np.stack([mu[1] - mu[0]]), settings)["a"]
    theirs = stats.bootstrap(
        (values[0], values[1]),
        lambda a, b, axis=-1: b.mean(axis=axis) - a.mean(axis=axis),
        paired=True,
        n_resamples=300,
        confidence_level=0.9,
        method="percentile",
        rng=np.random.default_rng(5),
    ).confidence_interval
    assert (ours.low[0], ours.high[0]) == pytest.approx((theirs.low, theirs.high), abs=1e-12)


def test_percentile_interval_skips_nan_resamples() -> None:
    samples = np.array([[np.nan, 3.0, 1.0, 2.0, np.nan], [np.nan] * 5])
    low, high = percentile_interval(samples, 0.5)
    assert (low[0], high[0]) == (1.5, 2.5)  # the quartiles of 1, 2, 3
    assert np.isnan(low[1]) and np.isnan(high[1])
    # a ratio of means over a resample that drew only the prompts where both means are 0 is NaN: skipped, not NaN
    values = np.array([[0.0, 0.0, 1.0, 2.0], [0.0, 0.0, 3.0, 4.0]])
    ratio = bootstrap_means({"a": values}, lambda mu: np.stack([mu[1] / mu[0]]), BootstrapSettings())["a"]
    assert ratio.low[0] <= ratio.point[0] <= ratio.high[0]
