"""JSON Lines sample files: one JSON object per line, read line by line and written atomically."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from divtrace.errors import SampleFormatError
from divtrace.io_atomic import atomic_output
from divtrace.samples.compressed import GZIP_ERRORS, is_gzip, open_bytes
from divtrace.samples.schema import SampleRecord
from divtrace.text_files import not_text

OnError = Callable[[SampleFormatError], None]
"""Called with a per-record error instead of raising it; the bad record is then skipped."""

_BOM = b"\xef\xbb\xbf"


def _lines(path: str | Path) -> Iterator[tuple[int, int, bytes]]:
    """``(line number, byte offset, bytes)`` of each line of the file's content, decompressed when it is gzip.

    Raises :class:`SampleFormatError`: the file cannot be opened (``line=None``), or its gzip data is damaged
    (naming the line it stops at).
    """
    try:
        handle = open_bytes(path)
    except OSError as exc:
        raise SampleFormatError(path, None, None, f"cannot open: {exc.strerror or exc}") from None
    number = offset = 0
    with handle:
        try:
            for data in handle:
                number += 1
                yield number, offset, data
                offset += len(data)
        except GZIP_ERRORS as exc:
            raise SampleFormatError(
                path, number + 1, None, f"damaged gzip data ({exc}): the rest is unreadable"
            ) from None


def iter_jsonl_records(path: str | Path, *, on_error: OnError | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for every non-blank line of a JSON Lines file.

    Contract:
        * Line numbers are 1-based and count every line, blank ones included; blank lines are skipped.
        * A gzip-compressed file (by its content, whatever its name) is read decompressed; damaged gzip data makes
          the rest of the file unreadable (an error naming the line, always raised).
        * A UTF-8 byte-order mark at the start of the file is ignored; ``\\r\\n`` line endings are accepted.
        * A line that is not valid JSON, or whose JSON is not an object, is a per-record error: it is passed
          to ``on_error`` and skipped when ``on_error`` is given, else raised.
        * A line that is not valid UTF-8, or holds a NUL byte (binary data), makes the rest of the file unreadable:
          a :class:`SampleFormatError` naming that line and the byte offset is always raised (the lines before it
          have already been yielded).
        * A file that cannot be opened raises :class:`SampleFormatError` with ``line=None``.
    """
    of = " of the decompressed data" if is_gzip(path) else ""
    for number, start, data in _lines(path):
        if number == 1 and data.startswith(_BOM):
            data, start = data[len(_BOM) :], start + len(_BOM)
        problem = not_text(data, start, of=of) if b"\x00" in data else None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            problem = not_text(data, start, of=of)
        if problem is not None:
            raise SampleFormatError(path, number, None, problem.reason)
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            error = SampleFormatError(path, number, None, f"malformed JSON: {exc.msg} at column {exc.colno}")
            if on_error is None:
                raise error from None
            on_error(error)
            continue
        if not isinstance(value, dict):
            error = SampleFormatError(
                path, number, None, f"expected a JSON object per line, got {type(value).__name__}"
            )
            if on_error is None:
                raise error
            on_error(error)
            continue
        yield number, value


def record_to_json_dict(record: SampleRecord) -> dict[str, Any]:
    """The JSON-compatible dict of ``record``: every declared field (nulls included) plus unknown fields."""
    return record.model_dump(mode="json")


def write_samples_jsonl(records: Iterable[SampleRecord], path: str | Path) -> None:
    """Write ``records`` to ``path`` as UTF-8 JSON Lines, one record per line, atomically.

    Contract: every field is written, nulls included, and non-ASCII text is kept as is, so that
    :func:`iter_jsonl_records` followed by validation gives back equal records. ``path`` is replaced only once
    the whole file has been written (see :func:`atomic_output`).
    """
    with atomic_output(path) as tmp, open(tmp, "x", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(record_to_json_dict(record), ensure_ascii=False))
            out.write("\n")
