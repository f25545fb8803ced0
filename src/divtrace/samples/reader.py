"""Read sample records from any supported file (or directory of files), and write them by extension."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from divtrace.errors import SampleFormatError
from divtrace.samples.compressed import uncompressed_name
from divtrace.samples.jsonl import OnError, iter_jsonl_records, write_samples_jsonl
from divtrace.samples.lighteval import is_lighteval_details_file, iter_lighteval_records
from divtrace.samples.lmeval import is_lmeval_samples_file, iter_lmeval_records
from divtrace.samples.parquet import iter_parquet_records, write_samples_parquet
from divtrace.samples.schema import DEFAULT_TASK, SampleRecord
from divtrace.samples.sniff import binary_content, has_divtrace_keys, lfs_pointer_error, sniff_format
from divtrace.samples.thinking import split_record_thinking
from divtrace.samples.validate import record_from_dict

#: ``auto``: per file, from its content (then its name); ``divtrace``: divtrace's own records, JSONL or Parquet by
#: content/extension; the others force one reader.
FORMATS = ("auto", "divtrace", "jsonl", "parquet", "lm-eval", "lighteval")
JSONL_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)


@dataclass
class ReadResult:
    """What :func:`read_samples` found: the valid records, in input order, and the problems it skipped."""

    records: list[SampleRecord] = field(default_factory=list)
    problems: list[SampleFormatError] = field(default_factory=list)


def detect_format(path: str | Path) -> str | None:
    """The format of one file from its name: ``samples_*.jsonl`` -> ``"lm-eval"``, ``details_*.parquet`` ->
    ``"lighteval"``, ``*.jsonl``/``*.json`` -> ``"jsonl"``, ``*.parquet`` -> ``"parquet"``, else ``None``; a
    ``.gz`` suffix is looked through (``x.jsonl.gz`` is ``"jsonl"``)."""
    name = uncompressed_name(Path(path).name.lower())
    if is_lmeval_samples_file(name):
        return "lm-eval"
    if is_lighteval_details_file(name):
        return "lighteval"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def resolve_format(path: str | Path, fmt: str = "auto") -> str | None:
    """The reader for one file under the requested ``fmt``: ``"jsonl"``, ``"parquet"``, ``"lm-eval"`` or
    ``"lighteval"``; None when ``fmt`` is ``"auto"`` and neither the content nor the name tells.

    ``auto`` trusts the content first (:func:`~divtrace.samples.sniff.sniff_format`: a renamed lm-eval log is
    still read as lm-eval); a tool's file name (``samples_*.jsonl``, ``details_*.parquet``) holding no divtrace
    records goes to that tool's reader (whose errors name what is missing); else the name (:func:`detect_format`,
    e.g. for an empty file). ``divtrace`` is JSONL
    or Parquet, by the content's Parquet magic, else the extension. Other values are returned as they are.
    """
    if fmt == "auto":
        sniffed, named = sniff_format(path), detect_format(path)
        if sniffed in ("lm-eval", "lighteval"):
            return sniffed
        if named in ("lm-eval", "lighteval") and not has_divtrace_keys(path):
            return named  # e.g. a details_*.parquet of a layout lighteval's reader names in its error
        return sniffed or named
    if fmt == "divtrace":
        sniffed = sniff_format(path)
        if sniffed in ("parquet", "lighteval") or (sniffed is None and Path(path).name.lower().endswith(".parquet")):
            return "parquet"
        return "jsonl"
    return fmt


def _accepts(path: Path, fmt: str) -> bool:
    """Whether a file found inside a directory belongs to ``fmt``."""
    name = path.name
    if name.startswith(".") or (name.startswith("results_") and name.endswith(".json")):
        return False  # hidden/temporary files; lm-eval's and lighteval's aggregate results files
    detected = detect_format(path)
    if fmt == "auto":
        return detected is not None
    plain = uncompressed_name(name.lower())
    if fmt in ("jsonl", "lm-eval"):
        return plain.endswith(JSONL_SUFFIXES)
    if fmt == "divtrace":
        return plain.endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES)
    return plain.endswith(PARQUET_SUFFIXES)


#: The completion marker divtrace writes in each finished directory of a run (``runs/layout.py::marker_for``): not a
#: sample file, so a run's ``samples/`` directory reads as its samples alone.
RUN_MARKER = "_complete.json"


def _directory_files(directory: Path, fmt: str) -> list[Path]:
    files = [
        p
        for p in directory.rglob("*")
        if p.is_file()
        and p.name != RUN_MARKER
        and _accepts(p, fmt)
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(directory).as_posix())


def _as_list(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def _unknown_type(path: Path) -> SampleFormatError:
    """The error for a file whose format neither its content nor its name tells: binary or not UTF-8 content is
    named with its byte offset."""
    problem = binary_content(path)
    if problem is not None:
        return SampleFormatError(
            path, problem.line, None, f"{problem.reason}; sample files are JSON Lines (UTF-8) or Parquet"
        )
    return SampleFormatError(
        path,
        None,
        None,
        "unknown sample file type: the content is neither JSON Lines (plain or gzip-compressed) nor Parquet and the "
        "name ends in none of .jsonl, .json, .parquet (.jsonl.gz); pass the format (divtrace, lm-eval, lighteval)",
    )


class _Reader:
    """The state of one :func:`read_samples` call."""

    def __init__(self, skip_invalid: bool, checkpoint: str | None, task: str | None, strip_thinking: bool) -> None:
        self.skip_invalid = skip_invalid
        self.strip_thinking = strip_thinking
        self.checkpoint = checkpoint
        self.task = task
        self.result = ReadResult()
        self.seen: dict[tuple[str | None, str | None, str], tuple[str, int | None]] = {}

    def report(self, error: SampleFormatError) -> None:
        if not self.skip_invalid:
            raise error
        self.result.problems.append(error)

    def files(self, paths: list[Path], fmt: str) -> Iterator[tuple[Path, str]]:
        for path in paths:
            if path.is_dir():
                found = _directory_files(path, fmt)
                if not found:
                    self.report(
                        SampleFormatError(path, None, None, f"no sample files ({fmt} format) in this directory")
                    )
                for file in found:
                    yield file, resolve_format(file, fmt) or "jsonl"
            elif not path.exists():
                self.report(SampleFormatError(path, None, None, "no such file or directory"))
            else:
                detected = resolve_format(path, fmt)
                if detected is None:
                    self.report(_unknown_type(path))
                else:
                    yield path, detected

    def rows(self, path: Path, fmt: str, on_error: OnError | None) -> Iterator[tuple[int, dict[str, Any]]]:
        if fmt == "jsonl":
            return iter_jsonl_records(path, on_error=on_error)
        if fmt == "parquet":
            return iter_parquet_records(path, on_error=on_error)
        if fmt == "lm-eval":
            return iter_lmeval_records(path, checkpoint=self.checkpoint, task=self.task, on_error=on_error)
        return iter_lighteval_records(
            path, checkpoint=self.checkpoint, task=self.task, on_error=on_error, strip_thinking=self.strip_thinking
        )

    def read_file(self, path: Path, fmt: str) -> None:
        pointer = lfs_pointer_error(path)
        if pointer is not None:
            self.report(pointer)
            return
        seen_rows = 0

        def on_error(error: SampleFormatError) -> None:
            nonlocal seen_rows
            seen_rows += 1
            self.report(error)

        stem = Path(uncompressed_name(path.name)).stem  # base.jsonl.gz is checkpoint base, as base.jsonl is
        defaults = {"checkpoint": self.checkpoint or stem, "task": self.task or DEFAULT_TASK}
        rows = self.rows(path, fmt, on_error if self.skip_invalid else None)
        while True:
            try:
                line, raw = next(rows)
            except StopIteration:
                break
            except SampleFormatError as error:  # the rest of the file is unreadable
                self.report(error)
                return
            seen_rows += 1
            try:
                record = record_from_dict(raw, path, line, defaults)
            except SampleFormatError as error:
                self.report(error)
                continue
            self.add(split_record_thinking(record, strip=self.strip_thinking), path, line)
        if seen_rows == 0:
            self.report(SampleFormatError(path, None, None, "no records: the file is empty"))

    def add(self, record: SampleRecord, path: Path, line: int | None) -> None:
        key = (record.checkpoint, record.task, record.prompt_id)
        first = self.seen.get(key)
        if first is not None:
            where = first[0] + (f", line {first[1]}" if first[1] is not None else "")
            self.report(
                SampleFormatError(
                    path,
                    line,
                    "prompt_id",
                    f"duplicate record for checkpoint '{key[0]}', task '{key[1]}', prompt_id '{key[2]}'; "
                    f"first seen at {where}",
                )
            )
            return
        self.seen[key] = (str(path), line)
        self.result.records.append(record)


def read_samples(
    paths: str | Path | Iterable[str | Path],
    *,
    fmt: str = "auto",
    skip_invalid: bool = False,
    checkpoint: str | None = None,
    task: str | None = None,
    strip_thinking: bool = True,
) -> ReadResult:
    """Read and validate sample records from files and directories.

    Contract:
        * ``fmt`` is one of :data:`FORMATS`: ``"auto"`` picks per file from its content, then its name (see
          :func:`resolve_format`); ``"divtrace"`` reads divtrace records (JSONL or Parquet); ``"jsonl"``,
          ``"parquet"``, ``"lm-eval"``, ``"lighteval"`` force that reader. A directory means every file below it
          with a supported extension (recursively, hidden files and ``results_*.json`` excluded), in sorted path
          order.
        * A gzip-compressed JSON Lines file (found by its content, whatever its name: ``x.jsonl.gz``, or a
          compressed file with any name) is read as its decompressed content, in every format that reads JSON
          Lines; ``x.jsonl.gz`` is named as ``x.jsonl`` would be (its checkpoint label, a directory's files).
        * A Git LFS pointer (the file git leaves when the data was not pulled) is an error saying so and how to
          get the data (``git lfs pull``).
        * A record without ``checkpoint`` gets the ``checkpoint`` argument, else the file's stem (``.gz`` aside);
          one without ``task`` gets the ``task`` argument, else :data:`DEFAULT_TASK`. For lm-eval and lighteval
          files the arguments override what the importer infers from the file's name and directory.
        * Errors: an empty file, a bad record, a duplicate ``(checkpoint, task, prompt_id)`` anywhere in the
          input (the message names both places) or an unreadable file are :class:`SampleFormatError`. With
          ``skip_invalid=False`` the first one is raised. With ``skip_invalid=True`` each is appended to
          ``problems`` and the bad record skipped; when a file becomes unreadable at line N (e.g. not UTF-8),
          that is one problem and the records before line N are kept.
        * ``strip_thinking`` (default): every record goes through
          :func:`~divtrace.samples.thinking.split_record_thinking`: a record without ``responses`` gets them
          (its outputs with chain-of-thought removed as the study did, see :mod:`divtrace.samples.thinking`),
          one without ``thinking_unclosed`` gets the per-output flag; ``responses`` a file already carries are
          kept (lighteval's own post-processed text is stripped by the same rule, as the study did). With
          ``strip_thinking=False`` records are returned as stored: the responses a file carries (for lighteval
          its ``text_post_processed``), else the raw outputs, are scored; unclosed thinking is not checked.

    Raises:
        ValueError: ``fmt`` is not a known format.
        SampleFormatError: see above (only when ``skip_invalid`` is false).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown sample format {fmt!r}; expected one of {', '.join(FORMATS)}")
    reader = _Reader(skip_invalid, checkpoint, task, strip_thinking)
    for path, file_fmt in reader.files(_as_list(paths), fmt):
        reader.read_file(path, file_fmt)
    return reader.result


def write_samples(records: Iterable[SampleRecord], path: str | Path) -> None:
    """Write ``records`` to ``path`` atomically, as JSON Lines (``.jsonl``/``.json``) or Parquet (``.parquet``).

    Raises:
        ValueError: the extension is neither.
    """
    name = Path(path).name.lower()
    if name.endswith(JSONL_SUFFIXES):
        write_samples_jsonl(records, path)
    elif name.endswith(PARQUET_SUFFIXES):
        write_samples_parquet(records, path)
    else:
        raise ValueError(f"cannot tell the sample format of {path}: use a .jsonl, .json or .parquet name")
