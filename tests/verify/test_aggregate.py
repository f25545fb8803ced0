"""pass@k, majority vote, first-sample accuracy and the per-prompt / per-(checkpoint, task) summaries."""

from __future__ import annotations

import json
import math
from itertools import combinations

import pandas as pd
import pytest

from divtrace.stats import default_k_levels, pass_at_k
from divtrace.verify import Verdict
from divtrace.verify.aggregate import (
    first_sample_correct,
    ifeval_accuracy,
    majority_correct,
    majority_vote,
    majority_vote_correct,
    more_than_half_correct,
    summarize_prompt,
    summarize_verdicts,
    vote_key,
)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 2 / 5),  # 1 - C(3,1)/C(5,1) = 1 - 3/5
        (5, 2, 2, 7 / 10),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 2, 3, 9 / 10),  # 1 - C(3,3)/C(5,3) = 1 - 1/10
        (5, 2, 5, 1.0),  # n - c < k: every draw of 5 holds a correct one
        (5, 0, 1, 0.0),
        (5, 0, 5, 0.0),
        (5, 5, 1, 1.0),
        (5, 5, 5, 1.0),
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
    ],
)
def test_pass_at_k_hand_computed(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_enumeration_and_is_stable() -> None:
    # Exhaustive check: the share of k-subsets of n samples that contain a correct one.
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                subsets = list(combinations(range(n), k))
                hit = sum(any(i < c for i in subset) for subset in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(hit, abs=1e-12)
    # Large n: no overflow, and close to the exact value 1 - C(n-c, k) / C(n, k).
    exact = 1 - math.comb(9_000, 100) / math.comb(10_000, 100)
    assert pass_at_k(10_000, 1_000, 100) == pytest.approx(exact, rel=1e-9)


def test_pass_at_k_rejects_bad_arguments() -> None:
    for n, c, k in [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_majority_vote_as_the_study() -> None:
    # A clear majority that is correct.
    assert majority_vote(["18", "17", "18", None], [True, False, True, False]) == ("18", True)
    assert majority_vote(["17", "17", "18"], [False, False, True]) == ("17", False)
    # A tie between the two most frequent answers is no majority: not correct, whichever came first.
    assert majority_vote(["17", "18", "18", "17"], [False, True, True, False]) == (None, False)
    assert majority_vote(["18", "17", "17", "18"], [True, False, False, True]) == (None, False)
    # The unparseable samples vote together, as one answer.
    assert majority_vote([None, None, "5"], [False, False, True]) == (None, False)
    assert majority_vote([None, "5", "5"], [False, True, True]) == ("5", True)
    assert majority_vote([None, "5"], [False, True]) == (None, False)  # a tie with "unparseable"
    assert majority_vote([None, None], [False, False]) == (None, False)
    assert majority_vote([], []) == (None, False)
    assert majority_vote_correct(["a", "b", "b"], [True, False, False]) is False
    with pytest.raises(ValueError):
        majority_vote(["a"], [True, False])


def test_majority_vote_k16_tie_is_not_correct() -> None:
    # K = 16: 8 samples say 18 (correct), 8 say 17. Under "first seen wins" this prompt was counted correct.
    answers = ["18", "17"] * 8
    flags = [answer == "18" for answer in answers]
    assert majority_vote(answers, flags) == (None, False)
    # One more vote for 18 (9 to 7) is a correct majority.
    answers[1] = "18"
    assert majority_vote(answers, [answer == "18" for answer in answers]) == ("18", True)


def test_majority_vote_k16_unparseable_outvote_the_correct_answer() -> None:
    # K = 16: 9 samples have no answer, 7 say 18 (correct). When unparseable samples abstained, 18 won.
    answers: list[str | None] = [None] * 9 + ["18"] * 7
    flags = [answer == "18" for answer in answers]
    assert majority_vote(answers, flags) == (None, False)
    # Spread over distinct wrong answers instead, the 9 do not outvote the 7.
    spread = [str(i) for i in range(9)] + ["18"] * 7
    assert majority_vote(spread, [answer == "18" for answer in spread]) == ("18", True)


def test_more_than_half_correct() -> None:
    assert more_than_half_correct([True] * 9 + [False] * 7)
    assert not more_than_half_correct([True] * 8 + [False] * 8)  # exactly half is not more than half
    assert not more_than_half_correct([])
    # Two of three correct, with three different answers: a majority of correct samples, but no voted answer.
    verdicts = [Verdict(True, "a"), Verdict(True, "b"), Verdict(False, "c")]
    assert majority_correct(verdicts, "more_than_half")
    assert not majority_correct(verdicts, "vote")
    with pytest.raises(ValueError, match="rule"):
        majority_correct(verdicts, "plurality")  # type: ignore[arg-type]


def test_first_sample_correct() -> None:
    assert first_sample_correct([True, False, False]) is True
    assert first_sample_correct([False, True, True]) is False
    assert first_sample_correct([]) is False


def test_default_k_levels() -> None:
    assert default_k_levels(1) == [1]
    assert default_k_levels(5) == [1, 2, 4, 5]
    assert default_k_levels(16) == [1, 2, 4, 5, 8, 10, 16]  # the study's levels: reference 1, 5, 10, 16 + curves
    assert default_k_levels(6) == [1, 2, 4, 5, 6]  # levels up to K, and K itself
    assert default_k_levels(12) == [1, 2, 4, 5, 8, 10, 12]
    assert default_k_levels(32) == [1, 2, 4, 5, 8, 10, 16, 32]
    assert default_k_levels(0) == []


def test_summarize_prompt_votes_with_the_normalized_answer() -> None:
    verdicts = [
        Verdict(False, "3", extra={"method": "boxed", "normalized": "3"}),
        Verdict(True, "\\frac12", extra={"method": "boxed", "normalized": "1/2"}),
        Verdict(True, "0.5", extra={"method": "boxed", "normalized": "1/2"}),
        Verdict(False, None, "no final answer"),
        Verdict(False, "3", extra={"method": "boxed", "normalized": "3"}),
    ]
    assert vote_key(verdicts[2]) == "1/2"
    assert vote_key(verdicts[3]) is None
    summary = summarize_prompt(verdicts, ks=[1, 2, 5, 8])
    assert (summary.n, summary.correct, summary.accuracy) == (5, 2, 0.4)
    assert summary.first_correct is False
    # "3" and "1/2" (\frac12 and 0.5 vote together) tie with 2 votes each: no majority.
    assert (summary.majority_answer, summary.majority_correct) == (None, False)
    assert summary.pass_at == pytest.approx({1: 0.4, 2: 0.7, 5: 1.0})  # k = 8 > n is left out
    one_more = summarize_prompt([*verdicts, Verdict(True, "1/2", extra={"method": "boxed", "normalized": "1/2"})])
    assert (one_more.majority_answer, one_more.majority_correct) == ("1/2", True)
    # Under the "more_than_half" rule there is no voted answer: 2 of 5 correct is no majority.
    by_half = summarize_prompt(verdicts, majority_rule="more_than_half")
    assert (by_half.majority_answer, by_half.majority_correct) == (None, False)
    with pytest.raises(ValueError):
        summarize_prompt([])


def test_ifeval_accuracy() -> None:
    def verdict(strict: list[bool], loose: list[bool]) -> Verdict:
        extra = {"strict": strict, "loose": loose, "prompt_level_strict": all(strict), "prompt_level_loose": all(loose)}
        return Verdict(all(strict), None, extra=extra)

    figures = ifeval_accuracy([verdict([True, False], [True, True]), verdict([True], [True]), Verdict(False, "x")])
    assert figures == pytest.approx(
        {
            "prompt_level_strict": 1 / 2,
            "prompt_level_loose": 2 / 2,
            "inst_level_strict": 2 / 3,
            "inst_level_loose": 3 / 3,
        }
    )
    assert all(math.isnan(value) for value in ifeval_accuracy([Verdict(True, "1")]).values())


def test_summarize_verdicts_tables() -> None:
    rows = []
    # base/gsm8k: prompt p1 has 4 samples (c=2), p2 has 2 samples (c=0); rows are shuffled on purpose.
    for index, (correct, answer) in enumerate([(False, "17"), (True, "18"), (True, "18"), (False, None)]):
        rows.append(("base", "gsm8k", "p1", index, correct, answer, json.dumps({"method": "hash"})))
    for index, (correct, answer) in reversed(list(enumerate([(False, "4"), (False, "5")]))):
        rows.append(("base", "gsm8k", "p2", index, correct, answer, None))
    # sft/truthfulqa: 2 of 3 correct, three different texts (its verifier's rule: more than half correct).
    for index, (correct, text) in enumerate([(True, "nothing happens"), (True, "they pass through"), (False, "x")]):
        rows.append(("sft", "truthfulqa", "q1", index, correct, text, None))
    # sft/ifeval: one prompt, two samples.
    for index, (strict, loose) in enumerate([([True, False], [True, True]), ([True, True], [True, True])]):
        extra = {"strict": strict, "loose": loose, "prompt_level_strict": all(strict), "prompt_level_loose": True}
        rows.append(("sft", "ifeval", "1001", index, all(strict), None, json.dumps(extra)))
    frame = pd.DataFrame(
        rows, columns=["checkpoint", "task", "prompt_id", "sample_index", "correct", "extracted", "extra"]
    ).sample(frac=1.0, random_state=0)

    per_prompt, per_group = summarize_verdicts(frame)
    p1 = per_prompt.set_index("prompt_id").loc["p1"]
    assert (p1["n"], p1["correct"], p1["first_correct"], p1["majority_answer"]) == (4, 2, False, "18")
    assert p1["majority_correct"]
    assert p1["pass@1"] == pytest.approx(0.5)
    assert p1["pass@2"] == pytest.approx(1 - math.comb(2, 2) / math.comb(4, 2))
    p2 = per_prompt.set_index("prompt_id").loc["p2"]
    assert pd.isna(p2["majority_answer"]) and not p2["majority_correct"]  # "4" and "5" tie: no majority
    assert math.isnan(p2["pass@4"])  # k > n

    gsm8k = per_group.set_index("task").loc["gsm8k"]
    assert (gsm8k["checkpoint"], gsm8k["prompts"], gsm8k["k"]) == ("base", 2, 2)
    assert gsm8k["accuracy"] == pytest.approx((0.5 + 0.0) / 2)
    assert gsm8k["accuracy_first"] == pytest.approx(0.0)
    assert gsm8k["majority_vote"] == pytest.approx(0.5)
    assert gsm8k["pass@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert gsm8k["pass@4"] == pytest.approx(1.0)  # only p1 has 4 samples
    assert gsm8k["prompts_with_2_correct"] == 1
    assert math.isnan(gsm8k["ifeval_prompt_level_strict"])

    truthfulqa = per_prompt.set_index("prompt_id").loc["q1"]
    assert truthfulqa["majority_correct"] and pd.isna(truthfulqa["majority_answer"])
    assert per_group.set_index("task").loc["truthfulqa", "majority_vote"] == pytest.approx(1.0)
    # The rule can be given per task (here the vote, where three different texts make no majority).
    _, voted = summarize_verdicts(frame, majority_rules={"truthfulqa": "vote"})
    assert voted.set_index("task").loc["truthfulqa", "majority_vote"] == pytest.approx(0.0)

    ifeval = per_group.set_index("task").loc["ifeval"]
    assert ifeval["accuracy"] == pytest.approx(0.5)
    assert ifeval["ifeval_prompt_level_strict"] == pytest.approx(0.5)
    assert ifeval["ifeval_prompt_level_loose"] == pytest.approx(1.0)
    assert ifeval["ifeval_inst_level_strict"] == pytest.approx(3 / 4)
    assert ifeval["ifeval_inst_level_loose"] == pytest.approx(1.0)


def test_summarize_verdicts_needs_its_columns() -> None:
    with pytest.raises(ValueError, match="prompt_id"):
        summarize_verdicts(pd.DataFrame({"checkpoint": [], "task": [], "correct": [], "extracted": []}))
    per_prompt, per_group = summarize_verdicts(
        pd.DataFrame({"checkpoint": [], "task": [], "prompt_id": [], "correct": [], "extracted": []})
    )
    assert per_prompt.empty and per_group.empty


def test_summarize_verdicts_reports_the_study_levels_for_k_16() -> None:
    """K = 16 with 3 correct: pass@k at 1, 2, 4, 5, 8, 10, 16 (1 - C(13, k) / C(16, k))."""
    rows = [("base", "gsm8k", "p1", i, i < 3, str(i), None) for i in range(16)]
    frame = pd.DataFrame(
        rows, columns=["checkpoint", "task", "prompt_id", "sample_index", "correct", "extracted", "extra"]
    )
    _, per_group = summarize_verdicts(frame)
    levels = [int(c.removeprefix("pass@")) for c in per_group.columns if c.startswith("pass@")]
    assert levels == [1, 2, 4, 5, 8, 10, 16]
    for k in levels:
        assert per_group[f"pass@{k}"].iloc[0] == pytest.approx(1 - math.comb(13, k) / math.comb(16, k), abs=1e-12)
    assert per_group["pass@5"].iloc[0] == pytest.approx(1 - 1287 / 4368, abs=1e-12)  # C(13,5) / C(16,5)


def test_passk_levels_and_means_are_one_rule_in_verify_the_verdict_tables_and_the_analysis() -> None:
    # One prompt with 3 samples (1 correct), one with 5 (2 correct): the levels come from the largest count
    # (1, 2, 4, 5) everywhere, and pass@4 / pass@5 average over the prompt that has that many samples only.
    from divtrace.analysis.curves import correct_per_prompt, passk_table
    from divtrace.samples import SampleRecord
    from divtrace.verify.pipeline import verify_records

    records = [
        SampleRecord(prompt_id="a", prompt="q", outputs=["1", "2", "3"], checkpoint="c", task="arithmetic",
                     references={"answer": "1"}),
        SampleRecord(prompt_id="b", prompt="q", outputs=["7", "7", "1", "2", "3"], checkpoint="c", task="arithmetic",
                     references={"answer": "7"}),
    ]  # fmt: skip
    result = verify_records(records)
    expected = {
        1: (pass_at_k(3, 1, 1) + pass_at_k(5, 2, 1)) / 2,
        2: (pass_at_k(3, 1, 2) + pass_at_k(5, 2, 2)) / 2,
        4: pass_at_k(5, 2, 4),
        5: pass_at_k(5, 2, 5),
    }
    summary = result.summary.iloc[0]
    assert [int(c.split("@")[1]) for c in result.summary.columns if c.startswith("pass@")] == [1, 2, 4, 5]
    _, groups = summarize_verdicts(result.verdicts)
    passk = passk_table(correct_per_prompt(result.verdicts), pd.DataFrame(columns=["checkpoint", "task", "metric",
                        "k", "mean"]), pd.DataFrame(columns=["checkpoint", "task", "metric", "mean"]))  # fmt: skip
    for k, value in expected.items():
        assert summary[f"pass@{k}"] == pytest.approx(value)
        assert groups.iloc[0][f"pass@{k}"] == pytest.approx(value)
        assert passk.set_index("k").loc[k, "pass_at_k"] == pytest.approx(value)
    assert passk.set_index("k").loc[5, "n_prompts"] == 1
