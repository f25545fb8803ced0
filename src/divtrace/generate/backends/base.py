"""What the generation backends share: the public ``render`` and ``generate`` of the
:class:`~divtrace.generate.protocol.Generator` contract, each over a hook a backend implements (``_render``,
``_draw``), and the rendering of backends that hold a local tokenizer."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from divtrace.errors import DivtraceError
from divtrace.generate.params import SamplingParams
from divtrace.generate.protocol import Completion, GenerationRequest
from divtrace.generate.rendering import RenderedInput, render_input
from divtrace.generate.thinking import ThinkingMode
from divtrace.progress import ProgressSink


class GeneratorBase(abc.ABC):
    """The contract's ``render`` and ``generate``, once; a backend implements ``_render`` and ``_draw``."""

    def render(
        self,
        prompt: str,
        *,
        system_prompt: str | None = None,
        chat_template: bool | None = None,
        thinking: ThinkingMode = ThinkingMode.native,
    ) -> RenderedInput:
        """The exact model input for ``prompt`` and, when a chat template applies, the chat messages.

        ``chat_template`` None uses the model's template when it has one, True demands it, False feeds the plain
        prompt (after ``system_prompt`` and a blank line); the thinking mode is applied last.
        """
        return self._render(prompt, system_prompt, chat_template, ThinkingMode(thinking))

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        progress: ProgressSink | None = None,
    ) -> list[list[Completion]]:
        """One :class:`Completion` per seed of each request, in order; ``progress`` gets the tokens of the call's
        budget as they are drawn (the :class:`~divtrace.generate.protocol.Generator` contract). Raises DivtraceError
        if the backend drew another number of completions than seeds."""
        results = self._draw(requests, params, progress)
        for request, completions in zip(requests, results, strict=True):
            if len(completions) != len(request.seeds):  # never reached: each backend returns one per seed
                raise DivtraceError(f"{len(completions)} completions for {len(request.seeds)} seeds")
        return results

    @abc.abstractmethod
    def _render(
        self, prompt: str, system_prompt: str | None, chat_template: bool | None, thinking: ThinkingMode
    ) -> RenderedInput:
        """This backend's rendering (see :meth:`render`)."""

    @abc.abstractmethod
    def _draw(
        self, requests: Sequence[GenerationRequest], params: SamplingParams, progress: ProgressSink | None
    ) -> list[list[Completion]]:
        """This backend's drawing (see :meth:`generate`)."""


class TokenizerRendering(GeneratorBase):
    """Base of the backends that render prompts with a local tokenizer (``self.tokenizer``)."""

    tokenizer: Any

    def _render(
        self, prompt: str, system_prompt: str | None, chat_template: bool | None, thinking: ThinkingMode
    ) -> RenderedInput:
        return render_input(
            self.tokenizer, prompt, system_prompt=system_prompt, chat_template=chat_template, thinking=thinking
        )
