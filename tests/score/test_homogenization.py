"""Homogenisation per prompt: SBERT set similarity and word n-gram Jaccard between two checkpoints' output sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from divtrace.samples import SampleRecord
from divtrace.score.homogenization import (
    PROMPT_SIMILARITY_COLUMNS,
    jaccard,
    jaccard_matrix,
    ngram_set,
    ngram_similarity,
    prompt_similarities,
    set_similarity,
)
from divtrace.score.metrics.embeddings import EmbeddingStore
from divtrace.score.metrics.semantic import sbert_diversity
from divtrace.score.settings import EmbedderSettings

BASE = [
    "The cat sat quietly on the warm mat by the fire.",
    "A small cat was resting on the mat near the fireplace.",
    "On the rug by the hearth, the kitten dozed in the warmth.",
]
PARAPHRASE = [
    "The cat was sitting quietly on the warm mat by the fire.",
    "A little cat rested on the mat close to the fireplace.",
    "The kitten dozed on the rug by the hearth, enjoying the warmth.",
]
UNRELATED = [
    "Quarterly revenue grew by twelve percent on strong cloud sales.",
    "Add two cups of flour and stir until the dough is smooth.",
    "The train to Vienna departs from platform nine at noon.",
]


@pytest.fixture(scope="module")
def store() -> EmbeddingStore:
    return EmbeddingStore(EmbedderSettings(), cache=False)


def records(checkpoint: str, texts: list[str], prompts: tuple[str, ...] = ("p0",)) -> list[SampleRecord]:
    return [
        SampleRecord(prompt_id=p, prompt="Describe the cat.", outputs=texts, checkpoint=checkpoint, task="open")
        for p in prompts
    ]


def test_ngram_jaccard_by_hand() -> None:
    # "a b c": {a, b, c, a b, b c, a b c}; "a b d": {a, b, d, a b, b d, a b d}; shared {a, b, a b}: 3 of 9.
    assert ngram_similarity(["a b c"], ["a b d"]) == pytest.approx(3 / 9)
    # "." and "\n" deleted as EAD does: "a. b" is "a b".
    assert ngram_similarity(["a. b"], ["a b"]) == 1.0
    # within a set: the mean over its distinct pairs, never a text with itself.
    assert ngram_similarity(["a b c", "a b d", "a b c"], None) == pytest.approx((3 / 9 + 1.0 + 3 / 9) / 3)
    assert math.isnan(ngram_similarity(["only one"], None))


def test_within_set_is_one_minus_sbert_diversity(store: EmbeddingStore) -> None:
    vectors = store.embed([*BASE, BASE[0]])  # a repeated text: exactly 1 with its copy, as in the SBERT metric
    assert set_similarity(vectors, None) == pytest.approx(1.0 - sbert_diversity(vectors), abs=1e-12)
    assert set_similarity(vectors[:1], vectors[:1]) == 1.0
    assert math.isnan(set_similarity(vectors[:1], None))


def test_a_paraphrasing_checkpoint_is_closer_to_the_base_than_an_unrelated_one(store: EmbeddingStore) -> None:
    by_checkpoint = {
        "base": records("base", BASE, ("p0", "p1")),
        "sft": records("sft", PARAPHRASE, ("p0", "p1", "p2")),  # p2: only sft has it, never compared
        "other": records("other", UNRELATED, ("p0", "p1")),
    }
    table = prompt_similarities(by_checkpoint, store.embed)
    assert list(table.columns) == PROMPT_SIMILARITY_COLUMNS
    pairs = list(dict.fromkeys(zip(table["checkpoint_a"], table["checkpoint_b"], strict=True)))
    assert pairs == [
        ("base", "base"),
        ("base", "sft"),
        ("base", "other"),
        ("sft", "sft"),
        ("sft", "other"),
        ("other", "other"),
    ]
    assert set(table[table["checkpoint_a"] != table["checkpoint_b"]]["prompt_id"]) == {"p0", "p1"}
    assert set(table[table["checkpoint_a"] == "sft"]["prompt_id"]) == {"p0", "p1", "p2"}  # sft with itself

    def value(a: str, b: str, metric: str) -> float:
        rows = table[(table["checkpoint_a"] == a) & (table["checkpoint_b"] == b) & (table["metric"] == metric)]
        return float(rows["similarity"].mean())

    for metric in ("sbert", "ngram"):
        assert value("base", "sft", metric) > value("base", "other", metric)
    within = value("base", "base", "sbert")
    assert within == pytest.approx(1.0 - sbert_diversity(store.embed(BASE)), abs=1e-12)
    cross = (
        store.embed(BASE)
        @ store.embed(PARAPHRASE).T
        / np.outer(np.linalg.norm(store.embed(BASE), axis=1), np.linalg.norm(store.embed(PARAPHRASE), axis=1))
    )
    assert value("base", "sft", "sbert") == pytest.approx(float(cross.mean()), abs=1e-6)


def test_the_matrix_path_gives_each_pairs_own_jaccard_exactly(store: EmbeddingStore) -> None:
    """prompt_similarities takes every pair's intersection from one sparse product per prompt: the same float64
    values as the set-by-set definition (ngram_similarity), empty outputs and repeated texts included."""
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(40)]

    def texts(k: int) -> list[str]:
        return [" ".join(rng.choice(words, size=int(rng.integers(0, 30)))) for _ in range(k)] + ["", "w1 w2"]

    sets = {name: texts(5) for name in ("a", "b", "c")}
    sets["c"][0] = sets["a"][0]  # the same text in two checkpoints
    rows = prompt_similarities({name: records(name, group) for name, group in sets.items()}, store.embed)
    ngram = rows[rows["metric"] == "ngram"].set_index(["checkpoint_a", "checkpoint_b"])["similarity"]
    for first, second in ngram.index:
        expected = ngram_similarity(sets[first], None if first == second else sets[second])
        assert ngram[first, second] == expected  # exactly, not approximately
    matrix = jaccard_matrix([ngram_set(text) for text in sets["a"]])
    assert matrix.shape == (7, 7) and (matrix == matrix.T).all() and matrix[5, 5] == 1.0  # "" with "": 1
    assert matrix[5, 6] == 0.0 and matrix[0, 1] == jaccard(ngram_set(sets["a"][0]), ngram_set(sets["a"][1]))
