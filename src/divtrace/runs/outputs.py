"""A unit's outputs: recorded in its marker when it is done, and checked against that record before it is skipped.

- :func:`record_outputs`: each file a unit wrote (a directory output: every file below it but hidden ones and the
  marker) with its size and sha256, what :func:`~divtrace.runs.markers.mark_done` stores.
- :func:`unit_state`: whether a unit is done. Its marker must hold the unit's key and every file it records must be
  there with the recorded size and digest; a file missing, truncated or changed is :class:`Damage`, and the unit is
  not done. A marker written before outputs were recorded counts as done when the unit's outputs exist and are
  readable (Parquet and JSON are parsed as far as their footer or end), so a finished run is never redone for it.
- :func:`check_input`: a stage about to read another stage's unit refuses one that is not complete, with a
  :class:`IncompleteInputError` naming the file and what to do, rather than compute on a short input.

Digests are checked on every run, not only sizes: hashing is about 1 GB/s, a few times faster than the run already
reads the same files (``divtrace run`` hashes every sample file for the verify and score keys, and reads them to
verify and score), and a size check alone misses a file rewritten in place (bytes flipped, a copy from another
run). Only the plan's "done" column (:mod:`divtrace.plan.rows`) compares sizes alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from divtrace.errors import DivtraceError
from divtrace.fingerprint import file_digest
from divtrace.runs.markers import OutputFile, read_marker

#: What to do when an input is not complete, said once.
RERUN = "rerun the command that made this run directory (divtrace run or divtrace analyze): it redoes it first"
#: What to do with an output that cannot be read.
DELETE_AND_RERUN = (
    "delete it and rerun the command that made this run directory (divtrace run or divtrace analyze): it will be redone"
)


class IncompleteInputError(DivtraceError):
    """A stage's input unit is missing, unfinished or damaged; the message names the file and what to do."""


class UnreadableOutputError(DivtraceError):
    """A file of the run directory cannot be read; the message names it and says what to do."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(f"{path} cannot be read ({reason}): {DELETE_AND_RERUN}")


@dataclass(frozen=True)
class Damage:
    """One output found not as recorded: ``path`` (absolute), ``name`` (relative to the run directory) and what is
    wrong, in words (``is missing``, ``is truncated (5000 of 11997 bytes)``...)."""

    path: Path
    name: str
    what: str

    def __str__(self) -> str:
        return f"{self.name} {self.what}"

    @property
    def present(self) -> bool:
        """True when the file is there (so it is to be moved aside, never read as good)."""
        return self.path.exists()


@dataclass(frozen=True)
class UnitState:
    """Whether a unit is done (:func:`unit_state`).

    Attributes:
        done: its marker holds its key and its outputs are as recorded.
        damage: when the marker holds the key, the outputs that are not as recorded (then ``done`` is False).
        recorded: False when the marker records no outputs (written by an older divtrace): a done unit's outputs
            are then to be recorded (:func:`record_outputs`).
    """

    done: bool
    damage: tuple[Damage, ...] = ()
    recorded: bool = True


def relative_name(root: Path, path: Path) -> str:
    """``path`` relative to the run directory ``root``, ``/``-separated (absolute when it is outside)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def output_files(outputs: Iterable[Path], marker: Path) -> list[Path]:
    """The files of ``outputs``: a file as it is, a directory's files below it (not hidden, not ``marker``), sorted;
    a path that does not exist is left out."""
    files: list[Path] = []
    for output in outputs:
        if output.is_dir():
            found = (p for p in output.rglob("*") if p.is_file() and p != marker)
            files += sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(output).parts))
        elif output.is_file():
            files.append(output)
    return files


def record_outputs(root: Path, outputs: Iterable[Path], marker: Path) -> tuple[OutputFile, ...]:
    """Each file of ``outputs`` (:func:`output_files`) as a marker records it: path relative to ``root``, size and
    sha256."""
    return tuple(
        OutputFile(relative_name(root, path), path.stat().st_size, file_digest(path))
        for path in output_files(outputs, marker)
    )


