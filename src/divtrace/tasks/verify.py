"""Verify stored samples: a verdict per sample, and accuracy, pass@k and majority vote per (checkpoint, task)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from divtrace.errors import DivtraceError
from divtrace.io_atomic import write_json_atomic, write_table_atomic
from divtrace.samples import SampleRecord
from divtrace.samples.thinking import split_record_thinking, unclosed_total
from divtrace.tasks.base import Task
from divtrace.tasks.registry import get_task
from divtrace.tasks.sources import load_prompts
from divtrace.tasks.verifiers import Verdict, create_verifier, majority_rule
from divtrace.tasks.verifiers.aggregate import (
    default_k_levels,
    ifeval_accuracy,
    majority_correct,
    pass_at_k,
    vote_key,
)

#: ``(task, done, total)`` callback counting samples (unit ``samples``): called with 0 before a (checkpoint, task)
#: starts and after every batch of :data:`VERIFY_BATCH` samples.
VerifyProgress = Callable[[str, int, int], None]
#: Samples handed to a verifier at once (it verifies them in parallel): the granularity of progress.
VERIFY_BATCH = 64

VERDICT_COLUMNS = [
    "checkpoint", "task", "prompt_id", "sample_index", "correct", "extracted", "detail", "extra", "thinking_unclosed",
]  # fmt: skip


@dataclass
class VerifyResult:
    """Verdicts per sample, the summary per (checkpoint, task), and what was not verifiable.

    ``summary`` columns: checkpoint, task, verifier, prompts, k (samples per prompt, the smallest K when they
    differ), accuracy_first (the first sample), majority_vote (the share of prompts whose majority verdict is
    correct, under the verifier's rule: self-consistency over the extracted answers, where the unparseable samples
    vote as one answer and a tie between the top two is not correct, NaN for verifiers that extract no answer; or,
    for TruthfulQA, more than half of the samples correct), pass@k for k = 1, 2, 4, ... up to K and K itself
    (unbiased estimator, averaged over prompts), prompts_with_2_correct (prompts usable for the quality-filtered
    decomposition), and for IFEval its four official accuracies (prompt/instruction level, strict/loose), then
    ``unclosed_thinking``: samples whose thinking never closed (their response kept the unfinished thinking, so
    they are most likely wrong; many of them mean the token cap is too small); <NA> when no record says (read
    with stripping off). ``verdicts`` has the per-sample flag ``thinking_unclosed`` (None when not known).
    """

    verdicts: pd.DataFrame
    summary: pd.DataFrame
    skipped: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


def verify_records(
    records: Sequence[SampleRecord],
    *,
    task: str | None = None,
    data_dir: str | Path | None = None,
    progress: VerifyProgress | None = None,
    strip_thinking: bool = True,
) -> VerifyResult:
    """Verify every sample of ``records`` (what metrics see: ``responses``, else ``outputs``).

    Args:
        records: sample records; each record's ``task`` names its task unless ``task`` overrides it.
        task: task name or task YAML file for every record.
        data_dir: where to find task data for records without ``references`` (imported samples): the
            references are then looked up by ``prompt_id`` in the task's data.
        progress: ``(task, samples verified, samples)`` of each (checkpoint, task): 0 first, then after every
            batch of :data:`VERIFY_BATCH` samples.
        strip_thinking: pass each record through :func:`~divtrace.samples.thinking.split_record_thinking` first
            (chain-of-thought removed as the study did where a record has no ``responses``; unclosed thinking
            flagged). False verifies the records as they are (e.g. already read with the setting wanted).

    Records of tasks without a verifier are listed in ``skipped`` (not an error). A record without references
    whose prompt id is not in the task's data is an error naming the record. A hostile or malformed output is an
    incorrect verdict, never a crash.
    """
    groups: dict[tuple[str, str], list[SampleRecord]] = {}
    for record in (split_record_thinking(r, strip=strip_thinking) for r in records):
        name = task or record.task
        if not name:
            raise DivtraceError(f"record {record.prompt_id!r} has no task: pass --task")
        groups.setdefault((record.checkpoint or "default", name), []).append(record)

    verdict_rows: list[dict[str, Any]] = []
    summary_rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    verifiers: dict[str, str] = {}
    for (checkpoint, task_name), group in groups.items():
        chosen = get_task(task_name)
        if not chosen.verifiable:
            skipped.append(f"{checkpoint}/{task_name}: task {chosen.name} has no verifier ({len(group)} prompts)")
            continue
        assert chosen.verifier is not None
        verifiers[chosen.name] = chosen.verifier
        references = _references(group, chosen, data_dir)
        outputs = [text for record in group for text in record.scored_texts()]
        refs = [references[i] for i, record in enumerate(group) for _ in record.scored_texts()]
        verdicts = _verify_in_chunks(chosen, outputs, refs, progress)
        position = 0
        per_prompt: list[list[Verdict]] = []
        for record in group:
            mine = verdicts[position : position + len(record.scored_texts())]
            position += len(mine)
            per_prompt.append(mine)
            flags = record.thinking_unclosed or [None] * len(mine)
            for index, verdict in enumerate(mine):
                verdict_rows.append(
                    {
                        "checkpoint": checkpoint,
                        "task": chosen.name,
                        "prompt_id": record.prompt_id,
                        "sample_index": index,
                        "correct": verdict.correct,
                        "extracted": verdict.extracted,
                        "detail": verdict.detail,
                        "extra": json.dumps(verdict.extra, sort_keys=True, default=str) if verdict.extra else None,
                        "thinking_unclosed": flags[index] if index < len(flags) else None,
                    }
                )
        unclosed = unclosed_total(group)
        summary_rows.append({**_summary_row(checkpoint, chosen, per_prompt), "unclosed_thinking": unclosed})
    verdict_frame = pd.DataFrame(verdict_rows, columns=VERDICT_COLUMNS)
    summary = pd.DataFrame(summary_rows)
    if "unclosed_thinking" in summary.columns:
        summary["unclosed_thinking"] = summary["unclosed_thinking"].astype("Int64")
    return VerifyResult(verdict_frame, summary, skipped, {"verifiers": verifiers, "task_override": task})


def record_references(references: dict[str, Any]) -> dict[str, Any]:
    """A record's references in the task's own row schema.

    Samples imported from lm-evaluation-harness carry ``{"target": ..., "doc": {the dataset row}}``; the
    verifiers read the row's fields (GSM8K ``answer``, HumanEval ``test``...), so the row's fields are lifted to
    the top level (fields already at the top level win). Other references are returned as they are.
    """
    doc = references.get("doc")
    if not isinstance(doc, dict):
        return dict(references)
    return {**doc, **{key: value for key, value in references.items() if key != "doc"}}


def _references(group: list[SampleRecord], task: Task, data_dir: str | Path | None) -> list[dict[str, Any]]:
    if all(record.references is not None for record in group):
        return [record_references(record.references or {}) for record in group]
    items, origin = load_prompts(task, data_dir, n=10**9)
    by_id = {item.prompt_id: item.references or {} for item in items}
    found: list[dict[str, Any]] = []
    for record in group:
        if record.references is not None:
            found.append(record_references(record.references))
        elif record.prompt_id in by_id:
            found.append(by_id[record.prompt_id])
        else:
            raise DivtraceError(
                f"record {record.prompt_id!r} ({record.checkpoint}/{task.name}) has no references and its prompt id "
                f"is not in the task's data ({origin})"
            )
    return found


def _verify_in_chunks(
    task: Task, outputs: list[str], references: list[dict[str, Any]], progress: VerifyProgress | None
) -> list[Verdict]:
    verifier = create_verifier(task.verifier or "")
    verdicts: list[Verdict] = []
    if progress is not None:
        progress(task.name, 0, len(outputs))
    for start in range(0, len(outputs), VERIFY_BATCH):
        stop = start + VERIFY_BATCH
        verdicts.extend(verifier.verify_batch(outputs[start:stop], references[start:stop]))
        if progress is not None:
            progress(task.name, len(verdicts), len(outputs))
    return verdicts


def _summary_row(checkpoint: str, task: Task, per_prompt: list[list[Verdict]]) -> dict[str, Any]:
    k = min(len(v) for v in per_prompt)
    rule = majority_rule(task.verifier or "")
    majority_defined = rule != "vote" or any(vote_key(x) is not None for v in per_prompt for x in v)
    row: dict[str, Any] = {
        "checkpoint": checkpoint,
        "task": task.name,
        "verifier": task.verifier,
        "prompts": len(per_prompt),
        "k": k,
        "accuracy_first": float(np.mean([v[0].correct for v in per_prompt])),
        # A vote is over extracted answers (MATH: their normalised form); NaN when the verifier extracts none.
        "majority_vote": float(np.mean([majority_correct(v, rule) for v in per_prompt]))
        if majority_defined else float("nan"),
    }  # fmt: skip
    for level in default_k_levels(k):
        row[f"pass@{level}"] = float(np.mean([pass_at_k(len(v), sum(x.correct for x in v), level) for v in per_prompt]))
    row["prompts_with_2_correct"] = int(sum(sum(x.correct for x in v) >= 2 for v in per_prompt))
    if task.verifier == "ifeval":
        row.update(ifeval_accuracy([x for v in per_prompt for x in v]))
    return row


def write_verify_result(result: VerifyResult, out: str | Path) -> list[Path]:
    """Write ``verdicts.parquet``, ``verify_summary.parquet``/``.csv`` and ``verify_settings.json`` under ``out``."""
    out = Path(out)
    return [
        write_table_atomic(result.verdicts, out / "verdicts.parquet"),
        write_table_atomic(result.summary, out / "verify_summary.parquet"),
        write_table_atomic(result.summary, out / "verify_summary.csv"),
        write_json_atomic({**result.settings, "skipped": result.skipped}, out / "verify_settings.json"),
    ]
