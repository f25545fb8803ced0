"""``divtrace run`` end to end on the packaged models: every stage writes its outputs, and running again does nothing.

The study is the quickstart cut down (3 prompts per task, K = 3, 8 new tokens, 2 prompts per shard), so the real
path (both packaged models, the bundled tasks, the arithmetic verifier, MiniLM scoring, the analysis, the report)
runs in about a minute. The run from a fresh directory is the session's ``small_run`` (tests/conftest.py), made once:
the end-to-end test and the piped-output test read its output and files, and the end-to-end test reruns, damages and
edits its own copy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from divtrace.cli import app
from divtrace.samples import read_samples
from divtrace.score.metric_spec import MetricSpec
from divtrace.study import small_quickstart_study
from tests.run_commands import SmallRun

PROMPTS = 3
K = 3


def small_quickstart(path: Path) -> Path:
    """The quickstart with 3 prompts per task, K = 3 and 8 new tokens, 2 prompts per shard, as a study file."""
    path.write_text(small_quickstart_study(PROMPTS, K, 8, shard_size=2, seed=7).to_yaml())
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.output + (repr(result.exception) if result.exception else "")


def files_and_times(root: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_run_small_study_end_to_end_and_again(small_run: SmallRun, tmp_path: Path) -> None:
    """The session's ``small_run`` is the first run (a fresh directory); what follows runs on a copy of it."""
    planned = small_quickstart(tmp_path / "planned.yaml")
    code, output = invoke("run", str(planned), "--out", str(tmp_path / "fresh"), "--dry-run")
    assert code == 0, output
    assert "36 samples to generate" in output and "to do" in output  # 2 checkpoints x 2 tasks x 3 prompts x K=3
    assert planned.read_text() == small_run.study.read_text()  # the study small_run ran

    assert small_run.result.returncode == 0, small_run.output
    output = small_run.output
    study, run = small_run.copy(tmp_path)
    for line in ("generate: ran 4", "verify: ran 2", "score: ran 4", "analyze: ran 1", "report: ran 1"):
        assert line in output
    assert "caveat" not in output  # one model's weights and its adapter: a lineage, nothing to warn of

    checkpoints = ("base", "sft")
    for checkpoint in checkpoints:
        for task in ("open_ended", "arithmetic"):
            shards = sorted((run / "samples" / checkpoint / task).glob("shard-*.parquet"))
            assert len(shards) == 2  # 3 prompts, 2 per shard
            records = read_samples(shards).records
            assert len(records) == PROMPTS and all(len(r.outputs) == K for r in records)
            assert all(r.sampling is not None and r.sampling["seed"] == 7 for r in records)
            assert (run / "scores" / checkpoint / f"{task}.parquet").exists()
        verdicts = pd.read_parquet(run / "verdicts" / checkpoint / "arithmetic.parquet")
        assert len(verdicts) == PROMPTS * K
    for table in ("checkpoint_means", "retained", "edges", "collapse_sites", "qfd", "curves", "passk", "headline"):
        assert (run / "analysis" / f"{table}.parquet").exists() and (run / "analysis" / f"{table}.csv").exists()
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert 'class="caveat"' not in html and "base → sft" in html
    assert "| sft | base → sft |" in (run / "report" / "summary.md").read_text(encoding="utf-8")  # Table 1's row
    assert "where diversity collapses" in output

    before = files_and_times(run)
    code, output = invoke("run", str(study), "--out", str(run))
    assert code == 0, output
    for stage in ("generate", "verify", "score", "analyze", "report"):
        assert f"{stage}: ran 0" in output
    assert files_and_times(run) == before  # nothing rewritten

    # divtrace report reads a generated run (its tasks are named by YAML file in study.yaml): nothing to redo
    code, output = invoke("report", str(run))
    assert code == 0, output
    assert "report: ran 0" in output and files_and_times(run) == before

    # Losing one unit's scores redoes that unit and what depends on it, nothing else.
    (run / "scores" / "sft" / "open_ended.json").unlink()
    code, output = invoke("run", str(study), "--out", str(run))
    assert code == 0, output
    for line in ("generate: ran 0", "verify: ran 0", "score: ran 1", "analyze: ran 0", "report: ran 0"):
        assert line in output  # the recomputed scores are byte-identical, so the analysis is still current

    # EAD's V: 50257 for both checkpoints (the study's), recorded in every score marker as used.
    def ead_v(checkpoint: str) -> object:
        marker = json.loads((run / "scores" / checkpoint / "open_ended.json").read_text())
        return marker["metrics"]["ead"]["vocab_size"]

    assert [ead_v(c) for c in checkpoints] == [50257, 50257]
    fixed = pd.read_parquet(run / "scores" / "base" / "open_ended.parquet")
    # tokenizer: generator takes each checkpoint's own (gemma-3's 262,144 for both: an adapter keeps its base's
    # tokenizer); scores are redone.
    generator_study = small_quickstart_study(PROMPTS, K, 8, shard_size=2, seed=7)
    generator_study = generator_study.model_copy(
        update={"metrics": [MetricSpec(name="ead", args={"tokenizer": "generator"}), "sbert"]}
    )
    study.write_text(generator_study.to_yaml())
    code, output = invoke("run", str(study), "--out", str(run))
    assert code == 0, output
    assert "generate: ran 0" in output and "score: ran 4" in output
    assert [ead_v(c) for c in checkpoints] == [262144, 262144]
    taken = pd.read_parquet(run / "scores" / "base" / "open_ended.parquet")
    ead_values = [frame.query("metric == 'ead'")["value"].to_numpy() for frame in (fixed, taken)]
    # A larger V expects more distinct n-grams by chance, so the same outputs get a lower EAD.
    assert (ead_values[1] <= ead_values[0]).all() and (ead_values[1] < ead_values[0]).any()


