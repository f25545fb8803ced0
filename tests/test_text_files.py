"""Why bytes are not UTF-8 text, with the byte offset and line (``text_files``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from divtrace.errors import DivtraceError
from divtrace.text_files import not_text, read_utf8


def test_not_text_names_the_first_bad_byte_and_its_line() -> None:
    assert not_text("naïve\ncafé\n".encode()) is None
    latin1 = not_text("naïve\ncafé\n".encode("latin-1"))
    assert latin1 is not None and (latin1.offset, latin1.line) == (2, 1)
    assert latin1.reason.startswith("not UTF-8 text (byte 0xef at byte offset 2)")
    later = not_text(b"ok\nok\n\xff", start=100)
    assert later is not None and (later.offset, later.line) == (106, 3)
    binary = not_text(b"\x7fELF\x02\x01\x01\x00\xff")  # a NUL is binary, whatever comes first
    assert binary is not None and binary.offset == 7 and binary.reason.startswith("binary data, not text")
    cut = "é".encode()[:1]  # a character cut off at the end of a prefix of the file
    assert not_text(b"ab" + cut, final=False) is None and not_text(b"ab" + cut) is not None


def test_read_utf8_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes("a: 1\nb: café\n".encode("latin-1"))
    with pytest.raises(DivtraceError) as caught:
        read_utf8(path)
    assert str(caught.value) == f"{path}, line 2: not UTF-8 text (byte 0xe9 at byte offset 11): save the file as UTF-8"
    path.write_bytes("\ufeffa: é\n".encode())
    assert read_utf8(path) == "\ufeffa: é\n"
