"""pass@k, majority vote, first-sample accuracy and the per-prompt / per-(checkpoint, task) summaries."""

from __future__ import annotations

import json
import math
from itertools import combinations

import pandas as pd
import pytest

from divtrace.tasks.verifiers import Verdict
from divtrace.tasks.verifiers.aggregate import (
    default_k_levels,
    first_sample_correct,
    ifeval_accuracy,
    majority_vote,
    majority_vote_correct,
    pass_at_k,
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


def test_majority_vote_and_ties() -> None:
    # A clear majority that is correct.
    assert majority_vote(["18", "17", "18", None], [True, False, True, False]) == ("18", True)
    # Tie between "17" and "18" (2 votes each): the answer seen first ("17") wins, and it is wrong.
    assert majority_vote(["17", "18", "18", "17"], [False, True, True, False]) == ("17", False)
    assert majority_vote(["18", "17", "17", "18"], [True, False, False, True]) == ("18", True)
    # Samples without an answer do not vote, however many they are.
    assert majority_vote([None, None, "5"], [False, False, True]) == ("5", True)
    assert majority_vote([None, None], [False, False]) == (None, False)
    assert majority_vote_correct(["a", "b", "b"], [True, False, False]) is False
    with pytest.raises(ValueError):
        majority_vote(["a"], [True, False])


def test_first_sample_correct() -> None:
    assert first_sample_correct([True, False, False]) is True
    assert first_sample_correct([False, True, True]) is False
    assert first_sample_correct([]) is False


def test_default_k_levels() -> None:
    assert default_k_levels(1) == [1]
    assert default_k_levels(5) == [1, 2, 4, 5]
    assert default_k_levels(16) == [1, 2, 4, 8, 16]
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
    # "3" and "1/2" tie with 2 votes; "3" was seen first.
    assert (summary.majority_answer, summary.majority_correct) == ("3", False)
    assert summary.pass_at == pytest.approx({1: 0.4, 2: 0.7, 5: 1.0})  # k = 8 > n is left out
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
    assert p2["majority_answer"] == "4"  # tie: sample 0 came first, whatever the row order
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
