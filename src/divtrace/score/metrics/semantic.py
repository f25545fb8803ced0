"""Embedding-based diversity: SBERT (1 - mean pairwise cosine) and the Vendi score."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from divtrace.score.metrics._base import STUDY_SOURCE, Metric, ScoringContext, ValueRange
from divtrace.score.metrics._registry import register_metric

#: Eigenvalues of G/K below this are clipped to it before the entropy (README, "Metrics": vendi).
VENDI_EIGEN_FLOOR = 1e-12


def cosine_gram(embeddings: np.ndarray) -> np.ndarray:
    """Cosine-similarity Gram matrix of the rows of a 2-D array, in float64 (rows re-normalised, so any scale is
    fine). Identical rows have similarity exactly 1: a BLAS's dot product of a unit vector with itself can round
    to 1 +- 1e-16, which would make identical outputs look (negligibly) diverse."""
    rows = embeddings.astype(np.float64)
    rows /= np.linalg.norm(rows, axis=-1, keepdims=True)
    gram: np.ndarray = rows @ rows.T
    _, copy_of = np.unique(embeddings, axis=0, return_inverse=True)
    copy_of = copy_of.reshape(-1)
    gram[copy_of[:, None] == copy_of[None, :]] = 1.0
    return gram


def sbert_diversity(embeddings: np.ndarray) -> float:
    """1 - mean cosine similarity over the K(K-1)/2 distinct pairs of rows."""
    gram = cosine_gram(embeddings)
    k = gram.shape[0]
    off_diagonal = gram.sum() - np.trace(gram)
    return float(1.0 - off_diagonal / (k * (k - 1)))


def vendi_scores(grams: np.ndarray) -> np.ndarray:
    """Vendi score exp(-sum(l log l)) of each stacked Gram matrix, l = eigenvalues of G/K clipped at 1e-12."""
    k = grams.shape[-1]
    eigenvalues = np.clip(np.linalg.eigvalsh(grams / k), VENDI_EIGEN_FLOOR, None)
    scores: np.ndarray = np.exp(-(eigenvalues * np.log(eigenvalues)).sum(axis=-1))
    return scores


@register_metric
class SBERT(Metric):
    """Semantic diversity: 1 - mean pairwise cosine similarity of sentence embeddings."""

    name = "sbert"
    source = STUDY_SOURCE
    description = "1 - mean pairwise cosine of sentence embeddings (semantic)"
    uses_embeddings = True
    value_range = ValueRange(0.0, 2.0)  # cosine similarities lie in [-1, 1]

    def settings(self) -> dict[str, Any]:
        return {}

    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        return np.array([sbert_diversity(context.embed(group)) for group in groups], dtype=np.float64)


@register_metric
class Vendi(Metric):
    """Vendi score of sentence embeddings: the effective number of distinct outputs, in [1, K]."""

    name = "vendi"
    source = STUDY_SOURCE
    description = "Vendi score, effective number of modes among the K outputs (semantic, depends on K)"
    uses_embeddings = True
    k_dependent = True
    value_range = ValueRange(1.0, high_of_n="n")

    def settings(self) -> dict[str, Any]:
        return {"eigenvalue_floor": VENDI_EIGEN_FLOOR}

    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        result = np.empty(len(groups), dtype=np.float64)
        by_size: dict[int, list[int]] = defaultdict(list)
        for index, group in enumerate(groups):
            by_size[len(group)].append(index)
        for indices in by_size.values():  # one batched eigendecomposition per group size
            grams = np.stack([cosine_gram(context.embed(groups[i])) for i in indices])
            result[indices] = vendi_scores(grams)
        return result