def unit_state(root: Path, marker: Path, key: str, outputs: Sequence[Path], *, digests: bool = True) -> UnitState:
    """Whether the unit of ``marker`` is done for ``key`` in the run directory ``root`` (see the module
    documentation); ``outputs`` are the unit's output paths (:attr:`~divtrace.runs.stage.Unit.outputs`).

    ``digests`` False compares sizes only (for an estimate, never to skip work).
    """
    found = read_marker(marker)
    if found is None or found.fingerprint != key:
        return UnitState(False)
    if found.outputs is None:
        damage = _unreadable(root, outputs, marker)
        return UnitState(not damage, tuple(damage), recorded=False)
    damage = [
        *recorded_damage(root, found.outputs, digests=digests),
        *_unrecorded_missing(root, outputs, found.outputs),
    ]
    return UnitState(not damage, tuple(damage))


def recorded_damage(root: Path, recorded: Iterable[OutputFile], *, digests: bool = True) -> list[Damage]:
    """The files of ``recorded`` that are not as recorded under ``root``: missing, another size, other bytes."""
    damage = []
    for item in recorded:
        path = root / item.path
        what = _difference(path, item, digests)
        if what is not None:
            damage.append(Damage(path, item.path, what))
    return damage


def check_input(root: Path, marker: Path, reader: str, output: Path, *, required: bool = True) -> None:
    """Raise :class:`IncompleteInputError` unless the unit whose marker is ``marker`` and whose output is ``output``
    is complete for ``reader`` (``score of base/gsm8k``) to read: its marker exists and its recorded outputs are as
    recorded (a marker that records none: its output exists). ``required`` False: a unit with neither marker nor
    output is no error (nothing to read)."""
    found = read_marker(marker)
    name = relative_name(root, output)
    if found is None:
        if not required and not _exists(output):
            return
        raise IncompleteInputError(f"{reader} needs {name}, which is not finished (no {marker.name}); {RERUN}")
    if found.outputs is None:
        damage = [] if output.exists() else [Damage(output, name, "is missing")]
    else:
        damage = recorded_damage(root, found.outputs)
    if damage:
        raise IncompleteInputError(f"{reader} needs {damage[0]}; {RERUN}")


def unreadable_reason(path: Path) -> str | None:
    """Why the file at ``path`` cannot be read as what its suffix says (Parquet: its footer and schema; JSON: the
    whole text); None when it can (other suffixes: when it exists)."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_metadata(path)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif not path.is_file():
            return "is not a file"
    except Exception as err:  # any reason a reader would fail on it
        return f"{type(err).__name__}: {err}"
    return None


def _exists(output: Path) -> bool:
    """True when ``output`` is a file, or a directory with a file that is not hidden."""
    if output.is_dir():
        return any(not p.name.startswith(".") for p in output.iterdir() if p.is_file())
    return output.exists()


def _difference(path: Path, item: OutputFile, digests: bool) -> str | None:
    if not path.is_file():
        return "is missing"
    size = path.stat().st_size
    if size < item.size:
        return f"is truncated ({size} of {item.size} bytes)"
    if size != item.size:
        return f"has changed ({size} bytes, {item.size} recorded)"
    if digests and file_digest(path) != item.sha256:
        return "has changed (its bytes differ from those recorded)"
    return None


def _unreadable(root: Path, outputs: Sequence[Path], marker: Path) -> list[Damage]:
    """Outputs of a unit whose marker records none that are missing or unreadable."""
    damage = [Damage(path, relative_name(root, path), "is missing") for path in outputs if not path.exists()]
    for path in output_files(outputs, marker):
        reason = unreadable_reason(path)
        if reason is not None:
            damage.append(Damage(path, relative_name(root, path), f"is not readable ({reason})"))
    return damage


def _unrecorded_missing(root: Path, outputs: Sequence[Path], recorded: Sequence[OutputFile]) -> list[Damage]:
    """Output files of the unit that its marker does not record and that are missing."""
    names = [item.path for item in recorded]
    damage = []
    for path in outputs:
        name = relative_name(root, path)
        covered = any(recorded_name == name or recorded_name.startswith(name + "/") for recorded_name in names)
        if not covered and not path.exists():
            damage.append(Damage(path, name, "is missing"))
    return damage
