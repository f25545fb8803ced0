"""Building a recipe's lineage into a lab directory, stage by stage, resuming what is built.

The lab directory (``--out DIR``):

- ``data/STAGE/train.jsonl``: a dataset stage's training rows in the lab's training form
  (:mod:`divtrace.lab.rows`); made data (distillation, preference pairs) is written by
  ``divtrace.lab.data.prepare_data`` under ``data/STAGE/``, and the file it returns is what the stage trains on.
- ``checkpoints/STAGE/``: the stage's LoRA adapter, or its full model and tokenizer; ``card.json`` and ``card.md``
  (the recipe entry, the data's digest and row count, the seed, library versions, train time, the loss curve);
  ``_complete.json``, its marker (:mod:`divtrace.runs.markers`): the stage's key and every file of the directory
  with its size and sha256.
- ``study.yaml``: the study ``divtrace run`` takes as it is: the base and each stage as checkpoints.
- ``divtrace.lock`` while a build holds the directory (:mod:`divtrace.runs.lock`).

A stage's key fingerprints its recipe entry (with the LoRA settings it trains with), its parent's key and the
sha256 of its parent's weight files (the base: the base model's identity), the sha256 of its training file, the
base model's identity, the library versions and :data:`LAB_VERSION`. Stages are built parents first; a stage whose
marker holds its key and whose files are as recorded is skipped, any other is trained again (so a changed stage and
every stage below it are rebuilt), and an interrupted build resumes at the first stage not built. A stage is trained
into a hidden staging directory and moved into place only when it is complete, then marked.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from divtrace.fingerprint import file_digest, fingerprint
from divtrace.generate.models import QUICKSTART_PREFIX, ResolvedModel, resolve_model
from divtrace.io_atomic import temporary_path, write_atomic, write_json_atomic
from divtrace.lab.data_specs import DatasetData
from divtrace.lab.recipe import BASE, DEFAULT_BETA, Recipe, StageSpec
from divtrace.lab.rows import dataset_rows, read_training_file, write_training_file
from divtrace.lab.train import ParentWeights, Trainer, TrainingRun, TrainRequest, library_versions, train_stage
from divtrace.progress import ProgressSink
from divtrace.runs.layout import safe_name
from divtrace.runs.markers import OutputFile, mark_done, marker_for, read_marker
from divtrace.runs.outputs import record_outputs, relative_name, unit_state
from divtrace.study.spec import CheckpointSpec

#: The version of how the lab trains and keys a stage: a change that makes other checkpoints raises it.
LAB_VERSION = 1

CHECKPOINTS_DIR = "checkpoints"
DATA_DIR = "data"
STUDY_FILE = "study.yaml"
CARD_JSON = "card.json"
CARD_MD = "card.md"

#: The training file of a stage with a dataset.
TRAINING_FILE = "train.jsonl"


@dataclass(frozen=True)
class Checkpoint:
    """A built checkpoint as its children and the study see it.

    Attributes:
        name: the stage's name (``base`` for the base).
        key: what its children's keys take of it: its own key and the digests of its weight files (the base: the
            base model's identity), so a child is rebuilt when its parent's weights change, even under one key.
        model: the model reference of its study checkpoint (the base's reference; a full fine-tuning stage's
            absolute directory).
        load_path: where its model loads from (a local directory or a hub id) at ``revision``.
        adapter: its LoRA adapter directory (absolute), or None.
        model_label: what its model is, in words (``base``, or the full fine-tuning stage it is).
    """

    name: str
    key: str
    model: str
    load_path: str
    revision: str | None
    adapter: Path | None
    model_label: str

    @property
    def label(self) -> str:
        """What it is, in words: ``base``, ``base + sft's adapter``, ``full-sft + dpo's adapter``..."""
        return self.model_label if self.adapter is None else f"{self.model_label} + {self.name}'s adapter"

    def weights(self) -> ParentWeights:
        """What a child of this checkpoint trains from."""
        return ParentWeights(self.load_path, self.revision, self.adapter, self.label)


@dataclass(frozen=True)
class StageOutcome:
    """What a build did with one stage: ``built`` (with ``reason``, why) or ``skipped`` (built and unchanged), in
    ``seconds``; ``checkpoint`` is its directory."""

    name: str
    status: Literal["built", "skipped"]
    seconds: float
    checkpoint: Path
    reason: str = ""


@dataclass(frozen=True)
class LabBuild:
    """A finished build: each stage's outcome in build order, the study file, and whether the study was validated
    (:func:`write_study`)."""

    out: Path
    stages: tuple[StageOutcome, ...]
    study_file: Path
    study_validated: bool


def build_lab(
    recipe: Recipe,
    recipe_file: Path,
    out: Path,
    *,
    trainer: Trainer = train_stage,
    progress: ProgressSink | None = None,
    on_stage: Callable[[StageOutcome], None] | None = None,
) -> LabBuild:
    """Build ``recipe`` (read from ``recipe_file``: relative paths in it resolve against its directory) into the
    lab directory ``out``: each stage not already built, parents first, then ``out/study.yaml``.

    Contract: see the module documentation (keys, skipping, resuming). ``trainer`` trains one stage
    (:func:`~divtrace.lab.train.train_stage`); ``progress`` gets the stages (``lab``) and each stage's steps
    (``train``); ``on_stage`` is told each stage's outcome as it is decided. The caller holds ``out``
    (:func:`~divtrace.runs.lock.hold_run_directory`). Raises DivtraceError naming the recipe file and key when a
    stage's data cannot be read or made, and ModelLoadError when the base cannot be resolved.
    """
    out.mkdir(parents=True, exist_ok=True)
    recipe_dir = recipe_file.parent
    base_ref = base_reference(recipe.base, recipe_dir)
    resolved = resolve_model(base_ref)
    versions = library_versions()
    built: dict[str, Checkpoint] = {BASE: _base_checkpoint(base_ref, resolved)}
    outcomes: list[StageOutcome] = []
    order = recipe.build_order()
    _remove_leftovers(out)
    for stage in order:
        where = f"{recipe_file}: key 'stages.{recipe.stages.index(stage)}.data'"
        context = _StageContext(recipe, stage, built[stage.parent], base_ref, resolved, versions, out, where)
        outcome, checkpoint = _build_stage(context, recipe_dir, trainer, progress)
        built[stage.name] = checkpoint
        outcomes.append(outcome)
        if on_stage is not None:
            on_stage(outcome)
    study_file, validated = write_study(recipe, recipe_file, built, out)
    return LabBuild(out, tuple(outcomes), study_file, validated)


def base_reference(ref: str, recipe_dir: Path) -> str:
    """The recipe's ``base`` as a study's checkpoint takes it: a local directory or .gguf file relative to the
    recipe's directory (or else to the working directory) made absolute; a ``quickstart:`` model or a hub id as
    given."""
    if ref.startswith(QUICKSTART_PREFIX):
        return ref
    path = Path(ref).expanduser()
    for candidate in (path,) if path.is_absolute() else (recipe_dir / path, path):
        if candidate.exists():
            return str(candidate.resolve())
    return ref


@dataclass(frozen=True)
class _StageContext:
    recipe: Recipe
    stage: StageSpec
    parent: Checkpoint
    base_ref: str
    base: ResolvedModel
    versions: dict[str, str | None]
    out: Path
    where: str

    @property
    def directory(self) -> Path:
        return self.out / CHECKPOINTS_DIR / safe_name(self.stage.name)


def _build_stage(
    context: _StageContext, recipe_dir: Path, trainer: Trainer, progress: ProgressSink | None
) -> tuple[StageOutcome, Checkpoint]:
    """Skip the stage when it is built for its key, else train it; its outcome and its checkpoint."""
    started = time.perf_counter()
    stage, directory, out = context.stage, context.directory, context.out
    data_file, rows = _training_data(context, recipe_dir)
    data_sha256 = file_digest(data_file)
    inputs = _key_inputs(context, data_sha256)
    key = fingerprint(inputs)
    marker = marker_for(directory)
    state = unit_state(out, marker, key, [directory])
    if state.done:
        found = read_marker(marker)
        recorded = found.outputs if found is not None and found.outputs is not None else ()
        checkpoint = _checkpoint(context, _weights_key(key, recorded))
        return StageOutcome(stage.name, "skipped", time.perf_counter() - started, directory), checkpoint
    reason = str(state.damage[0]) if state.damage else _why_rebuilt(marker, inputs)
    staging = temporary_path(directory)
    staging.mkdir(parents=True)
    try:
        request = TrainRequest(
            stage, context.recipe.lora_of(stage.name), context.parent.weights(), rows, staging, context.where, progress
        )
        run = trainer(request)
        data = {
            "kind": stage.data.kind,
            "file": relative_name(out, data_file),
            "sha256": data_sha256,
            "rows": len(rows),
        }
        _write_card(staging, context, _checkpoint(context, key), data, run, key)
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    recorded = record_outputs(out, [directory], marker)
    mark_done(marker, key, recorded, stage=stage.name, inputs=inputs)
    checkpoint = _checkpoint(context, _weights_key(key, recorded))
    return StageOutcome(stage.name, "built", time.perf_counter() - started, directory, reason), checkpoint


def _remove_leftovers(out: Path) -> None:
    """Remove what a killed build left in ``out/checkpoints``: hidden staging and trainer directories (the caller
    holds ``out``, so no other build is writing them)."""
    for leftover in (out / CHECKPOINTS_DIR).glob(".*"):
        if leftover.is_dir() and (leftover.name.endswith(".tmp") or leftover.name.startswith(".trainer-")):
            shutil.rmtree(leftover, ignore_errors=True)


def _training_data(context: _StageContext, recipe_dir: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The stage's training file and its rows: a dataset's rows written to ``data/STAGE/train.jsonl`` (only when
    they changed), or the file ``divtrace.lab.data.prepare_data`` makes."""
    stage, parent = context.stage, context.parent
    data_dir = context.out / DATA_DIR / safe_name(stage.name)
    if isinstance(stage.data, DatasetData):
        rows = dataset_rows(stage.data, stage.method, recipe_dir, context.where)
        path = data_dir / TRAINING_FILE
        write_training_file(rows, path)
        return path, rows
    from divtrace.lab import data as made_data  # generation and verification: imported only for made data

    made = made_data.prepare_data(stage.data, parent.model, str(parent.adapter) if parent.adapter else None, data_dir)
    return made, read_training_file(made, stage.method, context.where)


