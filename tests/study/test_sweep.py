"""A study's sweep: validation naming the key, the conditions and their names, what each stage is given, the plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from divtrace.errors import DivtraceError
from divtrace.generate.params import SamplingSpec
from divtrace.plan.rows import plan_without_data
from divtrace.plan.summary import summarize_plan
from divtrace.runs.layout import RunLayout
from divtrace.study import Study, load_study, parse_study
from divtrace.study.planned import PlannedTask
from divtrace.study.spec import JudgeSpec
from divtrace.study.stages import generate_stage, judge_config, sampled_names, score_stage, verify_stage
from divtrace.study.sweep import SweepSpec, condition_name, sweep_conditions
from divtrace.tasks import get_task
from tests.olmo_study import OLMO_INSTRUCT_STUDY

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sweep_study.yaml"


def _starter(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(OLMO_INSTRUCT_STUDY)
    raw.update(changes)
    return raw


def test_every_combination_is_a_condition_and_the_study_setting_is_the_checkpoint() -> None:
    sweep = SweepSpec(temperature=[0.6, 1.0], min_p=[None, 0.05])
    assert sweep.settings() == [
        {"temperature": 0.6, "min_p": None},
        {"temperature": 0.6, "min_p": 0.05},
        {"temperature": 1.0, "min_p": None},
        {"temperature": 1.0, "min_p": 0.05},
    ]  # the first parameter varies slowest, parameters in temperature, top_p, min_p order
    conditions = sweep_conditions(sweep, SamplingSpec(temperature=0.6), ["base", "sft"])
    assert [c.name for c in conditions[:4]] == [
        "base",  # temperature 0.6, no min_p: the study's own setting, so the checkpoint itself
        "base+temperature=0.6+min_p=0.05",
        "base+temperature=1.0+min_p=off",
        "base+temperature=1.0+min_p=0.05",
    ]
    assert [c.is_study_setting for c in conditions] == [True, False, False, False] * 2
    assert conditions[4].checkpoint == "sft" and conditions[5].values() == {"temperature": 0.6, "min_p": 0.05}
    only = SweepSpec(top_p=[1.0], checkpoints=["sft"])
    assert [c.name for c in sweep_conditions(only, SamplingSpec(), ["base", "sft"])] == ["sft+top_p=1.0"]
    assert condition_name("dpo", {"temperature": 1.4}) == "dpo+temperature=1.4"


def test_a_study_samples_each_checkpoint_then_its_conditions_with_their_own_settings() -> None:
    study = parse_study(_starter(sweep={"temperature": [0.6, 1.2], "checkpoints": ["sft", "dpo"]}), "study.yaml")
    assert sampled_names(study) == ("base", "sft", "sft+temperature=1.2", "dpo", "dpo+temperature=1.2")
    sampled = {s.name: s for s in study.sampled()}
    assert sampled["sft+temperature=1.2"].checkpoint.name == "sft"
    task = get_task("gsm8k")
    planned = PlannedTask(study.tasks[0], task, [], "")
    own, swept = study.sampling_for(planned), study.sampling_for(planned, sampled["dpo+temperature=1.2"].condition)
    assert own.temperature == 0.6 and swept.temperature == 1.2
    assert swept.model_copy(update={"temperature": 0.6}) == own  # only the swept value differs
    # a sweep costs nothing when absent: the same study without one samples its checkpoints only
    plain = parse_study(_starter(), "study.yaml")
    assert sampled_names(plain) == ("base", "sft", "dpo") and plain.sweep_conditions() == []


def test_the_stages_take_the_conditions_and_a_condition_is_drawn_by_its_checkpoints_model(tmp_path: Path) -> None:
    study = parse_study(_starter(sweep={"temperature": [1.2], "checkpoints": ["sft"]}), "study.yaml")
    tasks = [PlannedTask(spec, get_task(spec.name), [], "") for spec in study.tasks]
    layout = RunLayout(tmp_path)
    generating = generate_stage(study, tasks, layout)
    job = generating.job("sft+temperature=1.2", "gsm8k")
    assert job.model_name == "sft" and job.params.temperature == 1.2
    assert [m.name for m in generating.models] == ["base", "sft", "dpo"]  # no model of its own
    # its unit is keyed on sft's model and its own sampling: not sft's unit
    assert generating.unit_key(job) != generating.unit_key(generating.job("sft", "gsm8k"))
    units = [u.name for u in generating.units(layout)]
    assert units.index("sft+temperature=1.2/gsm8k") == units.index("sft/writingprompts") + 1  # right after sft's
    assert "sft+temperature=1.2" in verify_stage(study, tasks).checkpoints
    scoring = score_stage(study, tasks)
    assert scoring.tokenizers["sft+temperature=1.2"] == scoring.tokenizers["sft"]
    judged = study.model_copy(update={"judge": JudgeSpec(endpoint="http://127.0.0.1:9/v1", model="m")})
    config = judge_config(judged, tasks)
    assert config is not None and config.baseline_for("sft+temperature=1.2") == "base"


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({}, "sweep: nothing to sweep"),
        ({"temperature": []}, "key 'sweep.temperature'"),
        ({"temperature": [0.0]}, "key 'sweep.temperature.0'"),
        ({"top_p": [1.5]}, "key 'sweep.top_p.0'"),
        ({"min_p": [0.0]}, "key 'sweep.min_p.0'"),
        ({"temperature": [1.0, 1.0]}, "a value is listed twice"),
        ({"temperature": [1.0], "checkpoints": ["nobody"]}, "sweep.checkpoints.0: 'nobody' is not a checkpoint"),
        ({"top_k": [5]}, "key 'sweep.top_k'"),
    ],
)
def test_a_bad_sweep_is_refused_naming_the_key(sweep: dict[str, Any], message: str) -> None:
    with pytest.raises(DivtraceError, match=message):
        parse_study(_starter(sweep=sweep), "study.yaml")


def test_a_condition_may_not_take_a_checkpoints_name() -> None:
    raw = _starter(sweep={"temperature": [1.2], "checkpoints": ["base"]})
    raw["checkpoints"][2]["name"] = "base+temperature=1.2"
    with pytest.raises(DivtraceError, match=r"condition 'base\+temperature=1\.2' has the name of a checkpoint"):
        parse_study(raw, "study.yaml")


def test_the_plan_counts_every_condition_and_loads_each_model_once() -> None:
    study = parse_study(_starter(sweep={"temperature": [0.6, 1.0, 1.4]}), "study.yaml")
    rows = plan_without_data(study)
    assert len(rows) == (3 + 3 * 2) * 2  # 3 checkpoints + 2 conditions each (0.6 is the study's), x 2 tasks
    plain = plan_without_data(parse_study(_starter(), "study.yaml"))
    assert sum(r.samples for r in rows) == 3 * sum(r.samples for r in plain)
    summary = summarize_plan(study, rows, cuda_available=False, slowdown=1.0)
    assert [c.checkpoint for c in summary.checkpoints][:3] == ["base", "base+temperature=1.0", "base+temperature=1.4"]
    loading = next(stage for stage in summary.stages if stage.stage == "model loading")
    assert loading.explanation.startswith("3 model(s)")


def test_the_example_studys_dry_run_counts_its_conditions(tmp_path: Path) -> None:
    study: Study = load_study(EXAMPLE)
    assert study.sweep is not None and study.homogenization
    plan = subprocess.run(
        [sys.executable, "-m", "divtrace.cli", "run", str(EXAMPLE), "--dry-run", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=tmp_path, env={"COLUMNS": "250", "PATH": ""},
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    first = plan.stdout.splitlines()[0]
    assert "3 checkpoint(s) + 5 sweep condition(s) (6 setting(s) of temperature x min_p) x 2 task(s)" in first
    assert "dpo+temperature=1.6+min_p=0.1" in plan.stdout
    assert not (tmp_path / "run").exists()
