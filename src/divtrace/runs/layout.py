"""The run directory: every path in it is built here, and nowhere else.

::

    RUN/study.yaml                                  the frozen, resolved study
    RUN/samples/<checkpoint>/<task>/shard-*.parquet generation shards (+ _complete.json)
    RUN/verdicts/<checkpoint>/<task>.parquet        one row per sample (+ .json marker)
    RUN/scores/<checkpoint>/<task>.parquet          one row per prompt x metric x subset (+ .json marker)
    RUN/analysis/*.parquet, *.csv                   the analysis tables (+ _complete.json)
    RUN/report/index.html, summary.md               the report (+ _complete.json)
    RUN/damaged/...                                 outputs found damaged, moved aside (never read again)
    RUN/divtrace.lock                               while a run holds the directory (:mod:`divtrace.runs.lock`)

Each unit of work has a marker next to its output (:mod:`divtrace.runs.markers`) holding the fingerprint of what
the output was computed from and each file it wrote; a stage skips the units whose marker matches and whose files
are as recorded (:mod:`divtrace.runs.outputs`), so running a finished study again does no work.

Reading what a unit stored (:meth:`RunLayout.read_samples`, :meth:`RunLayout.read_verdicts`, :func:`read_table`)
raises :class:`~divtrace.runs.outputs.UnreadableOutputError`, naming the file and what to do, when it cannot be
read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from divtrace.errors import SampleFormatError
from divtrace.io_atomic import temporary_path, write_atomic
from divtrace.runs.markers import marker_for, read_marker
from divtrace.runs.outputs import UnreadableOutputError, check_input
from divtrace.samples import SampleRecord, read_samples

if TYPE_CHECKING:  # pandas is imported where tables are read: the command line starts without it
    import pandas as pd

#: The directory of the generated samples in a run directory (and under ``divtrace generate --out``).
SAMPLES_DIR = "samples"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")
#: The most bytes one file or directory name may have (ext4, XFS, btrfs, APFS and NTFS all allow 255).
NAME_MAX = 255
#: The characters :func:`safe_name` keeps, in words (for messages).
SAFE_CHARACTERS = "letters, digits and . _ + = -"


def safe_name(label: str) -> str:
    """``label`` made safe as one path component (runs of other characters become ``_``).

    This is the one directory-name rule: every checkpoint and task directory or file of a run directory is named
    with it, and :func:`run_name_problems` checks names against it.
    """
    cleaned = _UNSAFE.sub("_", label).strip("._")
    return cleaned or "_"


def shard_path(out_dir: str | Path, checkpoint: str, task: str, index: int) -> Path:
    """The file of shard ``index`` of (checkpoint, task) under ``out_dir``."""
    return Path(out_dir) / SAMPLES_DIR / safe_name(checkpoint) / safe_name(task) / f"shard-{index:05d}.parquet"


def default_run_directory(study_name: str) -> Path:
    """Where a study's run goes when no directory is given: ``runs/<study name>``."""
    return Path("runs") / study_name


def longest_name(checkpoint: str, task: str) -> str:
    """The longest (in UTF-8 bytes) file or directory name that (checkpoint, task) gives in a run directory: its
    directories, unit files and markers, and the temporary names they are written under first."""
    layout = RunLayout("")
    files = [layout.shard_file(checkpoint, task, 0), layout.generation_marker(checkpoint, task)]
    for output in (layout.verdicts_file(checkpoint, task), layout.scores_file(checkpoint, task)):
        files += [output, marker_for(output)]
    names = {part for file in files for part in file.parts} | {temporary_path(file).name for file in files}
    return max(names, key=lambda name: len(name.encode()))


def _shown(name: str, limit: int = 48) -> str:
    """``name`` quoted for a message, cut to its first ``limit`` characters when longer."""
    return repr(name) if len(name) <= limit else f"{name[:limit]!r}… ({len(name)} characters)"


