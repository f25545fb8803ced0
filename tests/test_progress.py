"""The one progress event (:class:`divtrace.progress.ProgressEvent`): what the long jobs (embedding, NLI, scoring,
verification) emit, announced with their total, then per batch, monotone, in the right count; and the command
line's two adapters of it (rich bars on a terminal, plain lines in a log), one line per stage."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from divtrace.cli.progress import ProgressDisplay
from divtrace.progress import PAIRS, PROMPTS, SAMPLES, TEXTS, TOKENS, ProgressEvent, emit, scoped
from divtrace.samples import SampleRecord
from divtrace.score.metrics import ScoringContext
from divtrace.score.metrics.embeddings import EmbeddingStore
from divtrace.score.metrics.nli import NLIDiversity
from divtrace.score.scorer import PROMPTS_PER_CALL, Scorer, build_metrics
from divtrace.score.settings import EmbedderSettings
from divtrace.verify.pipeline import VERIFY_BATCH, verify_records


def _by_step(events: list[ProgressEvent]) -> dict[str, list[ProgressEvent]]:
    found: dict[str, list[ProgressEvent]] = {}
    for event in events:
        found.setdefault(event.step, []).append(event)
    return found


def assert_moves(events: list[ProgressEvent], total: int, count: str, batches: int) -> None:
    """One step's events: announced at 0 with its total, one more per batch, monotone, ending at the total."""
    assert {e.total for e in events} == {total} and {e.count for e in events} == {count}
    done = [e.done for e in events]
    assert done[0] == 0 and done[-1] == total
    assert done == sorted(done) and len(done) == batches + 1


def sentence(i: int) -> str:
    return f"Sentence number {i} talks about topic {i * 7 % 13} in its own words. It adds a second claim {i}."


def test_scoped_fills_in_what_the_emitter_left_empty() -> None:
    events: list[ProgressEvent] = []
    sink = scoped(events.append, stage="score", unit="base/gsm8k")
    emit(sink, 1, 4, TEXTS, step="embedding")
    assert sink is not None
    sink(ProgressEvent("verify", "other/task", 2, None, SAMPLES))  # what the emitter knows is kept
    assert events == [
        ProgressEvent("score", "base/gsm8k", 1, 4, TEXTS, "embedding"),
        ProgressEvent("verify", "other/task", 2, None, SAMPLES),
    ]
    assert scoped(None, stage="score") is None
    emit(None, 1, 2, TEXTS)  # nowhere to go: nothing happens


def test_embedding_reports_every_encoder_batch_in_texts() -> None:
    store = EmbeddingStore(EmbedderSettings(batch_size=4), cache=False)
    events: list[ProgressEvent] = []
    store.embed([sentence(i) for i in range(10)], progress=events.append)
    assert_moves(events, 10, TEXTS, batches=3)  # 4 + 4 + 2
    assert {(e.stage, e.unit, e.step) for e in events} == {("", "", "")}  # the caller knows those
    events.clear()
    store.embed([sentence(i) for i in range(10)], progress=events.append)
    assert events == []  # nothing to encode: nothing to report


def test_nli_reports_every_classifier_batch_in_pairs(tiny_nli_model: Path) -> None:
    metric = NLIDiversity(model=str(tiny_nli_model), batch_size=2)
    events: list[ProgressEvent] = []
    groups = [[sentence(i), sentence(i + 1), sentence(i + 2)] for i in range(0, 6, 3)]
    metric.score_groups(groups, ScoringContext(progress=events.append))
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
    events: list[ProgressEvent] = []
    scorer.score(_records(prompts), progress=events.append)
    steps = _by_step(events)
    assert list(steps) == ["loading models", "embedding", "ead", "ead across-input", "sbert", "sbert across-input"]
    assert [(e.done, e.total, e.count) for e in steps["loading models"]] == [(0, None, "")]
    assert_moves(steps["embedding"], 3 * prompts, TEXTS, batches=4)  # 207 texts in batches of 64
    for metric in ("ead", "sbert"):
        assert_moves(steps[metric], prompts, PROMPTS, batches=3)  # 32 + 32 + 5 prompts
        assert_moves(steps[f"{metric} across-input"], prompts, PROMPTS, batches=1)
    events.clear()
    scorer.score(_records(3), progress=events.append)
    assert "loading models" not in _by_step(events)  # loaded once


def test_scorer_forwards_nli_progress_in_pairs(tiny_nli_model: Path) -> None:
    metric = NLIDiversity(model=str(tiny_nli_model), batch_size=4)
    events: list[ProgressEvent] = []
    Scorer([metric]).score(_records(6), progress=events.append)
    steps = _by_step(events)
    assert set(steps) == {"loading models", "nli", "nli across-input"}
    for step in ("nli", "nli across-input"):
        found = steps[step]
        total = found[-1].total
        assert total is not None and total > 4, step
        assert_moves(found, total, PAIRS, batches=len(found) - 1)
        assert len(found) > 2, step


