"""Deterministic judges for tests: answers decided by a rule on the judged texts, so every verdict is known in
advance. Each takes the chat messages of a request and returns the answer text a judge model would give."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

#: A judge: the chat messages of a request -> the answer text.
Answer = Callable[[Sequence[dict[str, str]]], str]


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def kirk_counting(word: str = "GOOD") -> Answer:
    """Kirk et al.'s ranking: the summary with more ``word`` s ranks first; equal counts tie."""

    def answer(messages: Sequence[dict[str, str]]) -> str:
        user = messages[-1]["content"]
        first = _between(user, 'Summary A:\n{"model": "model_1", "summary": """', '"""}')
        second = _between(user, 'Summary B:\n{"model": "model_2", "summary": """', '"""}')
        a, b = first.count(word), second.count(word)
        ranks = (1, 2) if a > b else (2, 1) if b > a else (1, 1)
        return f"[{{'model': 'model_1', 'rank': {ranks[0]}}}, {{'model': 'model_2', 'rank': {ranks[1]}}}]"

    return answer


def arena_keyword(word: str = "dragon") -> Answer:
    """Arena-Hard: the answer mentioning ``word`` is significantly better; both or neither: a tie."""

    def answer(messages: Sequence[dict[str, str]]) -> str:
        user = messages[-1]["content"]
        a = word in _between(user, "<|The Start of Assistant A's Answer|>", "<|The End of Assistant A's Answer|>")
        b = word in _between(user, "<|The Start of Assistant B's Answer|>", "<|The End of Assistant B's Answer|>")
        label = "A>>B" if a and not b else "B>>A" if b and not a else "A=B"
        return f"Judging by the prompt.\n\nMy final verdict is: [[{label}]]"

    return answer


def always(label: str) -> Answer:
    """Arena-Hard with a pure position bias: always ``label`` whatever the texts."""

    def answer(messages: Sequence[dict[str, str]]) -> str:
        return f"My final verdict is [[{label}]]"

    return answer


def wb_word_count() -> Answer:
    """WB-Score: the number of words of the response, capped to 1..10."""

    def answer(messages: Sequence[dict[str, str]]) -> str:
        response = _between(messages[-1]["content"], "<|begin_of_response|>\n", "\n<|end_of_response|>")
        score = max(1, min(10, len(response.split())))
        return "Analysis.\n" + json.dumps({"strengths": "s", "weaknesses": "w", "score": str(score)})

    return answer


def route(messages: Sequence[dict[str, str]]) -> str:
    """One judge for every protocol (a server fixture's default): picks the rule from the prompt's text."""
    user = messages[-1]["content"]
    if "Summary A:" in user:
        return kirk_counting()(messages)
    if "<|The Start of Assistant A's Answer|>" in user:
        return arena_keyword()(messages)
    if re.search(r"<\|begin_of_checklist\|>", user):
        return wb_word_count()(messages)
    return "I cannot judge this."
