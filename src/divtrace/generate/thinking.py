"""Chain-of-thought control at inference (its removal from outputs: :mod:`divtrace.samples.thinking`).

``native``: the prompt is rendered as the chat template renders it; a thinking model thinks.
``suppressed``: an empty thinking block ``<think>\n</think>\n`` is pre-filled after the generation prompt, so the
model answers directly with the same weights (the study's chain-of-thought ablation).
"""

from __future__ import annotations

import enum

from divtrace.samples.thinking import (
    THINK_CLOSE,
    THINK_OPEN,
    ThinkingSplit,
    prompt_opens_thinking,
    split_thinking,
)

__all__ = [
    "EMPTY_THINKING_BLOCK",
    "THINK_CLOSE",
    "THINK_OPEN",
    "ThinkingMode",
    "ThinkingSplit",
    "apply_thinking",
    "prompt_opens_thinking",
    "split_thinking",
]
#: What ``suppressed`` appends after the generation prompt.
EMPTY_THINKING_BLOCK = f"{THINK_OPEN}\n{THINK_CLOSE}\n"


class ThinkingMode(str, enum.Enum):
    """How a prompt treats chain-of-thought: left to the model, or suppressed by pre-filling an empty block."""

    native = "native"
    suppressed = "suppressed"


def apply_thinking(rendered_prompt: str, mode: ThinkingMode) -> str:
    """``rendered_prompt`` with the thinking mode applied.

    ``suppressed`` appends :data:`EMPTY_THINKING_BLOCK`, unless the template already opened a thinking block at
    the end of the prompt (then only the closing tag is added), or already closed one (nothing to add).
    """
    if mode is ThinkingMode.native:
        return rendered_prompt
    tail = rendered_prompt.rstrip()
    if tail.endswith(THINK_CLOSE):
        return rendered_prompt
    if tail.endswith(THINK_OPEN):
        return rendered_prompt.rstrip() + f"\n{THINK_CLOSE}\n"
    return rendered_prompt + EMPTY_THINKING_BLOCK
