"""Completion markers: the file next to each unit's output that says what the output was computed from, and what
the output is.

A marker is JSON: ``fingerprint`` (the unit's key, see :class:`divtrace.runs.stage.Unit`), ``outputs`` (each file
the unit wrote: its path relative to the run directory, its size and the sha256 of its bytes, see
:class:`OutputFile`) plus facts for people (``prompts``, ``k``, ``rows``, ``metrics``...). It is written atomically
after the outputs, so a marker that holds a unit's key means the outputs were complete and current when it was
written; :mod:`divtrace.runs.outputs` checks that they still are. Markers written before outputs were recorded have
no ``outputs``. A marker is read through :func:`read_marker` only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from divtrace.io_atomic import write_json_atomic
from divtrace.samples.reader import RUN_MARKER

#: Marker keys that are not facts.
_RESERVED = ("fingerprint", "strip_thinking", "outputs")


@dataclass(frozen=True)
class OutputFile:
    """One file a unit wrote, as its marker records it: ``path`` relative to the run directory (``/``-separated),
    ``size`` in bytes and ``sha256``, the hex digest of its bytes (:func:`divtrace.fingerprint.file_digest`)."""

    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """The marker's JSON of the file."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_json(cls, value: Any) -> OutputFile | None:
        """The file recorded as ``value``; None when ``value`` is not such a record."""
        if not isinstance(value, dict):
            return None
        path, size, sha256 = value.get("path"), value.get("size"), value.get("sha256")
        if not (isinstance(path, str) and isinstance(size, int) and isinstance(sha256, str)):
            return None
        return cls(path, size, sha256)


@dataclass(frozen=True)
class Marker:
    """What a marker holds.

    Attributes:
        fingerprint: the key of the unit the output was computed for.
        strip_thinking: generation markers of imported samples: whether chain-of-thought is stripped when the
            samples are read (``divtrace analyze --no-strip-thinking`` records False; True when not recorded:
            divtrace's own generation always strips).
        outputs: the files the unit wrote, as they were when the marker was written; None for a marker written
            before outputs were recorded (or whose record is unreadable).
        facts: everything else it records, for people.
    """

    fingerprint: str
    strip_thinking: bool = True
    outputs: tuple[OutputFile, ...] | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)


def marker_for(output: Path) -> Path:
    """The marker file of an output file (``X.parquet`` -> ``X.json``) or directory (``DIR/_complete.json``)."""
    return output / RUN_MARKER if output.suffix == "" else output.with_suffix(".json")


def read_marker(path: Path) -> Marker | None:
    """The marker at ``path``; None when there is none, or it is not a marker (unreadable, no fingerprint)."""
    try:
        content = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(content, dict) or not isinstance(content.get("fingerprint"), str):
        return None
    facts = {name: value for name, value in content.items() if name not in _RESERVED}
    return Marker(content["fingerprint"], content.get("strip_thinking") is not False, _outputs(content), facts)


def is_done(marker: Path, key: str) -> bool:
    """True when ``marker`` exists and records fingerprint ``key`` (whether its outputs are still as recorded is
    :func:`divtrace.runs.outputs.unit_state`'s question)."""
    found = read_marker(marker)
    return found is not None and found.fingerprint == key


def mark_done(marker: Path, key: str, outputs: Sequence[OutputFile], **facts: Any) -> None:
    """Record that the output of ``marker`` is complete for fingerprint ``key``: the files it is made of
    (``outputs``, see :func:`divtrace.runs.outputs.record_outputs`) plus facts for people."""
    write_json_atomic({"fingerprint": key, "outputs": [item.to_json() for item in outputs], **facts}, marker)


def _outputs(content: Mapping[str, Any]) -> tuple[OutputFile, ...] | None:
    """The recorded outputs of marker ``content``; None when it records none or the record is not readable."""
    listed = content.get("outputs")
    if not isinstance(listed, list):
        return None
    files = [OutputFile.from_json(value) for value in listed]
    return tuple(item for item in files if item is not None) if all(files) else None
