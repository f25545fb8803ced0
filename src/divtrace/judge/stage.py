"""The judge stage: the quality of each judged (checkpoint, task) of a run, by an LLM judge.

A unit is one (checkpoint, task) of a task with a protocol (``study.judge.protocols``; by default the study's:
TL;DR, CNN/DailyMail, XSum, WritingPrompts, WildBench), but not the baseline of a pairwise-against-baseline protocol
(it is not judged against itself). Its output is ``judgments/CKPT/TASK.parquet`` (the judgments table of
:mod:`divtrace.judge.aggregate`); its key hashes its sample files (and its baseline's), the protocol, the template's
digest, the judge model and settings, which outputs are judged and the baseline. The endpoint is not part of it: the
same judge behind another URL gives the same judgments.

Every answer is also kept in ``judgments/cache.jsonl`` as it arrives (:mod:`divtrace.judge.cache`), under a key of
everything that shaped it, so an interrupted unit resumes without asking again what was answered, and a unit redone
(new samples in another cell, a deleted table) sends only what is new. That is why the stage is not distributed:
its items run in the driver's process (on Ray too), which owns the run directory; the work is the server's anyway.
Before any work, :meth:`JudgeStage.check_ready` asks the endpoint whether it can be reached with the key, when a unit
is pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from divtrace.fingerprint import files_fingerprint
from divtrace.io_atomic import write_table_atomic
from divtrace.judge.aggregate import SKIPPED
from divtrace.judge.cache import JudgmentCache, resolve
from divtrace.judge.client import JudgeClient, JudgeEndpoint
from divtrace.judge.pipeline import JudgeConfig, judgments_table, plan_requests
from divtrace.judge.protocols import get_protocol
from divtrace.progress import ProgressSink
from divtrace.runs.layout import RunLayout
from divtrace.runs.markers import marker_for
from divtrace.runs.outputs import unit_state
from divtrace.runs.stage import Stage, Unit, WorkItem
from divtrace.samples.schema import SampleRecord

#: Bumped when the same samples and answers give other judgment tables.
JUDGE_VERSION = 1


@dataclass(frozen=True)
class JudgeWorkItem:
    """The stored samples of one (checkpoint, task) and, for a protocol against a baseline, the baseline's."""

    checkpoint: str
    task: str
    records: list[SampleRecord]
    baseline: str = ""
    baseline_records: list[SampleRecord] | None = None