def run_name_problems(names: Iterable[str], kind: Literal["checkpoint", "task"]) -> list[str]:
    """Why some of ``names`` (the checkpoints, or the tasks, of one run) cannot each have their own files in a run
    directory, one sentence per problem; empty when every name can.

    Contract: names that :func:`safe_name` turns into the same directory name would share their samples, verdicts
    and scores: each such group is one problem naming every name in it and the directory. A name whose longest
    file name (:func:`longest_name`, suffixes such as ``.parquet`` and temporary names included) is over
    :data:`NAME_MAX` bytes is one problem naming it. A name given twice is not a problem here (the study refuses
    duplicate checkpoints; a task given twice is one task).
    """
    unique = list(dict.fromkeys(names))
    problems = []
    by_directory: dict[str, list[str]] = {}
    for name in unique:
        by_directory.setdefault(safe_name(name), []).append(name)
    for directory, group in by_directory.items():
        if len(group) > 1:
            listed = ", ".join(_shown(name) for name in group[:-1]) + f" and {_shown(group[-1])}"
            problems.append(
                f"{kind}s {listed} would be stored under one name, {_shown(directory)}, in the run directory (a "
                f"name keeps {SAFE_CHARACTERS}; other characters become _): "
                + ("rename one of them" if len(group) == 2 else "rename all but one")
            )
    for name in unique:
        longest = longest_name(name, "t") if kind == "checkpoint" else longest_name("c", name)
        size = len(longest.encode())
        if size > NAME_MAX:
            limit = len(safe_name(name).encode()) - (size - NAME_MAX)
            problems.append(
                f"{kind} {_shown(name)} is too long: the run directory would name a file or directory after it with "
                f"{size} bytes (suffixes such as .parquet and temporary names included), over the {NAME_MAX} bytes "
                f"a file system allows; shorten it to at most {limit} characters"
            )
    return problems


