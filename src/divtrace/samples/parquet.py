"""Parquet sample files: the sample schema as columns, written atomically with pyarrow.

Lists of strings and integers are native Parquet lists. Dict-valued fields (``sampling``, ``model_ref``,
``references``) and any unknown (extra) fields are stored as JSON text, so that dicts of different shapes in
different rows round-trip exactly; the file's schema metadata lists which columns hold JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from divtrace.errors import SampleFormatError
from divtrace.io_atomic import atomic_output
from divtrace.samples.jsonl import OnError, record_to_json_dict
from divtrace.samples.schema import SampleRecord

JSON_COLUMNS_KEY = b"divtrace.json_columns"
SCHEMA_VERSION_KEY = b"divtrace.sample_schema"
DICT_FIELDS = ("sampling", "model_ref", "references")

_STRINGS = pa.list_(pa.string())
_INTS = pa.list_(pa.int64())
BASE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("outputs", _STRINGS, nullable=False),
    pa.field("checkpoint", pa.string()),
    pa.field("task", pa.string()),
    pa.field("sample_seeds", _INTS),
    pa.field("finish_reasons", _STRINGS),
    pa.field("output_tokens", _INTS),
    pa.field("reasoning", _STRINGS),
    pa.field("responses", _STRINGS),
    pa.field("thinking_unclosed", pa.list_(pa.bool_())),
    *(pa.field(name, pa.string()) for name in DICT_FIELDS),
)
_BASE_NAMES = frozenset(f.name for f in BASE_FIELDS)
_BATCH_ROWS = 4096


def _json_cell(value: Any, *, explicit_null: bool) -> str | None:
    if value is None:
        return "null" if explicit_null else None
    return json.dumps(value, ensure_ascii=False)


def records_to_table(records: Iterable[SampleRecord]) -> pa.Table:
    """Build the Arrow table of ``records`` in the divtrace Parquet layout (see the module docstring).

    Contract: declared list fields keep their Arrow list types; dict fields and extra fields become JSON text.
    An extra field that a record lacks is a null cell; an extra field explicitly set to ``None`` is the JSON
    text ``null``, so the two stay distinguishable on the way back.
    """
    dumped = [record_to_json_dict(r) for r in records]
    extras: list[str] = []
    for row in dumped:
        for key in row:
            if key not in _BASE_NAMES and key not in extras:
                extras.append(key)
    columns: dict[str, list[Any]] = {f.name: [] for f in BASE_FIELDS}
    columns.update({name: [] for name in extras})
    for row in dumped:
        for f in BASE_FIELDS:
            value = row.get(f.name)
            columns[f.name].append(_json_cell(value, explicit_null=False) if f.name in DICT_FIELDS else value)
        for name in extras:
            columns[name].append(_json_cell(row[name], explicit_null=True) if name in row else None)
    schema = pa.schema(
        [*BASE_FIELDS, *(pa.field(name, pa.string()) for name in extras)],
        metadata={
            SCHEMA_VERSION_KEY: b"2",  # 2: the thinking_unclosed column (files of version 1 lack it)
            JSON_COLUMNS_KEY: json.dumps([*DICT_FIELDS, *extras]).encode(),
        },
    )
    return pa.Table.from_pydict(columns, schema=schema)


def write_samples_parquet(records: Iterable[SampleRecord], path: str | Path) -> None:
    """Write ``records`` to ``path`` as Parquet, atomically (temporary file in the same directory + rename).

    Contract: reading the file back with :func:`iter_parquet_records` and validating each row gives records
    equal to ``records`` (every field, nulls, unicode and unknown fields included).
    """
    table = records_to_table(records)
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)


def _json_columns(schema: pa.Schema) -> set[str]:
    meta = schema.metadata or {}
    if JSON_COLUMNS_KEY in meta:
        try:
            return set(json.loads(meta[JSON_COLUMNS_KEY]))
        except (ValueError, TypeError):
            pass
    # A Parquet file written by something else: only the dict fields may hold JSON text.
    return set(DICT_FIELDS)


def iter_parquet_records(path: str | Path, *, on_error: OnError | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row_number, record_dict)`` for every row of a Parquet sample file.

    Contract:
        * Row numbers are 1-based and play the role of line numbers in errors.
        * Columns listed as JSON in the file's metadata (or, for foreign files, the dict fields ``sampling``,
          ``model_ref`` and ``references`` when they hold text) are decoded; a null cell of an extra column
          means the field is absent. Struct columns come back as dicts.
        * A cell that is not valid JSON is a per-record error: passed to ``on_error`` and the row skipped when
          ``on_error`` is given, else raised.
        * A file that is not readable Parquet raises :class:`SampleFormatError` with ``line=None``.
    """
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise SampleFormatError(path, None, None, f"not a readable Parquet file: {exc}") from None
    json_columns = _json_columns(parquet.schema_arrow)
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                record, error = _decode_row(row, json_columns, path, number)
                if error is None:
                    yield number, record
                elif on_error is None:
                    raise error
                else:
                    on_error(error)
    except pa.ArrowException as exc:
        raise SampleFormatError(path, number + 1, None, f"unreadable Parquet data: {exc}") from None


def _decode_row(
    row: dict[str, Any], json_columns: set[str], path: str | Path, number: int
) -> tuple[dict[str, Any], SampleFormatError | None]:
    record: dict[str, Any] = {}
    for name, value in row.items():
        if name in json_columns and isinstance(value, str):
            try:
                record[name] = json.loads(value)
            except json.JSONDecodeError as exc:
                return record, SampleFormatError(path, number, name, f"not valid JSON text: {exc.msg}")
        elif value is None and name not in _BASE_NAMES:
            continue  # an extra field this record does not have
        else:
            record[name] = value
    return record, None
