"""NLI diversity: sentence splitting, seeded choices, label order, and the score against a hand computation.

The classifier is a tiny random BERT cross-encoder built offline (tests/nli_model.py): the numbers are meaningless
as NLI but exercise the real code path (tokenizer, batching, softmax, label order read from the config).
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import divtrace
from divtrace.errors import ModelLoadError
from divtrace.metrics import ScoringContext, create_metric
from divtrace.metrics.nli import (
    NLIDiversity,
    aligned_positions,
    nli_label_indices,
    sampled_pairs,
    split_sentences,
)
from tests.nli_model import MNLI_LABELS, build_tiny_nli_model

GROUP = [
    "the cat sat on the mat. the dog ran in the park",
    "it is raining today! birds sing loudly",
    "the sky is blue\nthe grass is green",
]


def hand_pair_score(model_dir: Path, premise: str, hypothesis: str, entail: int, contradict: int) -> float:
    """P(entailment) - P(contradiction) of one input, computed directly with transformers (no divtrace code)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        logits = model(**tokenizer(premise, hypothesis, return_tensors="pt")).logits[0].double()
    probs = torch.softmax(logits, dim=-1).numpy()
    return float(probs[entail] - probs[contradict])


def test_split_sentences_follows_the_design_pattern() -> None:
    assert split_sentences("One. Two! Three? Four") == ["One", "Two", "Three", "Four"]
    assert split_sentences("a...  b\n\nc.") == ["a", "b", "c."]
    assert split_sentences("3.14 is pi. yes") == ["3.14 is pi", "yes"]  # no whitespace after the first "."
    assert split_sentences("   ") == [""]
    assert split_sentences("no end punctuation") == ["no end punctuation"]


def test_aligned_positions_are_all_or_a_seeded_subset() -> None:
    assert aligned_positions(0, "a", "b", 0, 1, 2, 3) == [0, 1]
    assert aligned_positions(0, "a", "b", 0, 1, 3, 3) == [0, 1, 2]
    chosen = aligned_positions(0, "a", "b", 0, 1, 10, 3)
    assert len(chosen) == 3 and len(set(chosen)) == 3 and chosen == sorted(chosen)
    assert all(0 <= p < 10 for p in chosen)
    assert aligned_positions(0, "a", "b", 0, 1, 10, 3) == chosen
    draws = {tuple(aligned_positions(seed, "a", "b", 0, 1, 10, 3)) for seed in range(20)}
    assert len(draws) > 1  # the seed matters


def test_sampled_pairs_caps_and_is_reproducible() -> None:
    texts = [f"t{i}" for i in range(100)]  # 4950 pairs
    pairs = sampled_pairs(0, texts, 300)
    assert len(pairs) == 300 and len(set(pairs)) == 300
    assert all(0 <= i < j < 100 for i, j in pairs)
    assert pairs == sampled_pairs(0, texts, 300)
    assert pairs != sampled_pairs(1, texts, 300)
    assert sampled_pairs(0, texts[:5], 300) == list(combinations(range(5), 2))
    everything = sampled_pairs(0, texts[:30], 435)  # exactly all pairs
    assert everything == list(combinations(range(30), 2))


