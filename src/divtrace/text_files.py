"""Text a user gives divtrace (study and task files, sample files) must be UTF-8: why some bytes are not, in words,
with the byte offset, so that the error names the place (and never ends in a ``UnicodeDecodeError`` traceback)."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

from divtrace.errors import DivtraceError


@dataclass(frozen=True)
class NotText:
    """Where and why bytes are not UTF-8 text.

    Attributes:
        offset: 0-based byte offset of the first offending byte, in the file.
        line: 1-based line of that byte within the bytes examined (the file's line when they start the file).
        reason: what is wrong, in words, naming the byte offset.
    """

    offset: int
    line: int
    reason: str


def not_text(data: bytes, start: int = 0, *, final: bool = True, of: str = "") -> NotText | None:
    """Why ``data`` (a file's bytes from byte offset ``start`` on) is not UTF-8 text; None when it is.

    Contract: a NUL byte means binary data (or UTF-16 text), reported at the first NUL whatever comes before it;
    otherwise the first byte that does not decode as UTF-8 is reported with its value. ``final`` False accepts a
    character cut off at the end of ``data`` (a prefix of a longer file). ``of`` follows the offset in the reason
    (`` of the decompressed data``).
    """
    nul = data.find(b"\x00")
    if nul >= 0:
        return NotText(
            start + nul,
            data.count(b"\n", 0, nul) + 1,
            f"binary data, not text (a NUL byte at byte offset {start + nul}{of}): give the text file, or save UTF-16 "
            "text as UTF-8",
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError as error:
        offset = start + error.start
        return NotText(
            offset,
            data.count(b"\n", 0, error.start) + 1,
            f"not UTF-8 text (byte 0x{data[error.start]:02x} at byte offset {offset}{of}): save the file as UTF-8",
        )
    return None


def read_utf8(path: Path) -> str:
    """The text of the file ``path``, decoded as UTF-8 (a leading byte-order mark kept: the YAML reader skips it,
    and character positions stay those of the file).

    Raises:
        DivtraceError: one line, ``"<path>, line N: <reason>"``, when the file is not UTF-8 text (see
            :func:`not_text`).
        OSError: the file cannot be read (FileNotFoundError included).
    """
    data = path.read_bytes()
    problem = not_text(data)
    if problem is not None:
        raise DivtraceError(f"{path}, line {problem.line}: {problem.reason}")
    return data.decode("utf-8")
