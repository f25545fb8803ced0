"""Sampling sweeps: a study's ``sweep:`` section and the conditions it makes.

A sweep lists values of sampling parameters (``temperature``, ``top_p``, ``min_p``); every swept checkpoint is
sampled at every combination of them (the first listed parameter varies slowest), the other settings staying the
study's. Each combination is a **condition**: the checkpoint's own weights and rendering, its own sampling, its own
samples (``samples/<condition>/<task>/``) and so its own sample keys, so adding a value to the sweep draws only that
value's samples. A condition equal to the study's setting is the checkpoint itself (nothing is drawn twice).

A condition is named ``<checkpoint>+<param>=<value>[+...]`` (``sft+temperature=1.4``; ``min_p=off`` for no min-p),
which is also its directory in a run (``+`` and ``=`` are kept by :func:`~divtrace.runs.layout.safe_name`). The
lineage tables use the study's setting only; the sweep's tables (``analysis/sweep.csv``, ``analysis/recovery.csv``)
use every condition.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from divtrace.generate.params import MinP, SamplingSpec, Temperature, TopP

#: The sampling parameters a sweep may vary, in the order their columns appear in the sweep's tables.
SWEEP_PARAMETERS = ("temperature", "top_p", "min_p")
#: How a condition's name writes a setting that is off (``min_p`` None).
OFF = "off"
#: Between a checkpoint's name and each swept setting in a condition's name.
CONDITION_SEPARATOR = "+"

#: One swept value: a number, or None (off) where the parameter can be off (``min_p``).
SweepValue = float | None


class SweepSpec(BaseModel):
    """A study's ``sweep:`` section: the values of each swept sampling parameter, and which checkpoints are swept.

    A parameter not given is not swept (it stays the study's). ``min_p`` values may be ``null`` (off).
    ``checkpoints`` None sweeps every checkpoint of the study; the base's diversity at the study's setting is what
    the recovery frontier compares with, so the base need not be swept.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: list[Temperature] | None = Field(None, min_length=1)
    top_p: list[TopP] | None = Field(None, min_length=1)
    min_p: list[Annotated[MinP | None, Field()]] | None = Field(None, min_length=1)
    checkpoints: list[str] | None = Field(None, min_length=1, description="default: every checkpoint")

    @field_validator("temperature", "top_p", "min_p")
    @classmethod
    def _no_repeats(cls, values: list[SweepValue] | None) -> list[SweepValue] | None:
        if values is not None and len(set(values)) != len(values):
            raise ValueError(f"a value is listed twice: {values}")
        return values

    def swept(self) -> dict[str, list[SweepValue]]:
        """``{parameter: values}`` of the swept parameters, in :data:`SWEEP_PARAMETERS` order."""
        return {name: list(values) for name in SWEEP_PARAMETERS if (values := getattr(self, name)) is not None}

    def settings(self) -> list[dict[str, SweepValue]]:
        """Every combination of the swept values, the first parameter varying slowest; empty when nothing is
        swept."""
        swept = self.swept()
        if not swept:
            return []
        return [dict(zip(swept, values, strict=True)) for values in itertools.product(*swept.values())]


@dataclass(frozen=True)
class SweepCondition:
    """One sampled condition: ``checkpoint``'s weights at ``setting`` (the swept parameters' values).

    ``name`` is the condition's label and run directory name (``checkpoint`` itself when ``is_study_setting``:
    the setting is the study's own sampling, so the checkpoint's samples are the condition's).
    """

    checkpoint: str
    name: str
    setting: tuple[tuple[str, SweepValue], ...]
    is_study_setting: bool

    def values(self) -> dict[str, SweepValue]:
        """``{parameter: value}`` of the swept parameters."""
        return dict(self.setting)


def format_value(value: SweepValue) -> str:
    """A swept value as a condition's name writes it: ``off`` for None, else the shortest float text (``1.4``,
    ``1.0``)."""
    return OFF if value is None else repr(float(value))


def condition_name(checkpoint: str, setting: dict[str, SweepValue]) -> str:
    """``checkpoint+param=value+...`` for ``setting`` (in its order)."""
    parts = [f"{name}={format_value(value)}" for name, value in setting.items()]
    return CONDITION_SEPARATOR.join([checkpoint, *parts])


def study_value(sampling: SamplingSpec, parameter: str) -> SweepValue:
    """The study's own value of a swept ``parameter``."""
    value: SweepValue = getattr(sampling, parameter)
    return value


def sweep_conditions(sweep: SweepSpec, sampling: SamplingSpec, checkpoints: Sequence[str]) -> list[SweepCondition]:
    """The conditions of ``sweep`` over ``checkpoints`` (the study's, in order; those the sweep names when it names
    some), each checkpoint's in the order of :meth:`SweepSpec.settings`. A setting equal to the study's in every
    swept parameter is the checkpoint itself (``is_study_setting``)."""
    chosen = [name for name in checkpoints if sweep.checkpoints is None or name in sweep.checkpoints]
    conditions = []
    for checkpoint in chosen:
        for setting in sweep.settings():
            own = all(value == study_value(sampling, name) for name, value in setting.items())
            name = checkpoint if own else condition_name(checkpoint, setting)
            conditions.append(SweepCondition(checkpoint, name, tuple(setting.items()), own))
    return conditions


def swept_sampling(sampling: SamplingSpec, condition: SweepCondition) -> SamplingSpec:
    """``sampling`` with ``condition``'s swept values (validated again, so the result is a valid study sampling)."""
    return SamplingSpec.model_validate({**sampling.model_dump(), **condition.values()})