def test_per_prompt_scoring_gives_the_numbers_of_one_call() -> None:
    records = _records(PROMPTS_PER_CALL + 3)
    chunked = Scorer(build_metrics(["ead", "vendi"]), use_cache=False).score(records)
    for metric in build_metrics(["ead", "vendi"]):
        context = ScoringContext(embeddings=EmbeddingStore(EmbedderSettings(), cache=False))
        whole = metric.score_groups([r.scored_texts() for r in records], context)
        got = chunked.per_prompt.query("metric == @metric.name")["value"].to_numpy()
        assert got == pytest.approx(whole, abs=1e-12)


def test_verification_reports_every_sample_batch_of_its_unit() -> None:
    answers = ["#### 18", "The answer is 16.", "18"]
    references = {"answer": "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n#### 18"}
    records = [
        SampleRecord(prompt_id=str(p), prompt="Janet...", task="gsm8k", references=references, outputs=answers * 10)
        for p in range(5)
    ]  # 150 samples: batches of 64, 64, 22
    events: list[ProgressEvent] = []
    verify_records(records, progress=events.append)
    assert_moves(events, 150, SAMPLES, batches=-(-150 // VERIFY_BATCH))
    assert {(e.stage, e.unit) for e in events} == {("", "default/gsm8k")}


# ----------------------------------------------------------------------------------------------- the display


def _stage_events(display: ProgressDisplay, before_analyze: Any = None) -> None:
    """What a run sends: generate (a model loads, then two units in tokens), score (steps in texts and prompts),
    analyze (nothing counted); ``before_analyze`` is called before the last stage begins."""
    display.begin("generate")
    display(ProgressEvent("generate", "base", 0, None, "", "loading model"))
    for unit in ("base/gsm8k", "base/xsum"):
        for done in range(0, 97, 8):
            display(ProgressEvent("generate", unit, done, 96, TOKENS))
    display.begin("score")
    sink = scoped(display, stage="score", unit="base/gsm8k")
    for step, count, total in (("loading models", "", None), ("embedding", TEXTS, 24), ("ead", PROMPTS, 3)):
        for done in range(0, (total or 0) + 1):
            emit(sink, done, total, count, step)
    if before_analyze is not None:
        before_analyze()
    display.begin("analyze")


def test_terminal_bars_one_per_stage_each_closed_when_its_stage_ends() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=160, color_system=None)
    with ProgressDisplay(True, console=console) as display:
        progress = display._progress
        assert progress is not None
        _stage_events(display, progress.refresh)
        tasks = {task.fields["stage"]: task for task in progress.tasks}
        assert list(tasks) == ["generate", "score", "analyze"]  # one bar per stage, not per unit or step
        assert tasks["generate"].finished and tasks["score"].finished  # closed when the next stage began
        assert not tasks["analyze"].finished
        assert tasks["generate"].fields["what"] == "done, 2 unit(s) in 0 s"
    assert all(task.finished for task in progress.tasks)  # the display closed the last one
    assert all(task.fields["closed"] for task in progress.tasks)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "━" in output and "base/gsm8k ead" in output and "3/3 prompts (100%)" in output


def test_log_lines_one_per_stage_and_interval_plus_a_final_line(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), force_terminal=False, width=10_000, soft_wrap=True)
    with ProgressDisplay(False, line_interval_s=3600, console=console) as display:
        _stage_events(display)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines == [
        "generate base: loading model, elapsed 0 s",
        "generate: done, 2 unit(s) in 0 s",
        "score base/gsm8k: loading models, elapsed 0 s",
        "score: done, 1 unit(s) in 0 s",
        "analyze: done in 0 s",
    ]


def test_log_lines_show_the_step_its_count_rate_and_eta() -> None:
    console = Console(file=io.StringIO(), force_terminal=False, width=10_000, soft_wrap=True)
    with ProgressDisplay(False, line_interval_s=0, console=console) as display:
        sink = scoped(display, stage="score", unit="base/gsm8k")
        emit(sink, 0, 200, TEXTS, "embedding")
        emit(sink, 100, 200, TEXTS, "embedding")
    lines: list[Any] = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[0] == "score base/gsm8k: embedding 0/200 texts (0%), elapsed 0 s"
    assert re.fullmatch(
        r"score base/gsm8k: embedding 100/200 texts \(50%\), [\d,.]+ texts/s, ETA \d+ s, elapsed \d+ s", lines[1]
    )
    assert lines[-1] == "score: done, 1 unit(s) in 0 s"
    assert all(len(line) == len(line.rstrip()) for line in lines)  # never padded
