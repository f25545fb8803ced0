"""Tell a sample file's format from its content: divtrace JSONL/Parquet, lm-eval samples, lighteval details.

File names lie (a renamed ``samples_gsm8k_….jsonl`` is still an lm-eval log), so ``read_samples(fmt="auto")``
looks inside: the first bytes (Parquet magic ``PAR1``, a Git LFS pointer, the gzip magic: a compressed file is
looked at decompressed), the first JSON record's keys, or the Parquet schema's column names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from divtrace.errors import SampleFormatError
from divtrace.samples.compressed import is_gzip, read_head
from divtrace.samples.lighteval import NEW_LAYOUT, OLD_LAYOUT
from divtrace.text_files import NotText, not_text

#: The first line of every Git LFS pointer file (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md).
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
PARQUET_MAGIC = b"PAR1"
#: Keys of one lm-eval ``--log_samples`` line that no divtrace record has.
LMEVAL_KEYS = frozenset({"doc_id", "arguments", "resps"})
_PEEK_BYTES = 1 << 20


def lfs_pointer_error(path: str | Path) -> SampleFormatError | None:
    """A :class:`SampleFormatError` explaining that ``path`` is a Git LFS pointer, or None when it is not one.

    A pointer is the small text file git checks out when the LFS object was not downloaded: it starts with
    ``version https://git-lfs.github.com/spec/v1`` and names the object's ``oid`` and ``size``.
    """
    try:
        with Path(path).open("rb") as handle:
            head = handle.read(512)
    except OSError:
        return None
    if not head.startswith(LFS_POINTER_PREFIX):
        return None
    sizes = [line[5:].decode(errors="replace").strip() for line in head.splitlines() if line.startswith(b"size ")]
    size = sizes[0] if sizes else "?"
    return SampleFormatError(
        path,
        None,
        None,
        f"this is a Git LFS pointer, not the data (the real file has {size} bytes): run `git lfs pull` in the "
        "repository it comes from (or `git lfs pull --include <this path>`), or download the file itself, "
        "then read it again",
    )


def _first_json_object(path: Path) -> dict[str, Any] | None:
    """The first non-empty line of a text file (decompressed when gzip) parsed as JSON when it is an object; None
    otherwise."""
    head = read_head(path, _PEEK_BYTES)
    for raw in head.splitlines():
        if raw.strip():
            try:
                value = json.loads(raw)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def binary_content(path: str | Path) -> NotText | None:
    """Where and why the start of a file's content (its first MiB, decompressed when gzip) is not UTF-8 text; None
    when it is, or cannot be read."""
    try:
        head = read_head(path, _PEEK_BYTES)
    except OSError:
        return None
    of = " of the decompressed data" if is_gzip(path) else ""
    return not_text(head, final=len(head) < _PEEK_BYTES, of=of)


def _parquet_columns(path: Path) -> set[str] | None:
    try:
        return set(pq.ParquetFile(path).schema_arrow.names)
    except (OSError, pa.ArrowException):
        return None  # the Parquet reader reports the problem, naming the file


def content_kind(path: str | Path) -> tuple[str, frozenset[str]] | None:
    """``("jsonl" | "parquet", the first record's keys or the columns)`` of a file, from its content (decompressed
    when gzip: JSON Lines only); None when the content says nothing (an empty or unreadable file, text that is not
    JSON objects, a Git LFS pointer)."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            magic = handle.read(len(PARQUET_MAGIC))
        if magic == PARQUET_MAGIC:
            columns = _parquet_columns(file)
            return ("parquet", frozenset(columns or ()))
        first = _first_json_object(file)
    except OSError:
        return None
    return None if first is None else ("jsonl", frozenset(first))


def sniff_format(path: str | Path) -> str | None:
    """The format of one file from its content: ``"lm-eval"``, ``"lighteval"``, ``"jsonl"``, ``"parquet"``.

    Contract: a file starting with the Parquet magic is ``"lighteval"`` when its columns are one of lighteval's
    details layouts (``doc`` + ``model_response``, or ``predictions`` with ``full_prompt``/``example``), else
    ``"parquet"``. A text file whose first non-empty line is a JSON object with ``doc_id``, ``arguments`` and
    ``resps`` is ``"lm-eval"``; any other JSON object is ``"jsonl"``. None when the content says nothing (see
    :func:`content_kind`); a Git LFS pointer is not sniffed (see :func:`lfs_pointer_error`).
    """
    kind = content_kind(path)
    if kind is None:
        return None
    container, names = kind
    if container == "parquet":
        lighteval = names >= NEW_LAYOUT or (names >= OLD_LAYOUT and bool({"full_prompt", "example"} & names))
        return "lighteval" if lighteval else "parquet"
    return "lm-eval" if names >= LMEVAL_KEYS else "jsonl"


def has_divtrace_keys(path: str | Path) -> bool:
    """Whether the first record (or the columns) of a file has divtrace's ``prompt_id`` and ``outputs``."""
    kind = content_kind(path)
    return kind is not None and {"prompt_id", "outputs"} <= kind[1]
