"""A sweep on the packaged models, end to end through ``divtrace run``: a finished study gains a sweep and draws only
the new conditions; a higher temperature gives higher EAD; adding a value draws only that value; the frontier tables
are written and a rerun does nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from divtrace.samples import read_samples
from tests.run_commands import run_divtrace

INSTRUCT = "sft"
TASKS = ("open_ended", "arithmetic")


def _with_sweep(study: Path, temperatures: list[float]) -> None:
    raw = yaml.safe_load(study.read_text())
    raw["sweep"] = {"temperature": temperatures, "checkpoints": [INSTRUCT]}
    study.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.slow
def test_a_sweep_draws_only_its_new_conditions_and_maps_the_frontier(small_run_copy: tuple[Path, Path]) -> None:
    study, run = small_run_copy  # the small quickstart (T = 0.8), finished
    _with_sweep(study, [0.2, 1.6])
    result = run_divtrace("run", study, "--out", run)
    assert result.returncode == 0, result.stderr
    # the study's own units stand: 2 conditions x 2 tasks drawn, verified (arithmetic) and scored
    assert "generate: ran 4" in result.stderr and "score: ran 4" in result.stderr
    assert "verify: ran 2" in result.stderr
    for temperature in (0.2, 1.6):
        condition = f"{INSTRUCT}+temperature={temperature}"
        for task in TASKS:
            records = read_samples(sorted((run / "samples" / condition / task).glob("shard-*.parquet"))).records
            assert records and all(r.sampling is not None for r in records)
            assert {r.sampling["temperature"] for r in records if r.sampling} == {temperature}

    sweep = pd.read_csv(run / "analysis" / "sweep.csv")
    assert list(sweep.columns[:4]) == ["checkpoint", "task", "metric", "temperature"]
    ead = sweep[(sweep["metric"] == "ead") & (sweep["checkpoint"] == INSTRUCT)]
    for task in TASKS:
        by_temperature = ead[ead["task"] == task].set_index("temperature")["mean"]
        assert by_temperature[1.6] > by_temperature[0.8] > by_temperature[0.2], task  # hotter, more diverse
    study_rows = sweep[sweep["is_study_setting"]]
    assert set(study_rows["checkpoint"]) == {"base", INSTRUCT}  # the base's point at the study setting
    assert not study_rows["in_sweep"].any()  # 0.8 is not one of the sweep's settings
    arithmetic = sweep[(sweep["task"] == "arithmetic")]
    assert arithmetic["pass_at_1"].notna().all() and (arithmetic["quality_kind"] == "pass@1").all()
    recovery = pd.read_csv(run / "analysis" / "recovery.csv")
    assert set(recovery["checkpoint"]) == {INSTRUCT} and len(recovery) == 2 * 3  # 2 tasks x ead, sbert, vendi
    for row in recovery.to_dict("records"):
        if row["reached"]:
            assert row["mean"] >= row["base_mean"] and row["condition"].startswith(INSTRUCT + "+")
        else:
            assert row["note"].startswith("not reached in the sweep")

    # Adding a value draws that value only; a rerun does nothing.
    _with_sweep(study, [0.2, 1.2, 1.6])
    result = run_divtrace("run", study, "--out", run)
    assert result.returncode == 0, result.stderr
    assert "generate: ran 2" in result.stderr and "score: ran 2" in result.stderr
    result = run_divtrace("run", study, "--out", run)
    assert result.returncode == 0, result.stderr
    for stage in ("generate", "verify", "score", "analyze", "report"):
        assert f"{stage}: ran 0" in result.stderr
    assert len(pd.read_csv(run / "analysis" / "sweep.csv").query("metric == 'ead'")) == 2 * (1 + 1 + 3)
