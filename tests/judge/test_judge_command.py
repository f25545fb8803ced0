"""``divtrace judge`` end to end, in a subprocess, against a deterministic judge server on 127.0.0.1 (answers known
in advance: tests/judge/judges.py), and through the OpenAI Batch API files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from divtrace.judge.aggregate import QUALITY_COLUMNS
from divtrace.tasks.builtin import TLDR_TEMPLATE
from tests.judge import judges
from tests.judge_server import JudgeServer
from tests.run_commands import run_divtrace

JUDGE = "judge-model"


def judge_answer(body: dict[str, Any]) -> str:
    return judges.route(body["messages"])


def write_samples(directory: Path) -> list[Path]:
    """base and sft samples of tldr (against the reference), writingprompts (sft against base) and wildbench."""
    tldr = TLDR_TEMPLATE.format(subreddit="r/x", title="t", post="a post")
    rows = {
        "base": [
            ("tldr", "t1", tldr, ["GOOD", "x"], {"summary": "GOOD"}),  # tie
            ("tldr", "t2", tldr, ["nothing", "y"], {"summary": "GOOD"}),  # loss
            ("writingprompts", "w1", "Write about a beast.\n\n", ["a dragon", "z"], None),
            ("writingprompts", "w2", "Write about a pet.\n\n", ["a cat", "z"], None),
            ("wildbench", "b1", "How do I sort a list?", ["use sorted on it", "x"], {"checklist": ["Correct?"]}),
        ],
        "sft": [
            ("tldr", "t1", tldr, ["GOOD GOOD", "x"], {"summary": "GOOD"}),  # win
            ("tldr", "t2", tldr, ["<think>GOOD</think> GOOD", "y"], {"summary": "GOOD"}),  # tie
            ("writingprompts", "w1", "Write about a beast.\n\n", ["a dog", "z"], None),  # 0
            ("writingprompts", "w2", "Write about a pet.\n\n", ["a dragon", "z"], None),  # 1
            ("wildbench", "b1", "How do I sort a list?", ["sorted", "x"], {"checklist": ["Correct?"]}),
        ],
    }
    files = []
    for checkpoint, records in rows.items():
        path = directory / f"{checkpoint}.jsonl"
        lines = [
            json.dumps({"checkpoint": checkpoint, "task": task, "prompt_id": pid, "prompt": prompt, "outputs": outputs,
                        "references": refs})
            for task, pid, prompt, outputs, refs in records
        ]  # fmt: skip
        path.write_text("\n".join(lines) + "\n")
        files.append(path)
    return files


EXPECTED = {  # (checkpoint, task) -> value, known in advance from the judges' rules
    ("base", "tldr"): 0.25,
    ("sft", "tldr"): 0.75,
    ("sft", "writingprompts"): 0.5,
    ("base", "wildbench"): 4.0,
    ("sft", "wildbench"): 1.0,
}


def quality_of(out: Path) -> dict[tuple[str, str], float]:
    table = pd.read_csv(out / "quality.csv")
    assert list(table.columns) == QUALITY_COLUMNS
    return {(row.checkpoint, row.task): row.value for row in table.itertuples()}


def test_judge_a_lineage_live_then_a_rerun_sends_nothing(tmp_path: Path) -> None:
    files = write_samples(tmp_path)
    out = tmp_path / "judged"
    with JudgeServer(judge_answer) as server:
        args = (*files, "--endpoint", server.base_url, "--judge-model", JUDGE, "--out", out, "--baseline", "base")
        first = run_divtrace("judge", *args)
        assert first.returncode == 0, first.stderr
        calls = len(server.calls)
        # tldr: 2 prompts x 2 checkpoints; arena: 2 orders x 2 prompts (sft); wildbench: 1 each; but base's t1 and
        # sft's t2 judge the same texts ("GOOD" against "GOOD", sft's thinking removed): one call answers both
        assert calls == 4 + 4 + 2 - 1
        assert quality_of(out) == pytest.approx(EXPECTED)
        judgments = pd.read_parquet(out / "judgments.parquet")
        assert len(judgments) == 10 and set(judgments["judge_model"]) == {JUDGE}
        assert {
            "checkpoint",
            "prompt_id",
            "sample_index",
            "protocol",
            "order",
            "raw_response",
            "verdict",
            "value",
        } <= set(judgments.columns)
        assert "9 judge call(s): 0 answered before, 9 sent now" in first.stderr
        again = run_divtrace("judge", *args)
        assert again.returncode == 0, again.stderr
        assert len(server.calls) == calls  # every answer came from the cache
        assert "9 answered before, 0 sent now" in again.stderr
        assert quality_of(out) == pytest.approx(EXPECTED)


def test_all_outputs_and_unparseable_answers(tmp_path: Path) -> None:
    files = write_samples(tmp_path)
    out = tmp_path / "judged"
    with JudgeServer(lambda body: "I refuse to rank these.") as server:
        result = run_divtrace("judge", *files, "--endpoint", server.base_url, "--judge-model", JUDGE, "--out", out,
                              "--baseline", "base", "--outputs", "all", "--format", "csv")  # fmt: skip
        assert result.returncode == 0, result.stderr
    quality = pd.read_csv(out / "quality.csv")
    assert quality["n_prompts"].eq(0).all() and quality["value"].isna().all()
    tldr = quality[(quality["checkpoint"] == "sft") & (quality["task"] == "tldr")].iloc[0]
    assert tldr["n_unparseable"] == 4  # two prompts x two outputs, every answer unreadable, kept and counted
    assert "kirk_summary" in result.stdout  # the table printed as CSV


def test_batch_api_round_trip_gives_the_live_tables(tmp_path: Path) -> None:
    files = write_samples(tmp_path)
    batch = tmp_path / "batch"
    out = tmp_path / "judged"
    prepared = run_divtrace("judge", *files, "--judge-model", JUDGE, "--out", out, "--baseline", "base",
                            "--batch-prepare", batch)  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    inputs = sorted(batch.glob("batch-*.jsonl"))
    requests = [json.loads(line) for path in inputs for line in path.read_text().splitlines()]
    assert len(requests) == 9 and {r["url"] for r in requests} == {"/v1/chat/completions"}
    # what the Batch API returns (https://platform.openai.com/docs/guides/batch): one output line per request
    output_lines = [
        {"id": f"batch_req_{i}", "custom_id": r["custom_id"], "error": None,
         "response": {"status_code": 200, "request_id": f"req_{i}", "body": {
             "id": f"chatcmpl-{i}", "object": "chat.completion", "model": JUDGE,
             "choices": [{"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": judges.route(r["body"]["messages"])}}]}}}
        for i, r in enumerate(requests)
    ]  # fmt: skip
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(line) + "\n" for line in output_lines))
    read = run_divtrace("judge", *files, "--judge-model", JUDGE, "--out", out, "--baseline", "base",
                        "--batch-results", results)  # fmt: skip
    assert read.returncode == 0, read.stderr
    assert quality_of(out) == pytest.approx(EXPECTED)
    judgments = pd.read_parquet(out / "judgments.parquet")
    assert set(judgments["source"]) == {"cache"}


def test_unreachable_endpoint_and_missing_reference_are_named_before_any_work(tmp_path: Path) -> None:
    files = write_samples(tmp_path)
    out = tmp_path / "judged"
    refused = run_divtrace("judge", *files, "--endpoint", "http://127.0.0.1:9/v1", "--judge-model", JUDGE,
                           "--out", out, "--baseline", "base", "--max-retries", "0")  # fmt: skip
    assert refused.returncode == 2
    assert "http://127.0.0.1:9/v1" in refused.stderr and "Traceback" not in refused.stderr
    assert not (out / "judgments.parquet").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"checkpoint": "c", "task": "xsum", "prompt_id": "p9", "prompt": "ARTICLE: a\nTL;DR:",
                               "outputs": ["s", "t"]}) + "\n")  # fmt: skip
    with JudgeServer(judge_answer) as server:
        missing = run_divtrace("judge", bad, "--endpoint", server.base_url, "--judge-model", JUDGE, "--out", out)
        assert server.calls == []
    assert missing.returncode == 2
    assert "prompt p9" in missing.stderr and "bad.jsonl" in missing.stderr and "references.summary" in missing.stderr


def test_divtrace_analyze_judges_imported_samples(tmp_path: Path) -> None:
    files = write_samples(tmp_path)
    run = tmp_path / "run"
    with JudgeServer(judge_answer) as server:
        result = run_divtrace("analyze", *files, "--lineage", "base>sft", "--out", run, "--metrics", "ead",
                              "--judge-endpoint", server.base_url, "--judge-model", JUDGE)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert len(server.calls) == 9
    dq = pd.read_parquet(run / "analysis" / "diversity_quality.parquet")
    judged = {(row.checkpoint, row.task): row.quality for row in dq[dq["metric"] == "ead"].itertuples()}
    assert judged == pytest.approx({**EXPECTED, ("base", "writingprompts"): 0.5})  # the baseline: 0.5 by definition
    summary = (run / "report" / "summary.md").read_text()
    assert "Diversity against quality" in summary
    bad = run_divtrace("analyze", *files, "--lineage", "base>sft", "--out", tmp_path / "other",
                       "--judge-model", JUDGE)  # fmt: skip
    assert bad.returncode == 2 and "--judge-endpoint" in bad.stderr


def test_a_refused_call_is_kept_then_asked_again_on_request(tmp_path: Path) -> None:
    files = write_samples(tmp_path)
    out = tmp_path / "judged"
    args = ("--judge-model", JUDGE, "--out", out, "--baseline", "base", "--protocol", "wildbench=wb_score")

    def refuse_sorted(body: dict[str, Any]) -> int | None:
        return 400 if "use sorted on it" in body["messages"][-1]["content"] else None

    with JudgeServer(judge_answer, refuse=refuse_sorted) as server:
        first = run_divtrace("judge", *files, "--endpoint", server.base_url, *args)
        assert first.returncode == 0, first.stderr
        assert len(server.calls) == 2
    judgments = pd.read_parquet(out / "judgments.parquet")
    refused = judgments[judgments["checkpoint"] == "base"].iloc[0]
    assert refused["error"].startswith("HTTP 400") and pd.isna(refused["value"])
    assert quality_of(out)[("sft", "wildbench")] == 1.0
    with JudgeServer(judge_answer) as server:
        again = run_divtrace("judge", *files, "--endpoint", server.base_url, *args)
        assert again.returncode == 0 and server.calls == []  # a refusal is an answer: not asked again by default
        retried = run_divtrace("judge", *files, "--endpoint", server.base_url, *args, "--retry-refused")
        assert retried.returncode == 0, retried.stderr
        assert len(server.calls) == 1
    assert quality_of(out)[("base", "wildbench")] == 4.0
