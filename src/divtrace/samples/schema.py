"""The sample record: one (checkpoint, task, prompt) with its K outputs.

This is the contract between stages and with users (see docs/architecture.md, "The data contracts"). Only ``prompt_id``,
``prompt`` and ``outputs`` are required; divtrace's own generators fill in the rest.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

DEFAULT_TASK = "default"
#: Fields that are stored only when a record has them (set, even to None): divtrace's generation sets them, other
#: sources usually do not, and files and content keys of records without them stay as they were before they were
#: declared.
STORED_WHEN_SET = ("rendered_prompt", "sample_keys")


class SampleRecord(BaseModel):
    """K raw outputs for one prompt, plus what is needed to reproduce them.

    ``responses`` (outputs with reasoning stripped) is what every metric sees; when it is absent the raw
    ``outputs`` are scored. ``thinking_unclosed`` flags, per output, a thinking block that never closed (see
    :mod:`divtrace.samples.thinking`; None: not checked, e.g. read with stripping off). ``sampling`` holds the
    *effective* sampling parameters; ``model_ref`` identifies the exact weights. ``rendered_prompt`` is the exact
    model input and ``sample_keys`` the cache key of each sample (:func:`divtrace.generate.store.sample_key`);
    both are written only when set (:data:`STORED_WHEN_SET`), and Parquet stores them as JSON text. Unknown fields
    are kept (``extra="allow"``) so that a round trip loses nothing.
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
    rendered_prompt: str | None = None
    sample_keys: list[str] | None = None

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Every field, except those of :data:`STORED_WHEN_SET` that this record was not given."""
        data: dict[str, Any] = handler(self)
        for name in STORED_WHEN_SET:
            if name not in self.model_fields_set:
                data.pop(name, None)
        return data

    def scored_texts(self) -> list[str]:
        """The texts metrics are computed on: ``responses`` when present, else ``outputs``."""
        return self.responses if self.responses is not None else self.outputs
