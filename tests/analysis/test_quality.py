"""Diversity against quality: a base -> sft -> dpo lineage scored on four tasks whose quality comes from a judge's
three protocols and from verdicts, with diversity levels chosen so each stage's change is known exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from divtrace.analysis import (
    DIVERSITY_QUALITY_COLUMNS,
    QUALITY_EDGES_COLUMNS,
    AnalysisResult,
    analyze,
    read_analysis,
    write_analysis,
)
from divtrace.errors import DivtraceError
from divtrace.report.summary_md import quality_text
from divtrace.stats import BootstrapSettings
from divtrace.stats.bootstrap import cell_mean_cis
from divtrace.study.lineage import CheckpointNode, LineageGraph

N_PROMPTS = 30
K = 4
FAST = BootstrapSettings(resamples=300)
#: Diversity of each checkpoint as a fraction of the base's, on every prompt: sft loses 38% of base, dpo 12% more.
KEPT = {"base": 1.0, "sft": 0.62, "dpo": 0.50}
#: Per-prompt accuracy of each checkpoint on gsm8k (the verdicts).
ACCURACY = {"base": 0.25, "sft": 0.5, "dpo": 0.75}
TASKS = ("tldr", "wp", "wildbench", "gsm8k")


def graph() -> LineageGraph:
    return LineageGraph(
        [CheckpointNode("base", "base"), CheckpointNode("sft", "sft", "base"), CheckpointNode("dpo", "dpo", "sft")]
    )


def scores() -> pd.DataFrame:
    """Per prompt, sbert = a prompt's base level x the checkpoint's kept fraction (ead at half the scale)."""
    base_level = np.linspace(0.6, 0.9, N_PROMPTS)
    rows = [
        (checkpoint, task, f"p{p:02d}", metric, "all", scale * base_level[p] * kept, K)
        for task in TASKS
        for checkpoint, kept in KEPT.items()
        for metric, scale in (("sbert", 1.0), ("ead", 0.5))
        for p in range(N_PROMPTS)
    ]
    return pd.DataFrame(rows, columns=["checkpoint", "task", "prompt_id", "metric", "subset", "value", "n_outputs"])


def verdicts() -> pd.DataFrame:
    """gsm8k: prompt p has round(K * accuracy) correct samples, plus one more on every third prompt."""
    rows = []
    for checkpoint, accuracy in ACCURACY.items():
        for p in range(N_PROMPTS):
            n_correct = min(K, round(K * accuracy) + (p % 3 == 0))
            rows += [(checkpoint, "gsm8k", f"p{p:02d}", i, i < n_correct) for i in range(K)]
    return pd.DataFrame(rows, columns=["checkpoint", "task", "prompt_id", "sample_index", "correct"])


def quality() -> pd.DataFrame:
    """The judge's table: Kirk et al. on tldr, Arena-Hard on wp (against base, which has no row), WB-Score."""
    rows = [
        ("base", "tldr", "kirk_summary", 0.30, 0.25, 0.36, 0, ""),
        ("sft", "tldr", "kirk_summary", 0.51, 0.45, 0.57, 1, ""),
        ("dpo", "tldr", "kirk_summary", 0.58, 0.52, 0.64, 0, ""),
        ("sft", "wp", "arena_hard_creative", 0.70, 0.62, 0.78, 2, "base"),
        ("dpo", "wp", "arena_hard_creative", 0.66, 0.58, 0.74, 0, "base"),
        ("base", "wildbench", "wb_score", 3.2, 2.9, 3.5, 0, ""),
        ("sft", "wildbench", "wb_score", 6.0, 5.7, 6.3, 0, ""),
        ("dpo", "wildbench", "wb_score", 6.45, 6.2, 6.7, 3, ""),
    ]
    columns = ["checkpoint", "task", "protocol", "value", "ci_low", "ci_high", "n_unparseable", "baseline"]
    return pd.DataFrame(rows, columns=columns).assign(n_prompts=N_PROMPTS)


@pytest.fixture(scope="module")
def result() -> AnalysisResult:
    return analyze(scores(), verdicts(), graph(), bootstrap=FAST, quality=quality())


def _row(table: pd.DataFrame, **keys: str) -> pd.Series:
    mask = np.logical_and.reduce([table[column] == value for column, value in keys.items()])
    rows = table[mask]
    assert len(rows) == 1, (keys, rows)
    return rows.iloc[0]


def test_one_row_per_task_metric_checkpoint_with_diversity_and_quality(result: AnalysisResult) -> None:
    table = result.diversity_quality
    assert list(table.columns) == DIVERSITY_QUALITY_COLUMNS
    assert len(table) == len(TASKS) * 2 * len(KEPT)
    assert not table.duplicated(["task", "metric", "checkpoint"]).any()
    means = result.checkpoint_means
    for row in table.to_dict("records"):
        mean = _row(means, checkpoint=row["checkpoint"], task=row["task"], metric=row["metric"])
        assert (row["diversity"], row["diversity_ci_low"], row["diversity_ci_high"]) == (
            mean["mean"],
            mean["ci_low"],
            mean["ci_high"],
        )
        assert row["diversity_ci_low"] <= row["diversity"] <= row["diversity_ci_high"]
    assert list(table[(table.task == "tldr") & (table.metric == "sbert")]["checkpoint"]) == ["base", "sft", "dpo"]


