"""The generate stage (:class:`divtrace.generate.stage.GenerateStage`): each (checkpoint, task) is one unit, cut
once into the indexed shards both executors draw; the driver writes exactly those files and markers, and a stored
shard made with other settings is refused naming the setting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from divtrace.executors.driver import run_stages
from divtrace.executors.local import LocalExecutor
from divtrace.generate.resume import ResumeMismatchError
from divtrace.generate.store import shard_path
from divtrace.runs.layout import RunLayout
from divtrace.runs.markers import is_done, mark_done
from divtrace.study import small_quickstart_study
from divtrace.study.planned import plan_tasks
from divtrace.study.stages import checkpoint_model, generate_stage

STUDY = small_quickstart_study(3, 2, 3, shard_size=2, seed=5, name="shards")


def test_each_unit_is_cut_once_into_indexed_shards(tmp_path: Path) -> None:
    tasks = plan_tasks(STUDY)
    layout = RunLayout(tmp_path)
    stage = generate_stage(STUDY, tasks, layout)
    units = stage.units(layout)
    assert [(u.checkpoint, u.task) for u in units] == [(c.name, t.name) for c in STUDY.checkpoints for t in tasks]
    for unit in units:
        spec, planned = STUDY.checkpoint(unit.checkpoint), next(t for t in tasks if t.name == unit.task)
        items = stage.items(layout, unit)
        assert [item.payload.index for item in items] == [0, 1] and [item.size for item in items] == [4, 2]
        assert all(item.group == unit.checkpoint and item.payload.stored is None for item in items)
        job = stage.job(unit.checkpoint, unit.task)
        assert [list(span) for span in job.shard_ranges()] == [[0, 1], [2]]
        paths = [shard_path(tmp_path, unit.checkpoint, unit.task, i) for i in (0, 1)]
        assert (
            [job.shard_path(i) for i in (0, 1)]
            == paths
            == [layout.shard_file(unit.checkpoint, unit.task, i) for i in (0, 1)]
        )
        assert job.params == STUDY.sampling_for(planned) and job.render == STUDY.render_options(spec)
        assert job.shard_prompts(1) == (planned.prompts[2],) and job.shard_size == STUDY.shard_size
        assert stage.model(unit.checkpoint) == checkpoint_model(spec)
        assert unit.marker == layout.generation_marker(unit.checkpoint, unit.task) and unit.size == 6
        assert unit.facts == {"prompts": 3, "k": 2}


def test_a_unit_is_pending_until_its_marker_holds_its_key(tmp_path: Path) -> None:
    tasks = plan_tasks(STUDY)
    layout = RunLayout(tmp_path)
    first, *others = generate_stage(STUDY, tasks, layout).units(layout)
    mark_done(first.marker, first.key, ())
    assert is_done(first.marker, first.key) and not any(is_done(u.marker, u.key) for u in others)
    hotter = STUDY.model_copy(update={"sampling": STUDY.sampling.model_copy(update={"temperature": 0.5})})
    again = generate_stage(hotter, tasks, layout).units(layout)[0]
    assert again.name == first.name and not is_done(again.marker, again.key)  # another setting: another key


@pytest.mark.slow
def test_the_local_executor_writes_the_listed_shards_and_markers_and_refuses_other_settings(tmp_path: Path) -> None:
    study = STUDY.model_copy(update={"checkpoints": STUDY.checkpoints[:1], "tasks": STUDY.tasks[:1]})
    tasks = plan_tasks(study)
    layout = RunLayout(tmp_path)
    stage = generate_stage(study, tasks, layout)
    [unit] = stage.units(layout)
    [report] = run_stages([stage], layout, LocalExecutor())
    assert report.ran == [unit.name]
    written = sorted(p for p in (tmp_path / "samples").rglob("*") if p.is_file())
    job = stage.job(unit.checkpoint, unit.task)
    assert written == sorted([job.shard_path(0), job.shard_path(1), unit.marker])
    marker = json.loads(unit.marker.read_text())
    assert marker == {"fingerprint": unit.key, "prompts": 3, "k": 2, "outputs": marker["outputs"]}
    assert unit.outputs == (job.shard_path(0), job.shard_path(1))  # the marker records each shard
    paths = [f"samples/{unit.name}/shard-0000{i}.parquet" for i in (0, 1)]
    assert [item["path"] for item in marker["outputs"]] == paths
    assert [item["size"] for item in marker["outputs"]] == [job.shard_path(i).stat().st_size for i in (0, 1)]
    [again] = run_stages([stage], layout, LocalExecutor())
    assert again.ran == [] and again.skipped == [unit.name]

    # The same unit with another temperature: the stored shards are refused, naming the setting.
    hotter = study.model_copy(update={"sampling": study.sampling.model_copy(update={"temperature": 0.6})})
    named = re.escape("shard-00000") + r" .* was generated with temperature=0\.8, now 0\.6"
    with pytest.raises(ResumeMismatchError, match=named):
        run_stages([generate_stage(hotter, tasks, layout)], layout, LocalExecutor())


def test_a_shard_planned_alone_is_the_shard_of_the_whole_plan(tmp_path: Path) -> None:
    """Planning one shard under its own index gives the records of the whole job's plan."""
    from divtrace.generate.job import GenerationJob
    from divtrace.generate.params import SamplingParams
    from divtrace.generate.prompts import PromptItem
    from divtrace.generate.runner import generate_shard, plan_shards
    from tests.generate.test_thinking import CannedThinkGenerator

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
