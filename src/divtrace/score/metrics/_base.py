"""The Metric interface every diversity metric implements, and the context metrics draw shared resources from."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from divtrace.progress import ProgressSink
from divtrace.score.settings import FrozenSettings

if TYPE_CHECKING:
    from divtrace.score.metrics.embeddings import EmbeddingStore


#: ``Metric.source`` of a metric the study used (Karouzos, Tan and Aletras 2026, its reference code).
STUDY_SOURCE = "the study"
#: ``Metric.source`` of a metric divtrace defines itself (not in the study or its code).
DIVTRACE_SOURCE = "divtrace's own (not in the study)"


@dataclass
class ScoringContext:
    """Shared, already-loaded resources a metric may use while scoring.

    ``embeddings`` is the process-wide sentence-embedding store and ``code_embeddings`` the code encoder's (None
    when no metric needs them). ``vocab_size`` is the generator tokenizer's vocabulary size of the records being
    scored, when known and asked for (EAD's V with ``tokenizer: generator``, :attr:`Metric.needs_generator_vocab`).
    ``progress`` is set by the scorer, during one ``score_groups`` call, for a metric that reports its own progress
    (:attr:`Metric.progress_unit`): the metric sends it :class:`~divtrace.progress.ProgressEvent` values counting
    that unit as it works (the scorer fills in the step, the metric's name).
    """

    embeddings: EmbeddingStore | None = None
    code_embeddings: EmbeddingStore | None = None
    vocab_size: int | None = None
    progress: ProgressSink | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 embeddings of ``texts``, one row each, in order."""
        if self.embeddings is None:
            raise RuntimeError("this scoring run was set up without an embedder")
        return self.embeddings.embed(texts)

    def embed_code(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 code embeddings of ``texts`` (the code embedder's), one row each, in order."""
        if self.code_embeddings is None:
            raise RuntimeError("this scoring run was set up without a code embedder")
        return self.code_embeddings.embed(texts)


@dataclass(frozen=True)
class ValueRange:
    """The values a metric can take: ``[low, high]``, where ``high`` may depend on the group size n.

    Attributes:
        low: the smallest value.
        high: the largest value when it is fixed (``math.inf`` when unbounded).
        high_of_n: ``"n"`` when the largest value is the number of texts in the group (Vendi), ``"ln n"`` when it
            is its natural log (an entropy); None when ``high`` is the bound.
    """

    low: float
    high: float = math.inf
    high_of_n: Literal["n", "ln n"] | None = None

    def upper(self, sizes: np.ndarray) -> np.ndarray:
        """The largest value of a group of each size in ``sizes``, float64."""
        sizes = np.asarray(sizes, dtype=np.float64)
        if self.high_of_n == "n":
            return sizes
        if self.high_of_n == "ln n":
            logs: np.ndarray = np.log(np.maximum(sizes, 1.0))
            return logs
        return np.full(sizes.shape, self.high, dtype=np.float64)

    def clip(self, values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """``values`` (one per group, groups of ``sizes`` texts) clipped into the range; NaN stays NaN, -0.0 is 0.0.

        Only floating-point noise should ever be clipped: a metric's formula keeps its values in range.
        """
        values = np.asarray(values, dtype=np.float64)
        clipped: np.ndarray = np.clip(values, self.low, self.upper(sizes)) + 0.0
        return clipped

    def __str__(self) -> str:
        high = self.high_of_n or ("inf" if math.isinf(self.high) else f"{self.high:g}")
        return f"[{self.low:g}, {high}]"


class Metric(ABC):
    """A diversity metric over groups of texts (or of extracted answers); higher is always more diverse.

    Per-input scoring passes the K responses of each prompt as one group; across-input scoring passes one group
    made of the first response of every prompt. Implementations must be deterministic given their settings.
    A metric whose :attr:`input` is ``"answers"`` is given, instead of texts, the answers extracted from the same
    samples by the verify stage (``str``, or None for a sample without one).
    """

    #: Registry name (``ead``, ``sbert``...).
    name: ClassVar[str]
    #: One line for ``divtrace metrics``.
    description: ClassVar[str]
    #: True when the metric reads sentence embeddings from :class:`ScoringContext` (``embed``).
    uses_embeddings: ClassVar[bool] = False
    #: True when the metric reads code embeddings from :class:`ScoringContext` (``embed_code``).
    uses_code_embeddings: ClassVar[bool] = False
    #: False for metrics that make no sense on source code (NLI).
    suitable_for_code: ClassVar[bool] = True
    #: True for metrics that only make sense on source code (AST and code-embedding metrics): a study run applies
    #: them to code tasks only; ``divtrace score`` applies them to whatever it is given.
    code_only: ClassVar[bool] = False
    #: True when the value depends on the number of texts in a group by construction (Vendi: 1..K), so groups of
    #: different sizes are not comparable (the quality-filtered decomposition skips such metrics).
    k_dependent: ClassVar[bool] = False
    #: What the metric needs besides the texts, for ``divtrace metrics`` ("-" for nothing).
    needs: ClassVar[str] = "-"
    #: Where its definition comes from, for ``divtrace metrics``: :data:`STUDY_SOURCE` for the study's metrics, a
    #: citation for a published metric the study did not use, :data:`DIVTRACE_SOURCE` for divtrace's own.
    source: ClassVar[str] = "-"
    #: ``texts``: groups are a prompt's responses; ``answers``: groups are the answers extracted from them by the
    #: task's verifier (None for an unparseable sample).
    input: ClassVar[Literal["texts", "answers"]] = "texts"
    #: The values the metric can take; the scorer clips every value into it (:meth:`ValueRange.clip`), so
    #: floating-point noise never leaves it (-6.7e-16 for identical embeddings is 0.0).
    #: The default, unbounded, is for metrics that do not declare one; every built-in metric declares its range.
    value_range: ClassVar[ValueRange] = ValueRange(-math.inf)
    #: The unit (:mod:`divtrace.progress`) of a metric that reports its own progress through
    #: ``ScoringContext.progress`` during one ``score_groups`` call over every group (NLI: ``pairs``); None (the
    #: default) lets the scorer call it over a few prompts at a time and report prompts.
    progress_unit: ClassVar[str | None] = None
    #: The type of the shared settings object this metric takes as its ``settings`` constructor argument (the
    #: study's NLI model for NLI, the EAD vocabulary for EAD), given by the scorer
    #: (:func:`divtrace.score.scorer.build_metrics`); None for a metric that takes none.
    settings_type: ClassVar[type[FrozenSettings] | None] = None

    @property
    def needs_generator_vocab(self) -> bool:
        """True when the metric reads ``ScoringContext.vocab_size`` (each checkpoint's generator vocabulary), which
        the caller then has to look up; False (the default) for every metric that does not."""
        return False

    def settings(self) -> dict[str, Any]:
        """The options that determine this metric's numbers, recorded next to every score."""
        return {}

    def settings_used(self, context: ScoringContext) -> dict[str, Any]:
        """:meth:`settings` as they apply under ``context`` (EAD: the V of these records' checkpoint); the default
        is :meth:`settings` itself."""
        return self.settings()

    def prepare(self) -> None:
        """Load what the metric needs (models) before any scoring work; raise a clear error if impossible.

        Must be idempotent: the pipeline may call it more than once.
        """
        return None

    @abstractmethod
    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        """Score each group of texts.

        Args:
            groups: one sequence of texts per prompt (every group has at least 2 texts); extracted answers
                (``str | None``) instead for metrics whose :attr:`input` is ``"answers"``.
            context: shared resources (embeddings).

        Returns:
            float64 array with one diversity value per group, in the order given.
        """

    def group_diagnostics(self, groups: Sequence[Sequence[Any]], context: ScoringContext) -> dict[str, np.ndarray]:
        """Side numbers about each group, reported beside the metric's values (e.g. ``parse_rate`` of the AST metrics).

        Args:
            groups: the same groups as given to :meth:`score_groups`.
            context: shared resources.

        Returns:
            name -> float64 array with one value per group, in the order given; empty (the default) when the
            metric has none.
        """
        return {}
