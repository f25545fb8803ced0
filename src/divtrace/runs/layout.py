"""The run directory: where each stage writes, and the completion markers that make every stage resumable.

::

    RUN/study.yaml                                  the frozen, resolved study
    RUN/samples/<checkpoint>/<task>/shard-*.parquet generation shards (+ _complete.json)
    RUN/verdicts/<checkpoint>/<task>.parquet        one row per sample (+ .json marker)
    RUN/scores/<checkpoint>/<task>.parquet          one row per prompt x metric x subset (+ .json marker)
    RUN/analysis/*.parquet, *.csv                   the analysis tables (+ _complete.json)
    RUN/report/index.html, summary.md               the report (+ _complete.json)

A marker holds the fingerprint of everything its output was computed from; a stage whose marker matches is
skipped without loading any model, so running a finished study again does no work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from divtrace.generate.store import SAMPLES_DIR, safe_name
from divtrace.io_atomic import write_atomic, write_json_atomic
from divtrace.samples.reader import RUN_MARKER


class RunLayout:
    """Paths of one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def study_file(self) -> Path:
        """The frozen study."""
        return self.root / "study.yaml"

    def freeze_study(self, study_yaml: str) -> None:
        """Write ``study.yaml`` (creating the run directory), unless it already holds exactly this text."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.study_file.exists() or self.study_file.read_text() != study_yaml:
            write_atomic(self.study_file, lambda tmp: tmp.write_text(study_yaml))

    def samples_dir(self, checkpoint: str, task: str) -> Path:
        """Generation shards of (checkpoint, task)."""
        return self.root / SAMPLES_DIR / safe_name(checkpoint) / safe_name(task)

    def sample_files(self, checkpoint: str, task: str) -> list[Path]:
        """The finished shards of (checkpoint, task), in order."""
        return sorted(self.samples_dir(checkpoint, task).glob("shard-*.parquet"))

    def generation_marker(self, checkpoint: str, task: str) -> Path:
        """Marker of a finished (checkpoint, task) generation."""
        return self.samples_dir(checkpoint, task) / RUN_MARKER

    def verdicts_file(self, checkpoint: str, task: str) -> Path:
        """Verdicts of (checkpoint, task)."""
        return self.root / "verdicts" / safe_name(checkpoint) / f"{safe_name(task)}.parquet"

    def scores_file(self, checkpoint: str, task: str) -> Path:
        """Per-prompt scores of (checkpoint, task)."""
        return self.root / "scores" / safe_name(checkpoint) / f"{safe_name(task)}.parquet"

    @property
    def analysis_dir(self) -> Path:
        """The analysis tables."""
        return self.root / "analysis"

    @property
    def report_dir(self) -> Path:
        """The report."""
        return self.root / "report"


def marker_for(output: Path) -> Path:
    """The marker file of an output file or directory."""
    return output / RUN_MARKER if output.suffix == "" else output.with_suffix(".json")


def is_done(marker: Path, key: str) -> bool:
    """True when ``marker`` exists and records fingerprint ``key``."""
    try:
        return bool(json.loads(marker.read_text())["fingerprint"] == key)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return False


def mark_done(marker: Path, key: str, **facts: Any) -> None:
    """Record that the output of ``marker`` is complete for fingerprint ``key`` (plus facts for people)."""
    write_json_atomic({"fingerprint": key, **facts}, marker)