def _key_inputs(context: _StageContext, data_sha256: str) -> dict[str, Any]:
    """What a stage's key fingerprints (kept in its marker, to say what changed)."""
    stage = context.stage
    lora = context.recipe.lora_of(stage.name)
    return {
        "lab_version": LAB_VERSION,
        "stage": stage.model_dump(mode="json"),
        "lora": None if lora is None else lora.model_dump(mode="json"),
        "parent": context.parent.key,
        "data_sha256": data_sha256,
        "base": context.base.identity,
        "versions": context.versions,
    }


#: What each input of a stage's key is, in words.
_INPUT_NAMES = {
    "lab_version": "the lab's version",
    "stage": "its recipe entry",
    "lora": "its adapter settings",
    "parent": "its parent",
    "data_sha256": "its training data",
    "base": "the base model",
    "versions": "the library versions",
}


def _why_rebuilt(marker: Path, inputs: dict[str, Any]) -> str:
    """Why a stage whose marker does not hold its key is built: new, or what changed since it was built."""
    found = read_marker(marker)
    if found is None:
        return "not built yet"
    before = found.facts.get("inputs")
    if not isinstance(before, dict):
        return "built otherwise before"
    changed = [_INPUT_NAMES[name] for name in inputs if before.get(name) != inputs[name]]
    return "changed: " + ", ".join(changed) if changed else "built otherwise before"


