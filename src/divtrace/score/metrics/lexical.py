"""Lexical diversity: expectation-adjusted distinct n-grams (EAD) and plain distinct-n."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from divtrace.errors import DivtraceError, ModelLoadError
from divtrace.score.metrics._base import STUDY_SOURCE, Metric, ScoringContext, ValueRange
from divtrace.score.metrics._registry import register_metric
from divtrace.score.metrics.ngrams import WORDS_RULE, ngram_counts
from divtrace.score.settings import GENERATOR_TOKENIZER, EADSettings

#: EAD's V unless a study or a command sets another: GPT-2's vocabulary size. The study's reference code meant to
#: read V from the generator's tokenizer, but its diversity settings never name a model, so every published EAD used
#: this fallback, for every checkpoint (docs/fidelity.md). EAD counts whitespace words, so one fixed V also keeps
#: EAD comparable across model families.
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
        vocab_size: V of the formula. When None: ``tokenizer.vocab_size`` of ``tokenizer`` if given, else 50257
            (:data:`DEFAULT_VOCAB_SIZE`, the V of every published EAD), for every checkpoint.
        tokenizer: a Hugging Face tokenizer (id or path) whose ``vocab_size`` is V, or ``"generator"``
            (:data:`GENERATOR_TOKENIZER`): each checkpoint's own generator tokenizer, which the scorer passes in
            ``ScoringContext.vocab_size`` (``divtrace run`` knows it; scoring without it raises DivtraceError).
        n_max: the largest n (the study uses 5).
        settings: shared :class:`~divtrace.score.settings.EADSettings` (the run's V or tokenizer), used for
            ``vocab_size`` and ``tokenizer`` when neither is given.
    """

    name = "ead"
    source = STUDY_SOURCE
    description = "expectation-adjusted distinct 1..5-grams over whitespace words (lexical; V = 50257 unless set)"
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
        elif tokenizer == GENERATOR_TOKENIZER:
            source = GENERATOR_TOKENIZER  # V arrives with each checkpoint's records (vocab_size_for)
        elif tokenizer:
            vocab_size, source = tokenizer_vocab_size(tokenizer), "tokenizer"
        else:
            vocab_size, source = DEFAULT_VOCAB_SIZE, "default"
        if (vocab_size is not None and vocab_size < 2) or n_max < 1:
            raise ValueError("EAD needs vocab_size >= 2 and n_max >= 1")
        self.vocab_size = None if vocab_size is None else int(vocab_size)
        self.vocab_size_source = source
        self.tokenizer = tokenizer
        self.n_max = n_max

    @property
    def needs_generator_vocab(self) -> bool:
        """True when V is each checkpoint's generator vocabulary (``tokenizer="generator"``)."""
        return self.vocab_size_source == GENERATOR_TOKENIZER

    def settings(self) -> dict[str, Any]:
        """V used (``vocab_size``; None when it is each checkpoint's generator's, recorded per unit as
        ``generator_vocab_size``), where it came from (``given``, ``tokenizer``, ``generator`` or ``default``:
        50257), the tokenizer named, n_max and the tokenisation rule."""
        return {
            "vocab_size": self.vocab_size,
            "vocab_size_source": self.vocab_size_source,
            "tokenizer": self.tokenizer,
            "n_max": self.n_max,
            "words": WORDS_RULE,
        }

    def settings_used(self, context: ScoringContext) -> dict[str, Any]:
        """:meth:`settings` with ``vocab_size`` the V used under ``context`` (the generator's when it is taken from
        there and known)."""
        settings = self.settings()
        if self.vocab_size is None and context.vocab_size is not None:
            settings["vocab_size"] = int(context.vocab_size)
        return settings

    def vocab_size_for(self, context: ScoringContext) -> int:
        """The V used under ``context``: the context's generator vocabulary size when this metric takes the
        generator's (DivtraceError when the context does not know it), else this metric's own V."""
        if self.vocab_size is not None:
            return self.vocab_size
        if context.vocab_size is None:
            raise DivtraceError(
                "EAD with tokenizer: generator needs each checkpoint's generator tokenizer, which is unknown for "
                "these samples (imported, or a served model without a `tokenizer` option); give EAD a "
                "vocab_size or a tokenizer instead"
            )
        return int(context.vocab_size)

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
    source = "Li et al. 2016 (not in the study)"
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
