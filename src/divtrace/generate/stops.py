"""When a task's stop sequences apply: the stop policy.

A task's stops are written for a completion prompt (``Question: ...\\n\\nAnswer:``): they end a base model's
answer before it writes the next question. A chat-template checkpoint answers in its own format and ends with its
end-of-turn token; the same stops would cut it short (XSum's ``\\n`` ends an instruct model's answer at its first
line break, HumanEval's ``\\ndef `` a chat answer right after ````` ```python\\ndef`` `````). lighteval, the study's
harness, therefore drops every stop sequence when a chat template is applied (``use_chat_template`` branches of
its vLLM and transformers models), and so does the default policy here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence


class StopPolicy(str, enum.Enum):
    """Which prompts a task's stop sequences apply to.

    ``auto`` (the study's): completion prompts only, never a chat-template prompt. ``always``: every prompt.
    ``never``: no prompt (outputs run to the end-of-sequence token or the token cap).
    """

    auto = "auto"
    always = "always"
    never = "never"


def effective_stops(stops: Sequence[str], policy: StopPolicy, chat_template: bool) -> tuple[str, ...]:
    """The stop sequences a generation uses: ``stops`` under ``policy`` for a prompt rendered with
    (``chat_template`` True) or without a chat template."""
    if policy is StopPolicy.never or (policy is StopPolicy.auto and chat_template):
        return ()
    return tuple(stops)


def cut_at_stop(text: str, stop: Sequence[str]) -> str | None:
    """``text`` cut before the first occurrence of any stop string (the stop string is not kept), or None when
    none occurs. The one place a generated text is cut at a stop string, whichever backend drew it."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(cuts)] if cuts else None
