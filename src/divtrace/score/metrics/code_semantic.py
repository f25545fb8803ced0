"""Code-embedding diversity: ``code-sbert`` and ``code-vendi``, the formulas of ``sbert`` and ``vendi`` on the
embeddings of a code embedder (by default the study's UniXcoder, :class:`divtrace.score.settings.CodeEmbedderSettings`).

As in the reference (``compute_code_sbert``): each output's program is its extracted code
(:func:`~.code_ast.extracted_code`) stripped of surrounding whitespace; blank programs are left out,
and a group with fewer than 2 programs left is NaN. The programs are embedded as they are, without prompt or
UniXcoder mode token.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from divtrace.score.metrics._base import STUDY_SOURCE, Metric, ScoringContext, ValueRange
from divtrace.score.metrics._registry import register_metric
from divtrace.score.metrics.code_ast import extracted_code
from divtrace.score.metrics.semantic import VENDI_EIGEN_FLOOR, cosine_gram, sbert_diversity, vendi_scores
from divtrace.score.settings import PAPER_CODE_EMBEDDER

_NEEDS = f"code embedder (default {PAPER_CODE_EMBEDDER})"


def group_programs(group: Sequence[str]) -> list[str]:
    """The non-blank programs of a group's outputs (extracted, stripped), in order, repeats kept."""
    programs = (extracted_code(text).strip() for text in group)
    return [program for program in programs if program]


def _embedded_programs(groups: Sequence[Sequence[str]], context: ScoringContext) -> list[list[str]]:
    """Each group's programs, after embedding all of them at once (the store batches and keeps them in memory)."""
    programs = [group_programs(group) for group in groups]
    every = list(dict.fromkeys(p for group in programs for p in group))
    if every:
        context.embed_code(every)
    return programs


@register_metric
class CodeSBERT(Metric):
    """1 - mean pairwise cosine similarity of the code embeddings of a group's programs."""

    name = "code-sbert"
    source = STUDY_SOURCE
    description = "1 - mean pairwise cosine of code embeddings (UniXcoder by default; code)"
    uses_code_embeddings = True
    code_only = True
    needs = _NEEDS
    value_range = ValueRange(0.0, 2.0)

    def settings(self) -> dict[str, Any]:
        return {}

    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        return np.array(
            [
                sbert_diversity(context.embed_code(programs)) if len(programs) >= 2 else np.nan
                for programs in _embedded_programs(groups, context)
            ],
            dtype=np.float64,
        )


@register_metric
class CodeVendi(Metric):
    """Vendi score of the code embeddings of a group's programs: the effective number of distinct programs."""

    name = "code-vendi"
    source = STUDY_SOURCE
    description = "Vendi score of code embeddings (UniXcoder by default; code, depends on K)"
    uses_code_embeddings = True
    code_only = True
    k_dependent = True
    needs = _NEEDS
    value_range = ValueRange(1.0, high_of_n="n")  # n: the group's outputs, at least its programs

    def settings(self) -> dict[str, Any]:
        return {"eigenvalue_floor": VENDI_EIGEN_FLOOR}

    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        programs = _embedded_programs(groups, context)
        result = np.full(len(groups), np.nan, dtype=np.float64)
        by_size: dict[int, list[int]] = defaultdict(list)
        for index, group in enumerate(programs):
            if len(group) >= 2:
                by_size[len(group)].append(index)
        for indices in by_size.values():  # one batched eigendecomposition per number of programs
            grams = np.stack([cosine_gram(context.embed_code(programs[i])) for i in indices])
            result[indices] = vendi_scores(grams)
        return result
