"""Sampling parameters, per-sample seeds, and the error a backend raises instead of changing a request."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from divtrace.errors import DivtraceError

#: The study's sampling defaults (Karouzos et al. 2026): K = 16, temperature 0.6, top_p 0.95, seed 1234.
STUDY_K = 16
STUDY_TEMPERATURE = 0.6
STUDY_TOP_P = 0.95
STUDY_SEED = 1234


class UnsupportedSamplingError(DivtraceError):
    """A backend cannot honour a requested sampling parameter exactly, so it refuses to run.

    divtrace never lets a backend silently force greedy decoding, ignore ``n``, clamp a temperature, etc.: the
    numbers it stores must be those of the parameters it records.
    """


class SamplingParams(BaseModel):
    """What is asked of a backend for every prompt: K samples with these settings.

    ``top_k`` None means no top-k filtering; ``stop`` strings end a sample (the stop string is not kept).
    ``seed`` is the base seed: sample ``k`` of prompt ``p`` is drawn with :func:`sample_seed` (seed, p, k).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(STUDY_K, ge=1, description="samples per prompt")
    temperature: float = Field(STUDY_TEMPERATURE, gt=0.0, description="> 0: sampling, never greedy")
    top_p: float = Field(STUDY_TOP_P, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)
    max_new_tokens: int = Field(512, ge=1)
    stop: tuple[str, ...] = ()
    seed: int = Field(STUDY_SEED, ge=0)

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s for s in value):
            raise ValueError("stop strings must not be empty")
        return value

    def as_record(self) -> dict[str, Any]:
        """The parameters as stored in a record's ``sampling`` field (JSON-compatible)."""
        return {**self.model_dump(exclude={"k"}), "stop": list(self.stop), "k": self.k}


def sample_seed(base_seed: int, prompt_id: str, sample_index: int) -> int:
    """The seed of one sample: a 63-bit integer from BLAKE2b over (base seed, prompt id, sample index).

    A sample's seed depends on nothing else (not on batching, chunking or prompt order), so the same sample is
    drawn whichever shard or batch it lands in, and two samples never share a seed by construction of the inputs.
    """
    digest = hashlib.blake2b(f"{base_seed}\x1f{prompt_id}\x1f{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
