"""NLI diversity: sentence splitting, seeded choices, label order, and the score against a hand computation.

The classifier is a tiny random BERT cross-encoder built offline (tests/nli_model.py): the numbers are meaningless
as NLI but exercise the real code path (tokenizer, batching, softmax, label order read from the config).
"""

from __future__ import annotations

import random
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import divtrace
from divtrace.errors import ModelLoadError
from divtrace.progress import ProgressSink
from divtrace.score.metrics import ScoringContext, create_metric
from divtrace.score.metrics.nli import (
    NLIDiversity,
    aligned_positions,
    draw_positions,
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


@lru_cache(maxsize=4)
def _plain_model(model_dir: Path) -> tuple[Any, Any]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return tokenizer, AutoModelForSequenceClassification.from_pretrained(model_dir).eval()


def hand_pair_score(model_dir: Path, premise: str, hypothesis: str, entail: int, contradict: int) -> float:
    """P(entailment) - P(contradiction) of one input, computed directly with transformers (no divtrace code)."""
    tokenizer, model = _plain_model(model_dir)
    with torch.inference_mode():
        logits = model(**tokenizer(premise, hypothesis, return_tensors="pt")).logits[0].double()
    probs = torch.softmax(logits, dim=-1).numpy()
    return float(probs[entail] - probs[contradict])


def test_split_sentences_follows_the_design_pattern() -> None:
    assert split_sentences("One. Two! Three? Four") == ["One", "Two", "Three", "Four"]
    assert split_sentences("a...  b\n\nc.") == ["a", "b", "c."]
    assert split_sentences("3.14 is pi. yes") == ["3.14 is pi", "yes"]  # no whitespace after the first "."
    assert split_sentences("no end punctuation") == ["no end punctuation"]


def test_split_sentences_follows_the_study_code_on_edge_cases() -> None:
    assert split_sentences("") == [] and split_sentences("   ") == [] and split_sentences(" \n\t\r") == []
    assert split_sentences("a\tb. c\r\nd") == ["a b", "c", "d"]  # "\t" and "\r" become spaces first
    assert split_sentences("... ") == ["..."]  # nothing between separators: the stripped text is the sentence


def test_draw_positions_follows_random_sample() -> None:
    rng = random.Random(5)
    assert draw_positions(rng, 3, 3) == [0, 1, 2] and draw_positions(rng, 2, 3) == [0, 1]
    assert rng.getstate() == random.Random(5).getstate()  # no more positions than wanted: nothing is drawn
    expected = random.Random(5)
    assert draw_positions(rng, 10, 3) == expected.sample(range(10), 3)
    assert draw_positions(rng, 7, 3) == expected.sample(range(7), 3)  # the generator advances draw after draw


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
    metric = NLIDiversity(model=str(tiny_nli_model), pairs_across=50)
    [value] = metric.score_groups([texts], ScoringContext())
    assert np.isfinite(value) and metric.last_stats.pairs_per_group == [50]


def test_across_input_pairs_all_scores_every_pair_as_the_study_did(tiny_nli_model: Path) -> None:
    # The study's code sets nli_pairs_across=-1: every pair of the 40 first outputs (780), none sampled.
    texts = [f"the cat sat on mat {'yes ' * i}" for i in range(40)]
    every = NLIDiversity(model=str(tiny_nli_model), pairs_across="all")
    [value] = every.score_groups([texts], ScoringContext())
    assert every.last_stats.pairs_per_group == [780] and every.settings()["pairs_across"] == "all"
    uncapped = NLIDiversity(model=str(tiny_nli_model), pairs_across=780)  # a cap at the total is no cap
    assert uncapped.score_groups([texts], ScoringContext())[0] == pytest.approx(value, abs=1e-12)
    assert NLIDiversity(model=str(tiny_nli_model)).settings()["pairs_across"] == 2000  # the documented deviation
    with pytest.raises(ValueError):
        NLIDiversity(pairs_across=0)
    with pytest.raises(ValueError):
        NLIDiversity(pairs_across="some")


def test_unloadable_model_fails_before_any_scoring(tmp_path: Path) -> None:
    """The samples are read (and their K checked) first, cheaply; then every model loads before any scoring."""
    samples = [divtrace.SampleRecord(prompt_id="p0", prompt="q", outputs=["a b", "c d"], checkpoint="c")]
    with pytest.raises(ModelLoadError, match="cannot load NLI model"):
        divtrace.score(samples, nli_model=str(tmp_path / "no-model"))
    not_nli = build_tiny_nli_model(tmp_path / "plain", id2label={})
    with pytest.raises(ModelLoadError, match="entailment and contradiction"):
        NLIDiversity(model=str(not_nli)).prepare()


class TableNLI(NLIDiversity):
    """The NLI metric with its classifier replaced by a table: the pooling arithmetic checked with exact numbers.

    P(entail) - P(contradict) of (premise, hypothesis): a sentence "c..." against anything is -1; "aP" against "bP"
    (P a digit) is 1 and "bP" against "aP" is 0.5, so an (a, b) position averages 0.75, unless ``by_position``:
    then both directions of position P score P / 10.
    """

    def __init__(self, by_position: bool = False, **overrides: Any) -> None:
        super().__init__(model="table", **overrides)
        self.by_position = by_position
        self.classified: list[tuple[str, str]] = []

    def similarity(self, premise: str, hypothesis: str) -> float:
        if "c" in (premise[0], hypothesis[0]):
            return -1.0
        if self.by_position:
            return int(premise[1:]) / 10
        return 1.0 if premise[0] == "a" else 0.5

    def _classify(self, pairs: list[tuple[str, str]], progress: ProgressSink | None = None) -> tuple[np.ndarray, int]:
        self.classified.extend(pairs)
        return np.array([self.similarity(p, h) for p, h in pairs], dtype=np.float64), 1


A3, B3, C1 = "a0. a1. a2", "b0. b1. b2", "c0"


def test_pooling_over_positions_and_over_pairs_hand_computed() -> None:
    # Pairs: (A3, B3) 3 positions, each (1 + 0.5) / 2 = 0.75; (A3, C1) and (B3, C1) 1 position each, -1.
    # positions (default, the study's code): 1 - (0.75 + 0.75 + 0.75 - 1 - 1) / 5 = 1 - 0.05 = 0.95
    # pairs (the paper text):               1 - (0.75 - 1 - 1) / 3          = 1 + 1.25 / 3 = 17 / 12
    group = [A3, B3, C1]
    pooled = TableNLI()
    assert pooled.score_groups([group], ScoringContext())[0] == pytest.approx(0.95, abs=1e-12)
    assert pooled.last_stats.positions == 5 and pooled.last_stats.classifier_inputs == 10
    per_pair = TableNLI(pooling="pairs")
    assert per_pair.score_groups([group], ScoringContext())[0] == pytest.approx(17 / 12, abs=1e-12)
    # With the same number of positions in every pair, the two agree: (A3, B3) alone is 1 - 0.75 either way.
    for pooling in ("positions", "pairs"):
        assert TableNLI(pooling=pooling).score_groups([[A3, B3]], ScoringContext())[0] == pytest.approx(0.25)


def test_pairs_with_an_empty_output_are_skipped() -> None:
    # 6 pairs, 5 of them with "" or a whitespace-only output: only (A3, B3) is scored, 1 - 0.75 = 0.25 under both
    # poolings (an empty pair scored as anything would move the value).
    group = [A3, "", " \n\t", B3]
    for pooling in ("positions", "pairs"):
        metric = TableNLI(pooling=pooling)
        assert metric.score_groups([group], ScoringContext())[0] == pytest.approx(0.25, abs=1e-12)
        assert metric.last_stats.pairs_per_group == [6] and metric.last_stats.skipped_pairs_per_group == [5]
        assert all(premise and hypothesis for premise, hypothesis in metric.classified)


def test_a_group_without_a_scorable_pair_is_nan() -> None:
    metric = TableNLI()
    values = metric.score_groups([["", "  "], [A3, ""], [A3], [A3, C1]], ScoringContext())
    assert np.isnan(values[0]) and np.isnan(values[1]) and np.isnan(values[2])
    assert values[3] == pytest.approx(2.0)  # (A3, C1): one position, similarity -1
    assert metric.last_stats.skipped_pairs_per_group == [1, 1, 0, 0]


def test_positions_drawn_per_pair_by_default_with_seed_1234() -> None:
    # Six sentences each: 3 of the 6 positions are drawn; position P scores P / 10 both ways, so the value is
    # 1 - mean(P / 10 over the drawn P) (+ the (x, C1) pairs at -1 each, position 0).
    six_a = ". ".join(f"a{p}" for p in range(6))
    six_b = ". ".join(f"b{p}" for p in range(6))
    metric = TableNLI(by_position=True)
    [alone] = metric.score_groups([[six_a, six_b]], ScoringContext())
    chosen = aligned_positions(1234, six_a, six_b, 0, 1, 6, 3)
    assert len(chosen) == 3 and alone == pytest.approx(1 - sum(chosen) / 30, abs=1e-12)
    # The same pair scores the same whatever else is in the batch.
    together = metric.score_groups([[A3, B3], [six_a, six_b], [six_a, six_b]], ScoringContext())
    assert together[1] == together[2] == alone
    recorded = metric.settings()
    assert recorded["seed"] == 1234 and recorded["position_draws"] == "per-pair"
    assert recorded["pooling"] == "positions" and recorded["sentences_per_pair"] == 3


def test_stream_draws_advance_one_generator_as_the_study_code_does() -> None:
    # One random.Random(seed) for the call: (six_a, six_b) draws random.Random(1234).sample(range(6), 3); the pairs
    # with C1 have 1 common position and draw nothing; the second group's (six_a, six_b) takes the next draw.
    six_a = ". ".join(f"a{p}" for p in range(6))
    six_b = ". ".join(f"b{p}" for p in range(6))
    metric = TableNLI(by_position=True, position_draws="stream")
    first, second = metric.score_groups([[six_a, six_b, C1], [six_a, six_b, C1]], ScoringContext())
    rng = random.Random(1234)
    draw_1, draw_2 = rng.sample(range(6), 3), rng.sample(range(6), 3)
    assert draw_1 != draw_2
    # 5 pooled positions: the 3 drawn (P / 10 each) and the two C1 pairs (-1 each).
    assert first == pytest.approx(1 - (sum(draw_1) / 10 - 2) / 5, abs=1e-12)
    assert second == pytest.approx(1 - (sum(draw_2) / 10 - 2) / 5, abs=1e-12)
    # A fresh generator per call: scoring again gives the same numbers; another seed, other draws.
    assert metric.score_groups([[six_a, six_b, C1]], ScoringContext())[0] == first
    other = TableNLI(by_position=True, position_draws="stream", seed=7)
    [seven] = other.score_groups([[six_a, six_b]], ScoringContext())
    assert seven == pytest.approx(1 - sum(random.Random(7).sample(range(6), 3)) / 30, abs=1e-12)
    assert other.settings()["seed"] == 7 and other.settings()["position_draws"] == "stream"


def test_every_option_is_recorded() -> None:
    recorded = NLIDiversity(pooling="pairs", seed=99, sentences_per_pair=2, batch_size=8).settings()
    assert {k: recorded[k] for k in ("pooling", "seed", "sentences_per_pair", "position_draws", "pairs_across")} == {
        "pooling": "pairs",
        "seed": 99,
        "sentences_per_pair": 2,
        "position_draws": "per-pair",
        "pairs_across": 2000,
    }
    assert "batch_size" not in recorded and "device" not in recorded  # speed only, not identity
    assert recorded["empty_pairs"] == "skipped" and recorded["no_scorable_pair"] == "nan"
    with pytest.raises(ValueError):
        NLIDiversity(pooling="mean")


def test_real_classifier_pooled_and_per_pair_hand_computed(tiny_nli_model: Path) -> None:
    # GROUP has 2 sentences per output; "water boils" has 1, so its pairs have 1 position and the others 2.
    group = [*GROUP, "water boils"]
    sims: dict[tuple[int, int], list[float]] = {}
    for i, j in combinations(range(len(group)), 2):
        first, second = split_sentences(group[i]), split_sentences(group[j])
        sims[i, j] = [
            (
                hand_pair_score(tiny_nli_model, first[p], second[p], 2, 0)
                + hand_pair_score(tiny_nli_model, second[p], first[p], 2, 0)
            )
            / 2
            for p in range(min(len(first), len(second)))
        ]
    pooled = 1 - np.mean([s for values in sims.values() for s in values])  # 3 * 2 + 3 * 1 = 9 positions
    per_pair = 1 - np.mean([np.mean(values) for values in sims.values()])  # 6 pairs
    assert abs(pooled - per_pair) > 1e-4
    [value] = NLIDiversity(model=str(tiny_nli_model)).score_groups([group], ScoringContext())
    assert value == pytest.approx(pooled, abs=1e-6)
    [value] = NLIDiversity(model=str(tiny_nli_model), pooling="pairs").score_groups([group], ScoringContext())
    assert value == pytest.approx(per_pair, abs=1e-6)
