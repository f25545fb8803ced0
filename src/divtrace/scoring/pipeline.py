"""Score sample records with diversity metrics: per prompt, across prompts, and summarised per (checkpoint, task).

Every metric scores all prompts of all checkpoints in one call (batched across prompts); the embedding metrics
share one :class:`EmbeddingStore` that encodes each unique text once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from divtrace.errors import DivtraceError
from divtrace.io_atomic import write_json_atomic, write_table_atomic
from divtrace.metrics import Metric, ScoringContext, create_metric
from divtrace.metrics.embeddings import EmbeddingStore
from divtrace.samples import SampleRecord
from divtrace.samples.thinking import unclosed_total
from divtrace.scoring.bootstrap import BootstrapSettings, bootstrap_mean_ci
from divtrace.settings import EmbedderSettings, NLISettings

#: The metrics of the published study, scored when none are named.
DEFAULT_METRICS = ("ead", "sbert", "nli", "vendi")
#: Metrics that need no model beyond the default packaged embedder: the offline default.
OFFLINE_METRICS = ("ead", "sbert", "vendi")
#: Tasks whose outputs are source code; metrics with ``suitable_for_code = False`` skip them.
CODE_TASKS = frozenset({"humaneval", "mbpp", "cruxeval"})

#: (stage description, done, total) progress callback.
StageProgress = Callable[[str, int, int], None]


@dataclass
class ScoreResult:
    """Everything one scoring run produced.

    Attributes:
        per_prompt: one row per (checkpoint, task, prompt_id, metric): ``k`` responses and the ``value``.
        across_input: one row per (checkpoint, task, metric): the metric over the first response of each prompt.
        summary: one row per (checkpoint, task, metric): prompts, mean, std, 95% bootstrap CI, across-input, and
            ``unclosed_thinking``: the (checkpoint, task)'s outputs whose thinking never closed (the same for every
            metric; <NA> when no record says, e.g. read with stripping off).
        settings: every option that determined the numbers (metrics, embedder and its cache key, bootstrap).
        embedding_stats: what the embedding store did (texts asked for, unique, from cache, encoded).
    """

    per_prompt: pd.DataFrame
    across_input: pd.DataFrame
    summary: pd.DataFrame
    settings: dict[str, Any]
    embedding_stats: dict[str, int] = field(default_factory=dict)


def build_metrics(
    names: Iterable[str | Metric],
    nli: NLISettings | None = None,
    ead_vocab_size: int | None = None,
    ead_tokenizer: str | None = None,
) -> list[Metric]:
    """Metric objects for ``names`` (registry names or ready instances), with the run's NLI and EAD options."""
    metrics: list[Metric] = []
    for item in names:
        if isinstance(item, Metric):
            metrics.append(item)
        elif item == "nli":
            metrics.append(create_metric("nli", settings=nli))
        elif item == "ead":
            metrics.append(create_metric("ead", vocab_size=ead_vocab_size, tokenizer=ead_tokenizer))
        else:
            metrics.append(create_metric(item))
    seen = [m.name for m in metrics]
    if len(set(seen)) != len(seen):
        raise DivtraceError(f"a metric is listed twice: {seen}")
    return metrics


