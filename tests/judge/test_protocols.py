"""The study's judge protocols on records: position hash, order swap, what is judged, what is not sent, and the
aggregation, against deterministic judges whose answers are known in advance (tests/judge/judges.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import pandas as pd
import pytest

from divtrace.errors import DivtraceError
from divtrace.judge.aggregate import QUALITY_COLUMNS, quality_table
from divtrace.judge.pipeline import Cell, JudgeConfig, JudgeWork, judgments_table, plan_requests
from divtrace.judge.protocols import NO_CHECKLIST, JudgeInputError, should_swap, summary_source
from divtrace.judge.requests import JudgeResponse
from divtrace.samples.schema import SampleRecord
from divtrace.tasks.builtin import ARTICLE_TEMPLATE, TLDR_TEMPLATE
from tests.judge import judges

JUDGE = "judge-model"


def tldr_prompt(post: str) -> str:
    return TLDR_TEMPLATE.format(subreddit="r/test", title="A title", post=post)


def record(prompt_id: str, prompt: str, outputs: list[str], **references: object) -> SampleRecord:
    return SampleRecord(prompt_id=prompt_id, prompt=prompt, outputs=outputs, references=references or None)


def answered(work: JudgeWork, judge: judges.Answer) -> dict[str, JudgeResponse]:
    return {r.key: JudgeResponse(r.key, judge(r.messages)) for r in work.requests}


# ----- the position hash -----


def test_swap_rule_is_the_studys_sha256_of_source_output_reference() -> None:
    payload = b"source\n||\noutput\n||\nreference"
    expected = int(hashlib.sha256(payload).hexdigest()[-1], 16) % 2 == 1
    assert should_swap("source", "output", "reference") is expected
    # pinned: the reference code's _should_swap gives these for "my summary 0" ... "my summary 5"
    swaps = [should_swap("a post", f"my summary {i}", "the gold") for i in range(6)]
    assert swaps == [False, False, False, True, True, False]


def test_each_position_is_about_equally_likely() -> None:
    swaps = [should_swap(f"post {i}", f"summary {i}", "gold") for i in range(400)]
    assert 0.42 < sum(swaps) / len(swaps) < 0.58


# ----- Kirk et al. against the reference summary -----


@pytest.mark.parametrize(
    ("task", "prompt", "source"),
    [
        ("tldr", tldr_prompt("My dog ate\nmy homework."), "My dog ate\nmy homework."),
        ("cnn_dailymail", ARTICLE_TEMPLATE.format(article="Rain fell. TL;DR: none"), "Rain fell. TL;DR: none"),
        ("xsum", "ARTICLE: Storm hits.\nTL;DR:", "Storm hits."),
        ("my_summaries", "Summarise this: text   ", "Summarise this: text"),
    ],
)
def test_source_is_cut_from_the_prompt_as_the_study_does(task: str, prompt: str, source: str) -> None:
    assert summary_source(prompt, task) == source


def test_kirk_shows_the_reference_first_when_the_hash_says_so_and_turns_the_verdict() -> None:
    outputs = {f"p{i}": f"summary {i}" for i in range(12)}
    cells: dict[Cell, list[SampleRecord]] = {
        ("sft", "tldr"): [
            record(pid, tldr_prompt("a post"), [text], summary="the gold") for pid, text in outputs.items()
        ]
    }
    work = plan_requests(cells, JudgeConfig(JUDGE))
    orders = {r.prompt_id: r.order for r in work.requests}
    assert set(orders.values()) == {"candidate_first", "reference_first"}
    for request in work.requests:
        user = request.messages[1]["content"]
        first = user.split('"model_1", "summary": """', 1)[1].split('"""', 1)[0]
        swapped = should_swap("a post", outputs[request.prompt_id], "the gold")
        assert request.order == ("reference_first" if swapped else "candidate_first")
        assert first == ("the gold" if swapped else outputs[request.prompt_id])
        assert request.settings.max_tokens == 256 and request.settings.temperature == 0.0
    # model_1 ranked first: a win for the output only when the output was model_1
    responses = {
        r.key: JudgeResponse(r.key, "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]")
        for r in work.requests
    }
    table = judgments_table(work, responses)
    assert (table["verdict"] == table["order"].map({"candidate_first": "win", "reference_first": "loss"})).all()


def test_kirk_win_rate_from_a_judge_known_in_advance() -> None:
    prompt = tldr_prompt("a post")
    cells: dict[Cell, list[SampleRecord]] = {
        ("sft", "tldr"): [
            record("p1", prompt, ["GOOD GOOD", "x"], summary="GOOD"),  # win
            record("p2", prompt, ["plain"], summary="GOOD"),  # loss
            record("p3", prompt, ["<think>GOOD GOOD</think> GOOD"], summary="GOOD"),  # thinking removed: tie
            record("p4", prompt, ["   "], summary="GOOD"),  # empty: not sent, as in the study
        ]
    }
    work = plan_requests(cells, JudgeConfig(JUDGE))
    assert [r.prompt_id for r in work.requests] == ["p1", "p2", "p3"]  # first output only
    table = judgments_table(work, answered(work, judges.kirk_counting()))
    assert list(table["verdict"]) == ["win", "loss", "tie", "not sent: empty output"]
    quality = quality_table(table)
    assert list(quality.columns) == QUALITY_COLUMNS
    row = quality.iloc[0]
    assert row["value"] == pytest.approx(0.5)  # (1 win + 0.5 tie) / 3
    assert (row["n_prompts"], row["n_unparseable"], row["n_judgments"], row["n_skipped"]) == (3, 0, 3, 1)
    assert 0.0 <= row["ci_low"] <= 0.5 <= row["ci_high"] <= 1.0
    assert row["value_kind"] == "win rate vs reference"


def test_all_outputs_are_judged_on_request_and_averaged_per_prompt() -> None:
    prompt = tldr_prompt("a post")
    cells: dict[Cell, list[SampleRecord]] = {
        ("sft", "tldr"): [
            record("p1", prompt, ["GOOD GOOD", "no"], summary="GOOD"),
            record("p2", prompt, ["GOOD"], summary="GOOD"),
        ]
    }
    work = plan_requests(cells, JudgeConfig(JUDGE, outputs="all"))
    assert [(r.prompt_id, r.sample_index) for r in work.requests] == [("p1", 0), ("p1", 1), ("p2", 0)]
    quality = quality_table(judgments_table(work, answered(work, judges.kirk_counting())))
    assert quality.iloc[0]["value"] == pytest.approx((0.5 + 0.5) / 2)  # p1: (win + loss) / 2, p2: tie


def test_a_missing_reference_summary_names_the_record() -> None:
    cells: dict[Cell, list[SampleRecord]] = {
        ("sft", "cnn_dailymail"): [record("42", "ARTICLE: x\nTL;DR:", ["s"], summary="wrong field")]
    }
    with pytest.raises(JudgeInputError, match=r"checkpoint sft, task cnn_dailymail, prompt 42 \(run/x\).*highlights"):
        plan_requests(cells, JudgeConfig(JUDGE), {("sft", "cnn_dailymail"): "run/x"})


# ----- Arena-Hard against the baseline, both orders -----


def writing_cells(base: Sequence[str], sft: Sequence[str]) -> dict[Cell, list[SampleRecord]]:
    return {
        (name, "writingprompts"): [record(f"w{i}", f"Prompt {i}\n\n", [text]) for i, text in enumerate(texts)]
        for name, texts in (("base", base), ("sft", sft))
    }


def test_arena_judges_both_orders_against_the_baseline_and_not_the_baseline_itself() -> None:
    work = plan_requests(
        writing_cells(["a dragon", "a cat"], ["a dog", "a dragon"]), JudgeConfig(JUDGE, baseline="base")
    )
    assert {r.checkpoint for r in work.requests} == {"sft"}
    assert [(r.prompt_id, r.order) for r in work.requests] == [
        ("w0", "candidate_first"), ("w0", "baseline_first"), ("w1", "candidate_first"), ("w1", "baseline_first"),
    ]  # fmt: skip
    first, second = work.requests[0].messages[1]["content"], work.requests[1].messages[1]["content"]
    assert first.startswith("<|User Prompt|>\nPrompt 0\n\n<|The Start of Assistant A's Answer|>\na dog\n")
    assert "<|The Start of Assistant A's Answer|>\na dragon\n" in second
    assert work.requests[0].settings.max_tokens == 1024
    table = judgments_table(work, answered(work, judges.arena_keyword()))
    assert list(table["value"]) == [0.0, 0.0, 1.0, 1.0]  # seen from sft's side in both orders
    quality = quality_table(table)
    assert quality.iloc[0]["value"] == pytest.approx(0.5)
    assert quality.iloc[0]["baseline"] == "base"


def test_position_bias_cancels_over_the_two_orders() -> None:
    work = plan_requests(writing_cells(["x", "y"], ["u", "v"]), JudgeConfig(JUDGE, baseline="base"))
    table = judgments_table(work, answered(work, judges.always("A>B")))
    assert list(table["value"]) == [0.75, 0.25, 0.75, 0.25]
    assert quality_table(table).iloc[0]["value"] == pytest.approx(0.5)


def test_an_output_counts_only_when_both_orders_were_read() -> None:
    work = plan_requests(
        writing_cells(["a dragon", "a cat"], ["a dog", "a dragon"]), JudgeConfig(JUDGE, baseline="base")
    )
    responses = answered(work, judges.arena_keyword())
    unreadable = work.requests[3].key
    responses[unreadable] = JudgeResponse(unreadable, "Both are fine.")
    quality = quality_table(judgments_table(work, responses)).iloc[0]
    assert (quality["value"], quality["n_prompts"], quality["n_unparseable"]) == (0.0, 1, 1)


def test_arena_without_a_baseline_or_without_its_samples_is_refused() -> None:
    with pytest.raises(DivtraceError, match="--baseline"):
        plan_requests(writing_cells(["a"], ["b"]), JudgeConfig(JUDGE))
    with pytest.raises(DivtraceError, match="baseline rl, which has no samples of it"):
        plan_requests(writing_cells(["a"], ["b"]), JudgeConfig(JUDGE, baseline="rl"))


def test_empty_outputs_on_either_side_are_not_sent() -> None:
    work = plan_requests(
        writing_cells(["", "a cat"], ["a dog", "<think>only thinking</think>"]), JudgeConfig(JUDGE, baseline="base")
    )
    assert work.requests == []
    reasons = [row["verdict"] for row in work.skipped]
    assert reasons == ["not sent: base's output is empty", "not sent: empty output"]


# ----- WB-Score with the checklist -----


def wildbench(outputs: Mapping[str, str], checklist: object) -> dict[Cell, list[SampleRecord]]:
    return {
        ("sft", "wildbench"): [
            record(pid, f"Question {pid}?", [text], checklist=checklist) for pid, text in outputs.items()
        ]
    }


def test_wb_score_shows_the_checklist_and_reads_the_score() -> None:
    work = plan_requests(
        wildbench({"a": "one two three", "b": ""}, ["Is it correct?", " ", "Is it short?"]), JudgeConfig(JUDGE)
    )
    assert len(work.requests) == 2  # an empty output is judged, as in the study
    user = work.requests[0].messages[0]["content"]
    assert len(work.requests[0].messages) == 1
    assert "<|begin_of_checklist|>\n- Is it correct?\n- Is it short?\n<|end_of_checklist|>" in user
    assert "<|begin_of_query|>\nQuestion a?\n<|end_of_query|>" in user
    quality = quality_table(judgments_table(work, answered(work, judges.wb_word_count()))).iloc[0]
    assert quality["value"] == pytest.approx((3 + 1) / 2)
    assert quality["value_kind"] == "WB-Score (1-10)"


def test_checklist_forms() -> None:
    def output(checklist: object) -> object:
        return plan_requests(wildbench({"a": "x"}, checklist), JudgeConfig(JUDGE)).requests[0].messages[0]["content"]

    assert "- one\n- two\n<|end" in str(output("one; two"))
    assert NO_CHECKLIST in str(output([]))
    with pytest.raises(JudgeInputError, match=r"prompt a .*references\.checklist"):
        plan_requests({("sft", "wildbench"): [record("a", "Q", ["x"])]}, JudgeConfig(JUDGE))


# ----- keys and tables -----


def test_request_keys_change_with_every_input_but_not_with_labels() -> None:
    prompt = tldr_prompt("a post")
    base = plan_requests({("sft", "tldr"): [record("p", prompt, ["s"], summary="g")]}, JudgeConfig(JUDGE)).requests[0]
    same_texts = plan_requests(
        {("dpo", "tldr"): [record("q", prompt, ["s"], summary="g")]}, JudgeConfig(JUDGE)
    ).requests[0]
    assert same_texts.key == base.key  # the same call: answered once
    for cells, config in (
        ({("sft", "tldr"): [record("p", prompt, ["t"], summary="g")]}, JudgeConfig(JUDGE)),
        ({("sft", "tldr"): [record("p", prompt, ["s"], summary="h")]}, JudgeConfig(JUDGE)),
        ({("sft", "tldr"): [record("p", prompt, ["s"], summary="g")]}, JudgeConfig("other-judge")),
    ):
        assert plan_requests(cells, config).requests[0].key != base.key


def test_unanswered_requests_and_server_refusals() -> None:
    cells: dict[Cell, list[SampleRecord]] = {("sft", "tldr"): [record("p", tldr_prompt("x"), ["s"], summary="g")]}
    work = plan_requests(cells, JudgeConfig(JUDGE))
    with pytest.raises(DivtraceError, match="1 of 1 judge request"):
        judgments_table(work, {})
    key = work.requests[0].key
    table = judgments_table(work, {key: JudgeResponse(key, None, error="HTTP 400: context too long")})
    assert table.iloc[0]["error"] == "HTTP 400: context too long"
    quality = quality_table(table).iloc[0]
    assert quality["n_unparseable"] == 1 and quality["n_prompts"] == 0 and pd.isna(quality["value"])
