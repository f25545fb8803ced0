"""The homogenisation table (mean over shared prompts with a bootstrap CI, lineage order) and ``divtrace analyze
--homogenization`` end to end on plain JSONL samples of three checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from divtrace.analysis.homogenization import HOMOGENIZATION_COLUMNS, homogenization_table
from divtrace.analysis.pipeline import read_analysis
from divtrace.cli import app
from divtrace.stats.bootstrap import BootstrapSettings, cell_mean_cis

SETTINGS = BootstrapSettings(resamples=500, seed=3)


def rows(a: str, b: str, values: dict[str, float], metric: str = "sbert", task: str = "open") -> list[dict]:
    return [
        {"task": task, "prompt_id": p, "checkpoint_a": a, "checkpoint_b": b, "metric": metric, "similarity": v}
        for p, v in values.items()
    ]


def test_table_means_over_shared_prompts_with_the_one_bootstrap_in_lineage_order() -> None:
    frame = pd.DataFrame(
        rows("sft", "base", {"p0": 0.5, "p1": 0.7, "p2": 0.9})  # stored in the other order: swapped
        + rows("base", "base", {"p0": 0.2, "p1": 0.4, "p2": np.nan, "p3": 0.6})  # NaN: not counted
        + rows("sft", "sft", {"p0": 0.8, "p1": 0.9})
    )
    table = homogenization_table(frame, ["base", "sft"], SETTINGS)
    assert list(table.columns) == HOMOGENIZATION_COLUMNS
    assert list(zip(table["checkpoint_a"], table["checkpoint_b"], strict=True)) == [
        ("base", "base"),
        ("base", "sft"),
        ("sft", "sft"),
    ]
    cross = table.iloc[1]
    expected = cell_mean_cis({"x": np.array([0.5, 0.7, 0.9])}, SETTINGS)["x"]
    assert (cross["similarity"], cross["ci_low"], cross["ci_high"]) == pytest.approx(
        (expected.mean, expected.low, expected.high)
    )
    assert cross["n_prompts"] == 3
    assert table.iloc[0]["n_prompts"] == 3 and table.iloc[0]["similarity"] == pytest.approx(0.4)
    assert cross["ci_low"] <= cross["similarity"] <= cross["ci_high"]
    assert homogenization_table(pd.DataFrame(), ["base"], SETTINGS).empty


OPENINGS = ["Once upon a time", "Long ago", "In a quiet village", "One stormy night"]
THEMES = ["a fox found a lantern", "a girl built a boat", "an old man planted trees", "two crows shared bread"]


def write_samples(path: Path) -> None:
    """base: varied stories; sft: base's stories lightly reworded; rl: one unrelated sentence, four times."""
    lines = []
    for p in range(4):
        base = [f"{OPENINGS[k]}, {THEMES[(k + p) % 4]} near the river." for k in range(4)]
        sft = [f"{OPENINGS[k]}, {THEMES[(k + p) % 4]} close to the river." for k in range(4)]
        rl = ["I cannot help with that request, sorry."] * 4
        for checkpoint, outputs in (("base", base), ("sft", sft), ("rl", rl)):
            record = {"prompt_id": f"s{p}", "prompt": f"Tell story {p}.", "outputs": outputs}
            lines.append(json.dumps({**record, "checkpoint": checkpoint, "task": "stories"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_analyze_with_homogenization_writes_the_table_and_the_report_section(tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    write_samples(samples)
    run = tmp_path / "run"
    args = ["analyze", str(samples), "--lineage", "base>sft>rl", "--out", str(run), "--metrics", "ead"]
    result = CliRunner().invoke(app, [*args, "--homogenization"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output + str(result.exception)
    assert (run / "homogenization" / "stories.parquet").exists()
    table = pd.read_csv(run / "analysis" / "homogenization.csv")
    assert list(table.columns) == HOMOGENIZATION_COLUMNS
    sbert = table[table["metric"] == "sbert"].set_index(["checkpoint_a", "checkpoint_b"])
    assert list(sbert.index) == [
        ("base", "base"),
        ("base", "sft"),
        ("base", "rl"),
        ("sft", "sft"),
        ("sft", "rl"),
        ("rl", "rl"),
    ]
    assert sbert.loc[("rl", "rl"), "similarity"] == 1.0  # identical outputs
    assert sbert.loc[("base", "sft"), "similarity"] > sbert.loc[("base", "rl"), "similarity"]
    assert (sbert["n_prompts"] == 4).all()
    assert not read_analysis(run / "analysis").homogenization.empty
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert 'id="homogenization"' in html and 'data-plot="homogenization"' in html
    assert "## Homogenisation" in (run / "report" / "summary.md").read_text(encoding="utf-8")

    plain = tmp_path / "plain"
    result = CliRunner().invoke(app, [*args[:-4], "--out", str(plain), "--metrics", "ead", "--no-report"])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert not (plain / "homogenization").exists()
    assert not (plain / "analysis" / "homogenization.csv").exists()
    assert read_analysis(plain / "analysis").homogenization.empty
