"""Atomic file writes: a reader sees the old file or the complete new one, never a partial file."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only annotations: the frame's own method writes it
    import pandas as pd


def temporary_path(target: Path) -> Path:
    """A fresh hidden temporary file next to ``target`` (``.NAME.<12 hex digits>.tmp``), where
    :func:`atomic_output` writes before renaming it onto ``target``."""
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto ``path``.

    Contract: readers never see a half-written ``path``: either the old file (or none) or the complete new one.
    The temporary file is hidden (its name starts with ``.``) and lives in the same directory, so the final
    ``os.replace`` is atomic. On any exception the temporary file is removed and ``path`` is left untouched.
    The parent directory is created if needed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(target)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it onto ``path``.

    Same guarantees as :func:`atomic_output`. Returns ``path``.
    """
    with atomic_output(path) as tmp:
        write(tmp)
    return Path(path)


def write_json_atomic(data: Any, path: str | Path) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def write_table_atomic(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame as Parquet (``.parquet``) or CSV (``.csv``), atomically."""
    suffix = Path(path).suffix
    if suffix == ".parquet":
        return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
    if suffix == ".csv":
        return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    raise ValueError(f"cannot write a table as {suffix!r}: use .parquet or .csv")
