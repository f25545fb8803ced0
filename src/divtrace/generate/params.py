"""Sampling settings: a study's (:class:`SamplingSpec`) and what a backend is asked for one task
(:class:`SamplingParams`, made from the study's by :meth:`SamplingSpec.params`), per-sample seeds, and the error a
backend raises instead of changing a request.

The bounds of every setting are declared once, as the annotated types below, and shared by both models.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from divtrace.errors import DivtraceError

#: The study's sampling defaults (Karouzos et al. 2026): K = 16, temperature 0.6, top_p 0.95, seed 1234.
STUDY_K = 16
STUDY_TEMPERATURE = 0.6
STUDY_TOP_P = 0.95
STUDY_SEED = 1234
#: Samples per prompt a study (and ``divtrace generate -k``) needs at least: diversity needs two samples.
MIN_STUDY_K = 2

Temperature = Annotated[float, Field(gt=0.0, description="> 0: sampling, never greedy")]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]
TopK = Annotated[int, Field(ge=1, description="None: no top-k filtering")]
MinP = Annotated[
    float,
    Field(
        gt=0.0,
        le=1.0,
        description="None: off; else a token is kept when its probability is at least min_p times the top token's",
    ),
]
MaxNewTokens = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, description="base seed; each sample's seed derives from it (sample_seed)")]


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

    k: int = Field(STUDY_K, ge=1, description="samples per prompt (a backend may be asked for a single one)")
    temperature: Temperature = STUDY_TEMPERATURE
    top_p: TopP = STUDY_TOP_P
    top_k: TopK | None = None
    min_p: MinP | None = None
    max_new_tokens: MaxNewTokens = 512
    stop: tuple[str, ...] = ()
    seed: Seed = STUDY_SEED

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s for s in value):
            raise ValueError("stop strings must not be empty")
        return value

    def as_record(self) -> dict[str, Any]:
        """The parameters as stored in a record's ``sampling`` field (JSON-compatible).

        ``min_p`` is left out when it is None (off), so samples drawn before divtrace knew ``min_p`` keep their
        records and sample keys.
        """
        unset = {"k"} if self.min_p is not None else {"k", "min_p"}
        return {**self.model_dump(exclude=unset), "stop": list(self.stop), "k": self.k}


class SamplingSpec(BaseModel):
    """A study's sampling settings, shared by every checkpoint and task: :class:`SamplingParams` without a task's
    stops, with at least :data:`MIN_STUDY_K` samples per prompt and an optional token cap for every task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(STUDY_K, ge=MIN_STUDY_K)
    temperature: Temperature = STUDY_TEMPERATURE
    top_p: TopP = STUDY_TOP_P
    top_k: TopK | None = None
    min_p: MinP | None = None
    max_new_tokens: MaxNewTokens | None = Field(
        None, description="every task's cap when set (a task's own max_new_tokens in the study wins)"
    )
    seed: Seed = STUDY_SEED

    def params(
        self, *, stop: tuple[str, ...], task_max_new_tokens: int, max_new_tokens: int | None = None
    ) -> SamplingParams:
        """What a backend is asked for one task: these settings with the task's ``stop`` strings and token cap.

        The cap is ``max_new_tokens`` (the study task's own) when given, else this study's ``max_new_tokens``,
        else ``task_max_new_tokens`` (the task's default).
        """
        return SamplingParams(
            k=self.k,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            max_new_tokens=max_new_tokens or self.max_new_tokens or task_max_new_tokens,
            stop=stop,
            seed=self.seed,
        )


def sample_seed(base_seed: int, prompt_id: str, sample_index: int) -> int:
    """The seed of one sample: a 63-bit integer from BLAKE2b over (base seed, prompt id, sample index).

    A sample's seed depends on nothing else (not on batching, chunking or prompt order), so the same sample is
    drawn whichever shard or batch it lands in, and two samples never share a seed by construction of the inputs.
    """
    digest = hashlib.blake2b(f"{base_seed}\x1f{prompt_id}\x1f{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
