"""Completion markers: the file next to each unit's output that says what the output was computed from.

A marker is JSON: ``fingerprint`` (the unit's key, see :class:`divtrace.runs.stage.Unit`) plus facts for people
(``prompts``, ``k``, ``rows``, ``metrics``...). It is written atomically after the output, so a marker that holds
a unit's key means the output is complete and current. It is read through :func:`read_marker` only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from divtrace.io_atomic import write_json_atomic
from divtrace.samples.reader import RUN_MARKER


@dataclass(frozen=True)
class Marker:
    """What a marker holds.

    Attributes:
        fingerprint: the key of the unit the output was computed for.
        strip_thinking: generation markers of imported samples: whether chain-of-thought is stripped when the
            samples are read (``divtrace analyze --no-strip-thinking`` records False; True when not recorded:
            divtrace's own generation always strips).
        facts: everything else it records, for people.
    """

    fingerprint: str
    strip_thinking: bool = True
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
    facts = {name: value for name, value in content.items() if name not in ("fingerprint", "strip_thinking")}
    return Marker(content["fingerprint"], content.get("strip_thinking") is not False, facts)


def is_done(marker: Path, key: str) -> bool:
    """True when ``marker`` exists and records fingerprint ``key``."""
    found = read_marker(marker)
    return found is not None and found.fingerprint == key


def mark_done(marker: Path, key: str, **facts: Any) -> None:
    """Record that the output of ``marker`` is complete for fingerprint ``key`` (plus facts for people)."""
    write_json_atomic({"fingerprint": key, **facts}, marker)
