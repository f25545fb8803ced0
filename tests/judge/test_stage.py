"""The judge stage of ``divtrace run``: a study's ``judge:`` section against a deterministic judge server on
127.0.0.1, on the real quickstart models: units and markers like the other stages, the analysis and report's
diversity against quality, a rerun that asks nothing, an interrupted judge that resumes, a dead endpoint found
before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import divtrace
from divtrace.errors import DivtraceError
from divtrace.judge.client import JudgeEndpointError
from divtrace.runs.layout import RunLayout
from divtrace.study import Study, small_quickstart_study
from divtrace.study.spec import JudgeSpec, TaskSpec
from tests.judge import judges
from tests.judge_server import JudgeServer

DATA = Path(__file__).parent.parent / "fixtures" / "judge" / "data"
BASE, INSTRUCT = "base", "sft"


def judge_answer(body: dict[str, Any]) -> str:
    return judges.route(body["messages"])


def judged_study(endpoint: str, **judge: Any) -> Study:
    """The small quickstart (2 prompts, K = 2, 8 tokens) plus TL;DR from the test data, judged: TL;DR by Kirk et
    al. (the study's protocol), open_ended by Arena-Hard against the lineage's base."""
    study = small_quickstart_study(2, 2, 8, shard_size=2)
    spec = JudgeSpec(
        endpoint=endpoint,
        model="judge-model",
        protocols={"tldr": "kirk_summary", "open_ended": "arena_hard_creative"},
        max_retries=0,
        **judge,
    )
    return study.model_copy(
        update={
            "tasks": [*study.tasks, TaskSpec(name="tldr", n=2)],
            "data_dir": str(DATA),
            "judge": spec,
            "metrics": ["ead"],
            "homogenization": True,  # the homogenize stage of divtrace run rides on this study's run
        }
    )


@pytest.mark.slow
def test_a_study_with_a_judge_runs_the_stage_resumes_and_finds_a_dead_endpoint_first(tmp_path: Path) -> None:
    out = tmp_path / "run"
    layout = RunLayout(out)
    # a judge that fails for good after 3 answers: the run stops, what arrived is kept
    with (
        JudgeServer(judge_answer, script=["answer"] * 3, default=500) as failing,
        pytest.raises(JudgeEndpointError, match="500"),
    ):
        # one call at a time, so exactly the first 3 are answered (concurrent calls could be cancelled in flight)
        divtrace.run(judged_study(failing.base_url, max_concurrency=1), out)
    kept = len(layout.judge_cache_file.read_text().splitlines())
    assert kept == 3
    with JudgeServer(judge_answer) as server:
        study = judged_study(server.base_url)
        divtrace.run(study, out)
        # tldr: 2 prompts x 2 checkpoints; open_ended: sft against base, 2 orders: 8 judgments. Only the requests
        # not answered before are asked, each distinct one once (sft is base + a small adapter drawn with the same
        # seeds, so an 8-token output of both can be the same text, and its request the same).
        judgments = sum(len(pd.read_parquet(path)) for path in (out / "judgments").rglob("*.parquet"))
        distinct = len(layout.judge_cache_file.read_text().splitlines())
        assert judgments == 2 * 2 + 2 * 2 and kept < distinct <= judgments
        assert len(server.calls) == distinct - kept
        assert layout.judgments_file(BASE, "tldr").exists() and layout.judgments_file(INSTRUCT, "tldr").exists()
        assert layout.judgments_file(INSTRUCT, "open_ended").exists()
        assert not layout.judgments_file(BASE, "open_ended").exists()  # the baseline is not judged against itself
        arena = pd.read_parquet(layout.judgments_file(INSTRUCT, "open_ended"))
        assert set(arena["baseline"]) == {BASE} and set(arena["order"]) == {"candidate_first", "baseline_first"}
        dq = pd.read_parquet(layout.analysis_table("diversity_quality"))
        judged = dq[dq["quality_source"].str.startswith("judge:")]
        assert {(row.checkpoint, row.task) for row in judged.itertuples()} >= {
            (BASE, "tldr"), (INSTRUCT, "tldr"), (INSTRUCT, "open_ended"), (BASE, "open_ended"),
        }  # fmt: skip
        assert judged[judged["is_baseline"]]["quality"].tolist() == [0.5]
        assert "Diversity against quality" in layout.report_html.read_text()
        homogenization = pd.read_csv(layout.analysis_dir / "homogenization.csv")
        pairs = {(row.checkpoint_a, row.checkpoint_b) for row in homogenization.itertuples()}
        assert pairs == {(BASE, BASE), (BASE, INSTRUCT), (INSTRUCT, INSTRUCT)}
        assert set(homogenization["task"]) == {"open_ended", "arithmetic", "tldr"}
        calls = len(server.calls)
        outcome = divtrace.run(study, out)
        assert len(server.calls) == calls  # nothing asked again
        judge_report = next(report for report in outcome.reports if report.stage == "judge")
        assert judge_report.ran == [] and len(judge_report.skipped) == 3
        assert next(report for report in outcome.reports if report.stage == "homogenize").ran == []
        # divtrace judge on the run directory: its samples and its lineage's base as the baseline, the same tables
        from_files = divtrace.judge_samples(
            out, judge_model="judge-model", out=tmp_path / "judged", endpoint=server.base_url,
            protocols={"tldr": "kirk_summary", "open_ended": "arena_hard_creative"},
        )  # fmt: skip
    cells = ((BASE, "tldr"), (INSTRUCT, "tldr"), (INSTRUCT, "open_ended"))
    stage_tables = pd.concat([pd.read_parquet(layout.judgments_file(*cell)) for cell in cells])
    columns = ["checkpoint", "task", "prompt_id", "order", "baseline", "verdict", "value"]
    ordered = ["checkpoint", "task", "prompt_id", "order"]
    pd.testing.assert_frame_equal(
        from_files.judgments[columns].sort_values(ordered).reset_index(drop=True),
        stage_tables[columns].sort_values(ordered).reset_index(drop=True),
        check_dtype=False,  # text read back from Parquet is a string dtype
    )
    dead = tmp_path / "dead"
    with pytest.raises(DivtraceError, match=r"127\.0\.0\.1:9"):
        divtrace.run(judged_study("http://127.0.0.1:9/v1"), dead)
    assert not RunLayout(dead).study_file.exists()  # refused before anything was written
