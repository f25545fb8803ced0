"""The Generator protocol every backend implements, and the request/completion records it exchanges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from divtrace.generate.params import SamplingParams
from divtrace.progress import ProgressSink


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to sample: its id, the exact text fed to the model, and one seed per sample.

    Attributes:
        prompt_id: the prompt's id in its task.
        prompt: the task prompt before rendering (what the record stores as ``prompt``).
        rendered: the exact model input (chat template, system prompt and thinking pre-fill applied).
        messages: the chat messages, for backends that render on the server (OpenAI chat endpoint); else None.
        seeds: one seed per requested sample, in sample-index order (``len(seeds)`` samples are wanted).
    """

    prompt_id: str
    prompt: str
    rendered: str
    seeds: tuple[int, ...]
    messages: tuple[dict[str, str], ...] | None = None


@dataclass(frozen=True)
class Completion:
    """One sample: the raw text (stop string removed), why it ended, its length in tokens, and its seed.

    ``finish_reason`` is ``stop`` (end of sequence or a stop string) or ``length`` (``max_new_tokens`` reached).
    ``output_tokens`` is None when the backend cannot count them.
    """

    text: str
    finish_reason: str
    output_tokens: int | None
    seed: int


@runtime_checkable
class Generator(Protocol):
    """A loaded model that draws samples.

    Contract:
    - ``model_ref()`` identifies the exact weights (id, revision or file hash); it is part of every sample's key.
    - ``check(params)`` returns the *effective* sampling parameters the backend will use for ``params`` (exactly
      what is recorded on each sample) or raises :class:`UnsupportedSamplingError` when it would change one.
    - ``render(prompt, system_prompt, chat_template, thinking)`` gives the exact text the model sees.
    - ``generate(requests, params, progress)`` returns, for each request, one :class:`Completion` per seed, in
      order; the sample drawn for a seed does not depend on the other requests in the call. ``progress``, when
      given, gets :class:`~divtrace.progress.ProgressEvent` values counting tokens of the call's budget
      (:data:`~divtrace.progress.TOKENS`: ``done`` of ``params.max_new_tokens`` per seed) as the backend can tell
      them (per decoding step, request or sample), ending at the total; stage and unit left empty.
    """

    backend: str

    def model_ref(self) -> dict[str, Any]: ...

    def check(self, params: SamplingParams) -> dict[str, Any]: ...

    def render(
        self, prompt: str, *, system_prompt: str | None, chat_template: bool | None, thinking: Any
    ) -> tuple[str, tuple[dict[str, str], ...] | None]: ...

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        progress: ProgressSink | None = None,
    ) -> list[list[Completion]]: ...

    def close(self) -> None: ...
