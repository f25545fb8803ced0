"""Where generated samples live, their cache keys, and which shards are already finished.

A run directory holds ``samples/<checkpoint>/<task>/shard-<index>.parquet``: one file per finished shard (a chunk
of consecutive prompts), written atomically, so a file either holds a whole shard or does not exist. Each record
carries ``sample_keys``: per sample, the hash of everything that determines it (docs/architecture.md, "Cache key of a
sample"). A shard counts as finished only when its file holds exactly the expected keys; a file made with other
settings is an error, never silently mixed in or overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from divtrace.errors import DivtraceError
from divtrace.fingerprint import fingerprint
from divtrace.runs.layout import SAMPLES_DIR as SAMPLES_DIR  # the run directory's paths, re-exported
from divtrace.runs.layout import safe_name as safe_name
from divtrace.runs.layout import shard_path as shard_path


def sample_key(
    model_ref: dict[str, Any], rendered_prompt: str, sampling: dict[str, Any], seed: int, sample_index: int
) -> str:
    """Hex sha256 over the canonical JSON of (model ref, rendered prompt, effective sampling, seed, index).

    Every input is part of the key, so two different samples never share one (see lm-evaluation-harness issues
    3046 and 3881 for what a looser key does).
    """
    return fingerprint([model_ref, rendered_prompt, sampling, seed, sample_index], ensure_ascii=False)


def not_a_shard(path: Path, err: Exception) -> str:
    """The refusal of shard ``path``, which cannot be read as a divtrace shard (``err``), and what to do."""
    return (
        f"{path}: not a readable divtrace sample shard ({type(err).__name__}: {err}); delete it (or move it away) "
        "and run again: it will be generated again"
    )


def read_shard_keys(path: Path) -> list[list[str]] | None:
    """The sample keys stored in shard ``path`` (per prompt, per sample, in order); None when there is no file.

    Raises DivtraceError naming the file when it is unreadable or has no key column (not ours to overwrite).
    """
    if not path.is_file():
        return None
    try:
        found = pq.read_table(path, columns=["sample_keys"]).column("sample_keys").to_pylist()
        return [json.loads(cell) for cell in found]
    except Exception as err:
        raise DivtraceError(not_a_shard(path, err)) from err


#: The columns of a shard that say how its samples were made (read by :func:`read_shard_settings`).
SETTING_COLUMNS = ("prompt_id", "prompt", "sample_seeds", "sampling", "model_ref", "rendered_prompt", "sample_keys")
_JSON_SETTING_COLUMNS = ("sampling", "model_ref", "rendered_prompt", "sample_keys")


def read_shard_settings(path: Path) -> list[dict[str, Any]] | None:
    """Per prompt of shard ``path``, how its samples were made (:data:`SETTING_COLUMNS`, JSON decoded); None when
    there is no file.

    Raises DivtraceError naming the file when it is unreadable or lacks one of the columns (not ours to overwrite).
    """
    if not path.is_file():
        return None
    try:
        rows: list[dict[str, Any]] = pq.read_table(path, columns=list(SETTING_COLUMNS)).to_pylist()
        for row in rows:
            for column in _JSON_SETTING_COLUMNS:
                row[column] = json.loads(row[column]) if row[column] is not None else None
    except Exception as err:
        raise DivtraceError(not_a_shard(path, err)) from err
    return rows
