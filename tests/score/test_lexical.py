"""EAD and distinct-n against hand-computed values and the reference implementation's formula."""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from divtrace.score.metrics import ScoringContext, create_metric
from divtrace.score.metrics.lexical import EAD, DistinctN
from divtrace.score.metrics.ngrams import ngram_counts, words_of

CONTEXT = ScoringContext()


def reference_ead(responses: list[str], n: int, vocab: int) -> float:
    """EAD_n as the study's code computes it: delete "." and "\\n", ``str.split()``, the EAD formula (unclipped)."""
    ngrams = []
    for s in responses:
        words = s.replace(".", "").replace("\n", "").split()
        ngrams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    distinct, total = len(set(ngrams)), len(ngrams)
    try:
        return distinct / (vocab * (1 - ((vocab - 1) / vocab) ** total))
    except ZeroDivisionError:
        return 0.0


def test_words_follow_the_reference_tokenisation() -> None:
    assert words_of("Hello world.\nNext  line. ") == ["Hello", "worldNext", "line"]
    assert words_of("...\n") == []
    # Any whitespace separates words (tabs, several spaces, a carriage return); a newline is deleted, which
    # joins the words either side of it, so "\r\n" still separates (by its "\r") and a lone "\n" does not.
    assert words_of("a\tb  a\r\nc") == ["a", "b", "a", "c"]
    assert words_of("a\nc") == ["ac"]
    assert words_of("x \t y\u00a0z") == ["x", "y", "z"]  # str.split() also splits on no-break space


def test_ead_hand_computed_with_tabs_and_double_spaces() -> None:
    # "a\tb  a" -> [a b a]; "a b.\tc" -> "a b\tc" -> [a b c]  (splitting on " " alone would give ["a\tb", "a"]).
    # V = 10. n=1: a b a a b c  -> U=3 T=6;  n=2: ab ba ab bc -> U=3 T=4;  n=3: aba abc -> U=2 T=2;  n=4,5: none.
    # EAD_1 = 3 / (10 (1 - 0.9^6)) = 3 / 4.68559 = 0.64026...
    # EAD_2 = 3 / (10 (1 - 0.9^4)) = 3 / 3.439   = 0.87235...
    # EAD_3 = 2 / (10 (1 - 0.9^2)) = 2 / 1.9     = 1.0526... -> clipped to 1
    # mean over n = 1..5 = (0.64026 + 0.87235 + 1 + 0 + 0) / 5 = 0.50252...
    def ead_n(u: int, t: int) -> Fraction:
        return Fraction(u) / (10 * (1 - Fraction(9, 10) ** t))

    expected = (ead_n(3, 6) + ead_n(3, 4) + Fraction(1) + 0 + 0) / 5
    assert float(expected) == pytest.approx(0.502521, abs=1e-6)
    value = EAD(vocab_size=10).score_groups([["a\tb  a", "a b.\tc"]], CONTEXT)[0]
    assert value == pytest.approx(float(expected), abs=1e-12)


def test_ead_records_the_vocabulary_size_it_used(tmp_path: Path, tiny_nli_model: Path) -> None:
    assert EAD().settings()["vocab_size"] == 50257 and EAD().settings()["vocab_size_source"] == "default"
    assert EAD(vocab_size=100).settings() | {"words": None} == {
        "vocab_size": 100,
        "vocab_size_source": "given",
        "tokenizer": None,
        "n_max": 5,
        "words": None,
    }
    assert "str.split()" in EAD().settings()["words"]
    # A tokenizer gives V = tokenizer.vocab_size (as the study's code reads it): added tokens are not counted.
    tokenizer = AutoTokenizer.from_pretrained(tiny_nli_model)
    base_size = tokenizer.vocab_size
    tokenizer.add_tokens(["zebra"])
    assert len(tokenizer) == base_size + 1
    tokenizer.save_pretrained(tmp_path / "tok")
    metric = EAD(tokenizer=str(tmp_path / "tok"))
    assert metric.vocab_size == base_size == 43  # 4 special tokens + 39 words
    assert metric.settings()["vocab_size"] == 43 and metric.settings()["vocab_size_source"] == "tokenizer"
    assert EAD(vocab_size=7, tokenizer=str(tmp_path / "tok")).settings()["vocab_size"] == 7  # an explicit V wins


def test_ead_hand_computed_small_vocabulary() -> None:
    # words: [a b a] and [a b]; V = 10.
    # n=1: U=2 T=5; n=2: U=2 T=3; n=3: U=1 T=1; n=4, n=5: no n-grams -> 0.
    def ead_n(u: int, t: int) -> Fraction:
        return Fraction(u) / (10 * (1 - Fraction(9, 10) ** t))

    expected = (ead_n(2, 5) + ead_n(2, 3) + min(ead_n(1, 1), Fraction(1)) + 0 + 0) / 5
    value = EAD(vocab_size=10).score_groups([["a b a", "a b."]], CONTEXT)[0]
    assert value == pytest.approx(float(expected), abs=1e-12)


def test_ead_is_clipped_to_one() -> None:
    # All n-grams distinct: U = T slightly exceeds the expectation V(1-((V-1)/V)^T), so raw EAD > 1.
    group = [" ".join(f"w{i}_{j}" for j in range(40)) for i in range(4)]
    assert reference_ead(group, 1, 50257) > 1.0
    assert EAD().score_groups([group], CONTEXT)[0] == pytest.approx(1.0)


def test_ead_matches_reference_on_random_text() -> None:
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(60)]
    groups = [
        [
            rng.choice([" ", "  ", "\t", " \n"]).join(rng.choice(vocab) for _ in range(rng.randint(0, 30)))
            + rng.choice([".", "\n", "", "\t"])
            for _ in range(rng.randint(2, 8))
        ]
        for _ in range(40)
    ]
    for vocab_size in (100, 50257):
        values = EAD(vocab_size=vocab_size).score_groups(groups, CONTEXT)
        for group, value in zip(groups, values, strict=True):
            expected = np.mean([min(max(reference_ead(group, n, vocab_size), 0.0), 1.0) for n in range(1, 6)])
            assert value == pytest.approx(expected, abs=1e-9)


def test_ngram_counts_do_not_cross_outputs() -> None:
    distinct, total = ngram_counts([["a b", "c d"]], 3)
    assert total[0].tolist() == [4, 2, 0]  # no bigram "b c", no trigram at all
    assert distinct[0].tolist() == [4, 2, 0]


def test_distinct_hand_computed() -> None:
    # [x y x] and [x y]: n=1 2/5, n=2 2/3, n=3 1/1, n=4 and n=5 no n-grams -> 0
    value = DistinctN().score_groups([["x y x", "x y"]], CONTEXT)[0]
    assert value == pytest.approx((2 / 5 + 2 / 3 + 1 + 0 + 0) / 5)


def test_identical_outputs_are_less_diverse_than_different_ones() -> None:
    same = ["the cat sat on the mat"] * 4
    different = ["the cat sat on the mat", "a dog ran in a park", "birds fly over hills", "rain fell all day"]
    for name in ("ead", "distinct"):
        low, high = create_metric(name).score_groups([same, different], CONTEXT)
        assert low < high


def test_groups_are_scored_independently_of_their_batch() -> None:
    groups = [["a b c", "a b d"], ["x y", "x y"], ["p q r s", "t u v w", "p q"]]
    together = EAD().score_groups(groups, CONTEXT)
    alone = [EAD().score_groups([g], CONTEXT)[0] for g in groups]
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-15)
