"""Nothing lost, on real runs of the packaged models: a deleted, truncated or changed output of any stage (a samples
shard, a verdicts file, a scores file, an analysis table, the report) is named and redone, and the tables equal
those of an undamaged run; a run killed (SIGKILL) at a random moment resumes to the same tables; Ctrl-C during
generation counts the shards it kept; a run made before outputs were recorded is not redone.

One finished run (the quickstart cut down, as ``tests/cli/test_run.py`` runs it) is shared: the session's
``small_run`` (tests/conftest.py); each test damages a copy of it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from divtrace.cli import app
from divtrace.study import small_quickstart_study
from tests.interrupt import check_interrupted, interrupt_run
from tests.run_commands import SmallRun

CHECKPOINTS = ("base", "sft")
#: Where the damaged file is moved, under the run directory.
DAMAGED = "damaged"


def invoke(*args: str) -> tuple[int, str]:
    """The exit code and the output of the command, its whitespace normalised (notes are wrapped at 120 columns)."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    output = result.output + (repr(result.exception) if result.exception else "")
    return result.exit_code, " ".join(output.split())


@pytest.fixture(scope="module")
def finished(small_run: SmallRun) -> tuple[Path, Path]:
    """(the study file, its run directory after one uninterrupted run): 3 prompts per task, K = 3, 8 new tokens,
    2 prompts per shard (2 shards per generation). Shared with other modules: tests read both, and change only a
    copy (:func:`copy_of`)."""
    assert small_run.study.read_text() == small_quickstart_study(3, 3, 8, shard_size=2, seed=7).to_yaml()
    return small_run.study, small_run.directory


