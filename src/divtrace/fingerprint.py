"""Content fingerprints: hex sha256 of canonical JSON or of file bytes, the keys of every on-disk cache and marker.

Every digest divtrace stores (stage markers and the outputs they record, sample keys, settings fingerprints, model
directory digests) is made here, so the serialisation and chunking are defined once. Changing any of them invalidates
what users have on disk: ``tests/test_fingerprint.py`` pins literal values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Bytes read from a file at a time while hashing it.
_BLOCK = 1 << 20


def fingerprint(value: Any, *, digits: int = 64, compact: bool = False, ensure_ascii: bool = True) -> str:
    """The first ``digits`` hex digits of the sha256 of ``value``'s canonical JSON.

    Canonical: ``json.dumps`` with sorted keys, non-JSON values by ``str``; ``compact`` drops the spaces after
    ``,`` and ``:``; ``ensure_ascii=False`` keeps non-ASCII characters as UTF-8 instead of ``\\u`` escapes. The
    three variants exist because stored keys were made with each of them (markers: the default; settings:
    ``compact``, 16 digits; sample keys: ``ensure_ascii=False``).
    """
    separators = (",", ":") if compact else None
    blob = json.dumps(value, sort_keys=True, default=str, separators=separators, ensure_ascii=ensure_ascii)
    return hashlib.sha256(blob.encode()).hexdigest()[:digits]


def update_with_file(digest: Any, path: Path) -> None:
    """Feed the bytes of the file at ``path`` into the hashlib object ``digest``, 1 MiB at a time."""
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)


def file_digest(path: Path) -> str:
    """Hex sha256 of the bytes of the file at ``path`` (what a marker records of each output, see
    :mod:`divtrace.runs.outputs`)."""
    digest = hashlib.sha256()
    update_with_file(digest, path)
    return digest.hexdigest()


def files_fingerprint(paths: Iterable[Path]) -> str:
    """Hex sha256 over the names and bytes of ``paths`` (in the order given): per file, its name, a NUL, its bytes."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        update_with_file(digest, path)
    return digest.hexdigest()
