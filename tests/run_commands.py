"""Real ``divtrace`` commands in subprocesses on one run directory (the lock and ownership tests), with this checkout's
``src`` first on PYTHONPATH (as in :mod:`tests.interrupt`), what the tests compare: a tree's file digests, and one
finished run of the small study (:class:`SmallRun`, the session's ``small_run`` fixture in tests/conftest.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from divtrace.runs.layout import RunLayout
from divtrace.runs.lock import Holder
from divtrace.study import Study, small_quickstart_study

SOURCE = str(Path(__file__).resolve().parents[1] / "src")
#: Long enough for a small study's run on a busy 2-core machine; only reached when something hangs.
TIMEOUT = 1800


def environment() -> dict[str, str]:
    """This process's environment with this checkout's source first, unbuffered, one progress line per stage."""
    path = os.pathsep.join(filter(None, [SOURCE, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "DIVTRACE_PROGRESS_INTERVAL": "3600"}


def divtrace_args(*args: str | Path) -> list[str]:
    """The command line of ``divtrace ARGS`` with this interpreter."""
    return [sys.executable, "-m", "divtrace.cli", *map(str, args)]


def run_divtrace(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``divtrace ARGS`` to its end: exit code, stdout, stderr."""
    return subprocess.run(
        divtrace_args(*args), env=environment(), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def start_divtrace(*args: str | Path, log: Path, **popen: Any) -> subprocess.Popen[str]:
    """``divtrace ARGS`` started, its stdout and stderr into ``log`` (unless ``popen`` redirects stderr)."""
    output = log.open("w")
    popen = {"stdout": output, "stderr": output, **popen}
    return subprocess.Popen(divtrace_args(*args), env=environment(), text=True, **popen)


def wait_for_holder(run: Path, process: subprocess.Popen[str]) -> Holder:
    """Wait until ``run``'s lock file names ``process`` (which must keep running meanwhile); that holder."""
    lock = RunLayout(run).lock_file
    while process.poll() is None:
        holder = Holder.parse(lock.read_text()) if lock.exists() else None
        if holder is not None and holder.pid == process.pid:
            return holder
        time.sleep(0.05)
    raise AssertionError(f"the process ended (exit {process.returncode}) before it held {run}")


def small_study(path: Path, **changes: Any) -> Path:
    """The quickstart cut down (3 prompts per task, K = 3, 8 new tokens, 2 prompts per shard, seed 7), with
    ``changes`` to the study (``name=...``) or to its sampling (``temperature=...``), written to ``path``."""
    study = small_quickstart_study(3, 3, 8, shard_size=2, seed=7)
    sampling = {key: changes.pop(key) for key in list(changes) if key in type(study.sampling).model_fields}
    study = study.model_copy(update={**changes, "sampling": study.sampling.model_copy(update=sampling)})
    assert isinstance(study, Study)
    path.write_text(study.to_yaml())
    return path


@dataclass(frozen=True)
class SmallRun:
    """One finished ``divtrace run`` of :func:`small_study` (unchanged) from a fresh directory, its output piped."""

    #: The study file it ran.
    study: Path
    #: Its run directory: read it, never change it (it is shared; :meth:`copy` gives one to change).
    directory: Path
    #: The command's exit code, stdout and stderr.
    result: subprocess.CompletedProcess[str]

    @property
    def output(self) -> str:
        """What the command printed: its stderr (the plan, progress, the stages' counts), then its stdout."""
        return self.result.stderr + self.result.stdout

    def copy(self, into: Path) -> tuple[Path, Path]:
        """(a copy of the study file, a copy of the run directory) under ``into``, for one test to change: the
        files' bytes and modification times as in the original (``shutil.copytree``)."""
        study = Path(shutil.copy2(self.study, into / "study.yaml"))
        return study, Path(shutil.copytree(self.directory, into / "run"))


def finish_small_run(root: Path) -> SmallRun:
    """``divtrace run`` of :func:`small_study`, written to ``root/study.yaml``, into ``root/run``, to its end."""
    study = small_study(root / "study.yaml")
    run = root / "run"
    result = run_divtrace("run", study, "--out", run)
    assert result.returncode == 0, result.stderr
    return SmallRun(study, run, result)


def tree_digests(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path) with the sha256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def flat(text: str) -> str:
    """``text`` with its whitespace runs as single spaces (notes are wrapped at spaces off a terminal)."""
    return " ".join(text.split())
