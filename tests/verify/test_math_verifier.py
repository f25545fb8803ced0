"""GSM8K and MATH verifiers: final-answer extraction, math-verify equivalence, threads and hostile inputs."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from divtrace.verify import Verdict, create_verifier
from divtrace.verify.math import (
    GSM8KVerifier,
    MathVerifier,
    extract_final_answer,
    extract_final_number,
    first_boxed,
    gsm8k_gold,
    last_boxed,
    math_gold,
    normalize_number,
)
from tests.guards import hang_guard

GSM8K_SOLUTION = (
    "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
    "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer's market.\n#### 18"
)
HALF = {"solution": "Dividing both sides by 4, we get $x = \\boxed{\\frac{1}{2}}$."}


def in_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` in a worker thread and return its result (re-raising its exception)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as error:  # pragma: no cover - surfaced below
            box["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


# ------------------------------------------------------------------------------------------------ extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so 9 * 2 = 18\n#### 18", ("18", "hash")),
        ("the result is $\\boxed{\\frac{1}{2}}$.", ("\\frac{1}{2}", "boxed")),
        ("\\boxed{x^{2}+1} is it", ("x^{2}+1", "boxed")),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", ("\\frac{\\sqrt{3}}{2}", "boxed")),
        ("first \\boxed{1}, finally \\fbox{2}", ("1", "boxed")),  # the first box, as the reference
        ("\\boxed{} then \\boxed{7}", ("7", "boxed")),  # an empty box is no answer
        ("\\boxed{\\{1,2\\}}", ("\\{1,2\\}", "boxed")),
        ("so \\boxed 5$.", ("5", "boxed")),
        ("complete \\boxed{3} then cut off \\boxed{4", ("3", "boxed")),
        ("Final Answer: The final answer is $5$. I hope it is correct.", ("5", "answer_phrase")),
        ("**Final answer:** 42", ("42", "answer_phrase")),
        ("The answer is:\n\n$$\\frac{3}{4}$$", ("\\frac{3}{4}", "answer_phrase")),
        ("the answer is 3.5. Next question", ("3.5", "answer_phrase")),
        ("The answer is 5.\nWait, the answer is 6.", ("5", "answer_phrase")),  # the first phrase
        ("To get the answer: we add them.\nThe answer is 7.", ("7", "answer_phrase")),  # prose is no answer
        ("#### 18\n\nQuestion: Tom has 42 apples.\n#### 42", ("18", "hash")),  # the first ####
        ("####\n18", ("18", "hash")),
        ("\\boxed{3} and later #### 4", ("4", "hash")),  # #### comes before boxes whatever the position
        ("we get 12 apples, then 1,234 pears", ("1,234", "last_number")),
        ("no digits here", None),
        ("", None),
        ("\\boxed{}", None),
    ],
)
def test_extract_final_answer(text: str, expected: tuple[str, str] | None) -> None:
    assert extract_final_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### 1,234", ("1234", "hash")),
        ("#### $18.00.", ("18", "hash")),
        ("#### forty\nwhich is 40", ("forty", "hash")),  # the first #### decides, even without a number
        ("#### 18 apples\n#### 20", ("18", "hash")),
        ("\\boxed{\\text{none}} so 5", ("\\text{none}", "boxed")),
        ("The answer is: 18", ("18", "answer_phrase")),
        ("**Answer:** $18", ("18", "answer_phrase")),
        ("The answer is that she has 5 left, answer: 7. Then 9", ("7", "answer_phrase")),  # words: skipped
        ("We have 3 cats. The answer is 4. Next 5", ("4", "answer_phrase")),
        ("\\boxed{1{,}234}", ("1234", "boxed")),
        ("The answer is -7 degrees.", ("-7", "answer_phrase")),
        ("x-5", ("5", "last_number")),
        ("nothing", None),
    ],
)
def test_extract_final_number(text: str, expected: tuple[str, str] | None) -> None:
    assert extract_final_number(text) == expected


def test_normalize_number() -> None:
    assert normalize_number("1,234") == "1234"
    assert normalize_number("-0.50") == "-0.5"
    assert normalize_number("$007") == "7"
    assert normalize_number("-0") == "0"
    assert normalize_number(".5") == "0.5"
    assert normalize_number("9" * 60) == "9" * 60  # exact: no 28-digit Decimal rounding
    assert normalize_number("-") is None
    assert normalize_number("1e5") is None


def test_boxes_are_found_in_linear_time_on_hostile_text() -> None:
    with hang_guard():  # quadratic scanning of these strings would take hours
        assert last_boxed("\\boxed{" * 50_000) is None
        assert first_boxed("\\boxed{" * 50_000) is None
        assert last_boxed("{" * 300_000 + "\\boxed{7}") == "7"
        assert first_boxed("{" * 300_000 + "\\boxed{7} \\boxed{8}") == "7"


# ------------------------------------------------------------------------------------------------ GSM8K


def test_gsm8k_gold_from_solution_or_number() -> None:
    assert gsm8k_gold({"answer": GSM8K_SOLUTION}) == "18"
    assert gsm8k_gold({"answer": "so...\n#### 1,234"}) == "1234"
    assert gsm8k_gold({"answer": 72}) == "72"
    assert gsm8k_gold({"answer": "72"}) == "72"
    with pytest.raises(ValueError, match="'answer'"):
        gsm8k_gold({"question": "?"})
    with pytest.raises(ValueError, match="'answer'"):
        gsm8k_gold({"answer": "#### many"})


def test_gsm8k_verdicts() -> None:
    verifier = create_verifier("gsm8k")
    assert isinstance(verifier, GSM8KVerifier)
    reference = {"answer": GSM8K_SOLUTION}
    verdicts = verifier.verify_batch(
        [
            "16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars.\n#### 18",
            "She makes 9 * 3 = 27 dollars.\n#### 27",
            "The answer is $18.",
            "She makes 18.00 dollars a day",
            "I do not know.",
        ],
        [reference] * 5,
    )
    assert [v.correct for v in verdicts] == [True, False, True, True, False]
    assert [v.extracted for v in verdicts] == ["18", "27", "18", "18", None]
    assert verdicts[0].extra == {"method": "hash", "normalized": "18"}
    assert verdicts[1].detail == "wrong answer"
    assert verdicts[4] == Verdict(False, None, "no final number")


def test_gsm8k_base_model_that_writes_a_new_question_is_graded_on_its_first_answer() -> None:
    # A base model answers, then goes on with an invented question of its own, with its own "#### N".
    output = (
        " Janet has 16 - 3 - 4 = 9 eggs left. 9 * 2 = 18.\n#### 18\n\n"
        "Question: Tom buys 6 boxes of 7 pencils. How many pencils does he have?\n"
        "Answer: 6 * 7 = 42\n#### 42"
    )
    verdicts = GSM8KVerifier().verify_batch([output, output], [{"answer": GSM8K_SOLUTION}, {"answer": "#### 42"}])
    assert [v.extracted for v in verdicts] == ["18", "18"]
    assert [v.correct for v in verdicts] == [True, False]
    assert verdicts[0].extra is not None and verdicts[0].extra["method"] == "hash"


def test_gsm8k_first_hash_without_a_number_is_a_wrong_answer() -> None:
    verdict = GSM8KVerifier().verify("#### eighteen\nThat is 18 in digits.", {"answer": GSM8K_SOLUTION})
    assert verdict == Verdict(False, "eighteen", "no number in the final answer", {"method": "hash"})


def test_gsm8k_thousands_separators() -> None:
    verifier = GSM8KVerifier()
    assert verifier.verify("so the total is\n#### 1,234", {"answer": "#### 1234"}).correct
    assert verifier.verify("#### 1234", {"answer": "...\n#### 1,234"}).correct
    assert verifier.verify("We need 1,234 bricks in all.", {"answer": 1234}).correct
    assert not verifier.verify("#### 1,243", {"answer": 1234}).correct


def test_gsm8k_hostile_outputs() -> None:
    verifier = GSM8KVerifier()
    hostile = ["1" * 1_000_000, "\x00\ufffd####", "-" * 10_000, "9" * 60]
    with hang_guard():
        verdicts = verifier.verify_batch(hostile, [{"answer": 5}] * 4)
    assert [v.correct for v in verdicts] == [False] * 4
    assert verdicts[0].detail == "number too long"
    assert verdicts[1].extracted is None


def test_gsm8k_works_in_a_worker_thread() -> None:
    verifier = GSM8KVerifier()
    verdicts = in_thread(verifier.verify_batch, ["#### 18", "#### 17"], [{"answer": GSM8K_SOLUTION}] * 2)
    assert [v.correct for v in verdicts] == [True, False]


def test_gsm8k_reference_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="'answer'"):
        GSM8KVerifier().verify("#### 3", {"solution": "3"})


# ------------------------------------------------------------------------------------------------ MATH


def test_math_gold() -> None:
    assert math_gold(HALF) == "\\frac{1}{2}"
    assert math_gold({"answer": "0.5", "solution": "\\boxed{1/2}"}) == "0.5"
    assert math_gold({"answer": "", "solution": "so \\boxed{2}."}) == "2"
    with pytest.raises(ValueError, match="'solution'"):
        math_gold({"solution": "no box here"})
    with pytest.raises(ValueError, match="'answer' or a 'solution'"):
        math_gold({"problem": "?"})


@pytest.mark.parametrize(
    ("output", "reference"),
    [
        ("So $x = \\boxed{\\frac{1}{2}}$.", {"answer": "0.5"}),
        ("So $x = \\boxed{\\frac{1}{2}}$.", {"answer": "\\frac12"}),
        ("So $x = \\boxed{0.5}$.", HALF),
        ("The answer is $\\frac12$.", HALF),
        ("Hence \\boxed{\\dfrac{\\sqrt{3}}{2}}", {"solution": "... $\\boxed{\\frac{\\sqrt3}{2}}$"}),
        ("\\boxed{x^2+1}", {"answer": "1+x^2"}),
        ("\\boxed{x^{2}+1}", {"solution": "$\\boxed{1 + x^{2}}$"}),
        ("there are \\boxed{1,234} ways", {"answer": "1234"}),
        ("the interval is \\boxed{[1, 2)}", {"answer": "[1,2)"}),
    ],
)
def test_math_equivalent_answers(output: str, reference: dict[str, Any]) -> None:
    verdict = MathVerifier().verify(output, reference)
    assert verdict.correct, verdict


@pytest.mark.parametrize(
    ("output", "reference"),
    [
        ("So $x = \\boxed{\\frac{1}{3}}$.", HALF),
        ("\\boxed{3}", HALF),
        ("\\boxed{x^2-1}", {"answer": "x^2+1"}),
        ("\\boxed{[1, 2]}", {"answer": "[1,2)"}),
        ("I cannot solve this.", HALF),
    ],
)
def test_math_wrong_answers(output: str, reference: dict[str, Any]) -> None:
    assert not MathVerifier().verify(output, reference).correct


def test_math_answers_that_a_brace_cutting_string_compare_would_equate() -> None:
    # The reference code takes r"\\boxed\{([^}]+)\}" from both the solution and the output and compares strings:
    # 1/3 and a gold 1/2 both cut to "\\frac{1" (2/9 and 2/7 to "\\frac{2"), so it grades them correct. math-verify
    # on the whole box does not.
    reference_cut = re.compile(r"\\boxed\{([^}]+)\}")
    for wrong, gold in [("\\frac{1}{3}", HALF), ("\\frac{2}{9}", {"solution": "so $\\boxed{\\frac{2}{7}}$"})]:
        output = f"So $x = \\boxed{{{wrong}}}$."
        cut_output = reference_cut.search(output)
        cut_gold = reference_cut.search(gold["solution"])
        assert cut_output is not None and cut_gold is not None and cut_output.group(1) == cut_gold.group(1)
        verdict = MathVerifier().verify(output, gold)
        assert not verdict.correct and verdict.extracted == wrong


def test_math_gold_is_the_first_box_of_the_solution() -> None:
    assert math_gold({"solution": "First $\\boxed{3}$, and then we box $\\boxed{4}$ again."}) == "3"


def test_math_verdict_fields() -> None:
    verdicts = create_verifier("math").verify_batch(["\\boxed{\\frac12}", "\\boxed{0.5}", "hmm"], [HALF] * 3)
    assert [v.extracted for v in verdicts] == ["\\frac12", "0.5", None]
    assert verdicts[0].extra == {"method": "boxed", "normalized": "1/2"}
    assert verdicts[1].extra is not None and verdicts[1].extra["normalized"] == "1/2"  # one vote key for both
    assert verdicts[2].detail == "no final answer"


def test_math_garbage_and_huge_inputs_do_not_hang() -> None:
    verifier = MathVerifier(timeout_s=1)
    outputs = [
        "\\boxed{",
        "}}}{{{\\boxed{}}}",
        "\\boxed{\\frac{\\frac{\\frac{}{}}",
        "\x00\x01\ufffd" * 1000,
        "\\boxed{" + "x" * 5000 + "}",
        "lorem ipsum " * 100_000,
        "\\boxed{\\fra{1}{2}}",
        "\\boxed{10^{10^{10}}}",
    ]
    with hang_guard():
        verdicts = verifier.verify_batch(outputs, [HALF] * len(outputs))
    assert not any(v.correct for v in verdicts)
    assert verdicts[4].detail == "answer too long to parse"
    assert verdicts[7].detail is not None and "timed out" in verdicts[7].detail


def test_math_in_a_worker_thread_uses_a_child_process() -> None:
    verifier = MathVerifier(timeout_s=1)
    outputs = ["\\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "\\boxed{10^{10^{10}}}", "\\boxed{3}", "\\boxed{\\frac12}"]
    verdicts = in_thread(verifier.verify_batch, outputs, [HALF] * len(outputs))
    assert [v.correct for v in verdicts] == [True, True, False, False, True]
    assert verdicts[2].detail is not None and "timed out" in verdicts[2].detail
    assert verdicts[1].extra is not None and verdicts[1].extra["normalized"] == "1/2"
    # The child process is kept for the next batch, then stopped by close().
    again = in_thread(verifier.verify_batch, ["\\boxed{1/2}"], [HALF])
    assert again[0].correct
    verifier.close()


def test_math_watchdog_restarts_a_stuck_child() -> None:
    # The child's own limit (5 s) is longer than the parent's watchdog (1 s): the parent kills the child on the
    # slow answer and a fresh child checks the rest.
    verifier = MathVerifier(timeout_s=5, isolation="process", watchdog_s=1.0)
    outputs = ["\\boxed{0.5}", "\\boxed{10^{10^{10}}}", "\\boxed{\\frac{2}{4}}"]
    verdicts = verifier.verify_batch(outputs, [HALF] * 3)
    by_answer = {v.extracted: v for v in verdicts}
    assert by_answer["0.5"].correct and by_answer["\\frac{2}{4}"].correct
    assert not by_answer["10^{10^{10}}"].correct
    assert "timed out" in (by_answer["10^{10^{10}}"].detail or "")
    verifier.close()


def test_math_options_are_checked() -> None:
    with pytest.raises(ValueError, match="isolation"):
        MathVerifier(isolation="thread")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_s"):
        MathVerifier(timeout_s=0)
