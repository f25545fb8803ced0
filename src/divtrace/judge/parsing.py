"""The study's rules for reading a judge's answer (reference code ``scripts/compute_*_quality.py``).

Each parser returns None for an answer it cannot read; it never raises, whatever the text (an unparseable answer is
kept and counted, see :mod:`divtrace.judge.aggregate`). Hand-written: these are the study's own rules, which no
library implements. Where the study's code would have crashed on an answer (a rank that is not a number), the
answer is unparseable here.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Literal

PairVerdict = Literal["win", "loss", "tie"]

#: Arena-Hard's five verdict labels and their value for assistant A.
ARENA_SCORES: dict[str, float] = {"A>>B": 1.0, "A>B": 0.75, "A=B": 0.5, "B>A": 0.25, "B>>A": 0.0}
ARENA_VERDICT = re.compile(r"\[\[(A>>B|A>B|A=B|B>A|B>>A)\]\]")
#: A list literal anywhere in the text (Kirk et al.'s ranking, after a preamble).
_LIST = re.compile(r"\[.*\]", flags=re.DOTALL)
#: One ``'model': 'x' ... 'rank': n`` pair (the study's last resort for a ranking that is not a literal).
_MODEL_RANK = re.compile(r"['\"]model['\"]\s*:\s*['\"](\w+)['\"].*?['\"]rank['\"]\s*:\s*(\d+)", flags=re.DOTALL)
#: A flat JSON object holding ``"score"`` (WB-Score's answer format).
_SCORE_OBJECT = re.compile(r'\{[^{}]*"score"[^{}]*\}', flags=re.DOTALL)
_SCORE_FIELD = re.compile(r'"score"\s*:\s*"?(\d+)"?')
_SCORE_WORD = re.compile(r"[Ss]core\s*[:=]\s*(\d+)")


def _literal(text: str) -> Any:
    """``ast.literal_eval(text)``, or None when it is not a Python literal (or too deep or large to evaluate)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def parse_kirk_ranking(text: str) -> PairVerdict | None:
    """Kirk et al.'s ranking answer as ``model_1``'s verdict: ``win`` (rank 1 < rank 2), ``loss`` or ``tie``.

    The study's rules, in order: the whole (stripped) answer as a Python literal; else the first ``[`` to the last
    ``]`` as one; else every ``'model': 'NAME' ... 'rank': N`` pair found (a later pair for the same model wins).
    The result must be a list of ``{'model', 'rank'}`` entries naming ``model_1`` and ``model_2``; anything else
    (no list, a model missing, a rank that is not an integer) is None.
    """
    stripped = text.strip()
    parsed = _literal(stripped)
    if parsed is None:
        match = _LIST.search(stripped)
        parsed = _literal(match.group(0)) if match else None
    if parsed is None:
        ranks = {m.group(1): int(m.group(2)) for m in _MODEL_RANK.finditer(stripped)}
        parsed = [{"model": model, "rank": rank} for model, rank in ranks.items()] or None
    if not parsed or not isinstance(parsed, list):
        return None
    rank_of: dict[str, int] = {}
    for entry in parsed:
        if isinstance(entry, dict) and "model" in entry and "rank" in entry:
            try:
                rank_of[str(entry["model"])] = int(entry["rank"])
            except (TypeError, ValueError, OverflowError):
                return None
    first, second = rank_of.get("model_1"), rank_of.get("model_2")
    if first is None or second is None:
        return None
    if first < second:
        return "win"
    if first > second:
        return "loss"
    return "tie"


def parse_arena_verdict(text: str) -> str | None:
    """The first Arena-Hard verdict label in the answer (``A>>B``, ``A>B``, ``A=B``, ``B>A`` or ``B>>A``, written
    ``[[...]]``), as the study reads it, or None."""
    match = ARENA_VERDICT.search(text)
    return match.group(1) if match else None


def _in_range(value: str) -> int | None:
    """``value`` as an integer score when it is one of 1..10, else None."""
    try:
        score = int(value.strip().strip('"'))
    except ValueError:
        return None
    return score if 1 <= score <= 10 else None


def parse_wb_score(text: str) -> int | None:
    """WB-Score's 1-10 rating, as the study reads it: the last flat JSON object holding ``"score"`` whose score is
    an integer in 1..10 (``"7"`` or ``7``); else the first ``"score": N`` when N is in 1..10; else the first
    ``Score: N`` / ``score=N`` when N is in 1..10; else None."""
    if not text or not text.strip():
        return None
    for candidate in reversed(_SCORE_OBJECT.findall(text)):
        try:
            value = json.loads(candidate).get("score")
        except (json.JSONDecodeError, AttributeError):
            continue
        if value is not None:
            score = _in_range(str(value))
            if score is not None:
                return score
    for pattern in (_SCORE_FIELD, _SCORE_WORD):
        match = pattern.search(text)
        score = _in_range(match.group(1)) if match else None
        if score is not None:
            return score
    return None
