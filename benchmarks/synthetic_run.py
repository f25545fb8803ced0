"""Synthetic run directories for the scaling benchmark: samples, verdicts and (optionally) per-prompt scores in the
formats divtrace's stages write, seeded, so the real stages can be run on them at any size.

- samples: ``RUN/samples/<checkpoint>/<task>/shard-00000.parquet`` (+ ``_complete.json``), K outputs per prompt,
  each a deterministic sentence of words drawn from a fixed vocabulary (the tiny NLI model's, which the MiniLM
  embedder knows too), 6 to 36 words (under 48 tokens, like the quickstart's outputs);
- verdicts: ``RUN/verdicts/<checkpoint>/<task>.parquet`` (+ marker) for the verifiable tasks, one row per sample
  (:data:`divtrace.verify.pipeline.VERDICT_COLUMNS`), correct with a checkpoint-dependent rate;
- scores: ``RUN/scores/<checkpoint>/<task>.parquet`` (+ marker) with the rows the score stage writes: per prompt,
  each metric that applies to the task (the scorer's rule), subsets ``all``, ``k=2, 4, ...`` (the curves) and
  ``correct`` (prompts with two or more correct samples on verifiable tasks), plus one across-input row per text
  metric; values drawn in [0, 1] with a mean that falls along the lineage (collapse).

Markers record a fixed fingerprint and no outputs: a stage reading them finds them complete; a stage producing them
(the score stage) finds them out of date and redoes them.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tests.nli_model import VOCABULARY

from divtrace.io_atomic import write_table_atomic
from divtrace.runs.layout import RunLayout
from divtrace.runs.markers import marker_for
from divtrace.samples import SampleRecord
from divtrace.samples.parquet import write_samples_parquet
from divtrace.score.metrics import Metric
from divtrace.score.scorer import ACROSS_INPUT, PER_PROMPT_COLUMNS, build_metrics, is_code_task
from divtrace.stats import curve_levels
from divtrace.study import Study
from divtrace.study.presets import olmo3_7b_study, quickstart_study
from divtrace.study.spec import TaskSpec
from divtrace.tasks import get_task, task_names
from divtrace.verify.pipeline import VERDICT_COLUMNS

#: Words of the synthetic outputs: the tiny NLI test model's vocabulary, which MiniLM knows too.
WORDS = tuple(VOCABULARY)
#: The quickstart's shape: 3 checkpoints x 2 tasks x 8 prompts x K = 8.
QUICKSTART_PROMPTS = 8
QUICKSTART_K = 8
#: The olmo3-7b study's shape: 16 checkpoints x 15 tasks x 500 prompts x K = 16.
OLMO_PROMPTS = 500
OLMO_K = 16
_FINGERPRINT = "synthetic"


@dataclass(frozen=True)
class Shape:
    """A study and its size: ``prompts`` per task, ``k`` outputs per prompt."""

    label: str
    study: Study
    prompts: int
    k: int

    @property
    def tasks(self) -> tuple[str, ...]:
        """The study's task names."""
        return tuple(task.name for task in self.study.tasks)

    @property
    def outputs(self) -> int:
        """Outputs in the whole study."""
        return len(self.study.checkpoints) * len(self.tasks) * self.prompts * self.k


def quickstart_shape(multiple: int) -> Shape:
    """The quickstart study (its 3 checkpoints, its two bundled tasks by name, K = 8) with ``multiple`` times its 8
    prompts per task: ``multiple`` x 384 outputs."""
    prompts = QUICKSTART_PROMPTS * multiple
    study = quickstart_study().model_copy(
        update={"tasks": [TaskSpec(name="arithmetic", n=prompts), TaskSpec(name="open_ended", n=prompts)]}
    )
    return Shape(f"{multiple}x", study, prompts, QUICKSTART_K)


def olmo_shape() -> Shape:
    """The ``olmo3-7b`` preset as it is: 16 checkpoints x 15 tasks x 500 prompts x K = 16, its ten metrics."""
    return Shape("olmo3-7b", olmo3_7b_study(), OLMO_PROMPTS, OLMO_K)


def output_text(rng: random.Random) -> str:
    """One synthetic output: 6 to 36 words of :data:`WORDS`."""
    return " ".join(rng.choices(WORDS, k=rng.randint(6, 36)))


def write_synthetic_run(root: Path, shape: Shape, *, scores: bool, seed: int = 0) -> RunLayout:
    """Write the samples and verdicts (and with ``scores``, the score tables) of ``shape`` under ``root``.

    Deterministic for given ``shape`` and ``seed``. Returns the run's layout.
    """
    layout = RunLayout(root)
    rng = np.random.default_rng(seed)
    texts = random.Random(seed)
    metrics = build_metrics(shape.study.metrics)
    depth = _depths(shape.study)
    for checkpoint in shape.study.checkpoints:
        for task in shape.tasks:
            records = _records(checkpoint.name, task, shape, texts)
            _write_samples(layout, checkpoint.name, task, records)
            correct = None
            if _verifiable(task):
                rate = max(0.1, 0.7 - 0.1 * depth[checkpoint.name])
                correct = rng.random((shape.prompts, shape.k)) < rate
                _write(layout.verdicts_file(checkpoint.name, task), _verdicts(checkpoint.name, task, correct, rng))
            if scores:
                table = _scores(checkpoint.name, task, shape, metrics, correct, depth[checkpoint.name], rng)
                _write(layout.scores_file(checkpoint.name, task), table)
    return layout


