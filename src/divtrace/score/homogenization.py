"""Homogenisation: how alike two checkpoints' outputs are, per prompt, for every pair of checkpoints.

Two measures of how alike two output sets are, both a mean over pairs of outputs:

- ``sbert``: the mean cosine similarity of the outputs' sentence embeddings over all K_a x K_b pairs
  (:func:`set_similarity`); for a checkpoint with itself, over its distinct pairs i != j, so it equals
  1 - its SBERT diversity. Identical texts have similarity exactly 1 (:func:`~.metrics.semantic.cosine_gram`).
- ``ngram``: the mean over pairs of outputs of the Jaccard similarity of their word n-gram sets, n = 1..4 pooled
  (:func:`ngram_similarity`), words as EAD splits them (:func:`~.metrics.ngrams.words_of`); same i != j rule for
  a checkpoint with itself. Two outputs without any word have Jaccard 1 (they are the same), one without any word
  and one with some have 0.

:func:`prompt_similarities` gives both for every unordered pair of checkpoints (each checkpoint with itself
included) and every prompt both have; :mod:`divtrace.analysis.homogenization` averages them over prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from divtrace.samples import SampleRecord
from divtrace.score.metrics.ngrams import WORDS_RULE, words_of
from divtrace.score.metrics.semantic import cosine_gram

#: Bumped when the same samples give other similarities, so stored homogenisation units are redone.
HOMOGENIZATION_VERSION = 1
#: The largest n of the pooled word n-grams of ``ngram``.
NGRAM_MAX = 4
#: The metrics, in table order.
HOMOGENIZATION_METRICS = ("sbert", "ngram")
#: The columns of :func:`prompt_similarities`.
PROMPT_SIMILARITY_COLUMNS = ["task", "prompt_id", "checkpoint_a", "checkpoint_b", "metric", "similarity"]


def metric_definitions() -> dict[str, Any]:
    """What each metric computes, as recorded in the homogenisation stage's key and the analysis settings."""
    return {
        "sbert": "mean cosine similarity of sentence embeddings over all K_a x K_b output pairs; a checkpoint with "
        "itself: over its pairs i != j (= 1 - SBERT diversity); identical texts exactly 1",
        "ngram": {
            "definition": "mean over output pairs of the Jaccard similarity of their word n-gram sets, n pooled; "
            "a checkpoint with itself: over its pairs i != j; two outputs without words: 1",
            "n_max": NGRAM_MAX,
            "words": WORDS_RULE,
        },
    }


def set_similarity(a: np.ndarray, b: np.ndarray | None) -> float:
    """Mean cosine similarity between the rows of ``a`` and the rows of ``b`` (all pairs); ``b`` None: between the
    rows of ``a`` over its distinct pairs i != j (NaN with fewer than 2 rows)."""
    if b is None:
        k = a.shape[0]
        if k < 2:
            return float("nan")
        gram = cosine_gram(a)
        return float((gram.sum() - np.trace(gram)) / (k * (k - 1)))
    if a.shape[0] == 0 or b.shape[0] == 0:
        return float("nan")
    gram = cosine_gram(np.concatenate([a, b]))  # one Gram, so identical texts across the sets are exactly 1
    return float(gram[: a.shape[0], a.shape[0] :].mean())


