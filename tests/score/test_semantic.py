"""SBERT and Vendi against hand-computed values and the published formulas, on fixed embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from divtrace.score.metrics import ScoringContext
from divtrace.score.metrics.semantic import SBERT, Vendi, cosine_gram, sbert_diversity


class FixedEmbeddings:
    """An embedding table given by the test: the formulas are checked on known vectors."""

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


def context(table: dict[str, Sequence[float]]) -> ScoringContext:
    return ScoringContext(embeddings=FixedEmbeddings(table))  # type: ignore[arg-type]


HAND = context({"a": [1, 0], "b": [0, 1], "c": [1, 0], "d": [3, 4]})


def test_sbert_hand_computed() -> None:
    # cos(a,b)=0, cos(a,c)=1, cos(b,c)=0 -> mean 1/3 -> diversity 2/3
    assert SBERT().score_groups([["a", "b", "c"]], HAND)[0] == pytest.approx(2 / 3, abs=1e-12)
    # unnormalised input is normalised: cos(a,d) = 3/5
    assert SBERT().score_groups([["a", "d"]], HAND)[0] == pytest.approx(1 - 3 / 5, abs=1e-7)


def test_vendi_hand_computed() -> None:
    # G = [[1,0,1],[0,1,0],[1,0,1]]; eigenvalues of G/3: 2/3, 1/3, 0 (clipped to 1e-12)
    lam = np.array([2 / 3, 1 / 3])
    expected = np.exp(-(lam * np.log(lam)).sum() - 1e-12 * np.log(1e-12))
    assert Vendi().score_groups([["a", "b", "c"]], HAND)[0] == pytest.approx(expected, abs=1e-9)


def test_vendi_extremes() -> None:
    assert Vendi().score_groups([["a", "a", "a", "a"]], HAND)[0] == pytest.approx(1.0, abs=1e-6)
    assert Vendi().score_groups([["a", "b"]], HAND)[0] == pytest.approx(2.0, abs=1e-9)


def published_sbert(vectors: np.ndarray) -> float:
    """Kirk et al.'s form: 1 - mean over pairs i>j of cosine_similarity(e_i, e_j)."""
    sims = []
    for i in range(len(vectors)):
        for j in range(i):
            u, v = vectors[i].astype(np.float64), vectors[j].astype(np.float64)
            sims.append(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
    return 1 - float(np.mean(sims))


def published_vendi(vectors: np.ndarray) -> float:
    """Friedman & Dieng's Vendi score with the cosine kernel: exp(entropy of eigenvalues of K/n)."""
    x = vectors.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = np.linalg.eigvalsh(x @ x.T / len(x))
    w = w[w > 0]
    return float(np.exp(-(w * np.log(w)).sum()))


def test_random_groups_match_published_formulas() -> None:
    rng = np.random.default_rng(3)
    table = {f"t{i}": rng.normal(size=24) for i in range(200)}
    ctx = context(table)
    names = list(table)
    groups = [list(rng.choice(names, size=int(rng.integers(2, 17)), replace=True)) for _ in range(50)]
    sbert = SBERT().score_groups(groups, ctx)
    vendi = Vendi().score_groups(groups, ctx)
    for group, s, v in zip(groups, sbert, vendi, strict=True):
        vectors = np.stack([np.asarray(table[t], dtype=np.float32) for t in group])
        assert s == pytest.approx(published_sbert(vectors), abs=1e-6)
        assert v == pytest.approx(published_vendi(vectors), abs=1e-6)


def test_identical_embeddings_are_exactly_zero_diversity_on_any_blas() -> None:
    # A unit vector's dot product with itself rounds to 1 +- 1e-16 on some BLAS builds (3.3e-16 seen for SBERT of
    # four identical embeddings): identical rows must give similarity exactly 1, so SBERT is exactly 0.
    rng = np.random.default_rng(0)
    rounded = 0
    for _ in range(200):
        vector = rng.normal(size=384).astype(np.float32)
        unit = vector.astype(np.float64) / np.linalg.norm(vector.astype(np.float64))
        rounded += float(unit @ unit) != 1.0
        group = np.stack([vector] * 4)
        gram = cosine_gram(group)
        assert (gram == 1.0).all()
        assert sbert_diversity(group) == 0.0 and not np.signbit(sbert_diversity(group))
    assert rounded > 0  # the plain formula is not exact for some of these vectors on this machine
    other = rng.normal(size=384).astype(np.float32)
    mixed = cosine_gram(np.stack([other, other, rng.normal(size=384).astype(np.float32)]))
    assert mixed[0, 1] == mixed[1, 0] == 1.0 and mixed[0, 2] != 1.0 and np.diag(mixed).tolist() == [1.0, 1.0, 1.0]
