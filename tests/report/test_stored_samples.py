"""The report reads a run's samples cell by cell (:class:`StoredSamples`): the same drill-down texts and unclosed-
thinking counts as from every record held in a list."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from divtrace.report.html import build_drilldown, unclosed_thinking_cells
from divtrace.report.stored_samples import StoredSamples
from divtrace.runs.layout import RunLayout
from divtrace.samples import SampleRecord
from divtrace.samples.parquet import write_samples_parquet

CELLS = [("base", "t1"), ("base", "t2"), ("sft", "t1"), ("sft", "t2")]


def _run(tmp_path: Path) -> RunLayout:
    layout = RunLayout(tmp_path)
    for checkpoint, task in CELLS:
        records = [
            SampleRecord(
                prompt_id=f"p{p}",
                prompt=f"prompt {p}",
                outputs=[f"{checkpoint} {task} {p} {i}" for i in range(4)],
                checkpoint=checkpoint,
                task=task,
                thinking_unclosed=[i < p for i in range(4)],
            )
            for p in range(3)
        ]
        path = layout.shard_file(checkpoint, task, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_samples_parquet(records, path)
    return layout


def test_stored_samples_read_cell_by_cell(tmp_path: Path) -> None:
    layout = _run(tmp_path)
    stored = StoredSamples(layout, CELLS)
    held = [record for cell in CELLS for record in layout.read_samples(*cell)]
    assert [r.model_dump() for r in stored] == [r.model_dump() for r in held]
    assert [r.model_dump() for r in stored] == [r.model_dump() for r in held]  # again: each pass reads anew
    assert {(r.checkpoint, r.task) for r in stored.of_cells([("sft", "t2"), ("other", "t1")])} == {("sft", "t2")}


def test_report_inputs_equal_from_stored_samples(tmp_path: Path) -> None:
    layout = _run(tmp_path)
    stored = StoredSamples(layout, CELLS)
    held = list(stored)
    scores = pd.DataFrame(
        [
            {"checkpoint": c, "task": t, "prompt_id": f"p{p}", "metric": "sbert", "subset": "all", "value": v}
            for c, t in CELLS
            for p in range(3)
            for v in [0.9 - 0.1 * p * (c == "sft")]
        ]
    )
    means = pd.DataFrame(columns=["checkpoint", "task", "unclosed_thinking"])
    assert unclosed_thinking_cells(stored, means) == unclosed_thinking_cells(held, means)
    assert unclosed_thinking_cells(stored, means)  # the flags were read
    lineages = {"sft": ["base", "sft"]}
    from_disk = build_drilldown(scores, stored, lineages, "sbert", 1, 1000)
    assert from_disk == build_drilldown(scores, held, lineages, "sbert", 1, 1000)
    assert from_disk[0][0]["most"][0]["base_outputs"]  # the texts were found