def score_records(
    records: Sequence[SampleRecord],
    metrics: Sequence[Metric],
    embedder: EmbeddingStore | None = None,
    bootstrap: BootstrapSettings | None = None,
    progress: StageProgress | None = None,
) -> ScoreResult:
    """Score ``records`` with ``metrics``.

    Every metric is prepared (models loaded) before any scoring, so a metric that cannot run fails first.
    Records must carry ``checkpoint`` and ``task`` (the readers fill them in) and at least 2 responses.
    """
    bootstrap = bootstrap or BootstrapSettings()
    if not records:
        raise DivtraceError("no sample records to score")
    for metric in metrics:
        metric.prepare()
    needs_embeddings = any(m.uses_embeddings for m in metrics)
    if needs_embeddings and embedder is None:
        embedder = EmbeddingStore(EmbedderSettings())
    context = ScoringContext(embeddings=embedder if needs_embeddings else None)

    keys = [(r.checkpoint or "", r.task or "", r.prompt_id) for r in records]
    texts = [r.scored_texts() for r in records]
    firsts = _first_responses(records)

    if needs_embeddings:
        assert embedder is not None
        every_text = [t for group in texts for t in group]
        embedder.embed(every_text, progress=_stage(progress, "embedding"))

    per_prompt_frames = []
    across_rows = []
    for metric in metrics:
        selected = [i for i, (_, task, _) in enumerate(keys) if metric.suitable_for_code or task not in CODE_TASKS]
        if progress:
            progress(f"scoring {metric.name}", 0, 1)
        values = metric.score_groups([texts[i] for i in selected], context) if selected else np.array([])
        per_prompt_frames.append(
            pd.DataFrame(
                {
                    "checkpoint": [keys[i][0] for i in selected],
                    "task": [keys[i][1] for i in selected],
                    "prompt_id": [keys[i][2] for i in selected],
                    "metric": metric.name,
                    "k": [len(texts[i]) for i in selected],
                    "value": np.asarray(values, dtype=np.float64),
                }
            )
        )
        across_groups = [
            (cell, group) for cell, group in firsts.items() if metric.suitable_for_code or cell[1] not in CODE_TASKS
        ]
        scorable = [(cell, group) for cell, group in across_groups if len(group) >= 2]
        across_values = metric.score_groups([g for _, g in scorable], context) if scorable else []
        for (cell, group), value in zip(scorable, across_values, strict=True):
            across_rows.append((*cell, metric.name, len(group), float(value)))
        if progress:
            progress(f"scoring {metric.name}", 1, 1)

    per_prompt = pd.concat(per_prompt_frames, ignore_index=True)
    across = pd.DataFrame(across_rows, columns=["checkpoint", "task", "metric", "n_prompts", "value"])
    summary = summarise(per_prompt, across, bootstrap)
    summary["unclosed_thinking"] = _unclosed_column(summary, records)
    settings = {
        "metrics": {m.name: m.settings() for m in metrics},
        "embedder": (
            {**embedder.settings.model_dump(mode="json"), "cache_key": embedder.model_key}
            if needs_embeddings and embedder is not None
            else None
        ),
        "bootstrap": {
            "resamples": bootstrap.resamples,
            "confidence": bootstrap.confidence,
            "seed": bootstrap.seed,
            "method": "percentile",
        },
        "code_tasks_skipped_by": sorted(m.name for m in metrics if not m.suitable_for_code),
    }
    stats = vars(embedder.stats).copy() if needs_embeddings and embedder is not None else {}
    return ScoreResult(per_prompt, across, summary, settings, stats)


def summarise(per_prompt: pd.DataFrame, across: pd.DataFrame, bootstrap: BootstrapSettings) -> pd.DataFrame:
    """Per (checkpoint, task, metric): prompts, mean, std (ddof 1), bootstrap CI of the mean, across-input."""
    rows = []
    for (checkpoint, task, metric), frame in per_prompt.groupby(["checkpoint", "task", "metric"], sort=True):
        values = frame["value"].to_numpy(dtype=np.float64)
        low, high = bootstrap_mean_ci(values, bootstrap)
        rows.append(
            {
                "checkpoint": checkpoint,
                "task": task,
                "metric": metric,
                "n_prompts": int(values.size),
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if values.size > 1 else float("nan"),
                "ci_low": low,
                "ci_high": high,
            }
        )
    summary = pd.DataFrame(
        rows, columns=["checkpoint", "task", "metric", "n_prompts", "mean", "std", "ci_low", "ci_high"]
    )
    across_values = across.rename(columns={"value": "across_input"})[["checkpoint", "task", "metric", "across_input"]]
    return summary.merge(across_values, on=["checkpoint", "task", "metric"], how="left")


def _unclosed_column(summary: pd.DataFrame, records: Sequence[SampleRecord]) -> pd.Series:
    """Per summary row, the unclosed-thinking count of its (checkpoint, task) (nullable integers)."""
    cells: dict[tuple[str, str], list[SampleRecord]] = {}
    for record in records:
        cells.setdefault((record.checkpoint or "", record.task or ""), []).append(record)
    counts = {cell: unclosed_total(group) for cell, group in cells.items()}
    values = [counts.get((row.checkpoint, row.task)) for row in summary.itertuples(index=False)]
    return pd.Series(values, index=summary.index, dtype="Int64")


def _first_responses(records: Sequence[SampleRecord]) -> dict[tuple[str, str], list[str]]:
    """The first response of every prompt, per (checkpoint, task), in record order."""
    firsts: dict[tuple[str, str], list[str]] = {}
    for record in records:
        firsts.setdefault((record.checkpoint or "", record.task or ""), []).append(record.scored_texts()[0])
    return firsts


def _stage(progress: StageProgress | None, name: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def write_result(result: ScoreResult, out_dir: str | Path) -> list[Path]:
    """Write the tables (Parquet, plus CSV for the summary) and the settings JSON atomically into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        write_table_atomic(result.per_prompt, out / "per_prompt.parquet"),
        write_table_atomic(result.across_input, out / "across_input.parquet"),
        write_table_atomic(result.summary, out / "summary.parquet"),
        write_table_atomic(result.summary, out / "summary.csv"),
        write_json_atomic(
            {"settings": result.settings, "embedding_stats": result.embedding_stats}, out / "score_settings.json"
        ),
    ]
    return written
