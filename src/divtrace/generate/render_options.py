"""How task prompts become model inputs: the render options of a generation (re-exported by the runner)."""

from __future__ import annotations

from dataclasses import dataclass

from divtrace.generate.stops import StopPolicy
from divtrace.generate.thinking import ThinkingMode


@dataclass(frozen=True)
class RenderOptions:
    """How task prompts become model inputs, and whether the task's stop sequences apply to them.

    ``stops`` is the stop policy (:class:`~divtrace.generate.stops.StopPolicy`): by default a task's stops apply
    to completion prompts only, not to prompts rendered with a chat template.
    """

    system_prompt: str | None = None
    chat_template: bool | None = None
    thinking: ThinkingMode = ThinkingMode.native
    stops: StopPolicy = StopPolicy.auto
