"""A generation job: the prompts of one (checkpoint, task), how to sample and render them, and where its shards go.

The one value that travels through :func:`~divtrace.generate.runner.generate_samples`,
:func:`~divtrace.generate.runner.plan_shards`, :func:`~divtrace.generate.resume.generation_status` and the run
executors, so the shard chunking (consecutive chunks of ``shard_size`` prompts) is computed in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from divtrace.generate.params import SamplingParams
from divtrace.generate.prompts import PromptItem
from divtrace.generate.render_options import RenderOptions
from divtrace.runs.layout import shard_path


def shard_starts(prompts: int, shard_size: int) -> range:
    """The first prompt index of each shard of ``prompts`` prompts: consecutive chunks of ``shard_size`` (the one
    chunking rule; ``len()`` of it is the shard count)."""
    return range(0, prompts, shard_size)


@dataclass(frozen=True)
class GenerationJob:
    """Draw ``params.k`` samples for every prompt of ``prompts`` as (``checkpoint``, ``task``), rendered with
    ``render``, stored under ``out_dir`` in shards of ``shard_size`` consecutive prompts.

    ``params.stop`` are the task's stop sequences (the stop policy in ``render`` decides which apply).
    ``model_of`` is the checkpoint whose model draws the samples when ``checkpoint`` is a sweep condition of it
    (None: ``checkpoint``'s own). Raises ValueError when ``shard_size`` is below 1.
    """

    prompts: tuple[PromptItem, ...]
    params: SamplingParams
    out_dir: Path
    checkpoint: str
    task: str
    render: RenderOptions = field(default_factory=RenderOptions)
    shard_size: int = 8
    model_of: str | None = None

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "out_dir", Path(self.out_dir))

    @classmethod
    def of(
        cls,
        prompts: Sequence[PromptItem],
        params: SamplingParams,
        out_dir: str | Path,
        checkpoint: str,
        task: str,
        render: RenderOptions | None = None,
        shard_size: int = 8,
    ) -> GenerationJob:
        """A job from any sequence of prompts and path (``render`` None: the default :class:`RenderOptions`)."""
        return cls(tuple(prompts), params, Path(out_dir), checkpoint, task, render or RenderOptions(), shard_size)

    @property
    def model_name(self) -> str:
        """The checkpoint whose model draws this job's samples."""
        return self.model_of or self.checkpoint

    @property
    def samples(self) -> int:
        """Samples the job draws in all."""
        return len(self.prompts) * self.params.k

    def shard_ranges(self) -> list[range]:
        """The prompt indices of each shard, in shard order (the only place the chunking is decided)."""
        return [range(start, min(start + self.shard_size, len(self.prompts))) for start in self._starts()]

    def shard_prompts(self, index: int) -> tuple[PromptItem, ...]:
        """The prompts of shard ``index``."""
        span = self.shard_ranges()[index]
        return self.prompts[span.start : span.stop]

    def shard_path(self, index: int) -> Path:
        """The file of shard ``index``."""
        return shard_path(self.out_dir, self.checkpoint, self.task, index)

    def _starts(self) -> range:
        return shard_starts(len(self.prompts), self.shard_size)
