"""The study's rules for reading judge answers, on recorded answers (well-formed and malformed ones)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from divtrace.judge.parsing import parse_arena_verdict, parse_kirk_ranking, parse_wb_score

RECORDED = Path(__file__).parent.parent / "fixtures" / "judge" / "recorded_responses.jsonl"
PARSERS = {"kirk_summary": parse_kirk_ranking, "arena_hard_creative": parse_arena_verdict, "wb_score": parse_wb_score}


def recorded() -> list[dict[str, Any]]:
    return [json.loads(line) for line in RECORDED.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("answer", recorded(), ids=lambda a: f"{a['protocol']}: {a['note']}")
def test_recorded_answers_read_as_the_study_reads_them(answer: dict[str, Any]) -> None:
    assert PARSERS[answer["protocol"]](answer["text"]) == answer["verdict"]


def test_every_protocol_has_unparseable_recorded_answers() -> None:
    answers = recorded()
    for protocol in PARSERS:
        verdicts = [a["verdict"] for a in answers if a["protocol"] == protocol]
        assert None in verdicts and any(v is not None for v in verdicts)


@pytest.mark.parametrize(
    "text",
    ["[" * 5000 + "]" * 5000, "[{'model': 'model_1', 'rank': 10**10000}]", "\x00\xff[[", "{" * 3000, "[]", "None"],
)
def test_hostile_answers_never_raise(text: str) -> None:
    assert parse_kirk_ranking(text) is None
    assert parse_arena_verdict(text) is None
    assert parse_wb_score(text) is None
