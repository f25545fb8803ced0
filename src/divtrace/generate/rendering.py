"""Prompt rendering: chat template on or off, optional system prompt, thinking pre-fill."""

from __future__ import annotations

from typing import Any

from divtrace.errors import DivtraceError
from divtrace.generate.thinking import ThinkingMode, apply_thinking

#: A rendered prompt: the text the model is fed, and the chat messages when a chat template applies.
RenderedInput = tuple[str, tuple[dict[str, str], ...] | None]


def has_chat_template(tokenizer: Any) -> bool:
    """True when ``tokenizer`` carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def chat_messages(prompt: str, system_prompt: str | None) -> tuple[dict[str, str], ...]:
    """The chat messages of a single-turn prompt: an optional system message, then the user message."""
    system = ({"role": "system", "content": system_prompt},) if system_prompt else ()
    return (*system, {"role": "user", "content": prompt})


def render_prompt(
    tokenizer: Any | None,
    prompt: str,
    *,
    system_prompt: str | None = None,
    chat_template: bool | None = None,
    thinking: ThinkingMode = ThinkingMode.native,
) -> tuple[str, bool]:
    """The exact text a model is fed for ``prompt``, and whether the chat template was used.

    ``chat_template`` None uses the template when the tokenizer has one; True demands it (error if missing);
    False feeds the prompt as plain text, after ``system_prompt`` and a blank line when one is given. The thinking
    mode is applied last (see :func:`~divtrace.generate.thinking.apply_thinking`).
    """
    use_template = has_chat_template(tokenizer) if chat_template is None else chat_template
    if use_template:
        if tokenizer is None or not has_chat_template(tokenizer):
            raise DivtraceError("chat template requested, but the model's tokenizer has none (use --no-chat-template)")
        messages = [dict(m) for m in chat_messages(prompt, system_prompt)]
        rendered = str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    else:
        rendered = f"{system_prompt}\n\n{prompt}" if system_prompt else prompt
    return apply_thinking(rendered, thinking), use_template


def render_input(
    tokenizer: Any | None,
    prompt: str,
    *,
    system_prompt: str | None,
    chat_template: bool | None,
    thinking: ThinkingMode,
) -> RenderedInput:
    """The exact model input for ``prompt`` (see :func:`render_prompt`) and the chat messages when the chat
    template was used (else None)."""
    rendered, used_template = render_prompt(
        tokenizer, prompt, system_prompt=system_prompt, chat_template=chat_template, thinking=thinking
    )
    return rendered, chat_messages(prompt, system_prompt) if used_template else None
