"""Answer-level diversity (answer-distinct, answer-entropy) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from divtrace.cli import app
from divtrace.score.metrics import ScoringContext, create_metric, metric_class, metric_names
from divtrace.score.metrics.answers import answer_counts, answer_entropy, distinct_answers

CONTEXT = ScoringContext()


def test_unparseable_samples_pool_into_one_answer() -> None:
    assert answer_counts(["4", None, "4", None, "5"]) == [2, 2, 1]  # "4", unparseable, "5"
    assert answer_counts([None, None, None]) == [3]
    assert answer_counts(["unparseable", None]) == [1, 1]  # the string is a real answer, not the None bucket


def test_distinct_answers_hand_computed() -> None:
    groups = [["4", None, "4", None, "5"], ["7"] * 4, [None] * 4, ["a", "b", "c", "d"], ["unparseable", None]]
    values = create_metric("answer-distinct").score_groups(groups, CONTEXT)
    np.testing.assert_array_equal(values, [3.0, 1.0, 1.0, 4.0, 2.0])
    assert values.dtype == np.float64
    assert math.isnan(distinct_answers([]))


def test_answer_entropy_hand_computed() -> None:
    # ["4", None, "4", None, "5"]: p = (2/5, 2/5, 1/5):
    #   -(0.4 ln 0.4 + 0.4 ln 0.4 + 0.2 ln 0.2) = 0.8 * 0.916291 + 0.2 * 1.609438 = 1.054920
    # ["1", "2", "1", "1"]: p = (3/4, 1/4): 0.75 * 0.287682 + 0.25 * 1.386294 = 0.562335
    # four different answers: ln 4 = 1.386294; one answer (or only unparseable samples): 0
    groups = [["4", None, "4", None, "5"], ["1", "2", "1", "1"], ["a", "b", "c", "d"], ["7"] * 4, [None] * 3]
    values = create_metric("answer-entropy").score_groups(groups, CONTEXT)
    np.testing.assert_allclose(values, [1.054920, 0.562335, math.log(4), 0.0, 0.0], atol=1e-6)
    assert values[0] == pytest.approx(-2 * 0.4 * math.log(0.4) - 0.2 * math.log(0.2), abs=1e-15)
    assert str(values[3]) == "0.0"  # not -0.0
    assert math.isnan(answer_entropy([]))


def test_answer_metrics_are_registered_with_their_contract() -> None:
    for name in ("answer-distinct", "answer-entropy"):
        assert name in metric_names()
        cls = metric_class(name)
        assert cls.input == "answers" and cls.k_dependent and cls.suitable_for_code and not cls.uses_embeddings
        assert create_metric(name).settings() == {"unparseable": "all None count as one shared answer"}
    assert all(metric_class(name).input == "texts" for name in ("ead", "distinct", "sbert", "vendi", "nli"))


def test_divtrace_metrics_lists_every_metric_with_its_description() -> None:
    result = CliRunner().invoke(app, ["metrics"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for name in metric_names():
        assert name in result.output
    for name in ("answer-distinct", "answer-entropy", "ead", "nli"):
        assert metric_class(name).description in result.output
    assert "extracted answers (divtrace verify)" in result.output
