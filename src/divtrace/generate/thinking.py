"""Chain-of-thought control at inference and its removal before scoring.

``native``: the prompt is rendered as the chat template renders it; a thinking model thinks.
``suppressed``: an empty thinking block ``<think>\n</think>\n`` is pre-filled after the generation prompt, so the
model answers directly with the same weights (the study's chain-of-thought ablation).
"""

from __future__ import annotations

import enum

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
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


def prompt_opens_thinking(rendered_prompt: str) -> bool:
    """True when the prompt ends inside an open thinking block (the template wrote ``<think>`` for the model)."""
    last_open = rendered_prompt.rfind(THINK_OPEN)
    return last_open >= 0 and rendered_prompt.rfind(THINK_CLOSE) < last_open


def split_reasoning(output: str, opened_in_prompt: bool = False) -> tuple[str | None, str]:
    """Split one raw output into (reasoning, response); the response is what metrics see.

    - ``... </think> answer``: reasoning is the text before the last ``</think>`` (a leading ``<think>`` removed),
      the response is the text after it. This covers a lone ``</think>`` when ``<think>`` was in the prompt.
    - ``<think> ...`` never closed (the budget ran out while thinking), or no tags at all while
      ``opened_in_prompt``: everything is reasoning and the response is empty.
    - no tags and no open block in the prompt: reasoning is None and the response is the output unchanged.
    Otherwise both parts are stripped of surrounding whitespace.
    """
    close = output.rfind(THINK_CLOSE)
    if close >= 0:
        reasoning = output[:close].strip()
        if reasoning.startswith(THINK_OPEN):
            reasoning = reasoning[len(THINK_OPEN) :].strip()
        return reasoning, output[close + len(THINK_CLOSE) :].strip()
    stripped = output.strip()
    if stripped.startswith(THINK_OPEN):
        return stripped[len(THINK_OPEN) :].strip(), ""
    if opened_in_prompt:
        return stripped, ""
    return None, output
