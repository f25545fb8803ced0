"""Lexical diversity: expectation-adjusted distinct n-grams (EAD) and plain distinct-n."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from divtrace.errors import ModelLoadError
from divtrace.metrics._base import Metric, ScoringContext
from divtrace.metrics._registry import register_metric
from divtrace.metrics.ngrams import ngram_counts

#: Vocabulary size used when the generator's tokenizer is unknown (GPT-2's), as in the published study.
DEFAULT_VOCAB_SIZE = 50257


@lru_cache(maxsize=8)
def tokenizer_vocab_size(tokenizer: str) -> int:
    """``len(tokenizer)`` of a Hugging Face tokenizer (id or local path)."""
    try:
        from transformers import AutoTokenizer

        return len(AutoTokenizer.from_pretrained(tokenizer))
    except Exception as err:
        raise ModelLoadError(f"cannot load tokenizer {tokenizer!r} to size EAD's vocabulary: {err}") from err


def expectation_adjusted_distinct(distinct: np.ndarray, total: np.ndarray, vocab_size: int) -> np.ndarray:
    """EAD = U / (V * (1 - ((V-1)/V)^T)), elementwise, clipped to [0, 1]; 0 where there are no n-grams (T = 0).

    ``(1 - ((V-1)/V)^T)`` is evaluated as ``-expm1(T * log1p(-1/V))``, the same number without cancellation.
    """
    v = float(vocab_size)
    expected = v * -np.expm1(total.astype(np.float64) * np.log1p(-1.0 / v))
    with np.errstate(divide="ignore", invalid="ignore"):
        ead = np.where(total > 0, distinct / np.where(total > 0, expected, 1.0), 0.0)
    return np.clip(ead, 0.0, 1.0)


@register_metric
class EAD(Metric):
    """Expectation-adjusted distinct n-grams, averaged over n = 1..n_max (DESIGN.md, "EAD").

    Args:
        vocab_size: V of the formula; default the size of ``tokenizer`` if given, else 50257.
        tokenizer: a Hugging Face tokenizer whose size is V (the generator's tokenizer).
        n_max: the largest n (the study uses 5).
    """

    name = "ead"
    description = "expectation-adjusted distinct 1..5-grams (lexical)"

    def __init__(self, vocab_size: int | None = None, tokenizer: str | None = None, n_max: int = 5) -> None:
        if vocab_size is None:
            vocab_size = tokenizer_vocab_size(tokenizer) if tokenizer else DEFAULT_VOCAB_SIZE
        if vocab_size < 2 or n_max < 1:
            raise ValueError("EAD needs vocab_size >= 2 and n_max >= 1")
        self.vocab_size = vocab_size
        self.tokenizer = tokenizer
        self.n_max = n_max

    def settings(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "tokenizer": self.tokenizer, "n_max": self.n_max}

    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        distinct, total = ngram_counts(groups, self.n_max)
        return expectation_adjusted_distinct(distinct, total, self.vocab_size).mean(axis=1)


@register_metric
class DistinctN(Metric):
    """Distinct n-grams / total n-grams over a group's pooled outputs, averaged over n = 1..n_max."""

    name = "distinct"
    description = "distinct 1..5-grams over all n-grams (lexical, length-sensitive)"

    def __init__(self, n_max: int = 5) -> None:
        if n_max < 1:
            raise ValueError("distinct-n needs n_max >= 1")
        self.n_max = n_max

    def settings(self) -> dict[str, Any]:
        return {"n_max": self.n_max}

    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        distinct, total = ngram_counts(groups, self.n_max)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(total > 0, distinct / np.maximum(total, 1), 0.0)
        return ratio.mean(axis=1)
