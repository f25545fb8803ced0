"""Reading the JSON Lines files of the judge package (the judgment cache, OpenAI Batch API files), naming the file
and the line of whatever cannot be read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from divtrace.errors import DivtraceError


class JudgeFileError(DivtraceError):
    """A line of a judge file (the judgment cache, a Batch API file) cannot be read.

    Attributes:
        path: the file.
        line: the 1-based line number, or None when the file as a whole is bad.
        reason: what is wrong, in words.
    """

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class JsonLines:
    """The JSON objects of a file, by line, and where a cut last line started.

    Attributes:
        rows: ``(line number, object)`` of every complete line holding a JSON object (blank lines skipped).
        cut_at: the byte offset of a last line that has no newline and is not a JSON object (a write killed half
            way), else None.
    """

    rows: list[tuple[int, dict[str, Any]]]
    cut_at: int | None = None


def json_line(row: Mapping[str, Any]) -> bytes:
    """``row`` as one UTF-8 JSON line, newline included (non-ASCII text kept as it is)."""
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")


def read_json_lines(path: Path, allow_cut_last_line: bool = False) -> JsonLines:
    """Every line of ``path`` as a JSON object.

    A line that is not a JSON object raises JudgeFileError naming ``path`` and the line, except, with
    ``allow_cut_last_line``, a last line without its newline (what a writer killed mid-line leaves): that one is
    left out and :attr:`JsonLines.cut_at` says where it starts.
    """
    data = path.read_bytes()
    rows: list[tuple[int, dict[str, Any]]] = []
    offset = 0
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        start, offset = offset, offset + len(raw)
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            if allow_cut_last_line and offset == len(data) and not raw.endswith(b"\n"):
                return JsonLines(rows, cut_at=start)
            raise JudgeFileError(path, number, f"not JSON ({err})") from err
        if not isinstance(value, dict):
            raise JudgeFileError(path, number, f"a JSON {type(value).__name__}, not an object")
        rows.append((number, value))
    return JsonLines(rows)