def _weights_key(key: str, recorded: Iterable[OutputFile]) -> str:
    """A built stage's key for its children: its own ``key`` and the sha256 of each weight file it recorded (the
    cards, which change with every training, left out)."""
    weights = {item.path: item.sha256 for item in recorded if Path(item.path).name not in (CARD_JSON, CARD_MD)}
    return fingerprint({"key": key, "weights": weights})


def _base_checkpoint(base_ref: str, resolved: ResolvedModel) -> Checkpoint:
    return Checkpoint(BASE, fingerprint(resolved.identity), base_ref, resolved.load_path, resolved.revision, None, BASE)


def _checkpoint(context: _StageContext, key: str) -> Checkpoint:
    """The stage's checkpoint once built: the parent's model plus the stage's adapter (LoRA), or its own model
    directory (full fine-tuning)."""
    stage, parent, directory = context.stage, context.parent, context.directory.resolve()
    if stage.full:
        return Checkpoint(stage.name, key, str(directory), str(directory), None, None, stage.name)
    return Checkpoint(stage.name, key, parent.model, parent.load_path, parent.revision, directory, parent.model_label)


def _write_card(
    directory: Path, context: _StageContext, checkpoint: Checkpoint, data: dict[str, Any], run: TrainingRun, key: str
) -> None:
    """``card.json`` and ``card.md`` of a trained stage in ``directory``."""
    stage = context.stage
    lora = context.recipe.lora_of(stage.name)
    card = {
        "stage": stage.name,
        "method": stage.method,
        "parent": stage.parent,
        "trained_from": context.parent.label,
        "checkpoint": checkpoint.label,
        "recipe_entry": stage.model_dump(mode="json"),
        "lora": None if lora is None else lora.model_dump(mode="json"),
        "base": {"reference": context.base_ref, "identity": context.base.identity},
        "data": data,
        "seed": stage.seed,
        "library_versions": context.versions,
        "device": run.device,
        "dpo_reference": run.reference,
        "train_seconds": round(run.train_seconds, 3),
        "loss_curve": run.loss_curve,
        "key": key,
    }
    write_json_atomic(card, directory / CARD_JSON)
    write_atomic(directory / CARD_MD, lambda tmp: tmp.write_text(_card_markdown(card), encoding="utf-8"))


