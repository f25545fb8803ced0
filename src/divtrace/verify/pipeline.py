"""Verify stored samples: a verdict per sample, and accuracy, pass@k and majority vote per (checkpoint, task)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from divtrace.errors import DivtraceError
from divtrace.io_atomic import write_json_atomic, write_table_atomic
from divtrace.progress import SAMPLES, ProgressSink, emit, scoped
from divtrace.samples import SampleRecord
from divtrace.samples.thinking import split_record_thinking, unclosed_total
from divtrace.stats import cell_k_levels, mean_pass_at_k
from divtrace.tasks.base import Task
from divtrace.tasks.names import resolve_task, verifiable_task_names
from divtrace.tasks.registry import get_task
from divtrace.tasks.sources import load_prompts
from divtrace.verify import Verdict, create_verifier, majority_rule, verifier_class
from divtrace.verify.aggregate import ifeval_accuracy, majority_correct, vote_key
from divtrace.verify.base import PROMPT_FORM_KEY

#: Samples handed to a verifier at once (it verifies them in parallel): the granularity of progress. Each batch ends
#: with its slowest program while the other sandboxes wait, so a batch holds many programs per sandbox (HumanEval,
#: 4 sandboxes: 0.87 x bare subprocess throughput with batches of 64, see benchmarks/bench_verify.py).
VERIFY_BATCH = 256

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
    task: str | Task | None = None,
    data_dir: str | Path | None = None,
    progress: ProgressSink | None = None,
    strip_thinking: bool = True,
    task_map: Mapping[str, str] | None = None,
) -> VerifyResult:
    """Verify every sample of ``records`` (what metrics see: ``responses``, else ``outputs``).

    Args:
        records: sample records; each record's ``task`` names its task unless ``task`` overrides it.
        task: task name, task YAML file or :class:`Task` for every record (its ``name`` labels the rows).
        data_dir: where to find task data for records without ``references`` (imported samples): the
            references are then looked up by ``prompt_id`` in the task's data.
        progress: where :class:`~divtrace.progress.ProgressEvent` values go: the samples verified (``samples``) of
            each (checkpoint, task), its unit ``checkpoint/task``: 0 first, then after every batch of
            :data:`VERIFY_BATCH` samples. The stage is left empty for the caller.
        strip_thinking: pass each record through :func:`~divtrace.samples.thinking.split_record_thinking` first
            (chain-of-thought removed as the study did where a record has no ``responses``; unclosed thinking
            flagged). False verifies the records as they are (e.g. already read with the setting wanted).

        task_map: task label as logged -> divtrace task, for labels :func:`~divtrace.tasks.names.resolve_task`
            does not map by itself (the CLI's ``--task-map SOURCE=TASK``).

    Task labels: a record's label (``gsm8k|0``, ``gsm8k_cot_zeroshot``...) is kept in ``verdicts`` and ``summary``;
    the divtrace task whose verifier and reference schema are used is found by
    :func:`~divtrace.tasks.names.resolve_task` and named in the summary's ``verified_as`` column and in
    ``settings["verified_as"]``. With ``task`` given, every record is that task (labelled with its name).

    Groups that cannot be verified are listed in ``skipped`` (not an error), each line saying which
    checkpoint/task, why (no divtrace task of that name or family; a task without a verifier) and what to do. A
    record without references whose prompt id is not in the task's data is an error naming the record; so are
    references without the fields the verifier needs (naming the record's file and line when it has an origin). A
    hostile or malformed output is an incorrect verdict, never a crash.
    """
    groups: dict[tuple[str, str], list[SampleRecord]] = {}
    for record in (split_record_thinking(r, strip=strip_thinking) for r in records):
        name = (task.name if isinstance(task, Task) else task) or record.task
        if not name:
            raise DivtraceError(f"record {record.prompt_id!r} has no task: pass --task")
        groups.setdefault((record.checkpoint or "default", name), []).append(record)

    verdict_rows: list[dict[str, Any]] = []
    summary_rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    verifiers: dict[str, str] = {}
    verified_as: dict[str, str] = {}
    for (checkpoint, task_name), group in groups.items():
        wanted = task if isinstance(task, Task) else task_name
        chosen, why_not = verifiable_task(wanted, task_map, forced=task is not None)
        if chosen is None:
            skipped.append(f"{checkpoint}/{task_name} ({len(group)} prompts): {why_not}")
            continue
        assert chosen.verifier is not None
        label = chosen.name if task is not None else task_name
        verifiers[chosen.name] = chosen.verifier
        verified_as[label] = chosen.name
        references = _references(group, chosen, data_dir)
        if verifier_class(chosen.verifier).reads_prompt_form:
            references = [_with_prompt_form(ref, record) for ref, record in zip(references, group, strict=True)]
        outputs = [text for record in group for text in record.scored_texts()]
        refs = [references[i] for i, record in enumerate(group) for _ in record.scored_texts()]
        try:
            verdicts = _verify_in_chunks(chosen, outputs, refs, scoped(progress, unit=f"{checkpoint}/{label}"))
        except ValueError as error:  # references without the fields the verifier reads
            raise DivtraceError(_reference_problem(group, references, chosen, checkpoint, label, error)) from None
        position = 0
        per_prompt: list[list[Verdict]] = []
        for record in group:
            mine = verdicts[position : position + len(record.scored_texts())]
            position += len(mine)
            per_prompt.append(mine)
            flags: Sequence[bool | None] = record.thinking_unclosed or [None] * len(mine)
            for index, verdict in enumerate(mine):
                verdict_rows.append(
                    {
                        "checkpoint": checkpoint,
                        "task": label,
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
        row = _summary_row(checkpoint, chosen, per_prompt)
        summary_rows.append({**row, "task": label, "verified_as": chosen.name, "unclosed_thinking": unclosed})
    verdict_frame = pd.DataFrame(verdict_rows, columns=VERDICT_COLUMNS)
    summary = pd.DataFrame(summary_rows)
    if "unclosed_thinking" in summary.columns:
        summary["unclosed_thinking"] = summary["unclosed_thinking"].astype("Int64")
    settings = {
        "verifiers": verifiers,
        "task_override": task.name if isinstance(task, Task) else task,
        "verified_as": verified_as,
        "task_map": dict(task_map or {}),
    }
    return VerifyResult(verdict_frame, summary, skipped, settings)


def verifiable_task(
    name: str | Task, task_map: Mapping[str, str] | None = None, *, forced: bool = False
) -> tuple[Task | None, str | None]:
    """The divtrace task that verifies records labelled ``name``, or ``(None, why not and what to do)``.

    ``name`` is resolved by :func:`~divtrace.tasks.names.resolve_task` (``task_map`` first); ``forced`` (a task the
    user named for every record) must be a divtrace task or task file, else :class:`DivtraceError` lists the known
    ones; a :class:`Task` is taken as it is. A task that exists but has no verifier is ``None`` with a reason
    naming the verifiable tasks.
    """
    if isinstance(name, Task):
        chosen = name
    elif forced:
        chosen = get_task(name)
    else:
        resolution = resolve_task(name, task_map)
        if resolution.task is None:
            return None, resolution.reason
        chosen = get_task(resolution.task)
    if not chosen.verifiable:
        return None, (
            f"task {chosen.name} is a divtrace task, but not a verifiable one (it has no verifier: outputs are scored "
            f"for diversity, not checked for correctness); verifiable tasks: {', '.join(verifiable_task_names())}"
        )
    return chosen, None


def _reference_problem(
    group: list[SampleRecord],
    references: list[dict[str, Any]],
    task: Task,
    checkpoint: str,
    label: str,
    error: ValueError,
) -> str:
    """The message for references the verifier cannot read: the first bad record's place, the field, what to do."""
    verifier = create_verifier(task.verifier or "")
    for record, reference in zip(group, references, strict=True):
        try:
            verifier.verify_batch(record.scored_texts()[:1], [reference])
        except ValueError as found:
            origin = (record.model_extra or {}).get("origin")
            origin = origin if isinstance(origin, dict) else {}
            where = f"{origin['file']}, line {origin['line']}: " if "file" in origin and "line" in origin else ""
            return (
                f"{where}{checkpoint}/{label}, prompt {record.prompt_id!r}: its references cannot be verified as "
                f"task {task.name} ({found}); pass --task-map {label}=TASK for the right task, or --data-dir with the "
                "task's data and records without references"
            )
    return f"{checkpoint}/{label}: the references cannot be verified as task {task.name} ({error})"


def record_references(references: dict[str, Any]) -> dict[str, Any]:
    """A record's references in the task's own row schema.

    Samples imported from lm-evaluation-harness carry ``{"target": ..., "doc": {the dataset row}}``; the
    verifiers read the row's fields (GSM8K ``answer``, HumanEval ``test``...), so the row's fields are lifted to
    the top level (fields already at the top level win). Samples imported from lighteval carry the ``Doc``'s gold
    data instead (see :func:`lighteval_references`). Other references are returned as they are.
    """
    doc = references.get("doc")
    if isinstance(doc, dict):
        return {**doc, **{key: value for key, value in references.items() if key != "doc"}}
    if "golds" in references or "gold" in references or "gold_index" in references:
        return lighteval_references(references)
    return dict(references)


def lighteval_gold(references: dict[str, Any]) -> str | None:
    """The gold text of lighteval references: ``golds[0]`` (``choices[gold_index]``, as the importer stores it),
    else ``choices[gold_index]``, else the older layout's ``gold`` (a list or a string); None when there is none.

    lighteval's generative tasks keep one gold continuation, often with a leading space (GSM8K:
    ``choices=[f" {answer}"]``, MATH: ``[f" {solution}"]``); it is returned stripped.
    """
    golds = references.get("golds")
    if not isinstance(golds, list) or not golds:
        choices, index = references.get("choices"), references.get("gold_index")
        first = index[0] if isinstance(index, list) and index else index
        if isinstance(choices, list) and isinstance(first, int) and 0 <= first < len(choices):
            golds = [choices[first]]
        else:
            gold = references.get("gold")
            golds = gold if isinstance(gold, list) else [gold]
    gold = golds[0] if golds else None
    return gold.strip() if isinstance(gold, str) and gold.strip() else None


def lighteval_references(references: dict[str, Any]) -> dict[str, Any]:
    """lighteval references (``query``, ``choices``, ``gold_index``, ``golds``, ``specific``) in the row schema
    the verifiers read; fields already there win.

    * the gold text (:func:`lighteval_gold`) becomes ``solution`` when it holds a ``\\boxed{}`` answer (MATH logs
      the whole solution), else ``answer`` (GSM8K's ``... #### 72``, AIME's bare number);
    * ``specific`` (``specifics`` in older logs) is lifted, IFEval's ``instructions_id_list`` also as
      ``instruction_id_list`` (the dataset's name), and ``query`` as ``prompt`` when absent.
    """
    out = dict(references)
    specific = references.get("specific") or references.get("specifics")
    if isinstance(specific, dict):
        for key, value in specific.items():
            out.setdefault(key, value)
        if "instructions_id_list" in specific:
            out.setdefault("instruction_id_list", specific["instructions_id_list"])
    gold = lighteval_gold(references)
    if gold is not None:
        out.setdefault("solution" if "\\boxed" in gold else "answer", gold)
    if isinstance(references.get("query"), str):
        out.setdefault("prompt", references["query"])
    return out


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


def prompt_form(record: SampleRecord) -> str | None:
    """How ``record``'s prompt was rendered, from its recorded sampling: ``"completion"`` (no chat template: a
    base model continues the prompt), ``"chat"`` (a chat template), or None when the record does not say
    (imported samples without divtrace's ``sampling``)."""
    uses_template = (record.sampling or {}).get("chat_template")
    if isinstance(uses_template, bool):
        return "chat" if uses_template else "completion"
    return None


def _with_prompt_form(reference: dict[str, Any], record: SampleRecord) -> dict[str, Any]:
    form = prompt_form(record)
    return reference if form is None else {**reference, PROMPT_FORM_KEY: form}


def _verify_in_chunks(
    task: Task, outputs: list[str], references: list[dict[str, Any]], progress: ProgressSink | None
) -> list[Verdict]:
    verifier = create_verifier(task.verifier or "")
    verdicts: list[Verdict] = []
    emit(progress, 0, len(outputs), SAMPLES)
    for start in range(0, len(outputs), VERIFY_BATCH):
        stop = start + VERIFY_BATCH
        verdicts.extend(verifier.verify_batch(outputs[start:stop], references[start:stop]))
        emit(progress, len(verdicts), len(outputs), SAMPLES)
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
    n = np.array([len(v) for v in per_prompt])
    c = np.array([sum(x.correct for x in v) for v in per_prompt])
    for level in cell_k_levels(n):
        row[f"pass@{level}"] = mean_pass_at_k(n, c, level)[0]
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