class RunLayout:
    """Paths of one run directory, and reading what its units stored."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def study_file(self) -> Path:
        """The frozen study."""
        return self.root / "study.yaml"

    @property
    def lock_file(self) -> Path:
        """The lock of the run that holds the directory (:mod:`divtrace.runs.lock`); absent when none does."""
        return self.root / "divtrace.lock"

    def freeze_study(self, study_yaml: str) -> None:
        """Write ``study.yaml`` (creating the run directory), unless it already holds exactly this text."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.study_file.exists() or self.study_file.read_text() != study_yaml:
            write_atomic(self.study_file, lambda tmp: tmp.write_text(study_yaml))

    def samples_dir(self, checkpoint: str, task: str) -> Path:
        """Generation shards of (checkpoint, task)."""
        return self.root / SAMPLES_DIR / safe_name(checkpoint) / safe_name(task)

    def shard_file(self, checkpoint: str, task: str, index: int) -> Path:
        """Shard ``index`` of (checkpoint, task)."""
        return shard_path(self.root, checkpoint, task, index)

    def sample_files(self, checkpoint: str, task: str) -> list[Path]:
        """The finished shards of (checkpoint, task), in order."""
        return sorted(self.samples_dir(checkpoint, task).glob("shard-*.parquet"))

    def generation_marker(self, checkpoint: str, task: str) -> Path:
        """Marker of a finished (checkpoint, task) generation."""
        return marker_for(self.samples_dir(checkpoint, task))

    def verdicts_file(self, checkpoint: str, task: str) -> Path:
        """Verdicts of (checkpoint, task)."""
        return self.root / "verdicts" / safe_name(checkpoint) / f"{safe_name(task)}.parquet"

    def judgments_file(self, checkpoint: str, task: str) -> Path:
        """Judgments of (checkpoint, task) by an LLM judge."""
        return self.root / "judgments" / safe_name(checkpoint) / f"{safe_name(task)}.parquet"

    @property
    def judge_cache_file(self) -> Path:
        """Every judge answer received, by request key (:mod:`divtrace.judge.cache`)."""
        return self.root / "judgments" / "cache.jsonl"

    def scores_file(self, checkpoint: str, task: str) -> Path:
        """Per-prompt scores of (checkpoint, task)."""
        return self.root / "scores" / safe_name(checkpoint) / f"{safe_name(task)}.parquet"

    def homogenization_file(self, task: str) -> Path:
        """Per-prompt similarities of every pair of checkpoints on ``task`` (the homogenisation stage)."""
        return self.root / "homogenization" / f"{safe_name(task)}.parquet"

    def check_homogenization(self, task: str, reader: str) -> None:
        """Like :meth:`check_samples`, for the homogenisation of ``task``, which must be there."""
        similarities = self.homogenization_file(task)
        check_input(self.root, marker_for(similarities), reader, similarities)

    @property
    def analysis_dir(self) -> Path:
        """The analysis tables."""
        return self.root / "analysis"

    def analysis_table(self, name: str) -> Path:
        """The Parquet file of analysis table ``name`` (``collapse_sites``, ``retained``...)."""
        return self.analysis_dir / f"{name}.parquet"

    @property
    def damaged_dir(self) -> Path:
        """Where outputs found damaged are moved aside (nothing reads them)."""
        return self.root / "damaged"

    def set_aside(self, path: Path) -> Path:
        """Move the damaged output ``path`` (in the run directory) to the same place under :attr:`damaged_dir`,
        replacing one moved there before; its new path."""
        target = self.damaged_dir / path.relative_to(self.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)
        return target

    @property
    def report_dir(self) -> Path:
        """The report."""
        return self.root / "report"

    @property
    def report_html(self) -> Path:
        """The HTML report."""
        return self.report_dir / "index.html"

    @property
    def report_summary(self) -> Path:
        """The Markdown summary of the report."""
        return self.report_dir / "summary.md"

    def check_samples(self, checkpoint: str, task: str, reader: str) -> None:
        """Raise :class:`~divtrace.runs.outputs.IncompleteInputError` unless the samples of (checkpoint, task) are
        complete for ``reader`` to read (``score of base/gsm8k``); none at all is no error (a cell without
        samples)."""
        samples = self.samples_dir(checkpoint, task)
        check_input(self.root, self.generation_marker(checkpoint, task), reader, samples, required=False)

    def check_verdicts(self, checkpoint: str, task: str, reader: str) -> None:
        """Like :meth:`check_samples`, for the verdicts of (checkpoint, task) when it was verified (its verdicts or
        their marker exist)."""
        verdicts = self.verdicts_file(checkpoint, task)
        check_input(self.root, marker_for(verdicts), reader, verdicts, required=False)

    def check_judgments(self, checkpoint: str, task: str, reader: str) -> None:
        """Like :meth:`check_samples`, for the judgments of (checkpoint, task) when it was judged (its table or its
        marker exist)."""
        judgments = self.judgments_file(checkpoint, task)
        check_input(self.root, marker_for(judgments), reader, judgments, required=False)

    def check_scores(self, checkpoint: str, task: str, reader: str) -> None:
        """Like :meth:`check_samples`, for the scores of (checkpoint, task), which must be there."""
        scores = self.scores_file(checkpoint, task)
        check_input(self.root, marker_for(scores), reader, scores)

    def check_analysis(self, reader: str) -> None:
        """Like :meth:`check_samples`, for the analysis tables, which must be there."""
        check_input(self.root, marker_for(self.analysis_dir), reader, self.analysis_dir)

    def read_samples(self, checkpoint: str, task: str) -> list[SampleRecord]:
        """The stored samples of (checkpoint, task), in prompt order (none when there are no shards).

        Chain-of-thought is stripped on reading (responses already stored are kept; see
        :func:`~divtrace.samples.read_samples`) unless the samples were imported with stripping off
        (``divtrace analyze --no-strip-thinking`` records it in the generation marker).
        """
        files = self.sample_files(checkpoint, task)
        if not files:
            return []
        marker = read_marker(self.generation_marker(checkpoint, task))
        strip = marker.strip_thinking if marker is not None else True
        try:
            return read_samples(files, strip_thinking=strip).records
        except SampleFormatError as err:
            where = "".join(f"{name} {value}, " for name, value in (("line", err.line), ("field", err.field)) if value)
            raise UnreadableOutputError(Path(err.path), where + err.reason) from None

    def read_verdicts(self, checkpoint: str, task: str) -> pd.DataFrame | None:
        """The stored verdict table of (checkpoint, task); None when it was not verified."""
        path = self.verdicts_file(checkpoint, task)
        return read_table(path) if path.exists() else None


def read_table(path: Path) -> pd.DataFrame:
    """The Parquet table at ``path``; :class:`~divtrace.runs.outputs.UnreadableOutputError` when it cannot be
    read."""
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise UnreadableOutputError(path, "it is missing") from None
    except Exception as err:  # pyarrow's errors (not Parquet, truncated) and the OS's
        raise UnreadableOutputError(path, f"{type(err).__name__}: {err}") from None


def read_tables(paths: Iterable[Path]) -> pd.DataFrame:
    """The tables at ``paths`` that exist, concatenated in order (empty when there are none)."""
    import pandas as pd

    frames = [read_table(path) for path in paths if path.exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
