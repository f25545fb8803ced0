"""The generation work units: :func:`divtrace.runs.stages.generation_shards` cuts each unfinished (checkpoint, task)
once, into the shards both executors draw, and the local executor writes exactly those files and markers."""

from __future__ import annotations

import json
from pathlib import Path

from divtrace.generate.store import shard_path
from divtrace.runs.layout import RunLayout
from divtrace.runs.stages import (
    StageReport,
    backend_options,
    generation_key,
    generation_shards,
    plan_tasks,
    render_options,
    sampling_for,
    shards_by_unit,
    stage_generate,
)
from divtrace.study import small_quickstart_study

STUDY = small_quickstart_study(3, 2, 3, shard_size=2, seed=5, name="shards")


def test_each_unit_is_cut_once_into_indexed_shards(tmp_path: Path) -> None:
    tasks = plan_tasks(STUDY)
    report = StageReport("generate")
    shards = generation_shards(STUDY, RunLayout(tmp_path), tasks, report)
    units = shards_by_unit(shards)
    assert list(units) == [(c.name, t.name) for c in STUDY.checkpoints for t in tasks] and not report.skipped
    for (checkpoint, task), unit in units.items():
        assert [s.index for s in unit] == [0, 1] and [list(s.prompts) for s in unit] == [[0, 1], [2]]
        assert [s.path for s in unit] == [shard_path(tmp_path, checkpoint, task, i) for i in (0, 1)]
        assert [s.samples for s in unit] == [4, 2]
        spec, planned = STUDY.checkpoint(checkpoint), unit[0].task
        job = unit[0].generation
        assert all(s.generation is job for s in unit)  # one job per unit, shared by its shards
        assert job.params == sampling_for(STUDY, planned) and job.render == render_options(STUDY, spec)
        assert job.shard_prompts(1) == (planned.prompts[2],) and job.shard_size == STUDY.shard_size
        assert all(s.key == generation_key(STUDY, spec, planned) for s in unit)
        assert all(s.options == backend_options(spec) for s in unit)
        assert all(s.marker == RunLayout(tmp_path).generation_marker(checkpoint, task) for s in unit)


def test_a_unit_is_listed_until_its_marker_holds_its_key(tmp_path: Path) -> None:
    tasks = plan_tasks(STUDY)
    layout = RunLayout(tmp_path)
    first = generation_shards(STUDY, layout, tasks, StageReport("generate"))[0]
    first.mark_unit_done()
    assert json.loads(first.marker.read_text()) == {"fingerprint": first.key, "prompts": 3, "k": 2}
    report = StageReport("generate")
    left = generation_shards(STUDY, layout, tasks, report)
    assert report.skipped == [first.unit] and first.unit not in {s.unit for s in left}


def test_the_local_executor_writes_the_listed_shards_and_markers(tmp_path: Path) -> None:
    study = STUDY.model_copy(update={"checkpoints": STUDY.checkpoints[:1], "tasks": STUDY.tasks[:1]})
    tasks = plan_tasks(study)
    layout = RunLayout(tmp_path)
    shards = generation_shards(study, layout, tasks, StageReport("generate"))
    report = stage_generate(study, layout, tasks)
    assert report.ran == [shards[0].unit]
    written = sorted(p for p in (tmp_path / "samples").rglob("*") if p.is_file())
    assert written == sorted([*(s.path for s in shards), shards[0].marker])
    assert json.loads(shards[0].marker.read_text())["fingerprint"] == shards[0].key
    assert generation_shards(study, layout, tasks, StageReport("generate")) == []


def test_a_shard_planned_alone_is_the_shard_of_the_whole_plan(tmp_path: Path) -> None:
    """What a Ray actor does (plan one shard under its own index) gives the records the local executor writes."""
    from divtrace.generate.job import GenerationJob
    from divtrace.generate.params import SamplingParams
    from divtrace.generate.prompts import PromptItem
    from divtrace.generate.runner import generate_shard, plan_shards
    from tests.test_thinking import CannedThinkGenerator

    generator = CannedThinkGenerator(["a</think>1", "b</think>2"])
    items = [PromptItem(f"q{i}", f"prompt {i}") for i in range(5)]
    job = GenerationJob.of(items, SamplingParams(k=2, max_new_tokens=5, seed=3), tmp_path, "c", "t", shard_size=2)
    whole = plan_shards(generator, job)
    assert sorted(whole.shards) == [0, 1, 2]
    for index in range(3):
        alone = plan_shards(generator, job, [index])
        assert list(alone.shards) == [index] and alone.shard_keys(index) == whole.shard_keys(index)
        assert generate_shard(generator, alone, index) == generate_shard(generator, whole, index)
    assert [p.item.prompt_id for p in whole.shards[2]] == ["q4"]
