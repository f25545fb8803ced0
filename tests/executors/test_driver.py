"""The one driver (:mod:`divtrace.executors.driver`) on a toy stage: pending units only, results saved as they
arrive, a unit's marker once all its items are stored (recording its output files), a version bump redoes the
stage's units, a damaged output is moved aside, named and redone, Ctrl-C names the stage and counts the units and
items kept, and progress comes as :class:`ProgressEvent`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from divtrace.errors import RunInterrupted
from divtrace.executors.driver import run_stages
from divtrace.executors.local import LocalExecutor
from divtrace.progress import ProgressEvent, ProgressSink
from divtrace.runs.layout import RunLayout
from divtrace.runs.markers import is_done
from divtrace.runs.stage import Stage, Unit, WorkItem


class Shout:
    """A worker that upper-cases its payload (and is interrupted on ``stop_at``)."""

    def __init__(self, stop_at: str | None, opened: list[str]) -> None:
        self.stop_at = stop_at
        self.opened = opened

    def compute(self, payload: str, progress: ProgressSink | None) -> str:
        if payload == self.stop_at:
            raise KeyboardInterrupt
        if progress is not None:
            progress(ProgressEvent("", "", 1, 1, "samples"))
        return payload.upper()

    def close(self) -> None:
        self.opened.append("closed")


@dataclass(frozen=True)
class Echo(Stage[str, str]):
    """Each word a unit of two items (``word:0``, ``word:1``), written to ``WORD.txt`` line by line."""

    name: ClassVar[str] = "echo"
    version: ClassVar[int] = 1
    count: ClassVar[str] = "samples"

    words: tuple[str, ...]
    stop_at: str | None = None
    opened: tuple[list[str], ...] = ([],)

    def units(self, layout: RunLayout) -> list[Unit]:
        return [
            Unit(word, self.key({"word": word}), layout.root / f"{word}.json", (layout.root / f"{word}.txt",), size=2)
            for word in self.words
        ]

    def items(self, layout: RunLayout, unit: Unit) -> list[WorkItem[str]]:
        return [WorkItem(unit, f"{unit.name}:{i}", group=unit.name, size=1) for i in range(2)]

    def open_worker(self, group: str, threads: int | None, progress: ProgressSink | None) -> Shout:
        self.opened[0].append(group)
        return Shout(self.stop_at, self.opened[0])

    def save(self, layout: RunLayout, item: WorkItem[str], result: str) -> Mapping[str, Any]:
        assert not is_done(item.unit.marker, item.unit.key)  # the marker comes after every item of the unit
        with item.unit.outputs[0].open("a") as handle:
            handle.write(result + "\n")
        return {"last": result}


def test_pending_units_run_once_and_their_markers_follow_their_items(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    opened: list[str] = []
    events: list[ProgressEvent] = []
    [report] = run_stages([Echo(("a", "b"), opened=(opened,))], layout, LocalExecutor(), progress=events.append)
    assert report.ran == ["a", "b"] and report.skipped == []
    assert (tmp_path / "a.txt").read_text() == "A:0\nA:1\n"
    marker = json.loads((tmp_path / "a.json").read_text())
    written = {"path": "a.txt", "size": 8, "sha256": hashlib.sha256(b"A:0\nA:1\n").hexdigest()}
    assert marker == {"fingerprint": Echo(("a",)).units(layout)[0].key, "outputs": [written], "last": "A:1"}
    assert opened == ["a", "closed", "b", "closed"]  # one worker per group, closed when the group is done
    units = [(e.done, e.total) for e in events if e.stage == "echo" and not e.unit and e.count == "units"]
    assert units == [(0, 2), (1, 2), (2, 2)]  # the stage's own count
    within = [(e.done, e.total) for e in events if e.unit == "a" and e.count == "samples"]
    assert within == [(1, 2), (1, 2), (2, 2), (2, 2)]  # each item's events moved onto the unit, then its end

    [again] = run_stages([Echo(("a", "b", "c"))], layout, LocalExecutor())
    assert again.ran == ["c"] and again.skipped == ["a", "b"]


def test_a_new_version_redoes_the_units_of_that_stage_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = RunLayout(tmp_path)

    @dataclass(frozen=True)
    class Other(Echo):
        name: ClassVar[str] = "other"
        version: ClassVar[int] = 1

    run_stages([Echo(("a",)), Other(("x",))], layout, LocalExecutor())
    monkeypatch.setattr(Echo, "version", 2)
    echo, other = run_stages([Echo(("a",)), Other(("x",))], layout, LocalExecutor())
    assert (echo.ran, other.ran) == (["a"], []) and other.skipped == ["x"]


def test_ctrl_c_names_the_stage_and_counts_the_units_kept(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)

    @dataclass(frozen=True)
    class First(Echo):
        name: ClassVar[str] = "first"

    opened: list[str] = []
    stages = [First(("a",)), Echo(("b", "c"), stop_at="c:1", opened=(opened,))]
    with pytest.raises(RunInterrupted) as caught:
        run_stages(stages, layout, LocalExecutor())
    assert (caught.value.stage, caught.value.done) == ("echo", 2)  # a (first) and b (echo); c is not finished
    assert caught.value.kept == ("1 item of echo/c",)  # c:0 is stored
    assert str(caught.value) == (
        "during echo: 1 item of echo/c kept, 2 units finished; rerun the same command to resume where it stopped"
    )
    assert opened[-1] == "closed" and not (tmp_path / "c.json").exists()
    [first, echo] = run_stages([stages[0], Echo(("b", "c"))], layout, LocalExecutor())
    assert first.ran == [] and echo.ran == ["c"] and echo.skipped == ["b"]  # the rerun resumes


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (lambda path: path.unlink(), "is missing"),
        (lambda path: path.write_text("A:0\n"), "is truncated (4 of 8 bytes), moved to damaged/a.txt"),
        (lambda path: path.write_text("A:0\nA:2\n"), "has changed (its bytes differ from those recorded), moved to "
         "damaged/a.txt"),
    ],
    ids=["missing", "truncated", "changed"],
)  # fmt: skip
def test_a_damaged_output_is_named_moved_aside_and_redone(tmp_path: Path, damage: object, what: str) -> None:
    layout = RunLayout(tmp_path)
    run_stages([Echo(("a", "b"))], layout, LocalExecutor())
    damage(tmp_path / "a.txt")  # type: ignore[operator]
    damaged = (tmp_path / "a.txt").read_text() if (tmp_path / "a.txt").exists() else None
    [report] = run_stages([Echo(("a", "b"))], layout, LocalExecutor())
    assert report.ran == ["a"] and report.skipped == ["b"]
    assert report.notes == [f"a.txt {what}: redoing echo of a"]
    if damaged is not None:  # moved aside as it was
        assert (tmp_path / "damaged" / "a.txt").read_text() == damaged
    assert (tmp_path / "a.txt").read_text() == "A:0\nA:1\n"  # redone
    [again] = run_stages([Echo(("a", "b"))], layout, LocalExecutor())
    assert again.ran == [] and again.notes == []


def test_an_older_marker_without_outputs_is_done_and_gets_them_recorded(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    run_stages([Echo(("a",))], layout, LocalExecutor())
    marker = json.loads((tmp_path / "a.json").read_text())
    older = {name: value for name, value in marker.items() if name != "outputs"}
    (tmp_path / "a.json").write_text(json.dumps(older))
    [report] = run_stages([Echo(("a",))], layout, LocalExecutor())
    assert report.skipped == ["a"] and report.ran == [] and report.notes == []
    assert json.loads((tmp_path / "a.json").read_text()) == marker  # its outputs recorded, its key and facts kept

    (tmp_path / "a.json").write_text(json.dumps(older))
    (tmp_path / "a.txt").unlink()
    [report] = run_stages([Echo(("a",))], layout, LocalExecutor())
    assert report.ran == ["a"] and report.notes == ["a.txt is missing: redoing echo of a"]
