"""A stage's training rows: read from a data set that exists (:class:`~divtrace.lab.data_specs.DatasetData`: a hub
id, or a local JSONL/Parquet file), checked, and written as the JSON Lines training file every stage trains from.

The training forms (what a training file holds, one row per line):

- SFT: ``{"prompt": P, "completion": C}`` or ``{"messages": [...]}``; a data set's ``response`` column is taken as
  ``completion``.
- DPO: ``{"prompt": P, "chosen": C, "rejected": R}``.

A text is a string or a list of chat messages (``{"role": ..., "content": ...}``), as TRL takes it. Other columns are
dropped. Every error names the recipe file, the stage's key and, for a bad row, the file and line (or row).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from divtrace.errors import DivtraceError
from divtrace.io_atomic import write_atomic
from divtrace.lab.data_specs import DatasetData

#: The columns each method's rows carry, in the training file.
TRAINING_COLUMNS = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected")}

#: What each method takes, in words (for errors).
_FORMS = {
    "sft": "chat 'messages', or 'prompt' with 'completion' (or 'response')",
    "dpo": "'prompt', 'chosen' and 'rejected' (preference pairs)",
}

#: The suffixes of local data files.
LOCAL_SUFFIXES = (".jsonl", ".parquet")


def dataset_rows(data: DatasetData, method: str, recipe_dir: Path, where: str) -> list[dict[str, Any]]:
    """The training rows of ``data`` for a stage of ``method`` (``sft`` or ``dpo``), in the training form (see the
    module documentation), its first ``data.limit`` rows when a limit is given.

    ``data.dataset`` is a local ``.jsonl``/``.parquet`` file (relative: against ``recipe_dir``) or a hub dataset id
    (loaded with ``datasets.load_dataset`` at ``split`` and ``revision``). ``where`` prefixes every error
    (``recipe.yaml: key 'stages.0.data'``). Raises DivtraceError for a file that is missing or unreadable, a data
    set that cannot be loaded, no rows, or a row not in a form the method takes.
    """
    local = _local_file(data.dataset, recipe_dir)
    if local is not None:
        source = str(local)
        raw: Iterable[tuple[str, Mapping[str, Any]]] = _local_rows(local, where)
    else:
        source = f"hub dataset {data.dataset}"
        raw = _hub_rows(data, where)
    rows: list[dict[str, Any]] = []
    for place, row in raw:
        if data.limit is not None and len(rows) >= data.limit:
            break
        rows.append(training_row(row, method, f"{where}: {place}"))
    if not rows:
        raise DivtraceError(f"{where}: {source} has no rows")
    return rows


def training_row(row: Mapping[str, Any], method: str, where: str) -> dict[str, Any]:
    """``row`` in the training form of ``method`` (module documentation): its columns for the method, texts
    checked. Raises DivtraceError starting with ``where`` (the file and line) naming what is missing or wrong."""
    if method == "sft" and "messages" in row:
        return {"messages": _messages(row["messages"], f"{where}, field 'messages'")}
    if method == "sft":
        completion = "completion" if "completion" in row else "response"
        wanted = {"prompt": "prompt", "completion": completion}
    else:
        wanted = {name: name for name in TRAINING_COLUMNS["dpo"]}
    missing = [column for column in wanted.values() if column not in row]
    if missing:
        columns = ", ".join(sorted(str(name) for name in row)) or "none"
        preference = method == "sft" and {"chosen", "rejected"} <= set(row)
        hint = " (these are preference pairs: a dpo stage's data)" if preference else ""
        raise DivtraceError(
            f"{where}: a {method} stage takes {_FORMS[method]}; this row has the columns {columns}{hint}"
        )
    return {name: _text(row[column], f"{where}, field '{column}'") for name, column in wanted.items()}


def is_conversational(row: Mapping[str, Any]) -> bool:
    """True when a training row's texts are chat messages (``messages``, or a ``prompt`` given as messages)."""
    return "messages" in row or isinstance(row.get("prompt"), list)


def write_training_file(rows: list[dict[str, Any]], path: Path) -> bool:
    """Write ``rows`` as JSON Lines to ``path`` (atomically), unless the file already holds exactly these bytes;
    True when it was written."""
    content = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows).encode()
    if path.is_file() and path.read_bytes() == content:
        return False
    write_atomic(path, lambda tmp: tmp.write_bytes(content))
    return True


def read_training_file(path: Path, method: str, where: str) -> list[dict[str, Any]]:
    """The rows of the training file ``path`` (JSON Lines, made by the lab), each checked to be in the training
    form of ``method``. Raises DivtraceError (``where``, the file and line) when one is not, or there are none."""
    rows = [training_row(row, method, f"{where}: {place}") for place, row in _jsonl_rows(path, where)]
    if not rows:
        raise DivtraceError(f"{where}: {path} has no rows")
    return rows


def _local_file(dataset: str, recipe_dir: Path) -> Path | None:
    """The local data file ``dataset`` names (relative: against ``recipe_dir``); None for a hub id."""
    path = Path(dataset).expanduser()
    if not path.is_absolute():
        path = recipe_dir / path
    if path.suffix in LOCAL_SUFFIXES or path.exists() or dataset.startswith((".", "/", "~")):
        return path
    return None


def _local_rows(path: Path, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if not path.is_file():
        raise DivtraceError(f"{where}: {path}: no such file (a data set is a .jsonl or .parquet file, or a hub id)")
    if path.suffix == ".parquet":
        yield from _parquet_rows(path, where)
    elif path.suffix == ".jsonl":
        yield from _jsonl_rows(path, where)
    else:
        raise DivtraceError(f"{where}: {path}: a local data set is a .jsonl or .parquet file")


def _jsonl_rows(path: Path, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DivtraceError(f"{where}: {path} cannot be read ({err})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise DivtraceError(f"{where}: {path}, line {number}: not JSON ({err})") from None
        if not isinstance(row, dict):
            raise DivtraceError(f"{where}: {path}, line {number}: a row is a JSON object")
        yield f"{path}, line {number}", row


def _parquet_rows(path: Path, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(path).to_pylist()
    except Exception as err:  # any reason pyarrow cannot read it
        raise DivtraceError(f"{where}: {path} cannot be read as Parquet ({type(err).__name__}: {err})") from None
    for number, row in enumerate(records, 1):
        yield f"{path}, row {number}", row


def _hub_rows(data: DatasetData, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    import datasets

    try:
        loaded = datasets.load_dataset(data.dataset, split=data.split, revision=data.revision)
    except Exception as err:  # the hub or the dataset's own loader: any failure is the dataset's
        raise DivtraceError(
            f"{where}: cannot load hub dataset {data.dataset!r} (split {data.split!r}): {type(err).__name__}: {err}"
        ) from None
    for number, row in enumerate(loaded, 1):
        yield f"hub dataset {data.dataset}, row {number}", row


def _text(value: Any, where: str) -> str | list[dict[str, str]]:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return _messages(value, where)
    raise DivtraceError(f"{where}: a text is a string or a list of chat messages, not {type(value).__name__}")


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise DivtraceError(f"{where}: chat messages are a non-empty list of {{role, content}}")
    messages = []
    for position, message in enumerate(value):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(role, str) or not isinstance(content, str):
            raise DivtraceError(f"{where}: message {position} is not a {{role, content}} pair of strings")
        messages.append({"role": role, "content": content})
    return messages
