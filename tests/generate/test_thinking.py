"""Chain-of-thought stripping as the published study did it (FIDELITY.md), at every entry point of divtrace, and
outputs whose thinking never closed made visible (``thinking_unclosed`` per sample, ``unclosed_thinking`` counts
in the verify/score tables, a warning in the report).

The import fixtures reuse the real file shapes of ``tests/samples/test_importers.py`` (lm-eval
``samples_*.jsonl`` lines, lighteval ``details_*.parquet`` rows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import divtrace
from divtrace.analysis import analyze
from divtrace.analysis.collapse import checkpoint_means
from divtrace.generate.job import GenerationJob
from divtrace.generate.params import SamplingParams
from divtrace.generate.prompts import PromptItem
from divtrace.generate.protocol import Completion, GenerationRequest
from divtrace.generate.runner import RenderOptions, generate_samples
from divtrace.report import write_report
from divtrace.report.study_info import StudyInfo
from divtrace.runs.layout import RunLayout
from divtrace.samples import SampleRecord, read_samples, write_samples
from divtrace.samples.thinking import split_record_thinking, split_thinking, unclosed_total
from divtrace.score.scorer import ScoreOptions, Scorer
from divtrace.stats import BootstrapSettings
from divtrace.study.imported import import_samples, imported_study, parse_lineage
from divtrace.verify.pipeline import verify_records
from tests.report.test_report import make_graph, make_study
from tests.samples.test_importers import TASK, current_rows, lmeval_line, write_lighteval, write_lmeval

THINK_PROMPT = "<|im_start|>user\nJanet's ducks lay 16 eggs...<|im_end|>\n<|im_start|>assistant\n<think>"
JANET = {"question": "Janet's ducks lay 16 eggs...", "answer": "16 - 3 - 4 = 9; 9 * 2 = 18\n#### 18"}

# --- the rule -----------------------------------------------------------------------------------------------

# (output, the rendered prompt opened a <think> block, response, reasoning, unclosed)
RULE_CASES = [
    pytest.param("<think>plan: 16-3-4</think>\n\n#### 18", False, "#### 18", "plan: 16-3-4", False, id="full-block"),
    pytest.param("<think>a</think>B <think>c</think>D", False, "B D", "a\n\nc", False, id="several-blocks"),
    pytest.param("x <think>a</think>y", False, "x y", "a", False, id="block-mid-text"),
    pytest.param("plan</think>\n#### 18", True, "#### 18", "plan", False, id="closing-only-opened-in-prompt"),
    pytest.param("plan</think>#### 18", False, "#### 18", "plan", False, id="closing-only-prompt-unknown"),
    pytest.param("<think>still thinking", False, "<think>still thinking", None, True, id="unclosed-open-tag"),
    pytest.param("<think>a</think> B <think>c", False, "B <think>c", "a", True, id="block-then-unclosed"),
    pytest.param("thinking, cap hit", True, "thinking, cap hit", None, True, id="opened-in-prompt-no-tag"),
    pytest.param("", True, "", None, True, id="opened-in-prompt-empty-output"),
    pytest.param("#### 18", False, "#### 18", None, False, id="no-tags"),
    # no thinking tag: the output is left as generated (a code continuation keeps its indentation; docs/fidelity.md)
    pytest.param("  \n #### 18 \n\n", False, "  \n #### 18 \n\n", None, False, id="whitespace-no-tags"),
    pytest.param("    return a + b\n", False, "    return a + b\n", None, False, id="code-continuation"),
    pytest.param("\n<think>\n  a  \n</think>\n\n  B  \n", False, "B", "a", False, id="whitespace-around-block"),
    pytest.param("<think>\n</think>\nB", False, "B", "", False, id="empty-block"),
    pytest.param("a</think>b<think>c</think>d", True, "bd", "a\n\nc", False, id="closing-only-then-block"),
    pytest.param("a</think>b<think>c", True, "a</think>b<think>c", None, True, id="closing-then-unclosed-kept"),
    pytest.param("<think>a<think>b</think>c</think>D", False, "D", "c\n\na<think>b", False, id="nested"),
]


@pytest.mark.parametrize(("output", "opened", "response", "reasoning", "unclosed"), RULE_CASES)
def test_the_studys_rule(output: str, opened: bool, response: str, reasoning: str | None, unclosed: bool) -> None:
    assert split_thinking(output, opened) == (response, reasoning, unclosed)


def test_an_unclosed_block_is_kept_not_emptied() -> None:
    """Emptying it would score SBERT 0, Vendi 1 and accuracy 0: an artificial collapse."""
    split = split_thinking("<think>Let me compute 16 - 3 - 4 = 9, then 9 * 2", opened_in_prompt=False)
    assert split.response and split.unclosed
    assert split_thinking("Let me compute 16 - 3 - 4", opened_in_prompt=True).response == "Let me compute 16 - 3 - 4"


def test_stripping_twice_changes_nothing() -> None:
    for case in RULE_CASES:
        once = split_thinking(case.values[0]).response
        assert split_thinking(once).response == once


def test_record_level_fills_missing_fields_and_keeps_given_responses() -> None:
    record = SampleRecord(prompt_id="p", prompt=THINK_PROMPT, outputs=["plan</think> 18", "still thinking"])
    split = split_record_thinking(record)
    assert split.responses == ["18", "still thinking"]
    assert split.reasoning == ["plan", None]
    assert split.thinking_unclosed == [False, True]  # the prompt opened the block; the second never closed it
    assert record.responses is None  # the input is not modified
    given = record.model_copy(update={"responses": ["mine", "too"]})
    assert split_record_thinking(given).responses == ["mine", "too"]
    assert split_record_thinking(given).thinking_unclosed == [False, True]
    assert split_record_thinking(record, strip=False) is record
    # a divtrace record: the rendered prompt, not the task prompt, says whether the block was opened
    rendered = record.model_copy(update={"prompt": "Janet's ducks...", "rendered_prompt": THINK_PROMPT})
    assert split_record_thinking(rendered).thinking_unclosed == [False, True]
    assert unclosed_total([split, record]) == 1 and unclosed_total([record]) is None


# --- generation ---------------------------------------------------------------------------------------------


class CannedThinkGenerator:
    """A Think model whose chat template opens the thinking block; returns canned outputs in seed order."""

    backend = "canned"

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)

    def model_ref(self) -> dict[str, Any]:
        return {"id": "canned-think"}

    def check(self, params: SamplingParams) -> dict[str, Any]:
        return params.model_dump(mode="json")

    def render(
        self, prompt: str, *, system_prompt: str | None, chat_template: bool | None, thinking: Any
    ) -> tuple[str, tuple[dict[str, str], ...] | None]:
        return f"<|user|>{prompt}<|assistant|>\n<think>", ({"role": "user", "content": prompt},)

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams, progress: Any = None
    ) -> list[list[Completion]]:
        return [
            [Completion(self.texts[i], "length" if "</think>" not in self.texts[i] else "stop", 5, seed)
             for i, seed in enumerate(request.seeds)]
            for request in requests
        ]  # fmt: skip

    def close(self) -> None:
        pass


def test_generated_records_are_stripped_and_flag_the_token_cap(tmp_path: Path) -> None:
    texts = ["2+2</think>\n\n4", "hmm</think> four", "counting 1, 2, 3", "<think>x</think>4"]
    generate_samples(
        CannedThinkGenerator(texts),
        GenerationJob.of(
            [PromptItem("q0", "2+2?")],
            SamplingParams(k=4, max_new_tokens=5),
            out_dir=tmp_path,
            checkpoint="think",
            task="demo",
            render=RenderOptions(),
        ),
    )
    [record] = read_samples(tmp_path / "samples", strip_thinking=False).records  # as written by the generator
    assert record.responses == ["4", "four", "counting 1, 2, 3", "4"]  # the unclosed one is kept, not emptied
    assert record.reasoning == ["2+2", "hmm", None, "x"]
    assert record.thinking_unclosed == [False, False, True, False]


# --- importers ----------------------------------------------------------------------------------------------


def think_lmeval_line(doc_id: int) -> dict[str, Any]:
    """An lm-eval line of a Think checkpoint run with --apply_chat_template: the context opens the block."""
    line = lmeval_line(doc_id, k=4)
    line["arguments"]["gen_args_0"]["arg_0"] = THINK_PROMPT
    line["doc"], line["target"] = JANET, JANET["answer"]
    line["resps"] = [
        [
            "16 - 3 - 4 = 9 eggs, 9 * 2 = 18.</think>\n\n#### 18",
            "<think>sell 9</think>The answer is 18.",
            "Let me think. 16 - 3 = 13, 13 - 4 = 9, and then",  # hit the token cap while thinking
            "9 * 2 = 16?</think>#### 16",
        ]
    ]
    return line


def test_lmeval_import_strips_thinking_and_verifies_the_responses(tmp_path: Path) -> None:
    path = write_lmeval(tmp_path, "Olmo-3-7B-Think", "gsm8k", [think_lmeval_line(0), think_lmeval_line(1)])
    record = read_samples(path).records[0]
    assert record.responses == ["#### 18", "The answer is 18.", "Let me think. 16 - 3 = 13, 13 - 4 = 9, and then",
                                "#### 16"]  # fmt: skip
    assert record.thinking_unclosed == [False, False, True, False]
    assert record.reasoning == ["16 - 3 - 4 = 9 eggs, 9 * 2 = 18.", "sell 9", None, "9 * 2 = 16?"]

    result = verify_records(read_samples(path).records)
    assert list(result.verdicts["correct"][:4]) == [True, True, False, False]
    assert list(result.verdicts["thinking_unclosed"][:4]) == [False, False, True, False]
    [row] = result.summary.to_dict("records")
    assert (row["checkpoint"], row["task"], row["unclosed_thinking"]) == ("Olmo-3-7B-Think", "gsm8k", 2)


def test_lmeval_import_with_stripping_off(tmp_path: Path) -> None:
    path = write_lmeval(tmp_path, "think", "gsm8k", [think_lmeval_line(0)])
    record = read_samples(path, strip_thinking=False).records[0]
    assert record.responses is None and record.thinking_unclosed is None
    assert record.scored_texts() == record.outputs
    result = verify_records([record], strip_thinking=False)
    assert pd.isna(result.summary["unclosed_thinking"].iloc[0])  # not checked: unknown, not 0
    assert list(result.verdicts["correct"]) == [True, True, False, False]  # the raw text still ends in the answer


def test_lighteval_import_strips_what_lighteval_left(tmp_path: Path) -> None:
    """lighteval removes only complete <think>…</think> pairs; the study stripped its final text again."""
    rows = current_rows(2)
    for row in rows:
        response = row["model_response"]
        response["input"] = THINK_PROMPT
        response["text"] = ["plan</think> 4", "<think>a</think>4", "<think>never closed", "4"]
        response["text_post_processed"] = ["plan</think> 4", "4", "<think>never closed", "4"]
        response["reasonings"] = [None, "a", None, None]
    path = write_lighteval(tmp_path, "Olmo-3-7B-Think", rows)
    record = read_samples(path).records[0]
    assert record.responses == ["4", "4", "<think>never closed", "4"]
    assert record.thinking_unclosed == [False, False, True, True]  # the last: the prompt opened a block, no close
    assert record.reasoning == [None, "a", None, None]  # lighteval's own, kept
    raw = read_samples(path, strip_thinking=False).records[0]
    assert raw.responses == ["plan</think> 4", "4", "<think>never closed", "4"]  # lighteval's text, as logged
    assert raw.thinking_unclosed is None
    assert read_samples(path).records[0].task == TASK


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_plain_files_with_think_outputs(tmp_path: Path, suffix: str) -> None:
    plain = [
        SampleRecord(prompt_id="0", prompt="2+2?", outputs=["<think>add</think> 4", "<think>hm</think>four"]),
        SampleRecord(prompt_id="1", prompt="3+3?", outputs=["<think>add", " 6 "]),
        SampleRecord(prompt_id="2", prompt="4+4?", outputs=["<think>x</think>8", "8"], responses=["kept", "8"]),
    ]
    write_samples(plain, tmp_path / f"think{suffix}")
    records = read_samples(tmp_path / f"think{suffix}").records
    # " 6 " holds no thinking tag: it is left as it is
    assert [r.responses for r in records] == [["4", "four"], ["<think>add", " 6 "], ["kept", "8"]]
    assert [r.thinking_unclosed for r in records] == [[False, False], [True, False], [False, False]]
    off = read_samples(tmp_path / f"think{suffix}", strip_thinking=False).records
    assert [r.responses for r in off] == [None, None, ["kept", "8"]]


# --- tables -------------------------------------------------------------------------------------------------

GROUPS = [
    ["<think>a</think>The keeper watched the storm.", "<think>b</think>The keeper watched the storm."],
    ["<think>The ship's horn sounded in the fog", "<think>c</think>She lit the lamp at dusk."],
]


def write_think_jsonl(path: Path) -> Path:
    rows = [{"prompt_id": f"p{i}", "prompt": f"prompt {i}", "outputs": outputs} for i, outputs in enumerate(GROUPS)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_score_summary_counts_unclosed_thinking(tmp_path: Path) -> None:
    path = write_think_jsonl(tmp_path / "think.jsonl")
    result = divtrace.score(path, metrics=["ead"], out=tmp_path / "out")
    assert result.summary["unclosed_thinking"].tolist() == [1]
    settings = json.loads((tmp_path / "out" / "score_settings.json").read_text())
    assert settings["settings"]["strip_thinking"] is True
    assert pd.read_csv(tmp_path / "out" / "summary.csv")["unclosed_thinking"].tolist() == [1]

    raw = divtrace.score(path, metrics=["ead"], strip_thinking=False)
    assert raw.summary["unclosed_thinking"].isna().all() and raw.settings["strip_thinking"] is False
    assert raw.summary["mean"].iloc[0] > result.summary["mean"].iloc[0]  # the differing thinking was scored too

    records = [SampleRecord(prompt_id=f"p{i}", prompt="q", outputs=o) for i, o in enumerate(GROUPS)]
    from_records = divtrace.score(records, metrics=["ead"])
    assert from_records.summary["unclosed_thinking"].tolist() == [1]
    assert from_records.summary["mean"].iloc[0] == pytest.approx(result.summary["mean"].iloc[0])


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}  # a wide console: rich would fold the column names at 80
    return subprocess.run(
        [sys.executable, "-m", "divtrace.cli", *args], capture_output=True, text=True, timeout=300, check=False, env=env
    )


def test_cli_score_and_verify_tables_show_unclosed_thinking(tmp_path: Path) -> None:
    path = write_think_jsonl(tmp_path / "think.jsonl")
    scored = cli("score", str(path), "--metrics", "ead", "--checkpoint", "olmo-think")
    assert scored.returncode == 0, scored.stderr
    assert "unclosed_thinking" in scored.stdout and "olmo-think/default: 1" in " ".join(scored.stdout.split())
    assert "token cap" in scored.stdout
    off = cli("score", str(path), "--metrics", "ead", "--no-strip-thinking", "--format", "json")
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)[0]["unclosed_thinking"] is None

    samples = write_lmeval(tmp_path / "lm", "think", "gsm8k", [think_lmeval_line(0)])
    verified = cli("verify", str(samples), "--out", str(tmp_path / "verify"))
    assert verified.returncode == 0, verified.stderr
    flat = " ".join(verified.stdout.split())
    assert "unclosed_thinking" in flat and "think/gsm8k: 1" in flat and "token cap" in flat
    summary = pd.read_parquet(tmp_path / "verify" / "verify_summary.parquet")
    assert summary["unclosed_thinking"].tolist() == [1]
    assert json.loads((tmp_path / "verify" / "verify_settings.json").read_text())["strip_thinking"] is True
    raw = cli("verify", str(samples), "--no-strip-thinking", "--format", "json")
    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout)[0]["unclosed_thinking"] is None


def test_run_tables_carry_the_count_and_old_tables_read_as_unknown() -> None:
    from divtrace.score.metrics import create_metric

    records = [
        split_record_thinking(SampleRecord(prompt_id=f"p{i}", prompt="q", outputs=o, checkpoint="c", task="t"))
        for i, o in enumerate(GROUPS)
    ]
    scores = Scorer([create_metric("ead")], options=ScoreOptions(subsets=("all", "curves"))).score(records).per_prompt
    assert scores.groupby("prompt_id")["unclosed_thinking"].first().tolist() == [0, 1]
    means = checkpoint_means(scores, None, BootstrapSettings(resamples=20))
    assert means["unclosed_thinking"].tolist() == [1]
    old = checkpoint_means(scores.drop(columns="unclosed_thinking"), None, BootstrapSettings(resamples=20))
    assert old["unclosed_thinking"].isna().all()


# --- report -------------------------------------------------------------------------------------------------


def test_report_warns_about_unclosed_thinking(tmp_path: Path) -> None:
    scores, verdicts, samples = make_study()
    flagged = []
    for record in samples:
        flags = [False] * len(record.outputs)
        if (record.checkpoint, record.task) == ("rl", "gsm8k") and record.prompt_id in ("p01", "p02", "p03"):
            flags[0] = True
        flagged.append(record.model_copy(update={"thinking_unclosed": flags}))
    analysis = analyze(scores, verdicts, make_graph(), bootstrap=BootstrapSettings(resamples=50))
    write_report(
        tmp_path, analysis=analysis, samples=flagged, per_prompt_scores=scores, graph=make_graph(),
        study_info=StudyInfo("think study", metrics=("sbert", "ead")),
    )  # fmt: skip
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    start = page.index('id="unclosed-thinking"')
    warning = page[start : page.index("</div>", start)]
    assert "rl \N{MULTIPLICATION SIGN} gsm8k: 3 of 80 outputs" in warning and "token cap" in warning
    assert warning.count("<li>") == 1  # only the flagged checkpoint x task
    assert start < page.index('id="lineage"')  # at the top, with the caveat
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "**Unclosed thinking:**" in summary and "> - rl \N{MULTIPLICATION SIGN} gsm8k: 3 of 80 outputs" in summary

    # no sample says (e.g. samples not loaded): the analysis table's count is used; none at all: no warning
    scores = scores.assign(unclosed_thinking=np.where((scores["checkpoint"] == "dpo") & (scores["task"] == "poems"),
                                                      2, 0))  # fmt: skip
    analysis = analyze(scores, verdicts, make_graph(), bootstrap=BootstrapSettings(resamples=50))
    write_report(tmp_path / "b", analysis=analysis, samples=[], per_prompt_scores=scores, graph=make_graph(),
                 study_info=StudyInfo("x"))  # fmt: skip
    assert f"dpo \N{MULTIPLICATION SIGN} poems: {2 * 10} outputs" in (tmp_path / "b" / "index.html").read_text()
    write_report(tmp_path / "c", analysis=analyze(scores.drop(columns="unclosed_thinking"), verdicts, make_graph(),
                 bootstrap=BootstrapSettings(resamples=50)), samples=samples, per_prompt_scores=scores,
                 graph=make_graph(), study_info=StudyInfo("x"))  # fmt: skip
    assert "unclosed-thinking" not in (tmp_path / "c" / "index.html").read_text()


# --- divtrace analyze: the setting travels with the imported samples ----------------------------------------


@pytest.mark.parametrize("strip", [True, False])
def test_imported_run_directory_keeps_the_setting(tmp_path: Path, strip: bool) -> None:
    path = write_lmeval(tmp_path / "in", "think", "gsm8k", [think_lmeval_line(0)])
    records = read_samples(path, strip_thinking=strip).records
    study = imported_study(parse_lineage(["think"]), records)
    layout = RunLayout(tmp_path / "run")
    import_samples(study, records, layout, strip_thinking=strip)
    marker = json.loads(layout.generation_marker("think", "gsm8k").read_text())
    assert marker["strip_thinking"] is strip
    [stored] = layout.read_samples("think", "gsm8k")
    if strip:
        assert stored.responses[0] == "#### 18" and stored.thinking_unclosed == [False, False, True, False]
    else:
        assert stored.responses is None and stored.scored_texts() == stored.outputs
    # a run directory written before the setting existed: the marker lacks it, the samples are stripped on reading
    marker.pop("strip_thinking")
    layout.generation_marker("think", "gsm8k").write_text(json.dumps(marker))
    assert layout.read_samples("think", "gsm8k")[0].thinking_unclosed == [False, False, True, False]