def test_judge_values_and_cis_are_carried_with_their_kind(result: AnalysisResult) -> None:
    table = result.diversity_quality
    sft = _row(table, task="tldr", metric="sbert", checkpoint="sft")
    assert (sft["quality"], sft["quality_ci_low"], sft["quality_ci_high"]) == (0.51, 0.45, 0.57)
    assert (sft["quality_kind"], sft["quality_source"]) == ("win rate vs reference", "judge:kirk_summary")
    assert (sft["quality_n_prompts"], sft["n_unparseable"], bool(sft["is_baseline"])) == (N_PROMPTS, 1, False)
    wb = _row(table, task="wildbench", metric="ead", checkpoint="dpo")
    assert (wb["quality"], wb["quality_kind"], wb["quality_source"]) == (6.45, "WB-Score (1-10)", "judge:wb_score")
    arena = _row(table, task="wp", metric="sbert", checkpoint="sft")
    assert (arena["quality"], arena["quality_kind"]) == (0.70, "win rate vs base")


def test_the_arena_baseline_is_at_one_half_by_definition(result: AnalysisResult) -> None:
    base = _row(result.diversity_quality, task="wp", metric="sbert", checkpoint="base")
    assert (base["quality"], base["quality_ci_low"], base["quality_ci_high"]) == (0.5, 0.5, 0.5)
    assert bool(base["is_baseline"]) and base["quality_note"] == "the baseline (by definition)"
    assert (base["quality_kind"], base["quality_source"]) == ("win rate vs base", "judge:arena_hard_creative")
    assert pd.isna(base["quality_n_prompts"]) and pd.isna(base["n_unparseable"])
    assert result.diversity_quality["is_baseline"].sum() == 2  # wp's base, for each metric


def test_pass_at_1_on_a_verifiable_task_comes_from_the_verdicts(result: AnalysisResult) -> None:
    table = result.diversity_quality
    by_prompt = verdicts().groupby(["checkpoint", "prompt_id"])["correct"].mean()
    passk = result.passk[(result.passk.k == 1) & (result.passk.metric == "sbert")].set_index("checkpoint")
    for checkpoint in KEPT:
        row = _row(table, task="gsm8k", metric="sbert", checkpoint=checkpoint)
        fractions = by_prompt[checkpoint].sort_index().to_numpy()
        expected = cell_mean_cis({"cell": fractions}, FAST)["cell"]
        assert row["quality"] == pytest.approx(fractions.mean(), abs=1e-12)
        assert row["quality"] == pytest.approx(passk.loc[checkpoint, "pass_at_k"], abs=1e-12)
        assert (row["quality_ci_low"], row["quality_ci_high"]) == pytest.approx((expected.low, expected.high))
        assert row["quality_ci_low"] < row["quality"] < row["quality_ci_high"]
        assert (row["quality_kind"], row["quality_source"], row["quality_n_prompts"]) == (
            "pass@1",
            "verifier",
            N_PROMPTS,
        )
        assert pd.isna(row["n_unparseable"]) and not row["is_baseline"]


def test_edges_carry_both_changes_with_one_sign(result: AnalysisResult) -> None:
    edges = result.quality_edges
    assert list(edges.columns) == QUALITY_EDGES_COLUMNS
    assert len(edges) == len(TASKS) * 2 * 2  # two edges per task and metric
    for row in edges.to_dict("records"):
        edge = _row(result.edges, parent=row["parent"], child=row["child"], task=row["task"], metric=row["metric"])
        assert row["diversity_change_pct_base"] == edge["delta_pct_base"] < 0  # diversity lost: negative
        assert row["diversity_change_pct_base_ci_high"] == edge["delta_pct_base_ci_high"]
        assert row["stage"] == row["child"]
    sft = _row(edges, task="tldr", metric="sbert", child="sft")
    assert sft["diversity_change_pct_base"] == pytest.approx(-38.0, abs=1e-9)
    assert sft["quality_change_points"] == pytest.approx(21.0)  # win rate gained: positive, in points
    assert sft["sentence"] == "sft: sbert \N{MINUS SIGN}38% of base, win rate vs reference +21 points"
    dpo = _row(edges, task="wp", metric="ead", child="dpo")
    assert dpo["diversity_change_pct_base"] == pytest.approx(-12.0, abs=1e-9)
    assert dpo["quality_change_points"] == pytest.approx(-4.0)
    assert dpo["sentence"] == "dpo: ead \N{MINUS SIGN}12% of base, win rate vs base \N{MINUS SIGN}4 points"
    first = _row(edges, task="wp", metric="sbert", child="sft")  # against the baseline's 0.5
    assert (first["quality_parent"], first["quality_change_points"]) == (0.5, pytest.approx(20.0))
    wb = _row(edges, task="wildbench", metric="sbert", child="dpo")
    assert wb["quality_change_points"] == pytest.approx(0.45)  # score points, not x 100
    assert wb["sentence"].endswith("WB-Score +0.5 points")
    verified = _row(edges, task="gsm8k", metric="sbert", child="sft")
    assert verified["quality_source"] == "verifier"
    assert verified["quality_change_points"] == pytest.approx(
        100 * (verified["quality_child"] - verified["quality_parent"])
    )


