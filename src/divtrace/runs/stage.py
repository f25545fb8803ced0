"""The contract every stage implements (generate, verify, score, analyze, report, and the stages to come).

A stage is an object its package owns (``generate/stage.py``, ``verify/stage.py``...). It says

- what it is: :attr:`Stage.name`, and :attr:`Stage.version`, bumped when the same inputs give other outputs;
- its :class:`Unit` s (:meth:`Stage.units`): each with its key, the fingerprint of everything the unit's output is
  computed from (its inputs, its settings and the stage's version, through :meth:`Stage.key`), its output paths and
  its marker;
- the :class:`WorkItem` s of a unit (:meth:`Stage.items`), read from the run directory by the driver: one per unit,
  or several (generation: one per shard);
- how to open a :class:`Worker` (:meth:`Stage.open_worker`: load a model once for a group of items, e.g. a
  checkpoint's), which computes one item without writing anything, so it can run anywhere (a Ray actor);
- how to store an item's result (:meth:`Stage.save`: atomic writes, done by the driver process, which owns the run
  directory);
- what it would refuse to resume, when that is known before any work (:meth:`Stage.check_resume`), and whether it
  can do its work at all (:meth:`Stage.check_ready`: the judge's endpoint answers).

The driver (:mod:`divtrace.executors.driver`) runs every stage the same way: the pending units (marker missing or
stale, or an output it records missing or damaged), their items through an executor, each result saved as it
arrives, a unit's marker written once all its items are stored (recording each output file's size and digest), and
a :class:`StageReport`.

A stage that reads another stage's units checks them first (:func:`divtrace.runs.outputs.check_input`) in
:meth:`Stage.items`, so it never computes on a short or damaged input.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from divtrace.fingerprint import fingerprint
from divtrace.progress import UNITS_OF_WORK, ProgressSink
from divtrace.runs.layout import RunLayout

#: What a worker computes from (sent to wherever the worker runs).
P = TypeVar("P")
#: What a worker computes (sent back to the driver).
R = TypeVar("R")
P_contra = TypeVar("P_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True)
class Unit:
    """One unit of a stage: an output with its marker, done when the marker holds ``key`` and the output files it
    records are as recorded (:func:`divtrace.runs.outputs.unit_state`).

    Attributes:
        name: ``checkpoint/task``, ``analysis`` or ``report``: how reports and progress name it.
        key: the fingerprint of everything the output is computed from (:meth:`Stage.key`).
        marker: the completion marker (:func:`divtrace.runs.markers.marker_for` of the output).
        outputs: the files the unit writes (a directory: every file below it but hidden ones and the marker); its
            marker records each with its size and sha256.
        checkpoint, task: the (checkpoint, task) cell of a unit of one; empty for a unit of the whole study.
        size: how many of the stage's :attr:`Stage.count` the unit holds (samples of a generation), when known.
        facts: what its marker records besides the key, for people (``prompts``, ``k``).
    """

    name: str
    key: str
    marker: Path
    outputs: tuple[Path, ...]
    checkpoint: str = ""
    task: str = ""
    size: int | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkItem(Generic[P]):
    """One piece of a unit's work: ``payload`` is what the worker computes from.

    Attributes:
        unit: the unit it belongs to.
        payload: the worker's input (read from the run directory by the driver; sent to the worker).
        group: items of one group share a worker (a checkpoint's loaded model); ``""``: one worker for all.
        size: how many of the stage's :attr:`Stage.count` it holds (samples of a shard), when known.
    """

    unit: Unit
    payload: P
    group: str = ""
    size: int | None = None


class Worker(Protocol[P_contra, R_co]):
    """What a stage opens once per group of items (a model, a scorer) and computes items with."""

    def compute(self, payload: P_contra, progress: ProgressSink | None) -> R_co:
        """The result of one item: pure (it writes nothing), so it can run in another process or machine.
        ``progress`` gets the item's events (None where nobody listens, e.g. on a Ray actor)."""
        ...

    def close(self) -> None:
        """Release what the worker loaded."""
        ...


@dataclass
class StageReport:
    """What a stage did: units of work run now and skipped as already done."""

    stage: str
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: What the user should know: work that could not be done, and why (e.g. a task that cannot be verified).
    notes: list[str] = field(default_factory=list)


class Stage(ABC, Generic[P, R]):
    """A stage of a run (see the module documentation). Subclasses are frozen dataclasses holding the stage's
    typed settings, so a stage can be sent to a worker process as it is."""

    #: ``generate``, ``verify``, ``score``, ``analyze``, ``report``.
    name: ClassVar[str]
    #: Bumped when the stage computes other outputs from the same inputs: every unit's key changes, so its units
    #: (and only its) are redone.
    version: ClassVar[int]
    #: What :attr:`Unit.size` and :attr:`WorkItem.size` count (one of :data:`divtrace.progress.UNITS`).
    count: ClassVar[str] = UNITS_OF_WORK
    #: What one of its work items is, in words (``shard``): how an interrupted run counts the items it kept.
    item_name: ClassVar[str] = "item"
    #: True when its items are worth sending to a cluster (Ray); False: they always run in the driver's process.
    distributed: ClassVar[bool] = True
    #: True when a worker loads a model worth keeping across items (Ray: actors per group, kept until the group's
    #: items are done); False: each item may open its own.
    loads_model: ClassVar[bool] = False

    def key(self, inputs: Mapping[str, Any]) -> str:
        """The fingerprint of a unit computed from ``inputs`` by this stage, its name and version included."""
        return fingerprint({"stage": self.name, "version": self.version, **inputs})

    def notes(self) -> list[str]:
        """What the user should know about the stage's work before it runs (work that will not be done, and why)."""
        return []

    def check_resume(self, layout: RunLayout) -> None:
        """Raise a :class:`~divtrace.errors.DivtraceError` when a stored output in ``layout`` was made otherwise
        and this stage would refuse to resume it, as far as that is known without loading a model (nothing to
        check by default). The driver asks every stage before it writes anything, ``study.yaml`` included, so such
        a refusal leaves the run directory as it was."""

    def check_ready(self, layout: RunLayout) -> None:
        """Raise a :class:`~divtrace.errors.DivtraceError` when the stage could not do its pending work at all (an
        unreachable endpoint, a refused key), found before any stage works (nothing to check by default). The
        driver asks every stage after :meth:`check_resume`, before anything is written."""

    @abstractmethod
    def units(self, layout: RunLayout) -> list[Unit]:
        """Every unit of the stage in ``layout``, done or not, in the order they run."""

    @abstractmethod
    def items(self, layout: RunLayout, unit: Unit) -> list[WorkItem[P]]:
        """The work items of ``unit``, with their inputs read from ``layout`` (called when the unit is about to run)."""

    @abstractmethod
    def open_worker(self, group: str, threads: int | None, progress: ProgressSink | None) -> Worker[P, R]:
        """A worker for the items of ``group`` (``threads``: CPU threads it may use, None: the default)."""

    @abstractmethod
    def save(self, layout: RunLayout, item: WorkItem[P], result: R) -> Mapping[str, Any]:
        """Store ``result`` of ``item`` atomically in ``layout``; the facts its unit's marker records (with
        :attr:`Unit.facts`) once every item of the unit is saved."""

    def worker_gpus(self, group: str) -> float:
        """GPUs a worker of ``group`` needs (a model replica's); 0 by default."""
        return 0.0