def copy_of(finished: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the finished run directory."""
    return Path(shutil.copytree(finished[1], tmp_path / "run"))


def tables(run: Path) -> dict[str, pd.DataFrame]:
    """Every table of a run directory (samples shards, verdicts, scores, analysis), by path relative to it."""
    places = ("samples/*/*/shard-*.parquet", "verdicts/*/*.parquet", "scores/*/*.parquet", "analysis/*.parquet")
    return {str(p.relative_to(run)): pd.read_parquet(p) for place in places for p in sorted(run.glob(place))}


def assert_same_tables(run: Path, reference: Path) -> None:
    ours, theirs = tables(run), tables(reference)
    assert list(ours) == list(theirs)
    for name, table in ours.items():
        pd.testing.assert_frame_equal(table, theirs[name], obj=name)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_last_byte(path: Path) -> None:
    """The same size, other bytes."""
    content = path.read_bytes()
    path.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))


Damage = Callable[[Path], None]


@pytest.mark.slow
@pytest.mark.parametrize(
    "damages",
    [
        {
            "samples/base/arithmetic/shard-00001.parquet": Path.unlink,
            "verdicts/sft/arithmetic.parquet": Path.unlink,
            "scores/sft/open_ended.parquet": Path.unlink,
            "analysis/edges.parquet": Path.unlink,
            "report/summary.md": Path.unlink,
        },
        {
            "samples/sft/open_ended/shard-00000.parquet": truncate,
            "verdicts/base/arithmetic.parquet": flip_last_byte,
            "scores/base/open_ended.parquet": truncate,
            "analysis/table1.parquet": truncate,
            "report/index.html": flip_last_byte,
        },
    ],
    ids=["deleted", "truncated or changed"],
)
def test_each_damaged_output_is_named_and_redone(
    finished: tuple[Path, Path], tmp_path: Path, damages: dict[str, Damage]
) -> None:
    study, reference = finished
    run = copy_of(finished, tmp_path)
    sizes = {name: (run / name).stat().st_size for name in damages}
    for name, damage in damages.items():
        damage(run / name)
    left = {name: (run / name).read_bytes() for name in damages if (run / name).exists()}
    shards = [path for path in run.glob("samples/*/*/shard-*.parquet") if str(path.relative_to(run)) not in damages]
    shards_written = {path: path.stat().st_mtime_ns for path in shards}

    code, output = invoke("run", str(study), "--out", str(run))
    assert code == 0, output
    redrawn = [path for path, mtime in shards_written.items() if path.stat().st_mtime_ns != mtime]
    assert redrawn == []  # a generation draws only its missing or damaged shard, the others are kept
    for stage in ("generate", "verify", "score", "analyze", "report"):
        assert f"{stage}: ran 1," in output  # only the damaged unit; what it feeds is current again
    for name in damages:
        stage, unit = unit_of(name)
        if name in left:
            size = len(left[name])
            what = f"is truncated ({size} of {sizes[name]} bytes)" if size < sizes[name] else "has changed (its bytes"
            assert f"{stage}: {name} {what}" in output
            assert f"moved to {DAMAGED}/{name}: redoing {stage} of {unit}" in output
            assert (run / DAMAGED / name).read_bytes() == left[name]  # kept aside as it was, never read
        else:
            assert f"{stage}: {name} is missing: redoing {stage} of {unit}" in output
        assert (run / name).exists()
    assert_same_tables(run, reference)
    assert (run / "report" / "summary.md").read_text() == (reference / "report" / "summary.md").read_text()

    code, output = invoke("run", str(study), "--out", str(run))
    assert code == 0, output
    assert all(f"{stage}: ran 0," in output for stage in ("generate", "verify", "score", "analyze", "report"))


def unit_of(name: str) -> tuple[str, str]:
    """The stage and unit that write the run directory's file ``name``."""
    parts = Path(name).parts
    if parts[0] == "samples":
        return "generate", f"{parts[1]}/{parts[2]}"
    if parts[0] in ("verdicts", "scores"):
        return {"verdicts": "verify", "scores": "score"}[parts[0]], f"{parts[1]}/{Path(parts[2]).stem}"
    return ("analyze", "analysis") if parts[0] == "analysis" else ("report", "report")


@pytest.mark.slow
def test_a_run_made_before_outputs_were_recorded_is_not_redone(finished: tuple[Path, Path], tmp_path: Path) -> None:
    study, reference = finished
    run = copy_of(finished, tmp_path)
    markers = [*run.glob("samples/*/*/_complete.json"), *run.glob("*/*/*.json"), *run.glob("*/_complete.json")]
    recorded = {marker: json.loads(marker.read_text()) for marker in markers}
    assert len(recorded) == 4 + 2 + 4 + 2 and all("outputs" in content for content in recorded.values())
    for marker, content in recorded.items():
        marker.write_text(json.dumps({name: value for name, value in content.items() if name != "outputs"}))

    code, output = invoke("run", str(study), "--out", str(run))
    assert code == 0, output
    assert all(f"{stage}: ran 0," in output for stage in ("generate", "verify", "score", "analyze", "report"))
    assert {marker: json.loads(marker.read_text()) for marker in markers} == recorded  # recorded now
    assert_same_tables(run, reference)


@pytest.mark.slow
def test_report_alone_refuses_a_damaged_analysis_and_run_redoes_it(finished: tuple[Path, Path], tmp_path: Path) -> None:
    study, reference = finished
    run = copy_of(finished, tmp_path)
    table = run / "analysis" / "qfd.parquet"
    size = table.stat().st_size
    truncate(table)
    (run / "report" / "index.html").unlink()

    code, output = invoke("report", str(run))
    assert code == 2, output
    assert "Traceback" not in output
    assert (
        f"error: report needs analysis/qfd.parquet is truncated ({table.stat().st_size} of {size} bytes); rerun the "
        "command that made this run directory (divtrace run or divtrace analyze): it redoes it first"
    ) in output

    code, output = invoke("run", str(study), "--out", str(run))
    assert code == 0, output
    assert "analyze: ran 1," in output and "report: ran 1," in output
    assert_same_tables(run, reference)


@pytest.mark.slow
def test_a_run_killed_at_a_random_moment_resumes_to_the_same_tables(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    """SIGKILL once the run directory holds a random number of the files a finished run has (the seed is in the
    failure message; DIVTRACE_KILL_SEED repeats one)."""
    study, reference = finished
    seed = int(os.environ.get("DIVTRACE_KILL_SEED", random.randrange(1 << 30)))
    total = sum(1 for path in reference.rglob("*") if path.is_file())
    threshold = random.Random(seed).randint(1, total - 1)
    run = tmp_path / "run"

    def ready(directory: Path) -> bool:
        return sum(1 for path in directory.rglob("*") if path.is_file()) >= threshold

    code, _, stderr = interrupt_run(study, run, ready=ready, sig=signal.SIGKILL)
    assert code == -signal.SIGKILL, f"seed {seed}: exit {code}\n{stderr}"
    code, output = invoke("run", str(study), "--out", str(run))
    assert code == 0, f"seed {seed}, killed at {threshold} of {total} files\n{output}"
    assert_same_tables(run, reference)


@pytest.mark.slow
def test_ctrl_c_during_generation_counts_the_shards_it_kept(finished: tuple[Path, Path], tmp_path: Path) -> None:
    study, _ = finished
    run = tmp_path / "run"
    first = run / "samples" / CHECKPOINTS[0] / "open_ended" / "shard-00000.parquet"
    code, stdout, stderr = interrupt_run(study, run, ready=lambda _: first.exists())
    check_interrupted(code, stdout, stderr, run)  # the units and shards it counts are those on disk
    outcome = json.loads(stdout.strip().splitlines()[-1])
    assert outcome["stage"] == "generate"
    assert outcome["kept"] or outcome["done"]  # the shard it kept is counted, in its unit or on its own
