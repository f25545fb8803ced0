"""Ctrl-C in a real run: a study runs in a subprocess, gets SIGINT once some units are done, and must end with
:class:`divtrace.errors.RunInterrupted` counting what it kept as it is on disk; a rerun must resume without redoing
those units. The same subprocess can get SIGKILL instead (kill -9 at a chosen moment)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: The driver: runs the study file argv[1] into argv[2] (executor argv[3], Ray address argv[4]); on Ctrl-C it
#: prints the RunInterrupted as JSON on stdout and exits 130, as the command line does.
DRIVER = """
import json, sys
from divtrace.errors import RunInterrupted
from divtrace.study import load_study

study, out, executor = load_study(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    import divtrace
    divtrace.run(study, out, executor=executor, address=sys.argv[4] if executor == "ray" else None)
except RunInterrupted as err:
    print(json.dumps({"stage": err.stage, "done": err.done, "kept": list(err.kept), "message": str(err)}))
    sys.exit(130)
"""


def unit_markers(run: Path) -> dict[Path, int]:
    """Every unit's completion marker in the run directory, with its mtime."""
    found = [*run.glob("samples/*/*/_complete.json"), *run.glob("verdicts/*/*.json"), *run.glob("scores/*/*.json")]
    found += [p for p in (run / "analysis" / "_complete.json", run / "report" / "_complete.json") if p.exists()]
    return {path: path.stat().st_mtime_ns for path in found}


def interrupt_run(
    study_file: Path,
    run: Path,
    *executor: str,
    after: int = 2,
    ready: Callable[[Path], bool] | None = None,
    sig: int = signal.SIGINT,
) -> tuple[int, str, str]:
    """Run the study in a subprocess, send it ``sig`` once ``ready(run)`` holds (default: once ``after`` unit
    markers exist); its (code, stdout, stderr)."""
    source = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-c", DRIVER, str(study_file), str(run), *(executor or ("local",))]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wanted = ready or (lambda directory: len(unit_markers(directory)) >= after)
    try:
        while process.poll() is None and not wanted(run):
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=300)  # TimeoutExpired if Ctrl-C is swallowed
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stdout, stderr


def check_interrupted(code: int, stdout: str, stderr: str, run: Path) -> dict[Path, int]:
    """Assert the run ended with RunInterrupted (exit 130, its message), counting the units finished and, for each
    generation left unfinished, the shards it kept, as they are on disk; return the markers it left."""
    assert code == 130, f"exit {code}\n{stdout}\n{stderr}"
    outcome = json.loads(stdout.strip().splitlines()[-1])
    markers = unit_markers(run)
    assert outcome["stage"] in ("generate", "verify", "score", "analyze", "report")
    assert outcome["done"] + len(outcome["kept"]) >= 1 and outcome["done"] <= len(markers)  # a fresh run dir
    for kept in outcome["kept"]:
        found = re.fullmatch(r"(\d+) shards? of generate/([^/]+)/([^/]+)", kept)
        assert found is not None, kept
        unit = run / "samples" / found[2] / found[3]
        assert not (unit / "_complete.json").exists()  # unfinished, and its shards counted as they are
        assert int(found[1]) == len(list(unit.glob("shard-*.parquet"))) >= 1
    done = outcome["done"]
    finished = f"{done} unit" if done == 1 else f"{done} units"
    what = (
        f"{', '.join(outcome['kept'])} kept, {finished} finished"
        if outcome["kept"]
        else f"{finished} finished and kept"
    )
    assert outcome["message"] == f"during {outcome['stage']}: {what}; rerun the same command to resume where it stopped"
    return markers


def check_resumed(before: dict[Path, int], run: Path) -> None:
    """Assert a rerun finished the study without rewriting any unit that was done before it."""
    after = unit_markers(run)
    assert {path: after[path] for path in before} == before  # nothing done was redone
    assert (run / "report" / "_complete.json").exists()
