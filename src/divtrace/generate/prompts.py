"""Prompt files for ``divtrace generate --prompts``: JSONL records or plain text, one prompt per line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from divtrace.errors import SampleFormatError


@dataclass(frozen=True)
class PromptItem:
    """One prompt of a task: a stable id, the task prompt (before chat rendering) and optional gold data."""

    prompt_id: str
    prompt: str
    references: dict[str, Any] | None = field(default=None, compare=False)


def read_prompts(path: str | Path) -> list[PromptItem]:
    """Read prompts from ``path``.

    - ``.jsonl``: one object per line with ``prompt`` (str) and optionally ``prompt_id`` (str or int; default
      ``p<line index>``) and ``references`` (object). Blank lines are skipped.
    - any other suffix: UTF-8 text, one prompt per non-blank line, ids ``p0, p1, ...`` by line index.

    Raises SampleFormatError naming the file, line and field for a malformed line, a missing or non-string
    prompt, a duplicate prompt id, a file that is not UTF-8, or a file without prompts.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SampleFormatError(path, None, None, "prompts file not found") from None
    except UnicodeDecodeError as err:
        raise SampleFormatError(path, None, None, f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    items: list[PromptItem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        item = _json_prompt(path, number, line) if path.suffix == ".jsonl" else PromptItem(f"p{number - 1}", line)
        if item.prompt_id in seen:
            first = seen[item.prompt_id]
            raise SampleFormatError(
                path, number, "prompt_id", f"duplicate id {item.prompt_id!r} (first on line {first})"
            )
        seen[item.prompt_id] = number
        items.append(item)
    if not items:
        raise SampleFormatError(path, None, None, "no prompts in file")
    return items


def _json_prompt(path: Path, number: int, line: str) -> PromptItem:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise SampleFormatError(path, number, None, f"not valid JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise SampleFormatError(path, number, None, "each line must be a JSON object")
    prompt = value.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise SampleFormatError(path, number, "prompt", "missing, empty or not a string")
    prompt_id = value.get("prompt_id", f"p{number - 1}")
    if isinstance(prompt_id, bool) or not isinstance(prompt_id, str | int):
        raise SampleFormatError(path, number, "prompt_id", "must be a string or an integer")
    references = value.get("references")
    if references is not None and not isinstance(references, dict):
        raise SampleFormatError(path, number, "references", "must be an object")
    return PromptItem(str(prompt_id), prompt, references)
