"""Bad text never breaks a metric: values stay in each metric's range, and texts the embedder cannot tell apart are
counted (the packaged all-MiniLM-L6-v2 reads every emoji as its unknown token)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from divtrace.samples import SampleRecord
from divtrace.score.indistinguishable import indistinguishable_positions
from divtrace.score.metrics import metric_class, metric_names
from divtrace.score.metrics._base import Metric, ValueRange
from divtrace.score.metrics.embeddings import EmbeddingStore
from divtrace.score.scorer import Scorer, build_metrics, unit_table
from divtrace.score.settings import EmbedderSettings

EMOJI = ["🎉", "🚀", "😀😀", "🐍🐍🐍"]  # four different outputs, one [UNK] token each for all-MiniLM
WORDS = ["The sea was calm at dawn.", "A cat named Miso sleeps all day.", "Clouds drift over the hills.", "🎉"]


@pytest.fixture(scope="module")
def store() -> EmbeddingStore:
    return EmbeddingStore(EmbedderSettings(), cache=False)


def test_every_built_in_metric_declares_its_range() -> None:
    for name in metric_names():
        declared = metric_class(name).__dict__.get("value_range") or next(
            klass.__dict__["value_range"] for klass in metric_class(name).__mro__ if "value_range" in klass.__dict__
        )
        assert declared is not Metric.value_range, name
        assert declared.low > -math.inf, name
    assert str(metric_class("sbert").value_range) == "[0, 2]"
    assert str(metric_class("vendi").value_range) == "[1, n]"
    assert str(metric_class("answer-entropy").value_range) == "[0, ln n]"


def test_clip_removes_noise_keeps_nan_and_never_gives_negative_zero() -> None:
    sizes = np.array([4, 4, 4, 3])
    clipped = ValueRange(1.0, high_of_n="n").clip(np.array([0.9999999999, 4.0000000001, np.nan, 2.5]), sizes)
    assert clipped[:2].tolist() == [1.0, 4.0] and math.isnan(clipped[2]) and clipped[3] == 2.5
    zero = ValueRange(0.0, 2.0).clip(np.array([-6.7e-16, -0.0]), np.array([4, 4]))
    assert zero.tolist() == [0.0, 0.0] and not np.signbit(zero).any()
    entropy = ValueRange(0.0, high_of_n="ln n").clip(np.array([math.log(4) + 1e-15]), np.array([4]))
    assert entropy[0] == math.log(4)


def test_emoji_outputs_are_indistinguishable_to_minilm(store: EmbeddingStore) -> None:
    assert indistinguishable_positions(EMOJI, store.embed) == [0, 1, 2, 3]
    assert indistinguishable_positions(WORDS, store.embed) == []
    assert indistinguishable_positions(["🎉", "🚀", "same", "same"], store.embed) == [0, 1]  # repeats are one text


def test_scoring_emoji_outputs_counts_them_and_keeps_values_in_range(store: EmbeddingStore) -> None:
    records = [
        SampleRecord(prompt_id="emoji", prompt="react", checkpoint="c", task="t", outputs=EMOJI),
        SampleRecord(prompt_id="words", prompt="write", checkpoint="c", task="t", outputs=WORDS),
    ]
    result = Scorer(build_metrics(["ead", "sbert", "vendi"]), embedder=store).score(records)
    rows = result.per_prompt.set_index(["prompt_id", "metric"])
    # the embedder sees four identical inputs: exactly the least diverse values, not -6.7e-16 or 0.99999
    assert rows.loc[("emoji", "sbert"), "value"] == 0.0
    assert not np.signbit(rows.loc[("emoji", "sbert"), "value"])
    # Vendi: 1 plus what the documented eigenvalue floor adds (3 * 1e-12 * ln 1e12 = 8.3e-11), never below 1
    assert 1.0 <= rows.loc[("emoji", "vendi"), "value"] == pytest.approx(1.0, abs=1e-10)
    assert rows.loc[("emoji", "sbert"), "indistinguishable_texts"] == 4
    assert rows.loc[("words", "sbert"), "indistinguishable_texts"] == 0
    assert pd.isna(rows.loc[("emoji", "ead"), "indistinguishable_texts"])  # EAD reads the strings themselves
    for metric in ("ead", "sbert", "vendi"):
        bounds = metric_class(metric).value_range
        values = result.per_prompt.query("metric == @metric")["value"].to_numpy()
        assert (values >= bounds.low).all() and (values <= bounds.upper(np.full(values.shape, 4))).all(), metric

    found = result.settings["indistinguishable_texts"]
    assert found["count"] == 4 and found["prompts"] == 1
    assert found["examples"] == [{"checkpoint": "c", "task": "t", "prompt_id": "emoji", "texts": EMOJI[:3]}]
    summary = result.summary.set_index("metric")
    assert summary.loc["sbert", "indistinguishable_texts"] == 4
    assert summary.loc["vendi", "indistinguishable_texts"] == 4
    assert pd.isna(summary.loc["ead", "indistinguishable_texts"])
    table = unit_table(result)  # what a run stores: across-input rows have no count
    assert table.query("subset == 'across-input'")["indistinguishable_texts"].isna().all()


def test_without_an_embedding_metric_nothing_is_counted() -> None:
    records = [SampleRecord(prompt_id="emoji", prompt="react", outputs=EMOJI)]
    result = Scorer(build_metrics(["ead"])).score(records)
    assert result.settings["indistinguishable_texts"] is None
    assert result.per_prompt["indistinguishable_texts"].isna().all()
