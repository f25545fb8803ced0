"""Errors divtrace raises on bad input; each names where the problem is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DivtraceError(Exception):
    """Base class of every error divtrace raises on purpose."""


class DivtraceWarning(UserWarning):
    """What divtrace warns about its input (samples cut to a common K...) when the caller takes no warnings itself."""


class SampleFormatError(DivtraceError):
    """A sample file, or one record in it, does not satisfy the sample schema.

    Attributes:
        path: the file that holds the bad record.
        line: 1-based line (JSONL) or row (Parquet) number; ``None`` when the whole file is bad.
        field: the offending field, ``None`` when the record as a whole is bad (e.g. not JSON).
        reason: what is wrong, in words.
    """

    def __init__(self, path: str | Path, line: int | None, field: str | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        where = self.path
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {reason}")


class ModelLoadError(DivtraceError):
    """A model (embedder, NLI classifier, generator) could not be loaded."""


class RunInterrupted(DivtraceError):
    """Work stopped by Ctrl-C (KeyboardInterrupt), raised once the work in flight is shut down; what finished is
    kept.

    Attributes:
        stage: the stage that was running (generate, verify, score, analyze, report).
        done: units finished in this invocation and kept (for a run: all stages together, each written with its
            completion marker, so a rerun of the same command skips it and resumes with the rest).
        unit: what ``done`` counts, in words (``units``; ``of 8 shard(s) in runs/x`` for one generate).
        kept: the work items stored of units left unfinished, in words (``2 shards of generate/base/gsm8k``): a
            rerun keeps them too.
    """

    def __init__(self, stage: str, done: int, unit: str = "units", kept: Sequence[str] = ()) -> None:
        self.stage = stage
        self.done = done
        self.unit = unit
        self.kept = tuple(kept)
        finished = counted(done, "unit") if unit == "units" else f"{done} {unit}"
        what = f"{', '.join(self.kept)} kept, {finished} finished" if self.kept else f"{finished} finished and kept"
        super().__init__(f"during {stage}: {what}; rerun the same command to resume where it stopped")


def counted(number: int, noun: str) -> str:
    """``number`` and ``noun``, plural unless it is 1 (``1 shard``, ``0 units``)."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
