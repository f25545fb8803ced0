"""Answer-level diversity: how many different final answers a prompt's samples reach, and how evenly.

These metrics read :attr:`Metric.input` ``"answers"``: a group is the extracted answers of one prompt's samples,
in sample order, not their texts. An answer is a ``str`` (compare the verify stage's vote keys,
:func:`divtrace.verify.aggregate.vote_key`, so that equivalent MATH answers agree), or None for a sample
whose answer could not be extracted. Every None counts as ONE shared answer, "unparseable", as in the study's
majority vote (:func:`divtrace.verify.aggregate.majority_vote`); it never equals a real answer, not even
the string ``"unparseable"``.

Both metrics depend on the group size K by construction: ``answer-distinct`` lies in [1, K] and
``answer-entropy`` in [0, ln K], and the plug-in entropy of K draws underestimates the entropy of the answer
distribution by more the smaller K is. So ``k_dependent`` is True: compare them only between groups of the same K
(the quality-filtered decomposition skips them). They suit code tasks too, where the answer is the extracted
program or prediction compared as an exact string (so two programs differing in a space are two answers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from divtrace.score.metrics._base import DIVTRACE_SOURCE, Metric, ScoringContext, ValueRange
from divtrace.score.metrics._registry import register_metric

#: A group of answers: one per sample, None for an unparseable sample.
Answers = Sequence[str | None]


class _Unparseable:
    """The one answer every unparseable sample gives; unequal to every string."""

    def __repr__(self) -> str:
        return "<unparseable>"


UNPARSEABLE: object = _Unparseable()


def answer_counts(answers: Answers) -> list[int]:
    """How many samples gave each distinct answer, in order of first appearance; all None pool into one answer.

    ``answer_counts(["4", None, "4", None, "5"]) == [2, 2, 1]`` ("4", unparseable, "5").
    """
    return list(Counter(UNPARSEABLE if answer is None else answer for answer in answers).values())


def distinct_answers(answers: Answers) -> float:
    """The number of distinct answers (unparseable counting as one answer); NaN for an empty group."""
    return float(len(answer_counts(answers))) if len(answers) else float("nan")


def answer_entropy(answers: Answers) -> float:
    """Shannon entropy, natural log, of the empirical answer distribution: ``-sum p ln p`` with ``p = count / n``.

    Unparseable samples pool into one answer. 0 when every sample gives the same answer; ln K when K samples give
    K different answers; NaN for an empty group.
    """
    n = len(answers)
    if n == 0:
        return float("nan")
    p = np.asarray(answer_counts(answers), dtype=np.float64) / n
    return float(-(p * np.log(p)).sum()) + 0.0  # + 0.0: never -0.0


class _AnswerMetric(Metric):
    """Shared parts of the answer-level metrics: answers in, no options, suitable for code, K-dependent."""

    input = "answers"
    k_dependent = True
    needs = "extracted answers (divtrace verify)"

    def settings(self) -> dict[str, Any]:
        """The rule for samples without an answer (the metric has no options)."""
        return {"unparseable": "all None count as one shared answer"}


@register_metric
class AnswerDistinct(_AnswerMetric):
    """The number of distinct extracted answers among a prompt's samples, in [1, K] (see the module docstring)."""

    name = "answer-distinct"
    source = DIVTRACE_SOURCE
    description = "number of distinct extracted answers among the K samples (unparseable = one answer; depends on K)"
    value_range = ValueRange(1.0, high_of_n="n")

    def score_groups(self, groups: Sequence[Answers], context: ScoringContext) -> np.ndarray:
        """:func:`distinct_answers` of each group of answers, float64, in the order given."""
        return np.array([distinct_answers(group) for group in groups], dtype=np.float64)


@register_metric
class AnswerEntropy(_AnswerMetric):
    """Shannon entropy (nats) of a prompt's extracted answers, in [0, ln K] (see the module docstring)."""

    name = "answer-entropy"
    source = DIVTRACE_SOURCE
    description = "entropy (nats) of the extracted answers of the K samples (unparseable = one answer; depends on K)"
    value_range = ValueRange(0.0, high_of_n="ln n")

    def score_groups(self, groups: Sequence[Answers], context: ScoringContext) -> np.ndarray:
        """:func:`answer_entropy` of each group of answers, float64, in the order given."""
        return np.array([answer_entropy(group) for group in groups], dtype=np.float64)
