"""Lexical diversity: expectation-adjusted distinct n-grams (EAD) and plain distinct-n."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from divtrace.errors import ModelLoadError
from divtrace.score.metrics._base import Metric, ScoringContext, ValueRange
from divtrace.score.metrics._registry import register_metric
from divtrace.score.metrics.ngrams import WORDS_RULE, ngram_counts
from divtrace.score.settings import EADSettings

#: Vocabulary size used when the generator's tokenizer is unknown (GPT-2's), as in the published study.
DEFAULT_VOCAB_SIZE = 50257


@lru_cache(maxsize=8)
def tokenizer_vocab_size(tokenizer: str) -> int:
    """``tokenizer.vocab_size`` of a Hugging Face tokenizer (id or local path), as the study's EAD reads it.

    That is the base vocabulary, without tokens added on top of it (``len(tokenizer)`` counts those too).
    Raises ModelLoadError when the tokenizer cannot be loaded.
    """
    try:
        from transformers import AutoTokenizer

        return int(AutoTokenizer.from_pretrained(tokenizer).vocab_size)
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
    """Expectation-adjusted distinct n-grams, averaged over n = 1..n_max (README, "Metrics": ead).

    Per group and n: delete "." and "\\n" from every output and split on any whitespace
    (:func:`~.ngrams.words_of`); pool the n-grams of the group's outputs (none crosses two outputs);
    EAD_n = U / (V (1 - ((V-1)/V)^T)) with U distinct and T total n-grams, clipped to [0, 1], 0 when T = 0. The
    group's value is the mean of EAD_1..EAD_n_max.

    Args:
        vocab_size: V of the formula. When None: ``tokenizer.vocab_size`` of ``tokenizer`` if given, else the
            generator's vocabulary size the scorer knows for the records (``ScoringContext.vocab_size``: what
            ``divtrace run`` passes, as the study took V from each model's tokenizer), else 50257 (GPT-2's, the
            study's fallback). :meth:`vocab_size_for` says which V a context gets.
        tokenizer: a Hugging Face tokenizer (the generator's) whose ``vocab_size`` is V.
        n_max: the largest n (the study uses 5).
        settings: shared :class:`~divtrace.score.settings.EADSettings` (the run's V or tokenizer), used for
            ``vocab_size`` and ``tokenizer`` when neither is given.
    """

    name = "ead"
    description = "expectation-adjusted distinct 1..5-grams over whitespace words (lexical; V recorded)"
    value_range = ValueRange(0.0, 1.0)  # each EAD_n is clipped to [0, 1]

    settings_type = EADSettings

    def __init__(
        self,
        vocab_size: int | None = None,
        tokenizer: str | None = None,
        n_max: int = 5,
        settings: EADSettings | None = None,
    ) -> None:
        if settings is not None and vocab_size is None and not tokenizer:
            vocab_size, tokenizer = settings.vocab_size, settings.tokenizer
        if vocab_size is not None:
            source = "given"
        elif tokenizer:
            vocab_size, source = tokenizer_vocab_size(tokenizer), "tokenizer"
        else:
            vocab_size, source = DEFAULT_VOCAB_SIZE, "default"  # unless the scoring context knows the generator's
        if vocab_size < 2 or n_max < 1:
            raise ValueError("EAD needs vocab_size >= 2 and n_max >= 1")
        self.vocab_size = int(vocab_size)
        self.vocab_size_source = source
        self.tokenizer = tokenizer
        self.n_max = n_max

    def settings(self) -> dict[str, Any]:
        """V actually used (``vocab_size``), where it came from (``given``, ``tokenizer`` or ``default``: 50257), the
        tokenizer named, n_max and the tokenisation rule."""
        return {
            "vocab_size": self.vocab_size,
            "vocab_size_source": self.vocab_size_source,
            "tokenizer": self.tokenizer,
            "n_max": self.n_max,
            "words": WORDS_RULE,
        }

    def vocab_size_for(self, context: ScoringContext) -> int:
        """The V used under ``context``: this metric's own when given or taken from its tokenizer, else the
        context's generator vocabulary size when known, else 50257."""
        if self.vocab_size_source == "default" and context.vocab_size is not None:
            return int(context.vocab_size)
        return self.vocab_size

    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        """The EAD of each group (see the class docstring), float64, in the order given."""
        distinct, total = ngram_counts(groups, self.n_max)
        ead: np.ndarray = expectation_adjusted_distinct(distinct, total, self.vocab_size_for(context)).mean(axis=1)
        return ead


@register_metric
class DistinctN(Metric):
    """Distinct n-grams / total n-grams over a group's pooled outputs, averaged over n = 1..n_max.

    Words as EAD's (:func:`divtrace.score.metrics.ngrams.words_of`); an n without n-grams counts 0.
    """

    name = "distinct"
    description = "distinct 1..5-grams over all n-grams (lexical, length-sensitive)"
    value_range = ValueRange(0.0, 1.0)

    def __init__(self, n_max: int = 5) -> None:
        if n_max < 1:
            raise ValueError("distinct-n needs n_max >= 1")
        self.n_max = n_max

    def settings(self) -> dict[str, Any]:
        """n_max and the tokenisation rule."""
        return {"n_max": self.n_max, "words": WORDS_RULE}

    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        distinct, total = ngram_counts(groups, self.n_max)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(total > 0, distinct / np.maximum(total, 1), 0.0)
        means: np.ndarray = ratio.mean(axis=1)
        return means
