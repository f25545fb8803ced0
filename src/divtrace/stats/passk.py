"""pass@k and the sample-count levels it and the diversity-vs-K curves are reported at."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: The pass@k levels of the study: the reference's (``compute_code_quality.py``: 1, 5, 10, 16) and the powers of two
#: of the diversity-vs-K curves (2, 4, 8, 16), so pass@k sits next to diversity at the same k.
PASS_AT_K_LEVELS: tuple[int, ...] = (1, 2, 4, 5, 8, 10, 16)

#: The smallest subsample of a diversity-vs-K curve; each next level doubles it. The curve levels are only the
#: powers of two (no k = 5, 10 as in :data:`PASS_AT_K_LEVELS`): the scorer computes a metric once per level, so
#: adding levels would change (and lengthen) what ``divtrace score`` writes. pass@k at k = 5, 10 therefore has no
#: curve point next to it (``diversity_k`` NaN in the analysis' ``passk`` table).
CURVE_FIRST_LEVEL = 2


def default_k_levels(n: int) -> list[int]:
    """The pass@k levels reported for ``n`` samples: every :data:`PASS_AT_K_LEVELS` value up to ``n``, and ``n``
    itself (K = 16: 1, 2, 4, 5, 8, 10, 16; K = 6: 1, 2, 4, 5, 6; empty for ``n < 1``).

    The one definition of the levels: ``divtrace verify``'s summary and the analysis' ``passk`` table both use it.
    """
    if n < 1:
        return []
    return sorted({*(k for k in PASS_AT_K_LEVELS if k <= n), n})


def cell_k_levels(sample_counts: Iterable[int]) -> list[int]:
    """The pass@k levels of one (checkpoint, task) whose prompts have ``sample_counts`` samples each:
    :func:`default_k_levels` of the *largest* count. A level above a prompt's own count leaves that prompt out of
    the level's mean (:func:`mean_pass_at_k`). The one rule of ``divtrace verify``'s summary, the verdict tables and
    the analysis' ``passk`` table."""
    return default_k_levels(max(sample_counts, default=0))


def mean_pass_at_k(n: np.ndarray, c: np.ndarray, k: int) -> tuple[float, int]:
    """(mean pass@k over the prompts with at least ``k`` samples, how many such prompts); NaN and 0 when none.
    ``n``/``c``: per prompt, samples and correct samples."""
    values = pass_at_k_per_prompt(n, c, k)
    finite = int(np.isfinite(values).sum())
    return (float(np.nanmean(values)) if finite else float("nan")), finite


def curve_levels(k: int) -> list[int]:
    """The subsample sizes of the diversity-vs-K curve below ``k``: 2, 4, 8, ... (each ``< k``; empty for k <= 2).

    Subset ``all`` supplies the point at ``k`` itself. See :data:`CURVE_FIRST_LEVEL` for why these differ from
    :func:`default_k_levels`.
    """
    levels = []
    size = CURVE_FIRST_LEVEL
    while size < k:
        levels.append(size)
        size *= 2
    return levels


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of Chen et al. (2021) for ``c`` correct samples out of ``n``: ``1 - C(n-c, k) / C(n, k)``.

    The probability that at least one of ``k`` samples drawn without replacement from the ``n`` is correct,
    computed stably as ``1 - prod_{i=n-c+1}^{n} (1 - k / i)`` (no huge binomials). Requires
    ``0 <= c <= n`` and ``1 <= k <= n``; raises ValueError otherwise.
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_per_prompt(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """:func:`pass_at_k` for many prompts: ``n[i]`` samples of which ``c[i]`` are correct (integer-valued).

    Returns a float array shaped like ``n``, NaN where ``n < k`` (the prompt has too few samples for the budget);
    every other entry is exactly :func:`pass_at_k` of that prompt. Raises ValueError for ``k < 1`` or a ``c``
    outside ``[0, n]``.
    """
    n = np.asarray(n)
    c = np.asarray(c)
    if k < 1:
        raise ValueError(f"pass@k needs k >= 1, got k={k}")
    out = np.full(n.shape, np.nan, dtype=np.float64)
    eligible = n >= k
    if not eligible.any():
        return out
    # Computed once per distinct (n, c) pair and spread back: a study has few (K + 1 at most per K), while it has
    # hundreds of thousands of prompts (the olmo3-7b shape called pass_at_k 512,000 times). Same function, same values.
    pairs = np.stack([n[eligible], c[eligible]], axis=-1).astype(np.int64)
    distinct, inverse = np.unique(pairs, axis=0, return_inverse=True)
    values = np.array([pass_at_k(int(total), int(correct), k) for total, correct in distinct], dtype=np.float64)
    out[eligible] = values[inverse.reshape(-1)]
    return out
