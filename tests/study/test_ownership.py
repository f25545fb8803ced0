"""A run directory belongs to one study (``study/ownership.py``): a run of another study, or of one made by the other
command, is refused before anything in the directory is touched; an edited study of the same name goes on.

The fast tests refuse through ``divtrace.run`` / ``divtrace.analyze`` (the refusal comes before task data or any
model); the slow ones run ``divtrace`` commands (typer's CliRunner, in this process: exit code and output are
what they check) on a copy of a finished small study and compare every file's bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import divtrace
from divtrace.cli import app
from divtrace.errors import DivtraceError
from divtrace.runs.layout import RunLayout
from divtrace.study import Study, load_study, small_quickstart_study
from divtrace.study.imported import parse_lineage
from divtrace.study.ownership import check_run_directory, made_by
from divtrace.study.spec import TaskSpec
from tests.run_commands import small_study, tree_digests

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "quickstart_samples.jsonl"
CHAIN = "gemma-3-270m>smollm2-135m-instruct:instruct"


def generated(name: str = "small-quickstart") -> Study:
    return small_quickstart_study(3, 3, 8, shard_size=2, seed=7, name=name)


def imported() -> Study:
    return Study(name="imported", checkpoints=parse_lineage([CHAIN]), tasks=[TaskSpec(name="open_ended")])


def frozen(run: Path, study: Study) -> Path:
    """``run`` holding ``study`` as its study.yaml."""
    RunLayout(run).freeze_study(study.to_yaml())
    return run


def test_a_new_directory_and_the_same_study_edited_are_accepted(tmp_path: Path) -> None:
    check_run_directory(RunLayout(tmp_path / "new"), generated())
    run = frozen(tmp_path / "run", generated())
    edited = generated().model_copy(update={"metrics": ["ead"], "description": "edited"})
    check_run_directory(RunLayout(run), edited)
    check_run_directory(RunLayout(frozen(tmp_path / "imp", imported())), imported())
    assert (made_by(generated()), made_by(imported())) == ("divtrace run", "divtrace analyze")


def test_another_study_is_refused_naming_both_and_the_directory(tmp_path: Path) -> None:
    run = frozen(tmp_path / "run", generated())
    with pytest.raises(DivtraceError) as refused:
        check_run_directory(RunLayout(run), generated("other-study"))
    assert str(refused.value) == (
        f"{run} is the run directory of study 'small-quickstart', not of study 'other-study': a run directory holds "
        f"one study. Give study 'other-study' its own directory (--out), or delete {run} to start over; nothing in "
        "it was changed"
    )


def test_a_directory_made_by_the_other_command_is_refused(tmp_path: Path) -> None:
    made_by_run = frozen(tmp_path / "run", generated("imported"))  # even under the imported study's name
    with pytest.raises(DivtraceError, match=r"made by divtrace run; divtrace analyze cannot run study 'imported'"):
        check_run_directory(RunLayout(made_by_run), imported())
    made_by_analyze = frozen(tmp_path / "imp", imported())
    with pytest.raises(DivtraceError, match=r"study 'imported', made by divtrace analyze; divtrace run cannot run"):
        check_run_directory(RunLayout(made_by_analyze), generated())


def test_a_study_file_that_is_not_a_study_is_refused(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    layout.study_file.write_text("- a list\n")
    with pytest.raises(DivtraceError, match=r"study.yaml: not a divtrace study; is .* a run directory\?"):
        check_run_directory(layout, generated())


def test_the_python_api_refuses_before_touching_the_directory(tmp_path: Path) -> None:
    run = frozen(tmp_path / "run", generated())
    (run / "scores").mkdir()
    (run / "scores" / "kept.parquet").write_bytes(b"scores")
    before = tree_digests(run)
    with pytest.raises(DivtraceError, match="not of study 'other-study'"):
        divtrace.run(generated("other-study"), run)
    with pytest.raises(DivtraceError, match="made by divtrace run; divtrace analyze cannot"):
        divtrace.analyze([SAMPLES], run, lineage=[CHAIN])
    assert tree_digests(run) == before

    by_analyze = frozen(tmp_path / "imp", imported())
    before = tree_digests(by_analyze)
    with pytest.raises(DivtraceError, match="made by divtrace analyze; divtrace run cannot"):
        divtrace.run(generated(), by_analyze)
    assert tree_digests(by_analyze) == before


def invoke(*args: str | Path) -> Result:
    """``divtrace ARGS`` to its end in this process: ``exit_code``, and ``output`` (its stdout and stderr)."""
    return CliRunner().invoke(app, list(map(str, args)), env={"COLUMNS": "400"})


@pytest.fixture
def run(small_run_copy: tuple[Path, Path]) -> Path:
    """A copy of a finished run of the small study (``small_study``), made by ``divtrace run`` (the session's
    ``small_run``), for one test to change."""
    return small_run_copy[1]


@pytest.mark.slow
def test_another_study_into_a_run_directory_changes_no_byte_in_it(run: Path, tmp_path: Path) -> None:
    other = small_study(tmp_path / "other.yaml", name="other-study", seed=99, tasks=[TaskSpec(name="arithmetic", n=2)])
    before = tree_digests(run)
    refused = invoke("run", other, "--out", run)
    assert refused.exit_code == 2, refused.output
    assert (
        f"error: {run} is the run directory of study 'small-quickstart', not of study 'other-study'" in refused.output
    )
    assert "plan of study" not in refused.output  # refused before task data loaded, let alone a model
    assert tree_digests(run) == before

    analyzed = invoke("analyze", SAMPLES, "--lineage", CHAIN, "--out", run)
    assert analyzed.exit_code == 2, analyzed.output
    assert "made by divtrace run; divtrace analyze cannot run study 'imported' in it" in analyzed.output
    assert tree_digests(run) == before

    report = invoke("report", run)  # the report still speaks of the study that made the samples
    assert report.exit_code == 0 and "report: ran 0" in report.output
    assert tree_digests(run) == before


@pytest.mark.slow
def test_the_same_study_with_another_temperature_is_refused_before_any_model_loads(run: Path, tmp_path: Path) -> None:
    """Not another study: its stored samples were drawn at temperature 0.8, so the generate stage refuses to resume
    them at 0.7 (as it always did), but now before study.yaml is rewritten or a model loads."""
    before = tree_digests(run)
    refused = invoke("run", small_study(tmp_path / "hotter.yaml", temperature=0.7), "--out", run)
    assert refused.exit_code == 2, refused.output
    assert "was generated with temperature=0.8, now 0.7; use a new --out or the same settings" in refused.output
    assert "is the run directory of study" not in refused.output
    assert "generate:" not in refused.output  # the stage never started: no model was loaded
    assert tree_digests(run) == before
    assert load_study(str(run / "study.yaml")).sampling.temperature == 0.8


@pytest.mark.slow
def test_the_same_study_edited_redoes_what_changed(run: Path, tmp_path: Path) -> None:
    edited = small_study(tmp_path / "edited.yaml", metrics=["ead", "vendi"])
    before = tree_digests(run)
    again = invoke("run", edited, "--out", run)
    assert again.exit_code == 0, again.output
    for line in ("generate: ran 0", "verify: ran 0", "score: ran 4", "analyze: ran 1", "report: ran 1"):
        assert line in again.output
    after = tree_digests(run)
    assert all(after[name] == digest for name, digest in before.items() if name.startswith(("samples/", "verdicts/")))
    assert load_study(str(run / "study.yaml")).metrics == ["ead", "vendi"]  # study.yaml follows the edit
