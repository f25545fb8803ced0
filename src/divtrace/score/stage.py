"""The score stage: diversity per prompt of every (checkpoint, task), through the one :class:`Scorer`.

A unit is one (checkpoint, task); its key hashes its sample files (and its verdicts, when verified) and the
scorer's :meth:`ScorerSpec.key`: each metric's settings as the scorer built it, the content key of every model the
metrics read (settings plus a digest of the model's files, so new weights in the same directory rescore), the
scoring options and :data:`SCORER_VERSION`. A worker builds the scorer once and keeps its models loaded across
units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from divtrace.fingerprint import files_fingerprint
from divtrace.io_atomic import write_table_atomic
from divtrace.progress import ProgressSink
from divtrace.runs.layout import RunLayout
from divtrace.runs.markers import marker_for
from divtrace.runs.stage import Stage, Unit, WorkItem
from divtrace.samples import SampleRecord
from divtrace.score.metric_spec import MetricChoice
from divtrace.score.scorer import ScoreOptions, Scorer, build_metrics, unit_table, verdicts_from_table
from divtrace.score.settings import CodeEmbedderSettings, EmbedderSettings, NLISettings

#: Bumped when the scorer computes different numbers from the same inputs, so stored scores are redone.
SCORER_VERSION = 4  # 4: EAD's V is 50257 for every checkpoint unless a study sets it; 3: values clipped into each
# metric's range, indistinguishable_texts column

#: The subsets a run scores: all, the correct responses (decomposition), the curves over K.
RUN_SUBSETS = ("all", "correct", "curves")


@dataclass(frozen=True)
class ScorerSpec:
    """Everything a :class:`Scorer` is built from: the metrics (names or ``{name, args}``), the sentence embedder,
    the code embedder and NLI model (None: not named) and the options."""

    metrics: tuple[MetricChoice, ...]
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)
    code_embedder: CodeEmbedderSettings | None = None
    nli: NLISettings | None = None
    options: ScoreOptions = field(default_factory=lambda: ScoreOptions(subsets=RUN_SUBSETS))

    def scorer(self) -> Scorer:
        """The scorer; its models load on first use."""
        return Scorer(
            build_metrics(self.metrics, nli=self.nli),
            embedder=self.embedder,
            code_embedder=self.code_embedder,
            options=self.options,
        )

    def key(self) -> dict[str, Any]:
        """What determines the numbers, known without loading any model: each metric's settings (from a scorer
        that has loaded nothing), the content key of every model the metrics read and the options."""
        from divtrace.score.content_key import content_key

        scorer = self.scorer()
        metrics = scorer.metrics
        code, nli = self.code_embedder, self.nli
        return {
            "metrics": scorer.metric_settings(),
            "embedder": content_key(self.embedder) if any(m.uses_embeddings for m in metrics) else None,
            "code_embedder": content_key(code) if code and any(m.uses_code_embeddings for m in metrics) else None,
            "nli_model": content_key(nli) if nli and any(m.settings_type is NLISettings for m in metrics) else None,
            "options": scorer.options.settings(),
        }


@dataclass(frozen=True)
class ScoreWork:
    """One (checkpoint, task) to score: its samples, its verdicts (None: not verified) and its generator's
    vocabulary size when a metric asks for it (EAD with ``tokenizer: generator``)."""

    records: list[SampleRecord]
    verdicts: pd.DataFrame | None
    vocab_size: int | None


@dataclass(frozen=True)
class ScoreStage(Stage[ScoreWork, pd.DataFrame]):
    """Scores of every (checkpoint, task) of ``checkpoints`` x ``tasks`` with the scorer of ``spec``;
    ``tokenizers`` gives each checkpoint's generator tokenizer as (reference, revision), None when unknown."""

    name: ClassVar[str] = "score"
    version: ClassVar[int] = SCORER_VERSION
    loads_model: ClassVar[bool] = True

    spec: ScorerSpec
    checkpoints: tuple[str, ...]
    tasks: tuple[str, ...]
    tokenizers: Mapping[str, tuple[str, str | None] | None] = field(default_factory=dict)

    def units(self, layout: RunLayout) -> list[Unit]:
        """Every (checkpoint, task), keyed on its samples, its verdicts (when verified) and the scorer."""
        scorer = self.spec.key()
        units = []
        for checkpoint in self.checkpoints:
            for task in self.tasks:
                inputs = layout.sample_files(checkpoint, task)
                verdicts = layout.verdicts_file(checkpoint, task)
                if verdicts.exists():
                    inputs = [*inputs, verdicts]
                key = self.key({"inputs": files_fingerprint(inputs), "scorer": scorer})
                output = layout.scores_file(checkpoint, task)
                units.append(Unit(f"{checkpoint}/{task}", key, marker_for(output), (output,), checkpoint, task))
        return units

    def items(self, layout: RunLayout, unit: Unit) -> list[WorkItem[ScoreWork]]:
        """The unit's samples and verdicts, as one item (refused when they are not complete)."""
        reader = f"{self.name} of {unit.name}"
        layout.check_samples(unit.checkpoint, unit.task, reader)
        layout.check_verdicts(unit.checkpoint, unit.task, reader)
        records = layout.read_samples(unit.checkpoint, unit.task)
        verdicts = layout.read_verdicts(unit.checkpoint, unit.task)
        return [WorkItem(unit, ScoreWork(records, verdicts, self.vocab_size(unit.checkpoint)))]

    def vocab_size(self, checkpoint: str) -> int | None:
        """What :meth:`Scorer.score` takes as ``vocab_size`` for ``checkpoint``'s samples: its generator's
        vocabulary size when a metric asks for it, else None (no tokenizer is loaded)."""
        from divtrace.generate.models import generator_vocab_size

        tokenizer = self.tokenizers.get(checkpoint)
        if tokenizer is None or not self.spec.scorer().needs_generator_vocab:
            return None
        return generator_vocab_size(*tokenizer)

    def open_worker(self, group: str, threads: int | None, progress: ProgressSink | None) -> Scoring:
        """The scorer (``threads``: torch's CPU threads)."""
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        return Scoring(self.spec.scorer())

    def save(self, layout: RunLayout, item: WorkItem[ScoreWork], result: pd.DataFrame) -> Mapping[str, Any]:
        """Write the score table atomically; its marker records the rows and each metric's settings as used."""
        write_table_atomic(result, layout.scores_file(item.unit.checkpoint, item.unit.task))
        return {"rows": len(result), "metrics": self.spec.scorer().metric_settings(item.payload.vocab_size)}


class Scoring:
    """The score stage's worker: one scorer, its models loaded once, scoring unit after unit."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    def compute(self, payload: ScoreWork, progress: ProgressSink | None) -> pd.DataFrame:
        """The stored score table of one (checkpoint, task): per-prompt rows of every subset plus the across-input
        rows (see :func:`~divtrace.score.scorer.unit_table`)."""
        lookup = verdicts_from_table(payload.verdicts) if payload.verdicts is not None else None
        result = self.scorer.score(payload.records, lookup, vocab_size=payload.vocab_size, progress=progress)
        return unit_table(result)

    def close(self) -> None:
        """Nothing to release (the models stay cached in the process)."""