@dataclass(frozen=True)
class JudgeStage(Stage[JudgeWorkItem, pd.DataFrame]):
    """Judgments of ``checkpoints`` on the tasks of ``config.protocols`` that the run has (``tasks``), asked of
    ``endpoint`` (see the module documentation)."""

    name: ClassVar[str] = "judge"
    version: ClassVar[int] = JUDGE_VERSION
    item_name: ClassVar[str] = "unit"
    distributed: ClassVar[bool] = False

    checkpoints: tuple[str, ...]
    tasks: tuple[str, ...]
    config: JudgeConfig
    endpoint: JudgeEndpoint
    #: The answers kept so far (``RUN/judgments/cache.jsonl``: :meth:`RunLayout.judge_cache_file`).
    cache_file: str

    def judged_tasks(self) -> list[str]:
        """The run's tasks that have a protocol, in run order."""
        return [task for task in self.tasks if task in self.config.protocols]

    def baseline(self, checkpoint: str, task: str) -> str:
        """The checkpoint ``checkpoint`` is compared with on ``task`` (``""`` when its protocol has none)."""
        if not get_protocol(self.config.protocols[task]).needs_baseline:
            return ""
        return self.config.baseline_for(checkpoint) or ""

    def units(self, layout: RunLayout) -> list[Unit]:
        """Every judged (checkpoint, task) but a baseline's own, keyed as the module documentation says."""
        units = []
        for checkpoint in self.checkpoints:
            for task in self.judged_tasks():
                baseline = self.baseline(checkpoint, task)
                if baseline == checkpoint:
                    continue
                protocol = get_protocol(self.config.protocols[task])
                settings = protocol.settings(self.config.judge_model)
                files = layout.sample_files(checkpoint, task)
                key = self.key(
                    {
                        "inputs": files_fingerprint(files),
                        "baseline": baseline,
                        "baseline_inputs": files_fingerprint(layout.sample_files(baseline, task)) if baseline else "",
                        "protocol": protocol.name,
                        "template": protocol.template.digest,
                        "judge": {"model": settings.model, "temperature": settings.temperature},
                        "max_tokens": settings.max_tokens,
                        "outputs": self.config.outputs,
                    }
                )
                output = layout.judgments_file(checkpoint, task)
                units.append(Unit(f"{checkpoint}/{task}", key, marker_for(output), (output,), checkpoint, task))
        return units

    def check_ready(self, layout: RunLayout) -> None:
        """Ask the endpoint whether it answers with the key (:meth:`JudgeClient.check`) when a unit is pending;
        raises :class:`~divtrace.judge.client.JudgeEndpointError` naming the endpoint and what is wrong."""
        pending = [
            unit for unit in self.units(layout) if not unit_state(layout.root, unit.marker, unit.key, unit.outputs).done
        ]
        if pending:
            JudgeClient(self.endpoint).check(self.config.judge_model)

    def items(self, layout: RunLayout, unit: Unit) -> list[WorkItem[JudgeWorkItem]]:
        """The unit's stored samples (and its baseline's), as one item; refused when they are not complete."""
        reader = f"{self.name} of {unit.name}"
        layout.check_samples(unit.checkpoint, unit.task, reader)
        records = layout.read_samples(unit.checkpoint, unit.task)
        baseline = self.baseline(unit.checkpoint, unit.task)
        baseline_records = None
        if baseline:
            layout.check_samples(baseline, unit.task, reader)
            baseline_records = layout.read_samples(baseline, unit.task)
        work = JudgeWorkItem(unit.checkpoint, unit.task, records, baseline, baseline_records)
        return [WorkItem(unit, work, size=len(records))]

    def open_worker(self, group: str, threads: int | None, progress: ProgressSink | None) -> Judging:
        """A worker holding the endpoint's client (it loads no model)."""
        return Judging(self)

    def save(self, layout: RunLayout, item: WorkItem[JudgeWorkItem], result: pd.DataFrame) -> Mapping[str, Any]:
        """Write the judgments table atomically; its marker records the calls and the unreadable answers."""
        write_table_atomic(result, layout.judgments_file(item.unit.checkpoint, item.unit.task))
        sent = result[result["order"] != SKIPPED]
        return {"judgments": len(sent), "unparseable": int(sent["value"].isna().sum())}


class Judging:
    """The judge stage's worker: the judgments of one (checkpoint, task) at a time, answers from the run's cache
    first, the rest from the endpoint (each kept in the cache as it arrives)."""

    def __init__(self, stage: JudgeStage) -> None:
        self.stage = stage
        self.client = JudgeClient(stage.endpoint)

    def compute(self, payload: JudgeWorkItem, progress: ProgressSink | None) -> pd.DataFrame:
        """The judgments table of the payload's cell (this worker runs in the driver's process: see the module
        documentation for the cache it appends to)."""
        cells = {(payload.checkpoint, payload.task): payload.records}
        if payload.baseline_records is not None:
            cells[(payload.baseline, payload.task)] = payload.baseline_records
        where = {(payload.checkpoint, payload.task): f"samples of {payload.checkpoint}/{payload.task}"}
        config = self.stage.config
        work = plan_requests(cells, config, where)
        responses = resolve(work.requests, JudgmentCache(self.stage.cache_file), self.client, progress)
        return judgments_table(work, responses)

    def close(self) -> None:
        """Nothing to release (each call's connections close with it)."""
