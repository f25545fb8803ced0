"""Gzip-compressed sample files, read transparently: a file is gzip by its content (the magic bytes ``1f 8b``),
whatever its name, and ``x.jsonl.gz`` is named as ``x.jsonl`` would be."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

#: The first two bytes of every gzip member (RFC 1952).
GZIP_MAGIC = b"\x1f\x8b"
GZIP_SUFFIX = ".gz"
#: What reading a damaged gzip file raises (a bad header, a truncated stream, corrupt deflate data).
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


def is_gzip(path: str | Path) -> bool:
    """Whether the file at ``path`` starts with the gzip magic bytes (False when it cannot be read)."""
    try:
        with Path(path).open("rb") as handle:
            return handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    except OSError:
        return False


def open_bytes(path: str | Path) -> io.BufferedIOBase:
    """The content of the file at ``path`` as a binary stream, decompressed when the file is gzip.

    Raises OSError when the file cannot be opened; reading a damaged gzip file raises one of :data:`GZIP_ERRORS`.
    """
    if is_gzip(path):
        return gzip.open(path, "rb")
    return Path(path).open("rb")


def read_head(path: str | Path, size: int) -> bytes:
    """The first ``size`` bytes of the file's content (decompressed when it is gzip); as much as can be read of a
    damaged gzip file.

    Raises OSError when the file cannot be opened.
    """
    with open_bytes(path) as handle:
        try:
            return handle.read(size)
        except GZIP_ERRORS:
            return b""


def uncompressed_name(name: str) -> str:
    """``name`` without its ``.gz`` suffix (any case): the name its content would have (``x.jsonl.gz`` ->
    ``x.jsonl``); other names as they are."""
    return name[: -len(GZIP_SUFFIX)] if name.lower().endswith(GZIP_SUFFIX) else name