def ngram_set(text: str, n_max: int = NGRAM_MAX) -> frozenset[tuple[str, ...]]:
    """The word n-grams of ``text`` for n = 1..n_max, pooled in one set."""
    words = words_of(text)
    return frozenset(tuple(words[i : i + n]) for n in range(1, n_max + 1) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    """|a & b| / |a | b|; 1 when both are empty."""
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


def jaccard_matrix(sets: Sequence[frozenset[tuple[str, ...]]]) -> np.ndarray:
    """The :func:`jaccard` of every pair of ``sets``, as a square symmetric matrix (the same float64 values).

    Every pair's intersection comes from one sparse product of the sets' incidence matrix with itself (exact
    integer counts), instead of a Python set intersection per pair: 16 checkpoints x K = 16 outputs of 1,000 words
    are 32,640 pairs per prompt, 0.6 ms each as sets. Written by hand: scikit-learn's pairwise Jaccard needs dense
    boolean rows over the whole vocabulary, and no library takes sets.
    """
    from scipy.sparse import csr_matrix

    vocabulary: dict[tuple[str, ...], int] = {}
    columns = np.fromiter(
        (vocabulary.setdefault(gram, len(vocabulary)) for grams in sets for gram in grams), dtype=np.int64
    )
    sizes = np.array([len(grams) for grams in sets], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    incidence = csr_matrix(
        (np.ones(columns.size, dtype=np.int64), columns, starts), shape=(len(sets), max(len(vocabulary), 1))
    )
    intersections = np.asarray((incidence @ incidence.T).toarray(), dtype=np.int64)
    unions = sizes[:, None] + sizes[None, :] - intersections
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(unions == 0, 1.0, intersections / unions)


def ngram_similarity(a: Sequence[str], b: Sequence[str] | None) -> float:
    """Mean Jaccard similarity of the word n-gram sets (n = 1..4 pooled) between the texts of ``a`` and ``b`` (all
    pairs); ``b`` None: between the texts of ``a`` over its distinct pairs (NaN with fewer than 2 texts)."""
    sets_a = [ngram_set(text) for text in a]
    if b is None:
        pairs = [jaccard(x, y) for x, y in combinations(sets_a, 2)]
    else:
        sets_b = [ngram_set(text) for text in b]
        pairs = [jaccard(x, y) for x in sets_a for y in sets_b]
    return float(np.mean(pairs)) if pairs else float("nan")


def _prompt_overlaps(
    key: tuple[str, str], texts: Mapping[str, Mapping[tuple[str, str], list[str]]]
) -> tuple[np.ndarray, dict[str, slice]]:
    """The Jaccard matrix of every checkpoint's outputs for prompt ``key`` (all checkpoints' outputs in one), and
    each checkpoint's rows in it."""
    spans: dict[str, slice] = {}
    sets: list[frozenset[tuple[str, ...]]] = []
    for checkpoint, cell in texts.items():
        if key in cell:
            spans[checkpoint] = slice(len(sets), len(sets) + len(cell[key]))
            sets += [ngram_set(text) for text in cell[key]]
    return jaccard_matrix(sets), spans


def prompt_similarities(
    records_by_checkpoint: Mapping[str, Sequence[SampleRecord]],
    embed: Callable[[Sequence[str]], np.ndarray],
) -> pd.DataFrame:
    """Per task, prompt and unordered pair of checkpoints (each with itself included, in the mapping's order): the
    ``sbert`` and ``ngram`` similarity of the two output sets, over the prompts both checkpoints have.

    ``embed`` turns texts into sentence embeddings (rows in input order). The texts are each record's
    :meth:`~divtrace.samples.SampleRecord.scored_texts` (chain of thought removed). Returns columns
    :data:`PROMPT_SIMILARITY_COLUMNS`, one row per (task, prompt, pair, metric).
    """
    texts: dict[str, dict[tuple[str, str], list[str]]] = {}
    for checkpoint, records in records_by_checkpoint.items():
        texts[checkpoint] = {(r.task or "", r.prompt_id): r.scored_texts() for r in records}
    every_text = list(dict.fromkeys(t for cell in texts.values() for group in cell.values() for t in group))
    vectors = embed(every_text) if every_text else np.zeros((0, 1))
    row_of = {text: index for index, text in enumerate(every_text)}

    def embedded(group: list[str]) -> np.ndarray:
        return np.asarray(vectors[[row_of[t] for t in group]])

    rows: list[tuple[str, str, str, str, str, float]] = []
    names = list(texts)
    pairs = [(a, a) for a in names] + list(combinations(names, 2))
    pairs.sort(key=lambda pair: (names.index(pair[0]), names.index(pair[1])))
    ngram_means: dict[tuple[str, str, tuple[str, str]], float] = {}
    for key in dict.fromkeys(key for cell in texts.values() for key in cell):  # one prompt's matrix at a time
        matrix, spans = _prompt_overlaps(key, texts)
        for first, second in pairs:
            if first in spans and second in spans:
                block = matrix[spans[first], spans[second]]
                values = block[np.triu_indices(block.shape[0], 1)] if first == second else block.ravel()
                ngram_means[first, second, key] = float(np.mean(values)) if values.size else float("nan")
    for first, second in pairs:
        for key in (k for k in texts[first] if k in texts[second]):
            group_a, group_b = texts[first][key], texts[second][key]
            same = first == second
            sbert = set_similarity(embedded(group_a), None if same else embedded(group_b))
            ngram = ngram_means[first, second, key]
            task, prompt = key
            rows.append((task, prompt, first, second, "sbert", sbert))
            rows.append((task, prompt, first, second, "ngram", ngram))
    return pd.DataFrame(rows, columns=PROMPT_SIMILARITY_COLUMNS).astype({"similarity": np.float64})