def _card_markdown(card: dict[str, Any]) -> str:
    """A short card for people: how the stage was trained, on what, and its loss per logged step."""
    entry, data, lora = card["recipe_entry"], card["data"], card["lora"]
    how = "full fine-tuning" if lora is None else "LoRA " + ", ".join(f"{k}={v}" for k, v in lora.items())
    settings = (
        f"steps {entry['steps']}, batch {entry['batch_size']}, max length {entry['max_length']}, "
        f"learning rate {entry['learning_rate']:g}, seed {card['seed']}"
    )
    lines = [
        f"# {card['stage']}",
        "",
        f"- method: {card['method']}, trained from {card['trained_from']} ({how})",
        f"- checkpoint: {card['checkpoint']}",
        f"- data: {data['kind']}, {data['rows']} rows, {data['file']} (sha256 {data['sha256'][:16]}...)",
        f"- {settings}",
    ]
    if card["dpo_reference"]:
        lines.append(f"- DPO: beta {entry['beta'] or DEFAULT_BETA}, reference {card['dpo_reference']}")
    lines += [
        f"- trained in {card['train_seconds']:.1f} s on {card['device']}",
        "- libraries: " + ", ".join(f"{name} {v}" for name, v in card["library_versions"].items() if v),
        "",
        "| step | loss |",
        "| ---: | ---: |",
        *(f"| {int(point['step'])} | {point['loss']:.4f} |" for point in card["loss_curve"]),
    ]
    return "\n".join(lines) + "\n"


def lab_study(recipe: Recipe, built: dict[str, Checkpoint]) -> dict[str, Any]:
    """The study of the built lineage as a mapping: the base (stage ``base``) and each stage (stage = its method,
    parent = its parent's name) as checkpoints, a LoRA stage with ``model`` its parent's model and ``adapter`` its
    adapter's absolute directory; the recipe's ``study:`` tasks, sampling and metrics."""
    base = built[BASE]
    checkpoints: list[dict[str, Any]] = [{"name": BASE, "model": base.model, "stage": "base"}]
    for stage in recipe.stages:
        checkpoint = built[stage.name]
        entry: dict[str, Any] = {"name": stage.name, "model": checkpoint.model, "stage": stage.method}
        entry["parent"] = stage.parent
        if checkpoint.adapter is not None:
            entry["adapter"] = str(checkpoint.adapter)
        checkpoints.append(entry)
    study = recipe.study
    return {
        "name": study.name or recipe.name,
        "description": recipe.description or f"the lineage built by divtrace lab build from recipe {recipe.name!r}",
        "checkpoints": checkpoints,
        "tasks": [task if isinstance(task, dict) else {"name": task} for task in study.tasks],
        "sampling": study.sampling.model_dump(mode="json", exclude_none=True),
        "metrics": list(study.metrics),
        "shard_size": study.shard_size,
    }


def write_study(recipe: Recipe, recipe_file: Path, built: dict[str, Checkpoint], out: Path) -> tuple[Path, bool]:
    """Write ``out/study.yaml`` (:func:`lab_study`); the path, and whether it was validated as a study.

    It is validated with :func:`divtrace.study.loading.parse_study` when the study's checkpoints take an
    ``adapter``: the field comes with the transformers backend's LoRA loading, built beside the lab, and a study
    with LoRA checkpoints is no valid study without it. Until that lands the file is written as the lab makes it
    (and ``divtrace run`` refuses its ``adapter`` keys, naming them).
    """
    raw = lab_study(recipe, built)
    path = out / STUDY_FILE
    validated = "adapter" in CheckpointSpec.model_fields
    if validated:
        from divtrace.study.loading import parse_study

        parse_study(raw, f"{path} (made from {recipe_file})")
    header = f"# Made by divtrace lab build from {recipe_file.resolve()}; rewritten by every build.\n"
    text = header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path, validated
