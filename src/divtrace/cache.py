"""Where divtrace keeps its persistent caches, and content fingerprints of model directories."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs

from divtrace.fingerprint import update_with_file

#: Files that never change what a model computes.
_IGNORED_MODEL_FILES = {"README.md", ".gitattributes", "LICENSE"}


def cache_dir() -> Path:
    """The root of divtrace's persistent caches: ``$DIVTRACE_CACHE_DIR`` or the platform's user cache dir."""
    root = os.environ.get("DIVTRACE_CACHE_DIR") or platformdirs.user_cache_dir("divtrace")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


_DIR_DIGESTS: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def directory_fingerprint(directory: Path) -> str:
    """A content digest of every file of a model directory (names and bytes).

    Two directories with the same files give the same digest wherever they live, so a cache keyed by it is
    shared between copies of one model and never between different weights. Memoised per process on
    (path, file sizes, mtimes), since hashing a large checkpoint takes a moment.
    """
    directory = directory.resolve()
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in _IGNORED_MODEL_FILES)
    stat_key = tuple((str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    memo_key = (str(directory), stat_key)
    if memo_key not in _DIR_DIGESTS:
        digest = hashlib.sha256()
        for path in files:
            digest.update(str(path.relative_to(directory)).encode())
            digest.update(b"\0")
            update_with_file(digest, path)
        _DIR_DIGESTS[memo_key] = digest.hexdigest()[:20]
    return _DIR_DIGESTS[memo_key]
