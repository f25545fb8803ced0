"""Per-prompt diversity over subsets of the K responses: all, the correct ones, and the first k (curves).

Rows (one per checkpoint, task, prompt, metric, subset): ``value``, ``n_outputs`` (the group size) and
``unclosed_thinking`` (the prompt's outputs whose thinking never closed, <NA> when the record does not say). Subsets:

- ``all``: the K responses;
- ``correct``: the responses verified correct, for prompts with at least 2 of them (quality-filtered
  decomposition). K-dependent metrics (Vendi) are not scored on this subset: their value would change with the
  number of correct outputs alone (DESIGN.md: use K-robust metrics for the decomposition);
- ``k=<k>``: the first k responses, for k = 2, 4, 8, ... below K (diversity-vs-K curves; samples are i.i.d., so
  the first k are a random subsample).

Each metric scores every group of every subset in one call (batched across prompts and subsets).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from divtrace.metrics import Metric, ScoringContext
from divtrace.metrics.embeddings import EmbeddingStore
from divtrace.samples import SampleRecord
from divtrace.samples.thinking import unclosed_count

SUBSET_COLUMNS = ["checkpoint", "task", "prompt_id", "metric", "subset", "value", "n_outputs", "unclosed_thinking"]
#: ``(checkpoint, task, prompt_id) -> one bool per response``.
Correctness = Mapping[tuple[str, str, str], Sequence[bool]]


def curve_levels(k: int) -> list[int]:
    """The subsample sizes of the diversity-vs-K curve below K: 2, 4, 8, ..."""
    levels = []
    size = 2
    while size < k:
        levels.append(size)
        size *= 2
    return levels


def score_subsets(
    records: Sequence[SampleRecord],
    metrics: Sequence[Metric],
    *,
    embedder: EmbeddingStore | None,
    correct: Correctness | None = None,
    code_tasks: frozenset[str] = frozenset(),
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Score ``records`` on every subset (see the module docstring); returns rows with :data:`SUBSET_COLUMNS`.

    Metrics not suitable for code skip tasks in ``code_tasks``. A record whose correctness list does not match
    its number of responses raises ValueError naming it.
    """
    groups: list[tuple[SampleRecord, str, list[str]]] = []
    for record in records:
        texts = record.scored_texts()
        groups.append((record, "all", list(texts)))
        for size in curve_levels(len(texts)):
            groups.append((record, f"k={size}", list(texts[:size])))
        key = (record.checkpoint or "default", record.task or "default", record.prompt_id)
        if correct is not None and key in correct:
            flags = list(correct[key])
            if len(flags) != len(texts):
                raise ValueError(f"{key}: {len(flags)} verdicts for {len(texts)} responses")
            chosen = [text for text, ok in zip(texts, flags, strict=True) if ok]
            if len(chosen) >= 2:
                groups.append((record, "correct", chosen))
    context = ScoringContext(embeddings=embedder)
    rows: list[dict[str, object]] = []
    for metric in metrics:
        if progress is not None:
            progress(metric.name)
        eligible = [
            g
            for g in groups
            if (metric.suitable_for_code or g[0].task not in code_tasks)
            and not (g[1] == "correct" and metric.k_dependent)
        ]
        values = metric.score_groups([texts for _, _, texts in eligible], context) if eligible else []
        for (record, subset, texts), value in zip(eligible, values, strict=True):
            rows.append(
                {
                    "checkpoint": record.checkpoint or "default",
                    "task": record.task or "default",
                    "prompt_id": record.prompt_id,
                    "metric": metric.name,
                    "subset": subset,
                    "value": float(value),
                    "n_outputs": len(texts),
                    "unclosed_thinking": unclosed_count(record),
                }
            )
    frame = pd.DataFrame(rows, columns=SUBSET_COLUMNS)
    frame["unclosed_thinking"] = frame["unclosed_thinking"].astype("Int64")
    return frame
