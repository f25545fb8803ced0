"""The one scorer: the same samples give the same numbers through the Python API, ``divtrace score`` and a run
directory (``divtrace analyze``); subsets, across-input sampling, code-ness and answers as the scorer defines them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import divtrace
from divtrace.cli import app
from divtrace.errors import DivtraceError
from divtrace.samples import SampleRecord
from divtrace.score.metrics import create_metric
from divtrace.score.scorer import (
    ACROSS_INPUT,
    SampleVerdicts,
    ScoreOptions,
    Scorer,
    across_input_sample,
    verdicts_from_table,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quickstart_samples.jsonl"
CHAIN = "gemma-3-270m>smollm2-135m-instruct:instruct"


@pytest.mark.slow
def test_the_same_samples_give_the_same_numbers_through_every_entry_point(tmp_path: Path) -> None:
    api = divtrace.score(EXAMPLE, metrics=["ead", "sbert", "vendi"])
    cli = subprocess.run(
        [sys.executable, "-m", "divtrace.cli", "score", str(EXAMPLE), "--format", "json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["analyze", str(EXAMPLE), "--lineage", CHAIN, "--out", str(run), "--no-report"])
    assert result.exit_code == 0, result.output
    stored = pd.concat(pd.read_parquet(path) for path in sorted((run / "scores").rglob("*.parquet")))

    keys = ["checkpoint", "task", "prompt_id", "metric"]
    from_api = api.per_prompt.set_index(keys)["value"].sort_index()
    from_run = stored[stored["subset"] == "all"].set_index(keys)["value"].sort_index()
    assert len(from_api) == 16 * 3 and from_api.index.equals(from_run.index)
    np.testing.assert_allclose(from_run.to_numpy(), from_api.to_numpy(), rtol=0, atol=1e-9)

    across_api = api.across_input.set_index(["checkpoint", "task", "metric"])["value"].sort_index()
    across_run = stored[stored["subset"] == ACROSS_INPUT].set_index(["checkpoint", "task", "metric"])["value"]
    np.testing.assert_allclose(across_run.sort_index().to_numpy(), across_api.to_numpy(), atol=1e-9)
    summary_cli = pd.DataFrame(json.loads(cli.stdout)).set_index(["checkpoint", "task", "metric"]).sort_index()
    summary_api = api.summary.set_index(["checkpoint", "task", "metric"]).sort_index()
    np.testing.assert_allclose(summary_cli["mean"].to_numpy(), summary_api["mean"].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(summary_cli["across_input"].to_numpy(), across_api.to_numpy(), atol=1e-9)
    means = pd.read_parquet(run / "analysis" / "checkpoint_means.parquet").set_index(["checkpoint", "task", "metric"])
    np.testing.assert_allclose(
        means.loc[summary_api.index, "mean"].to_numpy(), summary_api["mean"].to_numpy(), atol=1e-9
    )


def records(n_prompts: int, checkpoint: str = "c", task: str = "t") -> list[SampleRecord]:
    return [
        SampleRecord(
            prompt_id=f"p{i:02d}", prompt="q", outputs=[f"answer {i} one", f"answer {i} two"], checkpoint=checkpoint,
            task=task,
        )
        for i in range(n_prompts)
    ]  # fmt: skip


def test_across_input_uses_at_most_the_cap_drawn_with_the_seed() -> None:
    # RandomState(1234).choice(7, 5, replace=False) picks positions among the prompts in the order they came.
    picked = sorted(int(i) for i in np.random.RandomState(1234).choice(7, size=5, replace=False))
    assert across_input_sample(7, 5, 1234) == picked
    assert across_input_sample(7, 7, 1234) == list(range(7))
    scorer = Scorer([create_metric("distinct")], options=ScoreOptions(across_input_prompts=5))
    both = scorer.score(records(7, "a") + records(7, "b"))
    assert both.across_input["n_prompts"].tolist() == [5, 5]
    assert both.settings["across_input"] == {"max_prompts": 5, "seed": 1234, "order": "selection"}
    # the across-input group is the first output of the sampled prompts: recompute it with the metric alone
    firsts = [[f"answer {i} one" for i in picked]]
    direct = create_metric("distinct").score_groups(firsts, scorer_context())
    assert both.across_input["value"].tolist() == pytest.approx([direct[0], direct[0]])


def test_the_across_input_sample_does_not_depend_on_how_ids_are_written() -> None:
    # Issue 20's example: sorted as strings, q10 came before q2, so renaming p02 -> q2 changed the sample.
    def cell(ids: list[str]) -> list[SampleRecord]:
        return [
            SampleRecord(prompt_id=pid, prompt="q", outputs=[f"w{i} x{i} y", f"w{i} z"], checkpoint="c", task="t")
            for i, pid in enumerate(ids)
        ]

    padded = [f"p{i:02d}" for i in range(12)]
    unpadded = [f"q{i}" for i in range(12)]  # q10, q11 sort before q2 as strings
    hashed = [f"{(i * 7919) % 1000:03x}-item" for i in range(12)]  # any other names
    assert sorted(unpadded) != unpadded
    scorer = Scorer([create_metric("distinct"), create_metric("ead")], options=ScoreOptions(across_input_prompts=5))
    values = [scorer.score(cell(ids)).across_input["value"].tolist() for ids in (padded, unpadded, hashed)]
    assert values[0] == values[1] == values[2]
    # ... and it is the first output of the prompts at the drawn positions, in selection order
    picked = across_input_sample(12, 5, 1234)
    direct = create_metric("distinct").score_groups([[f"w{i} x{i} y" for i in picked]], scorer_context())
    assert values[0][0] == pytest.approx(direct[0])


def scorer_context():  # type: ignore[no-untyped-def]
    from divtrace.score.metrics import ScoringContext

    return ScoringContext()


def test_subsets_correct_and_curves_and_answer_metrics() -> None:
    outputs = ["x is 4", "x is 4", "x is 5", "no idea", "x is 4", "x is 6"]
    record = SampleRecord(prompt_id="0", prompt="q", outputs=outputs, checkpoint="c", task="gsm8k")
    verdict = SampleVerdicts((True, True, False, False, True, False), ("4", "4", "5", None, "4", "6"))
    metrics = [create_metric(name) for name in ("distinct", "vendi", "answer-distinct", "answer-entropy")]
    scorer = Scorer(metrics, options=ScoreOptions(subsets=("all", "correct", "curves")))
    rows = scorer.score([record], {("c", "gsm8k", "0"): verdict}).per_prompt.set_index(["metric", "subset"])
    assert set(rows.loc["vendi"].index) == {"all", "correct", "k=2", "k=4"}  # V_c is scored
    assert rows.loc[("vendi", "correct"), "n_outputs"] == 3
    assert rows.loc[("vendi", "correct"), "value"] == pytest.approx(1.0, abs=1e-5)  # three identical answers
    # answers 4, 4, 5, unparseable, 4, 6: four distinct; among the correct ones: one
    assert rows.loc[("answer-distinct", "all"), "value"] == 4
    assert rows.loc[("answer-distinct", "correct"), "value"] == 1
    p = np.array([3, 1, 1, 1]) / 6
    assert rows.loc[("answer-entropy", "all"), "value"] == pytest.approx(float(-(p * np.log(p)).sum()))
    # without verdicts an answer metric scores nothing, and no correct subset exists
    bare = scorer.score([record]).per_prompt
    assert set(bare["metric"]) == {"distinct", "vendi"} and "correct" not in set(bare["subset"])


def test_code_ness_comes_from_the_task_registry() -> None:
    class NotForCode(type(create_metric("distinct"))):  # type: ignore[misc]
        name = "distinct-not-for-code"
        suitable_for_code = False

    class CodeOnly(type(create_metric("distinct"))):  # type: ignore[misc]
        name = "distinct-code-only"
        code_only = True

    scorer = Scorer([NotForCode(), CodeOnly()])
    scored = scorer.score(records(2, task="humaneval") + records(2, task="gsm8k") + records(2, task="mine"))
    cells = scored.per_prompt.groupby("metric")["task"].unique().map(sorted).to_dict()
    # humaneval is a code task, gsm8k is not, "mine" is unknown to the registry (scored by both)
    assert cells == {"distinct-not-for-code": ["gsm8k", "mine"], "distinct-code-only": ["humaneval", "mine"]}


def test_ead_uses_50257_for_every_checkpoint_unless_told_to_take_the_generators() -> None:
    # The study's EAD used V = 50257 for every checkpoint (its settings never named a model): a generator's
    # vocabulary size the caller knows changes nothing by default.
    default = Scorer([create_metric("ead")]).score(records(3))
    known_generator = Scorer([create_metric("ead")]).score(records(3), vocab_size=49152)
    fixed = Scorer([create_metric("ead", vocab_size=50257)]).score(records(3))
    assert default.per_prompt["value"].tolist() == known_generator.per_prompt["value"].tolist()
    assert default.per_prompt["value"].tolist() == fixed.per_prompt["value"].tolist()
    assert default.settings["metrics"]["ead"]["vocab_size"] == 50257
    assert default.settings["metrics"]["ead"]["vocab_size_source"] == "default"
    assert not Scorer([create_metric("ead")]).needs_generator_vocab
    # tokenizer: generator takes each checkpoint's own V, recorded as used.
    generator = Scorer([create_metric("ead", tokenizer="generator")])
    assert generator.needs_generator_vocab
    taken = generator.score(records(3), vocab_size=49152)
    explicit = Scorer([create_metric("ead", vocab_size=49152)]).score(records(3))
    assert taken.per_prompt["value"].tolist() == explicit.per_prompt["value"].tolist()
    assert taken.per_prompt["value"].tolist() != default.per_prompt["value"].tolist()
    assert taken.settings["generator_vocab_size"] == 49152
    assert taken.settings["metrics"]["ead"]["vocab_size_source"] == "generator"
    with pytest.raises(DivtraceError, match="tokenizer: generator needs each checkpoint's generator tokenizer"):
        generator.score(records(3))


def test_verdicts_from_a_verify_table_vote_with_the_normalised_answer() -> None:
    table = pd.DataFrame(
        {
            "checkpoint": ["c"] * 3, "task": ["math"] * 3, "prompt_id": ["0"] * 3, "sample_index": [2, 0, 1],
            "correct": [False, True, True], "extracted": [None, "\\frac12", "0.5"],
            "extra": [None, json.dumps({"normalized": "1/2"}), json.dumps({"normalized": "1/2"})],
        }
    )  # fmt: skip
    assert verdicts_from_table(table) == {("c", "math", "0"): SampleVerdicts((True, True, False), ("1/2", "1/2", None))}


def test_code_metrics_score_the_correct_programs_of_code_tasks_with_their_parse_rate() -> None:
    programs = [
        "```python\ndef add(a, b):\n    return a + b\n```",
        "def add(a, b):\n    total = a + b\n    return total\n",
        "def add(a, b) return",  # does not parse
        "def add(a, b):\n    return b - a\n",  # wrong
    ]
    code = SampleRecord(prompt_id="0", prompt="q", outputs=programs, checkpoint="c", task="humaneval")
    prose = SampleRecord(prompt_id="0", prompt="q", outputs=["4", "four"], checkpoint="c", task="gsm8k")
    verdicts = {
        ("c", "humaneval", "0"): SampleVerdicts((True, True, True, False), (None,) * 4),
        ("c", "gsm8k", "0"): SampleVerdicts((True, True), ("4", "4")),
    }
    scorer = Scorer([create_metric("ast"), create_metric("ast-distinct")], options=ScoreOptions(("all", "correct")))
    result = scorer.score([code, prose], verdicts)
    rows = result.per_prompt.set_index(["metric", "subset"])
    assert set(result.per_prompt["task"]) == {"humaneval"}  # code-only metrics skip a task known not to be code
    assert rows.loc[("ast", "correct"), "n_outputs"] == 3
    assert rows.loc[("ast", "correct"), "parse_rate"] == pytest.approx(2 / 3)
    assert rows.loc[("ast", "all"), "parse_rate"] == pytest.approx(3 / 4)
    direct = create_metric("ast").score_groups([programs[:3]], scorer_context())
    assert rows.loc[("ast", "correct"), "value"] == pytest.approx(float(direct[0]))
    summary = result.summary.set_index(["metric", "subset"])
    assert summary.loc[("ast", "correct"), "parse_rate"] == pytest.approx(2 / 3)


def test_cli_score_with_verdicts_adds_the_correct_subset_and_answer_metrics(tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        json.dumps({"prompt_id": "0", "prompt": "2+2?", "outputs": ["4", "4", "5"], "checkpoint": "c", "task": "gsm8k"})
        + "\n"
    )
    verdicts = tmp_path / "verdicts.parquet"
    pd.DataFrame(
        {
            "checkpoint": ["c"] * 3, "task": ["gsm8k"] * 3, "prompt_id": ["0"] * 3, "sample_index": [0, 1, 2],
            "correct": [True, True, False], "extracted": ["4", "4", "5"], "extra": [None] * 3,
        }
    ).to_parquet(verdicts)  # fmt: skip
    command = ["score", str(samples), "--metrics", "distinct,answer-distinct", "--verdicts", str(verdicts)]
    result = CliRunner().invoke(app, [*command, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {(r["metric"], r["subset"]): r["mean"] for r in json.loads(result.stdout)}
    assert rows[("answer-distinct", "all")] == 2 and rows[("answer-distinct", "correct")] == 1
    assert ("distinct", "correct") in rows
    missing = CliRunner().invoke(app, ["score", str(samples), "--verdicts", str(tmp_path / "nope.parquet")])
    assert missing.exit_code == 2 and "--verdicts" in missing.output and "no such file" in missing.output


def test_a_lone_surrogate_is_scored_as_a_replacement_character_and_counted(tmp_path: Path) -> None:
    samples = tmp_path / "surrogate.jsonl"
    rows = [
        {"prompt_id": "0", "prompt": "q", "outputs": ["a \ud800 b", "c d"]},  # valid JSON, not encodable text
        {"prompt_id": "1", "prompt": "q", "outputs": ["x y", "z w"]},
    ]
    samples.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = CliRunner().invoke(app, ["score", str(samples), "--metrics", "ead,sbert", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "1 text(s) held lone surrogates" in " ".join(result.output.split())
    api = divtrace.score(samples, metrics=["sbert"])
    assert api.settings["unencodable_texts"] == 1 and np.isfinite(api.per_prompt["value"]).all()


def test_the_summary_is_bootstrapped_only_when_asked_for() -> None:
    # A run stores per-prompt and across-input rows (unit_table): their summary's bootstrap is never paid for.
    from divtrace.score.scorer import unit_table

    result = Scorer([create_metric("distinct")]).score(records(4))
    table = unit_table(result)
    assert len(table) and "summary" not in vars(result)
    first = result.summary
    assert "summary" in vars(result) and result.summary is first  # computed once, on first access
    assert first.loc[0, "n_prompts"] == 4 and first.loc[0, "ci_low"] <= first.loc[0, "mean"] <= first.loc[0, "ci_high"]
