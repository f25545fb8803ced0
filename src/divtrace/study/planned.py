"""The tasks of a study as a run takes them: each with its prompts loaded (:func:`plan_tasks`, for generation), or
with none (:func:`run_tasks`, for the stages after it, on samples generated or imported earlier)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from divtrace.generate.prompts import PromptItem
from divtrace.study.spec import Study, TaskSpec
from divtrace.tasks import get_task, load_prompts
from divtrace.tasks.base import DataSource, Task
from divtrace.tasks.names import resolve_task


@dataclass
class PlannedTask:
    """A task of the study with its prompts loaded."""

    spec: TaskSpec
    task: Task
    prompts: list[PromptItem]
    origin: str
    #: Why the task's samples cannot be verified (None: it can, or the task is simply not verifiable).
    not_verified: str | None = None

    @property
    def name(self) -> str:
        """The task's label in every table."""
        return self.task.name


def plan_tasks(study: Study) -> list[PlannedTask]:
    """Load every task's prompts (first N rows; the study's ``n`` overrides the task's N)."""
    planned = []
    for spec in study.tasks:
        task = get_task(spec.name)
        prompts, origin = load_prompts(task, study.data_dir, spec.n)
        planned.append(PlannedTask(spec, task, prompts, origin))
    return planned


def run_tasks(study: Study, origin: str = "imported") -> list[PlannedTask]:
    """The study's tasks for the stages after generation (verify, score, analyze, report): no prompts loaded.

    ``origin`` is what the report says about where each task's samples came from.

    Each task keeps its name (the label in the samples and every table). Its verifier comes from the task
    ``verify_as`` names, else the registered task of that name, else :func:`~divtrace.tasks.names.resolve_task`'s
    mapping (``gsm8k|0``, ``gsm8k_cot_zeroshot`` -> gsm8k). A name none of these knows becomes an unverifiable
    custom task, scored like any other, whose ``not_verified`` says why and what to do.
    """
    planned = []
    for spec in study.tasks:
        target = spec.verify_as or resolve_task(spec.name).task
        reason = None
        if target is not None:
            found = get_task(target)
            task = found if found.name == spec.name else replace(found, name=spec.name)
        else:
            reason = resolve_task(spec.name).reason
            task = Task(
                name=spec.name,
                family="custom",
                source=DataSource(),
                prompt_format=lambda row: str(row.get("prompt", "")),
                template="{prompt}",
                default_n=0,
                description="imported samples of a task divtrace does not know (not verifiable)",
            )
        planned.append(PlannedTask(spec, task, [], origin, not_verified=reason))
    return planned
