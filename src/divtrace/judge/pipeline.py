"""What a judge run does, whatever calls it (``divtrace judge``, the judge stage): pick the outputs to judge from
sample records, make each protocol's requests, and turn the answers into the judgments table.

The answers come from elsewhere (:mod:`divtrace.judge.cache` and :mod:`divtrace.judge.client`, or OpenAI Batch API
results through :mod:`divtrace.judge.batch`), so this module sends nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from divtrace.errors import DivtraceError
from divtrace.judge.aggregate import judgment_rows, skipped_rows
from divtrace.judge.protocols import STUDY_PROTOCOLS, JudgedOutput, get_protocol
from divtrace.judge.requests import JudgeRequest, JudgeResponse
from divtrace.samples.schema import SampleRecord
from divtrace.samples.thinking import record_prompt_opens_thinking, split_thinking

OutputsJudged = Literal["first", "all"]
#: A (checkpoint, task) cell.
Cell = tuple[str, str]


@dataclass(frozen=True)
class JudgeConfig:
    """What to judge and with what.

    Attributes:
        judge_model: the judge model's name as the endpoint serves it (the study: ``gpt-4.1-mini``).
        protocols: the protocol of each judged task (task name -> protocol name); tasks not named are not judged.
        outputs: ``first`` (the study: each checkpoint's first output per prompt) or ``all`` (every output).
        baseline: the checkpoint a pairwise-against-baseline protocol compares with; needed only when such a
            protocol is used.
        baselines: a baseline per checkpoint, over ``baseline`` (in a study: each checkpoint's lineage base).
    """

    judge_model: str
    protocols: Mapping[str, str] = field(default_factory=lambda: dict(STUDY_PROTOCOLS))
    outputs: OutputsJudged = "first"
    baseline: str | None = None
    baselines: Mapping[str, str] = field(default_factory=dict)

    def baseline_for(self, checkpoint: str) -> str | None:
        """The checkpoint ``checkpoint`` is compared with by a protocol against a baseline: its entry in
        ``baselines``, else ``baseline`` (None when neither is set)."""
        return self.baselines.get(checkpoint) or self.baseline

    def __post_init__(self) -> None:
        for protocol in self.protocols.values():
            get_protocol(protocol)
        if self.outputs not in ("first", "all"):
            raise DivtraceError(f"outputs must be 'first' or 'all', not {self.outputs!r}")


@dataclass
class JudgeWork:
    """The requests of a judge run and the outputs it does not send (one row each for the judgments table)."""

    requests: list[JudgeRequest] = field(default_factory=list)
    skipped: list[dict[str, object]] = field(default_factory=list)


def study_protocols(tasks: Sequence[str]) -> dict[str, str]:
    """The study's protocol for each of ``tasks`` it judged (TL;DR, CNN/DailyMail, XSum, WritingPrompts,
    WildBench); other tasks are left out."""
    return {task: STUDY_PROTOCOLS[task] for task in tasks if task in STUDY_PROTOCOLS}


def judged_text(record: SampleRecord, index: int) -> str:
    """Output ``index`` of ``record`` as a judge sees it: its response (chain of thought removed; computed with the
    one rule when the record has none), surrounding whitespace stripped."""
    if record.responses is not None:
        return record.responses[index].strip()
    return split_thinking(record.outputs[index], record_prompt_opens_thinking(record)).response.strip()


def plan_requests(
    cells: Mapping[Cell, Sequence[SampleRecord]], config: JudgeConfig, where: Mapping[Cell, str] | None = None
) -> JudgeWork:
    """The judge requests for every cell of a judged task, in cell, prompt and sample order.

    ``where`` names each cell's source (a file, a run-directory unit) for errors. A protocol against a baseline
    judges every checkpoint but the baseline, each output against the baseline's output of the same prompt and
    sample index. Raises DivtraceError when such a protocol has no baseline or the baseline has no samples of the
    task, and JudgeInputError naming the record when a record lacks what its protocol needs.
    """
    work = JudgeWork()
    for (checkpoint, task), records in cells.items():
        if task not in config.protocols:
            continue
        protocol = get_protocol(config.protocols[task])
        baseline_records: dict[str, SampleRecord] = {}
        baseline = ""
        if protocol.needs_baseline:
            baseline = baseline_of(config, checkpoint, task, cells)
            if checkpoint == baseline:
                continue
            baseline_records = {record.prompt_id: record for record in cells[(baseline, task)]}
        label = (where or {}).get((checkpoint, task), f"{checkpoint}/{task}")
        for record in records:
            indices = range(len(record.outputs)) if config.outputs == "all" else range(min(1, len(record.outputs)))
            for index in indices:
                base_record = baseline_records.get(record.prompt_id)
                base_text = (
                    judged_text(base_record, index) if base_record and index < len(base_record.outputs) else None
                )
                output = JudgedOutput(
                    checkpoint, task, record.prompt_id, index, record.prompt, judged_text(record, index),
                    record.references, label, baseline, base_text,
                )  # fmt: skip
                requests = protocol.requests(output, config.judge_model)
                if requests:
                    work.requests += requests
                    continue
                work.skipped.append(
                    {
                        "checkpoint": checkpoint,
                        "task": task,
                        "prompt_id": record.prompt_id,
                        "sample_index": index,
                        "protocol": protocol.name,
                        "baseline": baseline,
                        "judge_model": config.judge_model,
                        "verdict": not_sent_reason(output, protocol.needs_baseline),
                    }
                )
    return work


def baseline_of(config: JudgeConfig, checkpoint: str, task: str, cells: Mapping[Cell, Sequence[SampleRecord]]) -> str:
    """The baseline ``checkpoint`` is compared with on ``task`` (its entry in ``config.baselines``, else
    ``config.baseline``); DivtraceError when none is set or it has no samples of ``task``."""
    protocol = config.protocols[task]
    baseline = config.baseline_for(checkpoint)
    if not baseline:
        raise DivtraceError(
            f"task {task} is judged with {protocol}, which compares each checkpoint with a baseline checkpoint: name "
            "it (--baseline CKPT; in a study, the lineage's base is the default)"
        )
    if (baseline, task) not in cells:
        have = sorted({name for name, cell_task in cells if cell_task == task})
        raise DivtraceError(
            f"task {task} is judged against baseline {baseline}, which has no samples of it "
            f"(checkpoints with samples of {task}: {', '.join(have)})"
        )
    return baseline


def not_sent_reason(output: JudgedOutput, needs_baseline: bool) -> str:
    """Why ``output`` was not sent to its judge (the study sends no empty text to a pairwise judge)."""
    if not output.text:
        return "not sent: empty output"
    if needs_baseline:
        if output.baseline_text is None:
            return f"not sent: {output.baseline} has no output {output.sample_index} for this prompt"
        return f"not sent: {output.baseline}'s output is empty"
    return "not sent: empty reference summary or source text"


def judgments_table(work: JudgeWork, responses: Mapping[str, JudgeResponse]) -> pd.DataFrame:
    """The judgments table of ``work``: a row per request, read from its answer in ``responses`` (every request
    must have one), then a row per output not sent. Raises DivtraceError when answers are missing, saying how
    many."""
    missing = [request for request in work.requests if request.key not in responses]
    if missing:
        raise DivtraceError(
            f"{len(missing)} of {len(work.requests)} judge request(s) have no answer (first: checkpoint "
            f"{missing[0].checkpoint}, task {missing[0].task}, prompt {missing[0].prompt_id}, {missing[0].order})"
        )
    judged = judgment_rows(work.requests, responses)
    if not work.skipped:
        return judged
    return pd.concat([judged, skipped_rows(work.skipped)], ignore_index=True)
