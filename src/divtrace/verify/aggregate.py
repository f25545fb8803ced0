"""Accuracy over several samples per prompt: pass@k, majority vote, first-sample accuracy, IFEval accuracies.

Per prompt, the input is the prompt's verdicts in sample order (or just their ``correct`` flags and extracted
answers); per (checkpoint, task), prompt values are averaged. The summaries here use the same definitions as
``divtrace.verify.pipeline``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from divtrace.errors import DivtraceError
from divtrace.stats import cell_k_levels, default_k_levels, pass_at_k
from divtrace.tasks.registry import get_task
from divtrace.verify.base import MajorityRule, Verdict, majority_rule

#: The vote of every sample without an extracted answer: all of them count as one shared answer.
_UNPARSEABLE = object()


def majority_vote(answers: Sequence[str | None], correct: Sequence[bool]) -> tuple[str | None, bool]:
    """Self-consistency as in the study: the most frequent extracted answer of a prompt's samples, and whether it
    is correct.

    ``answers[i]`` and ``correct[i]`` describe sample ``i`` (in sample order). Samples without an answer (None)
    all vote for one shared "unparseable" answer, so a prompt whose samples mostly cannot be parsed gets no credit
    from a parseable minority. There is no majority, ``(None, False)``, when the two most frequent answers tie or
    when "unparseable" is the most frequent; otherwise the majority answer is correct when the first sample that
    gave it is correct. No samples at all give ``(None, False)``.
    """
    if len(answers) != len(correct):
        raise ValueError(f"{len(answers)} answers but {len(correct)} correct flags")
    counts = Counter(_UNPARSEABLE if answer is None else answer for answer in answers)
    top = counts.most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]) or top[0][0] is _UNPARSEABLE:
        return None, False
    winner = str(top[0][0])  # an answer: the unparseable marker was ruled out above
    return winner, bool(correct[list(answers).index(winner)])


def majority_vote_correct(answers: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """Whether the majority answer of a prompt is correct (see :func:`majority_vote` for votes and ties)."""
    return majority_vote(answers, correct)[1]


def more_than_half_correct(correct: Sequence[bool]) -> bool:
    """Whether more than half of a prompt's samples are correct (the study's TruthfulQA majority); False for none."""
    return sum(bool(flag) for flag in correct) > len(correct) / 2


def majority_correct(verdicts: Sequence[Verdict], rule: MajorityRule = "vote") -> bool:
    """A prompt's majority verdict under ``rule``: :func:`majority_vote` over :func:`vote_key` for ``"vote"``,
    :func:`more_than_half_correct` for ``"more_than_half"``."""
    flags = [bool(v.correct) for v in verdicts]
    if rule == "more_than_half":
        return more_than_half_correct(flags)
    if rule != "vote":
        raise ValueError(f"unknown majority rule {rule!r}")
    return majority_vote([vote_key(v) for v in verdicts], flags)[1]


def first_sample_correct(correct: Sequence[bool]) -> bool:
    """Whether the first sample of a prompt is correct (False for a prompt without samples)."""
    return bool(correct[0]) if len(correct) else False


def vote_key(verdict: Verdict) -> str | None:
    """The answer a verdict votes with: ``extra["normalized"]`` when the verifier gives one (the MATH verifier's
    SymPy form, so ``\\frac12`` and ``0.5`` agree), else ``extracted``."""
    if verdict.extra and isinstance(verdict.extra.get("normalized"), str):
        return str(verdict.extra["normalized"])
    return verdict.extracted


@dataclass(frozen=True)
class PromptSummary:
    """Accuracy figures of one prompt's samples.

    Attributes:
        n: samples; correct: how many are correct; accuracy: ``correct / n``.
        first_correct: whether the first sample is correct.
        majority_answer: the voted answer (:func:`majority_vote`; None under a tie, an "unparseable" majority or
            the ``"more_than_half"`` rule); majority_correct: the majority verdict (:func:`majority_correct`).
        pass_at: pass@k per requested k (only the k with ``k <= n``).
    """

    n: int
    correct: int
    accuracy: float
    first_correct: bool
    majority_answer: str | None
    majority_correct: bool
    pass_at: dict[int, float] = field(default_factory=dict)


def summarize_prompt(
    verdicts: Sequence[Verdict], ks: Sequence[int] | None = None, majority_rule: MajorityRule = "vote"
) -> PromptSummary:
    """Summary of one prompt's verdicts, in sample order; ``ks`` defaults to :func:`default_k_levels`.

    The majority verdict follows ``majority_rule`` (the verifier's, see :func:`majority_correct`); the vote uses
    :func:`vote_key`. Raises ValueError for a prompt without verdicts.
    """
    if not verdicts:
        raise ValueError("a prompt needs at least one verdict")
    flags = [bool(v.correct) for v in verdicts]
    n, c = len(flags), sum(flags)
    if majority_rule == "vote":
        answer, answer_correct = majority_vote([vote_key(v) for v in verdicts], flags)
    else:
        answer, answer_correct = None, majority_correct(verdicts, majority_rule)
    levels = default_k_levels(n) if ks is None else [k for k in ks if 1 <= k <= n]
    return PromptSummary(
        n=n,
        correct=c,
        accuracy=c / n,
        first_correct=flags[0],
        majority_answer=answer,
        majority_correct=answer_correct,
        pass_at={k: pass_at_k(n, c, k) for k in levels},
    )


def ifeval_accuracy(verdicts: Sequence[Verdict]) -> dict[str, float]:
    """IFEval's four accuracies over IFEval verdicts (each sample counts as one response).

    ``prompt_level_strict``/``prompt_level_loose``: share of verdicts whose every instruction is followed;
    ``inst_level_strict``/``inst_level_loose``: share of all instructions of all verdicts that are followed (the
    official micro-average). Verdicts without IFEval ``extra`` are ignored; NaN when none is left.
    """
    rows = [v.extra for v in verdicts if v.extra and "strict" in v.extra and "loose" in v.extra]
    strict = [bool(x) for row in rows for x in row["strict"]]
    loose = [bool(x) for row in rows for x in row["loose"]]

    def mean(values: Sequence[bool]) -> float:
        """The share of True values; NaN for none."""
        return float(np.mean(values)) if len(values) else math.nan

    return {
        "prompt_level_strict": mean([all(row["strict"]) for row in rows]),
        "prompt_level_loose": mean([all(row["loose"]) for row in rows]),
        "inst_level_strict": mean(strict),
        "inst_level_loose": mean(loose),
    }


def task_majority_rule(task: str) -> MajorityRule:
    """The majority rule of a registered task's verifier; ``"vote"`` for a task that is unknown or has none."""
    if task.endswith((".yaml", ".yml")):
        return "vote"  # a file name, not a task name: nothing to load here
    try:
        verifier = get_task(task).verifier
        return majority_rule(verifier) if verifier else "vote"
    except (DivtraceError, KeyError):
        return "vote"


def verdict_from_row(row: Any) -> Verdict:
    """The :class:`Verdict` of one row of a verdict table (``extra`` as stored: JSON text, a dict, or missing)."""
    extra = row.get("extra")
    if isinstance(extra, str):
        extra = json.loads(extra) if extra else None
    elif not isinstance(extra, dict):
        extra = None
    extracted = row.get("extracted")
    if extracted is not None and not isinstance(extracted, str):
        extracted = None if pd.isna(extracted) else str(extracted)
    return Verdict(correct=bool(row["correct"]), extracted=extracted, detail=None, extra=extra)


def summarize_verdicts(
    verdicts: pd.DataFrame,
    ks: Sequence[int] | None = None,
    majority_rules: Mapping[str, MajorityRule] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-prompt and per-(checkpoint, task) accuracy tables from a verdict table.

    ``verdicts`` has one row per sample with columns ``checkpoint``, ``task``, ``prompt_id``, ``correct``,
    ``extracted`` and optionally ``sample_index`` (sample order; else row order) and ``extra`` (a dict or its
    JSON, as ``divtrace verify`` writes it). ``ks``: the pass@k levels (default: :func:`default_k_levels` of the
    largest K). ``majority_rules``: the majority rule per task name; a task not in it takes its verifier's rule when
    it is a registered task with a verifier (TruthfulQA: ``"more_than_half"``), else ``"vote"``.

    Returns ``(per_prompt, per_group)``. ``per_prompt``: checkpoint, task, prompt_id, n, correct, accuracy,
    first_correct, majority_answer, majority_correct, ``pass@k`` (NaN where ``k > n``). ``per_group``:
    checkpoint, task, prompts, k (the smallest n), accuracy (mean over prompts of the per-prompt accuracy),
    accuracy_first, majority_vote, ``pass@k`` (mean over the prompts with ``n >= k``), prompts_with_2_correct
    and, for IFEval verdicts, the four :func:`ifeval_accuracy` figures over all samples.
    """
    required = {"checkpoint", "task", "prompt_id", "correct", "extracted"}
    missing = required - set(verdicts.columns)
    if missing:
        raise ValueError(f"verdict table lacks columns {sorted(missing)}")
    frame = verdicts.copy()
    frame["_order"] = frame["sample_index"] if "sample_index" in frame.columns else np.arange(len(frame))
    frame = frame.sort_values(["checkpoint", "task", "prompt_id", "_order"], kind="stable")
    grouped: dict[Any, list[Verdict]] = {  # keys: (checkpoint, task, prompt_id)
        key: [verdict_from_row(row) for row in group.to_dict("records")]
        for key, group in frame.groupby(["checkpoint", "task", "prompt_id"], sort=False, dropna=False)
    }
    levels = cell_k_levels(len(v) for v in grouped.values()) if ks is None else sorted({int(k) for k in ks if k >= 1})

    prompt_rows: list[dict[str, Any]] = []
    by_group: dict[tuple[Any, Any], list[Verdict]] = {}  # (checkpoint, task)
    rules = dict(majority_rules or {})
    for (checkpoint, task, prompt_id), prompt_verdicts in grouped.items():
        if task not in rules:
            rules[task] = task_majority_rule(str(task))
        summary = summarize_prompt(prompt_verdicts, levels, rules[task])
        row: dict[str, Any] = {
            "checkpoint": checkpoint,
            "task": task,
            "prompt_id": prompt_id,
            "n": summary.n,
            "correct": summary.correct,
            "accuracy": summary.accuracy,
            "first_correct": summary.first_correct,
            "majority_answer": summary.majority_answer,
            "majority_correct": summary.majority_correct,
        }
        for k in levels:
            row[f"pass@{k}"] = summary.pass_at.get(k, math.nan)
        prompt_rows.append(row)
        by_group.setdefault((checkpoint, task), []).extend(prompt_verdicts)
    per_prompt = pd.DataFrame(prompt_rows)
    if per_prompt.empty:
        return per_prompt, pd.DataFrame()

    group_rows: list[dict[str, Any]] = []
    for (checkpoint, task), group in per_prompt.groupby(["checkpoint", "task"], sort=False, dropna=False):
        row = {
            "checkpoint": checkpoint,
            "task": task,
            "prompts": len(group),
            "k": int(group["n"].min()),
            "accuracy": float(group["accuracy"].mean()),
            "accuracy_first": float(group["first_correct"].mean()),
            "majority_vote": float(group["majority_correct"].mean()),
        }
        for k in levels:
            row[f"pass@{k}"] = float(group[f"pass@{k}"].mean())  # NaN-skipping: prompts with n >= k
        row["prompts_with_2_correct"] = int((group["correct"] >= 2).sum())
        ifeval = ifeval_accuracy(by_group[(checkpoint, task)])
        if not math.isnan(ifeval["prompt_level_strict"]):
            row.update({f"ifeval_{name}": value for name, value in ifeval.items()})
        group_rows.append(row)
    return per_prompt, pd.DataFrame(group_rows)