def test_label_indices_come_from_the_config() -> None:
    assert nli_label_indices(MNLI_LABELS, "m") == (2, 0)
    assert nli_label_indices({0: "entailment", 1: "neutral", 2: "contradiction"}, "m") == (0, 2)
    assert nli_label_indices({"0": "ENTAILMENT", "1": "NOT_ENTAILMENT", "2": "CONTRADICTION"}, "m") == (0, 2)
    with pytest.raises(ModelLoadError, match="LABEL_0"):
        nli_label_indices({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, "m")


def test_score_matches_a_hand_computation(tiny_nli_model: Path) -> None:
    metric = create_metric("nli", model=str(tiny_nli_model))
    assert isinstance(metric, NLIDiversity)
    metric.prepare()
    [value] = metric.score_groups([GROUP], ScoringContext())

    entail, contradict = 2, 0
    pair_means = []
    for i, j in combinations(range(len(GROUP)), 2):
        first, second = split_sentences(GROUP[i]), split_sentences(GROUP[j])
        scores = []
        for p in range(min(len(first), len(second))):  # at most 2 sentences each here: every position is used
            scores.append(hand_pair_score(tiny_nli_model, first[p], second[p], entail, contradict))
            scores.append(hand_pair_score(tiny_nli_model, second[p], first[p], entail, contradict))
        pair_means.append(np.mean(scores))
    assert value == pytest.approx(1.0 - np.mean(pair_means), abs=1e-6)
    assert metric.last_stats.pairs_per_group == [3]
    assert metric.last_stats.classifier_inputs == 2 * (2 + 2 + 2)


def test_label_order_changes_the_number(tmp_path: Path, tiny_nli_model: Path) -> None:
    """Same weights, entailment and contradiction names swapped: the per-input score flips sign."""
    swapped = build_tiny_nli_model(tmp_path / "swapped", id2label={0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"})
    group = ["the cat sat on mat", "the dog ran in park"]
    [original] = create_metric("nli", model=str(tiny_nli_model)).score_groups([group], ScoringContext())
    [flipped] = create_metric("nli", model=str(swapped)).score_groups([group], ScoringContext())
    assert 1.0 - original == pytest.approx(-(1.0 - flipped), abs=1e-6)
    assert original != pytest.approx(flipped)


def test_batching_and_dedupe_do_not_change_scores(tiny_nli_model: Path) -> None:
    groups = [GROUP, GROUP[::-1], ["yes", "no", "maybe", "yes"], ["sun shines", "sun shines"]]
    one = NLIDiversity(model=str(tiny_nli_model), batch_size=1)
    many = NLIDiversity(model=str(tiny_nli_model), batch_size=64)
    assert np.allclose(one.score_groups(groups, ScoringContext()), many.score_groups(groups, ScoringContext()))
    assert many.last_stats.batches == 1 and one.last_stats.batches == one.last_stats.unique_inputs
    assert many.last_stats.unique_inputs < many.last_stats.classifier_inputs  # repeated sentences classified once
    assert np.isnan(many.score_groups([["only one"]], ScoringContext())[0])


def test_more_than_three_sentences_use_three_seeded_positions(tiny_nli_model: Path) -> None:
    long_a = "the cat sat. the dog ran. it is raining. sun shines. birds sing. water boils"
    long_b = "sky blue. grass green. yes. no. maybe. paris"
    metric = NLIDiversity(model=str(tiny_nli_model), seed=7)
    first = metric.score_groups([[long_a, long_b]], ScoringContext())
    assert metric.last_stats.classifier_inputs == 2 * 3
    assert metric.score_groups([[long_a, long_b]], ScoringContext()) == pytest.approx(first)
    assert metric.settings()["seed"] == 7 and metric.settings()["sentences_per_pair"] == 3


def test_across_input_pairs_are_capped(tiny_nli_model: Path) -> None:
    texts = [f"the cat sat on mat {'yes ' * i}" for i in range(40)]  # 780 pairs
    metric = NLIDiversity(model=str(tiny_nli_model), max_across_pairs=50)
    [value] = metric.score_groups([texts], ScoringContext())
    assert np.isfinite(value) and metric.last_stats.pairs_per_group == [50]


def test_unloadable_model_fails_before_reading_samples(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot load NLI model"):
        divtrace.score(tmp_path / "does-not-exist.jsonl", nli_model=str(tmp_path / "no-model"))
    not_nli = build_tiny_nli_model(tmp_path / "plain", id2label={})
    with pytest.raises(ModelLoadError, match="entailment and contradiction"):
        NLIDiversity(model=str(not_nli)).prepare()
