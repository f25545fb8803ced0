"""The recovery frontier on constructed scores, verdicts and judge tables: every number checked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from divtrace.analysis.pipeline import AnalysisResult, analyze, read_analysis, write_analysis
from divtrace.analysis.sweep import NOT_REACHED, SweepInputs
from divtrace.generate.params import SamplingSpec
from divtrace.stats.bootstrap import BootstrapSettings
from divtrace.study.lineage import CheckpointNode, LineageGraph
from divtrace.study.sweep import SweepSpec, sweep_conditions

FAST = BootstrapSettings(resamples=200)
GRAPH = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("sft", "sft", "base"),
                      CheckpointNode("dpo", "dpo", "sft")])  # fmt: skip


def _scores(checkpoint: str, values: list[float], task: str = "t", metric: str = "ead") -> list[dict[str, object]]:
    return [
        {"checkpoint": checkpoint, "task": task, "prompt_id": f"p{i}", "metric": metric, "subset": "all",
         "value": value, "n_outputs": 4}
        for i, value in enumerate(values)
    ]  # fmt: skip


def _verdicts(checkpoint: str, flags: list[list[int]], task: str = "t") -> list[dict[str, object]]:
    return [
        {"checkpoint": checkpoint, "task": task, "prompt_id": f"p{p}", "sample_index": i, "correct": bool(flag)}
        for p, row in enumerate(flags)
        for i, flag in enumerate(row)
    ]


def _frontier(temperatures: list[float]) -> AnalysisResult:
    """base > sft > dpo at T = 0.6; sft and dpo swept over ``temperatures``; EAD per prompt and verdicts made up."""
    conditions = sweep_conditions(SweepSpec(temperature=temperatures, checkpoints=["sft", "dpo"]),
                                  SamplingSpec(temperature=0.6), ["base", "sft", "dpo"])  # fmt: skip
    study = pd.DataFrame(_scores("base", [0.8, 0.9, 0.7]) + _scores("sft", [0.3, 0.4, 0.5])
                         + _scores("dpo", [0.2, 0.2, 0.2]))  # fmt: skip
    swept = pd.DataFrame(
        _scores("sft+temperature=1.0", [0.6, 0.7, 0.8]) + _scores("sft+temperature=1.4", [0.9, 0.9, 0.9])
        + _scores("dpo+temperature=1.0", [0.3, 0.3, 0.3]) + _scores("dpo+temperature=1.4", [0.5, 0.6, 0.4])
    )  # fmt: skip
    verdicts = pd.DataFrame(_verdicts("base", [[1, 0, 1, 0]] * 3) + _verdicts("sft", [[1, 1, 1, 0]] * 3)
                            + _verdicts("dpo", [[1, 1, 1, 1]] * 3))  # fmt: skip
    swept_verdicts = pd.DataFrame(
        _verdicts("sft+temperature=1.0", [[1, 1, 0, 0]] * 3) + _verdicts("sft+temperature=1.4", [[0, 0, 0, 1]] * 3)
        + _verdicts("dpo+temperature=1.0", [[1, 1, 1, 0]] * 3) + _verdicts("dpo+temperature=1.4", [[0, 1, 1, 1]] * 3)
    )  # fmt: skip
    inputs = SweepInputs(tuple(c for c in conditions if c.name in set(swept["checkpoint"]) | {"sft", "dpo"}),
                         {"temperature": 0.6}, swept, swept_verdicts)  # fmt: skip
    return analyze(study, verdicts, GRAPH, bootstrap=FAST, sweep=inputs)


def test_the_sweep_table_has_every_point_with_its_diversity_and_quality() -> None:
    sweep = _frontier([1.0, 1.4]).sweep
    assert list(sweep.columns[:4]) == ["checkpoint", "task", "metric", "temperature"]
    points = sweep[["checkpoint", "temperature", "condition", "is_study_setting", "in_sweep"]].to_records(index=False)
    assert [tuple(p) for p in points] == [
        ("base", 0.6, "base", True, False),  # not swept: its study setting only
        ("sft", 0.6, "sft", True, False),  # swept, study setting not listed: first, outside the sweep
        ("sft", 1.0, "sft+temperature=1.0", False, True),
        ("sft", 1.4, "sft+temperature=1.4", False, True),
        ("dpo", 0.6, "dpo", True, False),
        ("dpo", 1.0, "dpo+temperature=1.0", False, True),
        ("dpo", 1.4, "dpo+temperature=1.4", False, True),
    ]
    assert sweep["mean"].to_numpy() == pytest.approx([0.8, 0.4, 0.7, 0.9, 0.2, 0.3, 0.5])
    # pass@1 = mean over prompts of correct / K; first-sample accuracy = the first sample's verdict
    assert sweep["pass_at_1"].to_numpy() == pytest.approx([0.5, 0.75, 0.5, 0.25, 1.0, 0.75, 0.75])
    assert sweep["accuracy_first"].to_numpy() == pytest.approx([1, 1, 1, 0, 1, 1, 0])
    assert (sweep["quality"] == sweep["pass_at_1"]).all() and set(sweep["quality_kind"]) == {"pass@1"}
    assert (sweep["ci_low"] <= sweep["mean"]).all() and (sweep["mean"] <= sweep["ci_high"]).all()


def test_recovery_is_the_first_setting_reaching_the_base_or_not_reached() -> None:
    recovery = _frontier([1.0, 1.4]).recovery
    rows = recovery.set_index("checkpoint")
    assert list(rows.index) == ["sft", "dpo"] and (rows["base"] == "base").all()
    assert rows.loc["sft", "base_mean"] == pytest.approx(0.8) and rows.loc["sft", "study_mean"] == pytest.approx(0.4)
    # sft: 0.7 at T = 1.0 falls short of the base's 0.8; 0.9 at T = 1.4 reaches it, pass@1 0.75 -> 0.25
    assert bool(rows.loc["sft", "reached"]) and rows.loc["sft", "condition"] == "sft+temperature=1.4"
    assert rows.loc["sft", "temperature"] == 1.4 and rows.loc["sft", "mean"] == pytest.approx(0.9)
    assert rows.loc["sft", "quality_change_points"] == pytest.approx(-50.0) and rows.loc["sft", "note"] == ""
    # dpo: at most 0.5 (T = 1.4): never reaches 0.8
    assert not bool(rows.loc["dpo", "reached"]) and rows.loc["dpo", "condition"] == ""
    assert rows.loc["dpo", "note"] == f"{NOT_REACHED} (highest: 0.500 at dpo+temperature=1.4)"
    assert np.isnan(rows.loc["dpo", "temperature"]) and np.isnan(rows.loc["dpo", "quality_change_points"])


def test_a_listed_study_setting_counts_and_a_judge_quality_is_taken() -> None:
    """The sweep lists the study's T = 0.6, and the judge rates the task: its win rate is the quality."""
    conditions = sweep_conditions(SweepSpec(temperature=[0.6, 1.0], checkpoints=["sft"]),
                                  SamplingSpec(temperature=0.6), ["base", "sft"])  # fmt: skip
    graph = LineageGraph([CheckpointNode("base", "base"), CheckpointNode("sft", "sft", "base")])
    study = pd.DataFrame(_scores("base", [0.5, 0.5]) + _scores("sft", [0.6, 0.6]))
    swept = pd.DataFrame(_scores("sft+temperature=1.0", [0.9, 0.9]))

    def judged(checkpoint: str, value: float) -> dict[str, object]:
        return {"checkpoint": checkpoint, "task": "t", "protocol": "kirk_summary", "n_prompts": 2, "value": value,
                "ci_low": value - 0.1, "ci_high": value + 0.1, "n_unparseable": 0}  # fmt: skip

    quality = pd.DataFrame([judged("base", 0.3), judged("sft", 0.4)])
    inputs = SweepInputs(tuple(conditions), {"temperature": 0.6}, swept,
                         quality=pd.DataFrame([judged("sft+temperature=1.0", 0.2)]))  # fmt: skip
    result = analyze(study, None, graph, bootstrap=FAST, quality=quality, sweep=inputs)
    sft = result.sweep[result.sweep["checkpoint"] == "sft"]
    assert list(sft["in_sweep"]) == [True, True] and list(sft["quality"]) == pytest.approx([0.4, 0.2])
    assert set(sft["quality_kind"]) == {"win rate vs reference"} and sft["pass_at_1"].isna().all()
    row = result.recovery.iloc[0]
    # sft is already above its base at the study's setting, which the sweep lists first: reached there
    assert row["condition"] == "sft" and row["note"] == "reached at the study's setting"
    assert row["quality_change_points"] == pytest.approx(0.0)


def test_the_tables_are_written_only_for_a_sweep_and_read_back(tmp_path: Path) -> None:
    out = tmp_path
    swept = _frontier([1.0, 1.4])
    written = {path.name for path in write_analysis(swept, out / "swept")}
    assert {"sweep.csv", "sweep.parquet", "recovery.csv", "recovery.parquet"} <= written
    back = read_analysis(out / "swept")
    pd.testing.assert_frame_equal(back.sweep, swept.sweep, check_dtype=False)
    pd.testing.assert_frame_equal(back.recovery, swept.recovery, check_dtype=False)
    assert back.settings["sweep"]["parameters"] == ["temperature"]
    study = pd.DataFrame(_scores("base", [0.8, 0.9, 0.7]) + _scores("sft", [0.3, 0.4, 0.5]))
    plain = analyze(study, None, GRAPH, bootstrap=FAST)
    assert plain.sweep.empty and "sweep" not in plain.settings
    written = {path.name for path in write_analysis(plain, out / "plain")}
    assert "sweep.csv" not in written and "recovery.csv" not in written
    assert read_analysis(out / "plain").sweep.empty  # an analysis without a sweep reads it back empty