def _depths(study: Study) -> dict[str, int]:
    """Each checkpoint's distance from its root (a variant: its original's)."""
    specs = {c.name: c for c in study.checkpoints}

    def depth(name: str) -> int:
        spec = specs[name]
        above = spec.parent or spec.variant_of
        return 0 if above is None else 1 + depth(above)

    return {name: depth(name) for name in specs}


def _verifiable(task: str) -> bool:
    return task in task_names() and get_task(task).verifiable


def _records(checkpoint: str, task: str, shape: Shape, rng: random.Random) -> list[SampleRecord]:
    return [
        SampleRecord(
            prompt_id=f"{task}-{p}",
            prompt=f"prompt {p} of {task}",
            outputs=[output_text(rng) for _ in range(shape.k)],
            checkpoint=checkpoint,
            task=task,
        )
        for p in range(shape.prompts)
    ]


def _write_samples(layout: RunLayout, checkpoint: str, task: str, records: list[SampleRecord]) -> None:
    path = layout.shard_file(checkpoint, task, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_samples_parquet(records, path)
    _mark(layout.generation_marker(checkpoint, task))


def _write(path: Path, table: pd.DataFrame) -> None:
    write_table_atomic(table, path)
    _mark(marker_for(path))


def _mark(marker: Path) -> None:
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": _FINGERPRINT}))


def _verdicts(checkpoint: str, task: str, correct: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    prompts, k = correct.shape
    answers = rng.integers(0, 4, size=(prompts, k))
    return pd.DataFrame(
        {
            "checkpoint": checkpoint,
            "task": task,
            "prompt_id": np.repeat([f"{task}-{p}" for p in range(prompts)], k),
            "sample_index": np.tile(np.arange(k), prompts),
            "correct": correct.ravel(),
            "extracted": answers.ravel().astype(str),
            "detail": "",
            "extra": "",
            "thinking_unclosed": False,
        },
        columns=VERDICT_COLUMNS,
    )


def _applies(metric: Metric, task: str, verifiable: bool) -> bool:
    """The scorer's rule (code metrics on code tasks only, text metrics off them where unsuitable), and answer
    metrics on verifiable tasks only."""
    code = is_code_task(task)
    if (code and not metric.suitable_for_code) or (metric.code_only and code is False):
        return False
    return metric.input == "texts" or verifiable


def _scores(
    checkpoint: str,
    task: str,
    shape: Shape,
    metrics: list[Metric],
    correct: np.ndarray | None,
    depth: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    prompt_ids = np.array([f"{task}-{p}" for p in range(shape.prompts)], dtype=object)
    subsets: list[tuple[str, np.ndarray, np.ndarray]] = [("all", prompt_ids, np.full(shape.prompts, shape.k))]
    subsets += [(f"k={size}", prompt_ids, np.full(shape.prompts, size)) for size in curve_levels(shape.k)]
    if correct is not None:
        n_correct = correct.sum(axis=1)
        kept = n_correct >= 2
        subsets.append(("correct", prompt_ids[kept], n_correct[kept]))
    frames = []
    for metric in metrics:
        if not _applies(metric, task, correct is not None):
            continue
        mean = 0.8 * 0.85**depth
        for subset, ids, n_outputs in subsets:
            values = np.clip(rng.normal(mean, 0.1, size=len(ids)), 0.0, 1.0)
            frames.append(_rows(checkpoint, task, metric.name, subset, ids, values, n_outputs))
        if metric.input == "texts":
            across = np.array([min(shape.prompts, 500)])
            frames.append(_rows(checkpoint, task, metric.name, ACROSS_INPUT, np.array([""]), rng.random(1), across))
    table = pd.concat(frames, ignore_index=True)
    for column in ("unclosed_thinking", "indistinguishable_texts"):
        table[column] = table[column].astype("Int64")
    return table[PER_PROMPT_COLUMNS]


def _rows(
    checkpoint: str,
    task: str,
    metric: str,
    subset: str,
    prompt_ids: np.ndarray,
    values: np.ndarray,
    n_outputs: np.ndarray,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "checkpoint": checkpoint,
            "task": task,
            "prompt_id": prompt_ids,
            "metric": metric,
            "subset": subset,
            "value": values,
            "n_outputs": n_outputs.astype(np.int64),
            "unclosed_thinking": 0 if subset != ACROSS_INPUT else pd.NA,
            "indistinguishable_texts": pd.NA,
        }
    )
