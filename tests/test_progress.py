"""Progress events of the long jobs (embedding, NLI, scoring, verification) in the one protocol of
:mod:`divtrace.progress`: announced with their total, then per batch, monotone, in the right unit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from divtrace.progress import PAIRS, PROMPTS, SAMPLES, TEXTS, counter
from divtrace.samples import SampleRecord
from divtrace.score.metrics import ScoringContext
from divtrace.score.metrics.embeddings import EmbeddingStore
from divtrace.score.metrics.nli import NLIDiversity
from divtrace.score.scorer import PROMPTS_PER_CALL, Scorer, build_metrics
from divtrace.score.settings import EmbedderSettings
from divtrace.verify.pipeline import VERIFY_BATCH, verify_records

Event = tuple[str, int, "int | None", str]


def _by_label(events: list[Event]) -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {}
    for event in events:
        found.setdefault(event[0], []).append(event)
    return found


def assert_moves(events: list[Event], total: int, unit: str, batches: int) -> None:
    """One label's events: announced at 0 with its total, one more per batch, monotone, ending at the total."""
    assert {e[2] for e in events} == {total} and {e[3] for e in events} == {unit}
    done = [e[1] for e in events]
    assert done[0] == 0 and done[-1] == total
    assert done == sorted(done) and len(done) == batches + 1


def events_append(events: list[Event]) -> Any:
    """``events.append`` as a :data:`divtrace.progress.Progress` callback."""
    return lambda *event: events.append(event)


def sentence(i: int) -> str:
    return f"Sentence number {i} talks about topic {i * 7 % 13} in its own words. It adds a second claim {i}."


def test_embedding_reports_every_encoder_batch_in_texts() -> None:
    store = EmbeddingStore(EmbedderSettings(batch_size=4), cache=False)
    events: list[Event] = []
    store.embed([sentence(i) for i in range(10)], progress=counter(events_append(events), "embedding", TEXTS))
    assert_moves(events, 10, TEXTS, batches=3)  # 4 + 4 + 2
    events.clear()
    store.embed([sentence(i) for i in range(10)], progress=counter(events_append(events), "embedding", TEXTS))
    assert events == []  # nothing to encode: nothing to report


def test_nli_reports_every_classifier_batch_in_pairs(tiny_nli_model: Path) -> None:
    metric = NLIDiversity(model=str(tiny_nli_model), batch_size=2)
    events: list[Event] = []
    groups = [[sentence(i), sentence(i + 1), sentence(i + 2)] for i in range(0, 6, 3)]
    context = ScoringContext(progress=counter(events_append(events), "scoring nli", PAIRS))
    metric.score_groups(groups, context)
    total = metric.last_stats.unique_inputs
    assert total > 4
    assert_moves(events, total, PAIRS, batches=metric.last_stats.batches)


def _records(prompts: int, k: int = 3) -> list[SampleRecord]:
    return [
        SampleRecord(prompt_id=f"p{p:03d}", prompt="q", outputs=[sentence(p * k + i) for i in range(k)])
        for p in range(prompts)
    ]


def test_scorer_reports_embedding_in_texts_and_metrics_per_few_prompts() -> None:
    prompts = 2 * PROMPTS_PER_CALL + 5
    store = EmbeddingStore(EmbedderSettings(batch_size=64), cache=False)
    scorer = Scorer(build_metrics(["ead", "sbert"]), embedder=store)
    events: list[Event] = []
    scorer.score(_records(prompts), progress=lambda *event: events.append(event))
    labels = _by_label(events)
    assert list(labels) == ["embedding", "scoring ead", "ead across-input", "scoring sbert", "sbert across-input"]
    assert_moves(labels["embedding"], 3 * prompts, TEXTS, batches=4)  # 207 texts in batches of 64
    for metric in ("ead", "sbert"):
        assert_moves(labels[f"scoring {metric}"], prompts, PROMPTS, batches=3)  # 32 + 32 + 5 prompts
        assert_moves(labels[f"{metric} across-input"], prompts, PROMPTS, batches=1)


def test_scorer_forwards_nli_progress_in_pairs(tiny_nli_model: Path) -> None:
    metric = NLIDiversity(model=str(tiny_nli_model), batch_size=4)
    events: list[Event] = []
    Scorer([metric]).score(_records(6), progress=lambda *event: events.append(event))
    labels = _by_label(events)
    assert set(labels) == {"scoring nli", "nli across-input"}
    for label, found in labels.items():
        total = found[-1][2]
        assert total is not None and total > 4, label
        assert_moves(found, total, PAIRS, batches=len(found) - 1)
        assert len(found) > 2, label


def test_per_prompt_scoring_gives_the_numbers_of_one_call() -> None:
    records = _records(PROMPTS_PER_CALL + 3)
    chunked = Scorer(build_metrics(["ead", "vendi"]), use_cache=False).score(records)
    for metric in build_metrics(["ead", "vendi"]):
        context = ScoringContext(embeddings=EmbeddingStore(EmbedderSettings(), cache=False))
        whole = metric.score_groups([r.scored_texts() for r in records], context)
        got = chunked.per_prompt.query("metric == @metric.name")["value"].to_numpy()
        assert got == pytest.approx(whole, abs=1e-12)


def test_verification_reports_every_sample_batch() -> None:
    answers = ["#### 18", "The answer is 16.", "18"]
    references = {"answer": "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n#### 18"}
    records = [
        SampleRecord(prompt_id=str(p), prompt="Janet...", task="gsm8k", references=references, outputs=answers * 10)
        for p in range(5)
    ]  # 150 samples: batches of 64, 64, 22
    events: list[Any] = []
    verify_records(records, progress=lambda task, done, total: events.append((task, done, total, SAMPLES)))
    assert_moves(events, 150, SAMPLES, batches=-(-150 // VERIFY_BATCH))
