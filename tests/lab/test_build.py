"""Building a recipe into a lab directory with a stand-in trainer (no model is trained here; the real training is
tests/lab/test_lab_training.py): stages parents first, markers, cards, resuming, what a change rebuilds, made data
through divtrace.lab.data, and the study written for divtrace run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from divtrace.lab.build import LabBuild, build_lab
from divtrace.lab.data_specs import DataSpec
from divtrace.lab.recipe import load_recipe
from divtrace.lab.train import TrainingRun, TrainRequest
from divtrace.runs.markers import read_marker
from divtrace.study.spec import CheckpointSpec
from tests.lab.lab_files import SFT_ROWS, lineage_recipe, tiny_stage, write_jsonl, write_recipe


class StandIn:
    """A trainer that writes a small adapter naming what it was trained from (and how many trainings came before
    it, so a retrained stage has other bytes) and records each request; ``interrupt`` stops at that stage as
    Ctrl-C would."""

    def __init__(self, interrupt: str | None = None) -> None:
        self.requests: list[TrainRequest] = []
        self.interrupt = interrupt
        self.count = 0

    @property
    def trained(self) -> list[str]:
        return [request.stage.name for request in self.requests]

    def __call__(self, request: TrainRequest) -> TrainingRun:
        if request.stage.name == self.interrupt:
            (request.out_dir / "adapter_model.safetensors").write_bytes(b"half")
            raise KeyboardInterrupt
        self.requests.append(request)
        self.count += 1
        weights = f"{request.stage.name} #{self.count} from {request.parent.label}"
        (request.out_dir / "adapter_model.safetensors").write_text(weights)
        (request.out_dir / "adapter_config.json").write_text(json.dumps({"r": request.lora and request.lora.r}))
        curve = [{"step": 1, "loss": 0.6931}, {"step": 2, "loss": 0.5}]
        reference = f"the parent ({request.parent.label})" if request.stage.method == "dpo" else None
        return TrainingRun(curve, 0.25, "cpu", reference)


@pytest.fixture
def base_model(tmp_path: Path) -> Path:
    """A local "model directory" (the lab resolves it and keys on its digest; the stand-in never loads it)."""
    model = tmp_path / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "tiny"}')
    return model


def build(recipe: Path, out: Path, trainer: StandIn) -> LabBuild:
    return build_lab(load_recipe(recipe), recipe, out, trainer=trainer)


def built_lineage(tmp_path: Path, base_model: Path) -> tuple[Path, Path]:
    """(recipe, lab directory): base -> sft -> dpo on ``base_model``, built once by a stand-in."""
    recipe, out = lineage_recipe(tmp_path, str(base_model)), tmp_path / "lab"
    build(recipe, out, StandIn())
    return recipe, out


def statuses(built: LabBuild) -> dict[str, str]:
    return {outcome.name: outcome.status for outcome in built.stages}


def test_a_build_trains_parents_first_writes_cards_and_the_study(tmp_path: Path, base_model: Path) -> None:
    recipe = lineage_recipe(tmp_path, "models/tiny")  # relative to the recipe's directory
    out = tmp_path / "lab"
    trainer = StandIn()
    built = build(recipe, out, trainer)
    assert trainer.trained == ["sft", "dpo"] and statuses(built) == {"sft": "built", "dpo": "built"}
    sft_dir, dpo_dir = out / "checkpoints" / "sft", out / "checkpoints" / "dpo"
    sft, dpo = trainer.requests
    assert sft.parent.adapter is None and sft.parent.load_path == str(base_model.resolve())
    assert dpo.parent.adapter == sft_dir.resolve() and dpo.parent.label == "base + sft's adapter"
    assert dpo.lora == sft.lora and dpo.lora is not None and dpo.lora.r == 8
    assert sft.rows == SFT_ROWS and [row["chosen"] for row in dpo.rows][:1] == [" 0."]

    card = json.loads((dpo_dir / "card.json").read_text())
    assert card["data"]["rows"] == 6 and card["data"]["file"] == "data/dpo/train.jsonl"
    assert len(card["data"]["sha256"]) == 64 and card["seed"] == 1234
    assert card["loss_curve"] == [{"step": 1, "loss": 0.6931}, {"step": 2, "loss": 0.5}]
    assert card["dpo_reference"] == "the parent (base + sft's adapter)"
    assert card["library_versions"]["trl"] and card["recipe_entry"]["steps"] == 2
    assert "| 1 | 0.6931 |" in (dpo_dir / "card.md").read_text()
    marker = read_marker(dpo_dir / "_complete.json")
    assert marker is not None and marker.outputs is not None
    assert {item.path for item in marker.outputs} == {
        f"checkpoints/dpo/{name}"
        for name in ("adapter_model.safetensors", "adapter_config.json", "card.json", "card.md")
    }

    study = yaml.safe_load(built.study_file.read_text())
    assert built.study_file == out / "study.yaml"
    model = str(base_model.resolve())
    assert study["checkpoints"] == [
        {"name": "base", "model": model, "stage": "base"},
        {"name": "sft", "model": model, "stage": "sft", "parent": "base", "adapter": str(sft_dir.resolve())},
        {"name": "dpo", "model": model, "stage": "dpo", "parent": "sft", "adapter": str(dpo_dir.resolve())},
    ]
    assert study["tasks"] == [{"name": "arithmetic"}, {"name": "open_ended"}]
    assert study["sampling"]["k"] == 8 and study["metrics"] == ["ead", "sbert", "vendi"]
    assert built.study_validated == ("adapter" in CheckpointSpec.model_fields)


def test_a_rebuild_trains_nothing_and_a_change_rebuilds_the_stage_and_those_below(
    tmp_path: Path, base_model: Path
) -> None:
    recipe, out = built_lineage(tmp_path, base_model)
    files = sorted(path for path in (out / "checkpoints").rglob("*") if path.is_file())
    mtimes = {path: path.stat().st_mtime_ns for path in [*files, out / "data" / "sft" / "train.jsonl"]}

    again = StandIn()
    assert statuses(build(recipe, out, again)) == {"sft": "skipped", "dpo": "skipped"} and again.trained == []
    assert {path: path.stat().st_mtime_ns for path in mtimes} == mtimes

    lineage_recipe(tmp_path, str(base_model), steps=3)  # the dpo stage changes
    changed = StandIn()
    built = build(recipe, out, changed)
    assert changed.trained == ["dpo"]
    assert [outcome.reason for outcome in built.stages] == ["", "changed: its recipe entry"]
    assert json.loads((out / "checkpoints" / "dpo" / "card.json").read_text())["recipe_entry"]["steps"] == 3

    write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS[:4])  # the sft stage's data changes: both are rebuilt
    retrained = StandIn()
    built = build(recipe, out, retrained)
    assert retrained.trained == ["sft", "dpo"]
    assert [outcome.reason for outcome in built.stages] == ["changed: its training data", "changed: its parent"]


def test_a_damaged_checkpoint_is_retrained_and_its_children_follow_its_weights(
    tmp_path: Path, base_model: Path
) -> None:
    recipe, out = built_lineage(tmp_path, base_model)
    adapter = out / "checkpoints" / "sft" / "adapter_model.safetensors"
    assert adapter.read_text() == "sft #1 from base"
    adapter.write_text("sft #1 from basX")
    same = StandIn()  # retrains sft to the same bytes (as training on the CPU does): dpo is still built on them
    built = build(recipe, out, same)
    assert same.trained == ["sft"] and statuses(built) == {"sft": "built", "dpo": "skipped"}
    assert (
        built.stages[0].reason
        == "checkpoints/sft/adapter_model.safetensors has changed (its bytes differ from those recorded)"
    )
    adapter.unlink()
    other = StandIn()
    other.count = 10  # retrains sft to other bytes: dpo is trained again on them
    built = build(recipe, out, other)
    assert other.trained == ["sft", "dpo"]
    assert [outcome.reason for outcome in built.stages] == [
        "checkpoints/sft/adapter_model.safetensors is missing",
        "changed: its parent",
    ]


def test_an_interrupted_build_resumes_at_the_first_stage_not_built(tmp_path: Path, base_model: Path) -> None:
    recipe = lineage_recipe(tmp_path, str(base_model))
    out = tmp_path / "lab"
    with pytest.raises(KeyboardInterrupt):
        build(recipe, out, StandIn(interrupt="dpo"))
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["sft"]  # no staging left behind
    assert not (out / "study.yaml").exists()
    resumed = StandIn()
    built = build(recipe, out, resumed)
    assert resumed.trained == ["dpo"] and statuses(built) == {"sft": "skipped", "dpo": "built"}
    assert built.stages[1].reason == "not built yet"


def test_siblings_and_full_fine_tuning(tmp_path: Path, base_model: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", SFT_ROWS[:3])
    write_jsonl(tmp_path / "b.jsonl", SFT_ROWS[3:])
    stages = [
        tiny_stage("sft-a", "sft", "a.jsonl"),
        tiny_stage("sft-b", "sft", "b.jsonl", lora={"r": 4}),
        tiny_stage("full", "sft", "a.jsonl", full=True),
        tiny_stage("on-full", "sft", "b.jsonl", parent="full"),
    ]
    recipe = write_recipe(tmp_path / "recipe.yaml", {"name": "siblings", "base": str(base_model), "stages": stages})
    out = tmp_path / "lab"
    trainer = StandIn()
    built = build(recipe, out, trainer)
    assert trainer.trained == ["sft-a", "sft-b", "full", "on-full"]
    full_dir = (out / "checkpoints" / "full").resolve()
    assert trainer.requests[2].lora is None and trainer.requests[3].parent.load_path == str(full_dir)
    assert trainer.requests[3].parent.label == "full" and trainer.requests[3].parent.adapter is None
    study = {entry["name"]: entry for entry in yaml.safe_load(built.study_file.read_text())["checkpoints"]}
    assert study["sft-a"]["parent"] == study["sft-b"]["parent"] == "base"
    assert study["full"] == {"name": "full", "model": str(full_dir), "stage": "sft", "parent": "base"}
    assert study["on-full"]["model"] == str(full_dir) and study["on-full"]["parent"] == "full"
    assert study["on-full"]["adapter"] == str((out / "checkpoints" / "on-full").resolve())


def test_a_study_without_adapters_is_a_valid_study(tmp_path: Path, base_model: Path) -> None:
    from divtrace.study.loading import load_study

    write_jsonl(tmp_path / "a.jsonl", SFT_ROWS)
    stages = [tiny_stage("full", "sft", "a.jsonl", full=True)]
    study = {"tasks": ["arithmetic", {"name": "open_ended", "n": 2}], "sampling": {"k": 4}, "metrics": ["ead"]}
    recipe = write_recipe(
        tmp_path / "recipe.yaml", {"name": "full", "base": str(base_model), "stages": stages, "study": study}
    )
    built = build(recipe, tmp_path / "lab", StandIn())
    loaded = load_study(built.study_file)
    assert [checkpoint.name for checkpoint in loaded.checkpoints] == ["base", "full"]
    assert [task.n for task in loaded.tasks] == [None, 2] and loaded.sampling.k == 4


def test_made_data_comes_from_divtrace_lab_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, base_model: Path
) -> None:
    write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)
    made = {"kind": "pairs", "task": "arithmetic", "n": 2}
    stages = [tiny_stage("sft", "sft", "sft.jsonl"), {**tiny_stage("dpo", "dpo", "-", "sft"), "data": made}]
    recipe = write_recipe(tmp_path / "recipe.yaml", {"name": "made", "base": str(base_model), "stages": stages})
    out = tmp_path / "lab"

    calls: list[tuple[Any, ...]] = []

    def prepare_data(data: DataSpec, parent_model: str, parent_adapter: str | None, out_dir: Path) -> Path:
        calls.append((data.kind, parent_model, parent_adapter, out_dir))
        out_dir.mkdir(parents=True, exist_ok=True)
        return write_jsonl(out_dir / "pairs.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}])

    monkeypatch.setattr("divtrace.lab.data.prepare_data", prepare_data)  # the build's side of the contract only
    trainer = StandIn()
    build(recipe, out, trainer)
    sft_dir = str((out / "checkpoints" / "sft").resolve())
    assert calls == [("pairs", str(base_model), sft_dir, out / "data" / "dpo")]
    assert trainer.requests[-1].rows == [{"prompt": "p", "chosen": "c", "rejected": "r"}]
    card = json.loads((out / "checkpoints" / "dpo" / "card.json").read_text())
    assert card["data"]["kind"] == "pairs" and card["data"]["file"] == "data/dpo/pairs.jsonl"
