"""The sample record: one (checkpoint, task, prompt) with its K outputs.

This is the contract between stages and with users (see docs/architecture.md, "The data contracts"). Only ``prompt_id``,
``prompt`` and ``outputs`` are required; divtrace's own generators fill in the rest.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_TASK = "default"


class SampleRecord(BaseModel):
    """K raw outputs for one prompt, plus what is needed to reproduce them.

    ``responses`` (outputs with reasoning stripped) is what every metric sees; when it is absent the raw
    ``outputs`` are scored. ``thinking_unclosed`` flags, per output, a thinking block that never closed (see
    :mod:`divtrace.samples.thinking`; None: not checked, e.g. read with stripping off). ``sampling`` holds the
    *effective* sampling parameters; ``model_ref`` identifies the exact weights. Unknown fields are kept
    (``extra="allow"``) so that a round trip loses nothing.
    """

    model_config = ConfigDict(extra="allow", frozen=False)

    prompt_id: str
    prompt: str
    outputs: list[str]
    checkpoint: str | None = None
    task: str | None = None
    sample_seeds: list[int] | None = None
    finish_reasons: list[str | None] | None = None
    output_tokens: list[int] | None = None
    reasoning: list[str | None] | None = None
    responses: list[str] | None = None
    thinking_unclosed: list[bool] | None = None
    sampling: dict[str, Any] | None = None
    model_ref: dict[str, Any] | None = None
    references: dict[str, Any] | None = Field(default=None, description="task-specific gold data, if any")

    def scored_texts(self) -> list[str]:
        """The texts metrics are computed on: ``responses`` when present, else ``outputs``."""
        return self.responses if self.responses is not None else self.outputs
