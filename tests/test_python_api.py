"""The Python entry points: ``divtrace.run`` (a study, executor as an argument) and ``divtrace.analyze`` (samples from
elsewhere), on a real small quickstart study."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import divtrace
from divtrace.analysis.stage import AnalyzeStage
from divtrace.errors import DivtraceError
from divtrace.generate.stage import GenerateStage
from divtrace.report.stage import ReportStage
from divtrace.runs.stage import Stage
from divtrace.score.stage import ScoreStage
from divtrace.study import small_quickstart_study
from divtrace.verify.stage import VerifyStage


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> divtrace.RunOutcome:
    study = small_quickstart_study(2, 3, 8, seed=5, name="api-small")
    return divtrace.run(study, tmp_path_factory.mktemp("api") / "run", executor="local")


@pytest.mark.slow
def test_run_returns_what_it_did_and_the_analysis(finished: divtrace.RunOutcome) -> None:
    stages = {report.stage: report for report in finished.reports}
    assert list(stages) == ["generate", "verify", "score", "analyze", "report"]
    assert len(stages["generate"].ran) == 4  # 2 checkpoints x 2 tasks
    means = finished.analysis().checkpoint_means
    assert set(means["checkpoint"]) == {"base", "sft"} and not means["mean"].isna().all()
    assert finished.report_path == finished.directory / "report" / "index.html"

    again = divtrace.run(finished.directory / "study.yaml", finished.directory)  # a study file, the same directory
    assert all(not report.ran for report in again.reports)  # everything was done: nothing reran

    with pytest.raises(DivtraceError, match="executor 'slurm'"):
        divtrace.run(finished.directory / "study.yaml", finished.directory, executor="slurm")  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("stage", [GenerateStage, VerifyStage, ScoreStage, AnalyzeStage, ReportStage])
def test_a_new_stage_version_redoes_the_units_of_that_stage_only(
    finished: divtrace.RunOutcome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: type[Stage[object, object]]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished.directory, run)
    shards = {path: path.read_bytes() for path in (run / "samples").rglob("shard-*.parquet")}
    monkeypatch.setattr(stage, "version", stage.version + 1)
    again = divtrace.run(run / "study.yaml", run, executor="local")
    units = {"generate": 4, "verify": 2, "score": 4, "analyze": 1, "report": 1}  # 2 checkpoints x 2 tasks
    assert {r.stage: len(r.ran) for r in again.reports} == {s: n if s == stage.name else 0 for s, n in units.items()}
    assert {path: path.read_bytes() for path in shards} == shards  # a generation redone draws nothing new


@pytest.mark.slow
def test_analyze_imported_samples_gives_the_same_scores(finished: divtrace.RunOutcome, tmp_path: Path) -> None:
    imported: list[dict[tuple[str, str], int]] = []
    outcome = divtrace.analyze(
        [finished.directory / "samples"],
        tmp_path / "imported",
        lineage=["base>sft:sft"],
        report=False,
        on_import=imported.append,
    )
    assert [report.stage for report in outcome.reports] == ["verify", "score", "analyze"]
    assert imported == [{(c, t): 2 for c in ("base", "sft")
                         for t in ("arithmetic", "open_ended")}]  # fmt: skip
    assert outcome.report_path is None
    keys = ["checkpoint", "task", "metric"]
    ours = outcome.analysis().checkpoint_means.sort_values(keys).set_index(keys)["mean"]
    theirs = finished.analysis().checkpoint_means.sort_values(keys).set_index(keys)["mean"]
    # Every metric agrees, EAD included: both use V = 50257 for every checkpoint (a run no longer takes each
    # checkpoint's tokenizer size, which an imported sample cannot know).
    assert set(ours.index.get_level_values("metric")) == {"ead", "sbert", "vendi"}
    pd.testing.assert_series_equal(ours, theirs, rtol=1e-6, atol=1e-9)
