"""The Ray executor: a stage's work items on a Ray cluster (``executor: ray`` in the study, or ``divtrace run
--executor ray --address HOST:PORT``), driven by the same driver as the local executor
(:mod:`divtrace.executors.driver`): the same items, files, markers and errors.

- A stage whose worker loads a model (generate: a checkpoint's; score: the encoders) gets ``executor.replicas``
  actors per group of items (a checkpoint), each opening the stage's worker once and computing item after item
  (``executor.cpus_per_worker`` CPUs, and the GPUs of a model replica: ``executor.gpus_per_model``, else the
  stage's need, none on a cluster without GPUs). Groups are taken in order and a group's actors are killed as soon
  as its items are done, so every model is loaded once per replica and the next group's actors take the freed
  resources.
- A stage whose worker loads nothing (verify) runs each item as a CPU task; a stage that is not distributed
  (analyze, report) runs in this process.
- **Writing** happens only in the driver, which owns the run directory: a result arrives whole from a worker and is
  saved atomically as it finishes. A worker killed mid-item loses that item only: Ray restarts the actor
  (``max_restarts``) and retries the call (``max_task_retries``); the run directory never holds a partial or a
  duplicated shard, and markers make a re-run skip finished work.
- **Errors** raised by a worker reach the driver as they were raised (a refused resume names the setting that
  differs, as it does locally).

Samples are identical to the local executor's: every sample is drawn with its own seed, whatever worker or batch
it lands in. Workers must be able to import divtrace (same environment on every node, or a Ray runtime_env).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

from divtrace.errors import DivtraceError
from divtrace.executors.driver import AnyStage, Results
from divtrace.executors.local import LocalExecutor
from divtrace.executors.ray_connect import CONNECT_TIMEOUT_S, init_ray, ray_auth
from divtrace.runs.stage import WorkItem
from divtrace.study import ExecutorSpec

#: How often Ray restarts a dead actor and retries the call it was running.
MAX_RETRIES = 3


def _ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise DivtraceError("the ray executor needs Ray: pip install 'divtrace[ray]'") from err
    return ray


class StageWorker:
    """A Ray actor body: one worker of a stage (a loaded model), computing item after item."""

    def __init__(self, stage: AnyStage, group: str, threads: int | None) -> None:
        self.worker = stage.open_worker(group, threads, None)

    def pid(self) -> int:
        """The worker process id (tests kill it)."""
        return os.getpid()

    def compute(self, payload: Any) -> Any:
        """The result of one item."""
        return self.worker.compute(payload, None)

    def close(self) -> None:
        """Release the worker."""
        self.worker.close()


def _compute_once(stage: AnyStage, group: str, threads: int | None, payload: Any) -> Any:
    """A Ray task body: one item with a worker of its own."""
    worker = stage.open_worker(group, threads, None)
    try:
        return worker.compute(payload, None)
    finally:
        worker.close()


class RayExecutor:
    """Runs stages' work items on a Ray cluster (see the module documentation), with the resources of ``spec``.

    As a context manager it joins the cluster at ``address`` (default: ``spec.address``; None starts a local Ray)
    unless this process already has a Ray session: the address is checked first with ``connect_timeout_s``
    (:func:`divtrace.executors.ray_connect.init_ray`), and token authentication follows
    :func:`divtrace.executors.ray_connect.ray_auth`. On leaving, it shuts down only a session it started. Ctrl-C
    while items run kills this stage's actors and cancels its tasks before the KeyboardInterrupt goes on.
    """

    def __init__(
        self,
        spec: ExecutorSpec | None = None,
        *,
        address: str | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.spec = spec or ExecutorSpec(type="ray")
        self.address = address if address is not None else self.spec.address
        self.connect_timeout_s = connect_timeout_s
        self.ray = _ray()
        self.owns_connection = False
        self._session = contextlib.ExitStack()

    # ----------------------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> RayExecutor:
        self.owns_connection = not self.ray.is_initialized()
        if self.owns_connection:
            with contextlib.ExitStack() as session:
                session.enter_context(ray_auth())  # kept until ray.shutdown
                init_ray(self.ray, self.address, self.connect_timeout_s)
                self._session = session.pop_all()
        return self

    def __exit__(self, *_: object) -> None:
        if self.owns_connection:  # a caller's own Ray session stays up
            try:
                self.ray.shutdown()
            finally:
                self._session.close()

    # ------------------------------------------------------------------------------------------------- items

    def run_items(self, stage: AnyStage, items: Iterable[WorkItem[Any]], results: Results) -> None:
        """Every item on the cluster (a stage that is not distributed: in this process), each result handed to
        ``results`` as it arrives; on the way out (Ctrl-C included) this stage's actors are killed and its tasks
        cancelled."""
        if not stage.distributed:
            LocalExecutor().run_items(stage, items, results)
            return
        listed = list(items)  # every unit's inputs read here, in the driver, which owns the run directory
        if not listed:
            return
        threads = max(1, int(self.spec.cpus_per_worker))
        shared = self.ray.put(stage)  # sent to the cluster once, not once per actor or task
        actors: dict[str, list[Any]] = {}
        pending: dict[Any, WorkItem[Any]] = {}
        try:
            if stage.loads_model:
                self._start_actors(stage, shared, listed, threads, actors, pending)
            else:
                task = self.ray.remote(_compute_once).options(
                    num_cpus=self.spec.cpus_per_worker, max_retries=MAX_RETRIES
                )
                pending = {task.remote(shared, item.group, threads, item.payload): item for item in listed}
            left = Counter(item.group for item in pending.values())
            while pending:
                ready, _ = self.ray.wait(list(pending), num_returns=1)
                item = pending.pop(ready[0])
                results.finished(item, self._get(ready[0], f"{stage.name} {item.unit.name}"))
                left[item.group] -= 1
                if left[item.group] == 0:  # free the group's resources for the next group's actors
                    for actor in actors.pop(item.group, []):
                        self.ray.kill(actor)
        finally:
            for group in actors.values():
                for actor in group:
                    self.ray.kill(actor)
            if not stage.loads_model:
                for future in pending:  # interrupted or failed: nothing left running for this run
                    self.ray.cancel(future, force=True)

    def _start_actors(self, stage: AnyStage, shared: Any, listed: list[WorkItem[Any]], threads: int,
                      actors: dict[str, list[Any]], pending: dict[Any, WorkItem[Any]]) -> None:  # fmt: skip
        """Each group's actors (``executor.replicas`` at most, one per item at most), its items queued on them in
        turn; groups in order, so Ray places the next group's actors as resources free up."""
        groups: dict[str, list[WorkItem[Any]]] = {}
        for item in listed:
            groups.setdefault(item.group, []).append(item)
        for group, members in groups.items():
            remote = self.ray.remote(StageWorker).options(
                num_cpus=self.spec.cpus_per_worker,
                num_gpus=self.gpus_for(stage, group),
                max_restarts=MAX_RETRIES,
                max_task_retries=MAX_RETRIES,
            )
            replicas = max(1, min(self.spec.replicas, len(members)))
            actors[group] = [remote.remote(shared, group, threads) for _ in range(replicas)]
            for position, item in enumerate(members):
                pending[actors[group][position % replicas].compute.remote(item.payload)] = item

    def gpus_for(self, stage: AnyStage, group: str) -> float:
        """GPUs per actor of ``stage``'s ``group``: none for a worker that needs none; else the study's
        ``executor.gpus_per_model``, else the stage's (a model replica's), but none on a cluster without GPUs."""
        needed = stage.worker_gpus(group)
        if needed <= 0:
            return 0.0
        if self.spec.gpus_per_model is not None:
            return self.spec.gpus_per_model
        if self.ray.cluster_resources().get("GPU", 0) <= 0:
            return 0.0  # a CPU cluster (CPU vLLM included): an actor asking for a GPU would never run
        return needed

    def _get(self, future: Any, what: str) -> Any:
        try:
            return self.ray.get(future)
        except self.ray.exceptions.RayError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, DivtraceError):
                raise cause from err
            raise DivtraceError(f"ray executor: {what} failed: {err}") from err