def test_without_a_judge_only_the_verifiable_tasks_and_nothing_else_changes(result: AnalysisResult) -> None:
    for absent in (None, quality().iloc[0:0]):
        plain = analyze(scores(), verdicts(), graph(), bootstrap=FAST, quality=absent)
        for name, table in plain.tables().items():
            if name not in ("diversity_quality", "quality_edges"):
                pd.testing.assert_frame_equal(table, result.tables()[name], obj=name)
        assert set(plain.diversity_quality["task"]) == {"gsm8k"}
        assert set(plain.quality_edges["task"]) == {"gsm8k"}
        expected = result.diversity_quality[result.diversity_quality.task == "gsm8k"].reset_index(drop=True)
        pd.testing.assert_frame_equal(plain.diversity_quality, expected)
    nothing = analyze(scores(), None, graph(), bootstrap=FAST)
    assert nothing.diversity_quality.empty and list(nothing.diversity_quality.columns) == DIVERSITY_QUALITY_COLUMNS
    assert nothing.quality_edges.empty and list(nothing.quality_edges.columns) == QUALITY_EDGES_COLUMNS


def test_a_task_the_judge_rated_takes_the_judge_s_quality() -> None:
    judged = pd.concat([quality(), quality().query("task == 'tldr'").assign(task="gsm8k")], ignore_index=True)
    both = analyze(scores(), verdicts(), graph(), bootstrap=FAST, quality=judged)
    gsm = both.diversity_quality[both.diversity_quality.task == "gsm8k"]
    assert set(gsm["quality_source"]) == {"judge:kirk_summary"}


def test_read_analysis_round_trips_the_new_tables_and_reads_older_directories(
    result: AnalysisResult, tmp_path: Path
) -> None:
    written = write_analysis(result, tmp_path)
    for name in ("diversity_quality", "quality_edges"):
        assert tmp_path / f"{name}.parquet" in written and tmp_path / f"{name}.csv" in written
        assert list(pd.read_csv(tmp_path / f"{name}.csv").columns) == list(result.tables()[name].columns)
    back = read_analysis(tmp_path)
    for name in ("diversity_quality", "quality_edges"):
        pd.testing.assert_frame_equal(back.tables()[name], result.tables()[name], check_dtype=False, obj=name)
    assert back.settings["quality"]["protocols"] == ["arena_hard_creative", "kirk_summary", "wb_score"]
    for name in ("diversity_quality", "quality_edges"):  # an analysis written before these tables existed
        for suffix in ("parquet", "csv"):
            (tmp_path / f"{name}.{suffix}").unlink()
    older = read_analysis(tmp_path)
    assert older.diversity_quality.empty and older.quality_edges.empty
    pd.testing.assert_frame_equal(older.edges, back.edges)


def test_a_bad_quality_table_is_named() -> None:
    with pytest.raises(DivtraceError, match="n_unparseable"):
        analyze(scores(), None, graph(), quality=quality().drop(columns="n_unparseable"))
    with pytest.raises(DivtraceError, match=r"unknown protocol.*'pairwise'"):
        analyze(scores(), None, graph(), quality=quality().assign(protocol="pairwise"))
    with pytest.raises(DivtraceError, match="duplicate"):
        analyze(scores(), None, graph(), quality=pd.concat([quality(), quality().iloc[:1]]))
    two = pd.concat([quality(), quality().iloc[:1].assign(protocol="wb_score")])
    with pytest.raises(DivtraceError, match="task 'tldr' with 2 protocols"):
        analyze(scores(), None, graph(), quality=two)


def test_a_judged_cell_whose_answers_could_not_be_read_stays_and_says_so() -> None:
    table = quality()
    unread = table["checkpoint"].eq("sft") & table["task"].eq("tldr")
    table.loc[unread, ["value", "ci_low", "ci_high", "n_prompts", "n_unparseable"]] = [np.nan, np.nan, np.nan, 0, 12]
    analysed = analyze(scores(), verdicts(), graph(), bootstrap=FAST, quality=table)
    sft = _row(analysed.diversity_quality, task="tldr", metric="sbert", checkpoint="sft")
    assert pd.isna(sft["quality"]) and sft["quality_note"] == "no readable judgment (12 unparseable)"
    edges = analysed.quality_edges
    assert not ((edges["task"] == "tldr") & ((edges["child"] == "sft") | (edges["parent"] == "sft"))).any()
    assert quality_text(sft.to_dict()).endswith(", no readable judgment (12 unparseable)")  # summary.md's cell
