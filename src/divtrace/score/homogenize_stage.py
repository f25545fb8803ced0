"""The homogenisation stage: per task, how alike every pair of checkpoints' outputs are, prompt by prompt.

It runs only for a study that asks for it (``homogenization: true``). A unit is one task
(``homogenization/TASK.parquet``); its key hashes every checkpoint's sample files of the task, the sentence
embedder's content key (settings plus a digest of the model's files), the metric definitions and
:data:`~divtrace.score.homogenization.HOMOGENIZATION_VERSION`. A worker opens the embedder once, through the same
:class:`~divtrace.score.metrics.embeddings.EmbeddingStore` and content-addressed cache as the scorer, so the
embeddings the score stage computed are read back, not recomputed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from divtrace.fingerprint import files_fingerprint
from divtrace.io_atomic import write_table_atomic
from divtrace.progress import ProgressSink, scoped
from divtrace.runs.layout import RunLayout
from divtrace.runs.markers import marker_for
from divtrace.runs.stage import Stage, Unit, WorkItem
from divtrace.samples import SampleRecord
from divtrace.score.homogenization import HOMOGENIZATION_VERSION, metric_definitions, prompt_similarities
from divtrace.score.settings import EmbedderSettings


@dataclass(frozen=True)
class HomogenizationWork:
    """One task's samples, by checkpoint (in study order)."""

    task: str
    records: Mapping[str, list[SampleRecord]]


@dataclass(frozen=True)
class HomogenizeStage(Stage[HomogenizationWork, pd.DataFrame]):
    """Per-prompt similarities of every pair of ``checkpoints`` on each of ``tasks``, with the sentence embedder of
    ``embedder``."""

    name: ClassVar[str] = "homogenize"
    version: ClassVar[int] = HOMOGENIZATION_VERSION
    loads_model: ClassVar[bool] = True

    embedder: EmbedderSettings
    checkpoints: tuple[str, ...]
    tasks: tuple[str, ...]

    def units(self, layout: RunLayout) -> list[Unit]:
        """One unit per task, keyed on every checkpoint's samples of the task, the embedder and the metrics."""
        from divtrace.score.content_key import content_key

        embedder = content_key(self.embedder)
        units = []
        for task in self.tasks:
            inputs = [path for checkpoint in self.checkpoints for path in layout.sample_files(checkpoint, task)]
            key = self.key({"inputs": files_fingerprint(inputs), "embedder": embedder, "metrics": metric_definitions()})
            output = layout.homogenization_file(task)
            units.append(Unit(f"homogenization/{task}", key, marker_for(output), (output,), "", task))
        return units

    def items(self, layout: RunLayout, unit: Unit) -> list[WorkItem[HomogenizationWork]]:
        """Every checkpoint's samples of the unit's task, as one item (refused when they are not complete)."""
        reader = f"{self.name} of {unit.name}"
        for checkpoint in self.checkpoints:
            layout.check_samples(checkpoint, unit.task, reader)
        records = {checkpoint: layout.read_samples(checkpoint, unit.task) for checkpoint in self.checkpoints}
        return [WorkItem(unit, HomogenizationWork(unit.task, records))]

    def open_worker(self, group: str, threads: int | None, progress: ProgressSink | None) -> Homogenizing:
        """The embedder (``threads``: torch's CPU threads), opened once."""
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        return Homogenizing(self.embedder)

    def save(self, layout: RunLayout, item: WorkItem[HomogenizationWork], result: pd.DataFrame) -> Mapping[str, Any]:
        """Write the task's similarity table atomically; its marker records the rows and the metrics."""
        write_table_atomic(result, layout.homogenization_file(item.payload.task))
        return {"rows": len(result), "metrics": metric_definitions()}


class Homogenizing:
    """The homogenisation stage's worker: one sentence embedder, with the scorer's embedding cache."""

    def __init__(self, embedder: EmbedderSettings) -> None:
        self.settings = embedder
        self._store: Any = None

    def compute(self, payload: HomogenizationWork, progress: ProgressSink | None) -> pd.DataFrame:
        """The per-prompt similarity table of one task (:func:`~divtrace.score.homogenization.prompt_similarities`)."""
        from divtrace.score.metrics.embeddings import EmbeddingStore

        if self._store is None:
            self._store = EmbeddingStore(self.settings)
        store: EmbeddingStore = self._store
        sink = scoped(progress, step="embedding")
        return prompt_similarities(payload.records, lambda texts: store.embed(texts, progress=sink))

    def close(self) -> None:
        """Nothing to release (the model stays cached in the process)."""
