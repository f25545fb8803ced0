"""Write ``src/divtrace/tasks/bundled/lab_arithmetic.jsonl``, the lab's verifiable task: one-step arithmetic word
problems in the GSM8K format (``answer`` ends ``#### N``), checked by the ``gsm8k`` verifier.

The bundled ``arithmetic`` task has 8 problems, too few for a DPO stage's verifier pairs (a pair needs a prompt with
a correct and an incorrect sample). This script makes :data:`N_PROBLEMS` from templates, one operation each
(addition, subtraction, multiplication, exact division), with small numbers (answers of at most 18, as the bundled
``arithmetic``'s) drawn from ``random.Random(SEED)``: the same script writes the same file, byte for byte. Small,
because the pairs need a parent that is sometimes right. For the same reason the task's template gives the problem's
one step (``equation``: ``Answer: 5 + 6 =``) and the model computes it: gemma-3-270m's SFT stage, sampled at
temperature 1.0, got 5 of 192 answers right on two-digit operands and 0 of 128 on small ones when it had to find
the step itself, and DPO needs prompts with both a correct and an incorrect sample.

Run from the repository root (no dependencies beyond the standard library)::

    python scripts/make_lab_arithmetic.py            # writes the bundled file
    python scripts/make_lab_arithmetic.py --check    # exit 1 when the bundled file is not what it would write
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "src" / "divtrace" / "tasks" / "bundled" / "lab_arithmetic.jsonl"
#: How many problems, and the seed their numbers are drawn from.
N_PROBLEMS = 96
SEED = 25

#: A problem: its question, its worked line (``a op b = c``) and its answer, from a random generator.
Problem = tuple[str, str, int]

NAMES = ("Tom", "Sara", "Ben", "Mia", "Leo", "Ana", "Omar", "Lena", "Raj", "Ivy", "Sam", "Nora")
ITEMS = ("apples", "marbles", "stickers", "books", "pencils", "cookies", "stamps", "shells", "cards", "coins")


def _add(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    question = rng.choice(
        (
            f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
            f"There are {a} {item} in a box and {b} {item} on the table. How many {item} are there in all?",
            f"{name} collected {a} {item} on Monday and {b} on Tuesday. How many {item} did {name} collect?",
        )
    )
    return question, f"{a} + {b} = {a + b}", a + b


def _subtract(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a = rng.randint(6, 15)
    b = rng.randint(1, min(a - 1, 9))
    question = rng.choice(
        (
            f"{name} had {a} {item} and gave away {b}. How many {item} does {name} have left?",
            f"A shop had {a} {item} and sold {b} of them. How many {item} are left?",
            f"{name} needs {a} {item} and already has {b}. How many more {item} does {name} need?",
        )
    )
    return question, f"{a} - {b} = {a - b}", a - b


def _multiply(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 5), rng.randint(2, 6)
    question = rng.choice(
        (
            f"A bag holds {a} {item}. How many {item} are in {b} bags?",
            f"{name} buys {b} packs of {item} with {a} in each pack. How many {item} does {name} buy?",
            f"One ticket costs {a} dollars. How much do {b} tickets cost in dollars?",
        )
    )
    return question, f"{a} * {b} = {a * b}", a * b


def _divide(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    b, quotient = rng.randint(2, 5), rng.randint(2, 5)
    a = b * quotient
    question = rng.choice(
        (
            f"{name} shares {a} {item} equally among {b} friends. How many {item} does each friend get?",
            f"{a} {item} are packed into boxes of {b}. How many boxes are filled?",
            f"A rope {a} meters long is cut into {b} equal pieces. How many meters long is each piece?",
        )
    )
    return question, f"{a} / {b} = {quotient}", quotient


#: The operations, taken in turn so that each has a quarter of the problems.
OPERATIONS: tuple[Callable[[random.Random], Problem], ...] = (_add, _subtract, _multiply, _divide)


def problems(n: int = N_PROBLEMS, seed: int = SEED) -> list[dict[str, str]]:
    """``n`` problems as task rows ``{"id": "lab-arith-I", "question", "equation": "a op b", "answer": "a op b =
    c\\n#### c"}``; the same ``n`` and ``seed`` give the same rows, no question twice."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    while len(rows) < n:
        question, worked, answer = OPERATIONS[len(rows) % len(OPERATIONS)](rng)
        if question in seen:
            continue
        seen.add(question)
        row = {"id": f"lab-arith-{len(rows)}", "question": question, "equation": worked.split(" = ")[0]}
        rows.append({**row, "answer": f"{worked}\n#### {answer}"})
    return rows


def render(rows: list[dict[str, str]]) -> str:
    """The JSON Lines text of ``rows`` (one object a line, as the other bundled task files)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) the bundled file; 0 when it is written or as this script makes it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default: {OUT})")
    parser.add_argument("--check", action="store_true", help="compare instead of writing: exit 1 when it differs")
    args = parser.parse_args(argv)
    text = render(problems())
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'as made' if same else 'differs from what this script makes'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {N_PROBLEMS} problems to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