@pytest.mark.slow
def test_ctrl_c_ends_the_local_run_with_units_done_and_a_rerun_resumes(tmp_path: Path) -> None:
    import divtrace
    from tests.interrupt import check_interrupted, check_resumed, interrupt_run

    study = small_quickstart(tmp_path / "study.yaml")
    run = tmp_path / "run"
    done_before = check_interrupted(*interrupt_run(study, run), run)
    divtrace.run(study, run, executor="local")
    check_resumed(done_before, run)


STAGES = ("generate", "verify", "score", "analyze", "report")


@pytest.mark.slow
def test_piped_run_prints_short_plain_lines_a_few_per_stage(small_run: SmallRun, tmp_path: Path) -> None:
    """``divtrace run`` into a pipe (a log file): the plan opens with its totals; progress is a few plain lines per
    stage (its first event, then at most one per interval, then a final line), never padded, without logging
    locations or the libraries' own bars; no line is longer than 200 characters. The run is the session's
    ``small_run``: the small study from a fresh directory in a subprocess, stdout and stderr piped,
    DIVTRACE_PROGRESS_INTERVAL=3600."""
    assert small_run.study.read_text() == small_quickstart(tmp_path / "study.yaml").read_text()
    result = small_run.result
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines() + result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 200, max(lines, key=len)
    assert not [line for line in lines if re.search(r"\.py:\d+", line)]  # no logging location
    assert not [line for line in lines if line != line.rstrip()]  # no padding
    assert "it/s]" not in result.stderr  # no tqdm bar (the GGUF conversion's)
    assert result.stderr.startswith("plan of study small-quickstart")
    assert "36 samples to generate" in result.stderr.splitlines()[1]  # the totals come first
    for stage in STAGES:
        progress = [line for line in result.stderr.splitlines() if line.startswith((f"{stage} ", f"{stage}: done"))]
        assert 1 <= len(progress) <= 3, (stage, progress)  # at most: the first event, the final line
        assert re.fullmatch(rf"{stage}: done(, \d unit\(s\))? in \d+(\.\d)? (s|min)", progress[-1]), progress
        assert f"{stage}: ran " in result.stderr  # what it did, once at the end
