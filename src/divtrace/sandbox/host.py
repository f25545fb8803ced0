"""The host side of the sandbox: plan the isolation this machine allows, run programs on pooled sandbox workers
(:mod:`divtrace.sandbox.worker`, each a long-lived supervisor: :mod:`divtrace.sandbox.supervisor`), collect how
they ended.

The public API is :func:`run_python`, :func:`run_many` and :func:`sandbox_capabilities`; docs/sandbox.md lists the
guarantees and the gaps.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from divtrace.sandbox import worker
from divtrace.sandbox.limits import Isolation, Plan, SandboxError, SandboxLimits, SandboxResult
from divtrace.sandbox.supervisor import SAFE_PATH

_plan_lock = threading.Lock()
_plans: dict[str, tuple[Plan, SandboxCapabilities]] = {}


@dataclass(frozen=True)
class SandboxCapabilities:
    """What isolation is active on this machine; record it with verdicts (``as_dict``).

    Attributes:
        isolation: ``namespace`` or ``basic`` (see the module documentation).
        network_namespace: no network at all (a fresh network namespace) rather than a Python-level socket guard.
        pid_namespace: the program sees only its own processes, all killed when it ends.
        mount_namespace: private mounts (read-only filesystem and private tmpfs, see the next two).
        user_namespace: namespaces were created unprivileged, inside a user namespace.
        readonly_filesystem: the whole filesystem is read-only (and nosuid) for the program.
        private_tmp: ``/tmp``, ``/var/tmp`` and ``/dev/shm`` are private size-limited tmpfs mounts.
        uid_drop: the program runs under a fresh unprivileged uid (only possible as root).
        capabilities_dropped: as uid 0 of a user namespace, all capabilities are dropped before the program starts.
        socket_guard: sockets are disabled by a Python prelude (basic isolation; code can undo it).
        python: path of the interpreter the program runs under.
        python_version: ``sys.version`` of that interpreter as the sandboxed user sees it.
        notes: what is weaker than the namespace isolation as root, in words.
    """

    isolation: str
    network_namespace: bool
    pid_namespace: bool
    mount_namespace: bool
    user_namespace: bool
    readonly_filesystem: bool
    private_tmp: bool
    uid_drop: bool
    capabilities_dropped: bool
    socket_guard: bool
    python: str
    python_version: str
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        values = asdict(self)
        values["notes"] = list(self.notes)
        return values


_PROBE_CODE = """\
import json, os, sys
executable = os.path.realpath(sys.executable)
print(json.dumps({"version": sys.version, "consistent": executable.startswith(sys.base_prefix)}))
"""


def _python_candidates() -> list[str]:
    """Interpreters the program may run under, best first: ours, then the system's (as a dropped uid may not be
    able to read ours, e.g. a pyenv install under /root)."""
    major, minor = sys.version_info[:2]
    names = [
        sys.executable,
        os.path.realpath(sys.executable),
        shutil.which("python3", path=SAFE_PATH) or "",
        f"/usr/bin/python{major}.{minor}",
        "/usr/bin/python3",
        f"/usr/local/bin/python{major}.{minor}",
        "/usr/local/bin/python3",
    ]
    seen: set[str] = set()
    candidates = []
    for name in names:
        if name and os.path.isfile(name) and os.path.realpath(name) not in seen:
            seen.add(os.path.realpath(name))
            candidates.append(name)
    return candidates


def _plan_variants(isolation: Isolation) -> list[Plan]:
    root = os.geteuid() == 0
    unshare = shutil.which("unshare", path=SAFE_PATH + ":/usr/sbin:/sbin")
    variants = []
    if isolation in ("auto", "namespace") and unshare is not None and sys.platform.startswith("linux"):
        variants.append(Plan(namespace=True, user_namespace=not root, drop_uid=root, python="", unshare=unshare))
    if isolation in ("auto", "basic"):
        if root:
            variants.append(Plan(namespace=False, user_namespace=False, drop_uid=True, python=""))
        variants.append(Plan(namespace=False, user_namespace=False, drop_uid=False, python=""))
    return variants


def _notes(plan: Plan, setup: dict[str, Any]) -> tuple[str, ...]:
    notes = []
    if not plan.namespace:
        notes += [
            "no network namespace: sockets are blocked by a Python prelude only; code using ctypes, os.system or "
            "subprocesses can still reach the network",
            "no PID namespace: stragglers are found and killed by "
            + (
                "uid"
                if plan.drop_uid
                else "a marker variable, which a process can lose by exec'ing with a new environment"
            ),
            "no mount namespace: the program can write to world-writable places (/tmp, /dev/shm) and fill the disk "
            "up to its per-file size limit, file after file",
        ]
    else:
        if not setup.get("readonly_filesystem"):
            notes.append("the filesystem could not be made read-only (kernel without mount_setattr)")
        if not setup.get("private_tmp"):
            notes.append("/var/tmp or /dev/shm could not be replaced by a private tmpfs")
        if not setup.get("no_mqueue"):
            notes.append(
                "POSIX message queues could not be disabled in the sandbox: one program could leave a queue for the "
                "next program of the same worker"
            )
    if not plan.drop_uid:
        notes.append(
            "not root: no uid drop; the program runs as the invoking user"
            + (
                " (uid 0 of a user namespace without capabilities)"
                if plan.user_namespace
                else ", can read, change and delete that user's files and signal that user's processes "
                "(kill(-1) included)"
            )
        )
    return tuple(notes)


def _interpreter_note(plan: Plan, version: str) -> tuple[str, ...]:
    if version == sys.version:
        return ()
    return (
        f"the program runs under {plan.python} (Python {version.split()[0]}), not this process's interpreter "
        f"(Python {sys.version.split()[0]}, {sys.executable}), which the sandbox user cannot fully read",
    )


def _probe(isolation: Isolation) -> tuple[Plan, SandboxCapabilities]:
    """The best plan for ``isolation`` that actually runs code here, with what it provides."""
    limits = SandboxLimits(timeout_s=20.0)
    failures = []
    for variant in _plan_variants(isolation):
        best: tuple[tuple[bool, bool], Plan, str, dict[str, Any]] | None = None
        try:
            sandbox = worker.acquire(variant)
        except SandboxError as exc:
            failures.append(f"{variant.isolation}: {exc}")
            continue
        setup = dict(sandbox.setup)
        for python in _python_candidates():
            plan = Plan(variant.namespace, variant.user_namespace, variant.drop_uid, python, variant.unshare)
            try:
                result = sandbox.run(_PROBE_CODE, limits, python)
                info = json.loads(result.stdout) if result.ok else None
            except (SandboxError, worker.WorkerUnavailable, ValueError) as exc:
                failures.append(f"{plan.isolation} with {python}: {exc}")
                if not sandbox.alive:
                    break
                continue
            if not isinstance(info, dict):
                failures.append(f"{plan.isolation} with {python}: {result.status}: {result.summary()}")
                continue
            score = (info["version"] == sys.version, bool(info["consistent"]))
            if best is None or score > best[0]:
                best = (score, plan, str(info["version"]), setup)
            if score == (True, True):
                break
        worker.release(sandbox)
        if best is not None:
            _, plan, version, setup = best
            capabilities = SandboxCapabilities(
                isolation=plan.isolation,
                network_namespace=plan.namespace,
                pid_namespace=plan.namespace,
                mount_namespace=plan.namespace,
                user_namespace=plan.user_namespace,
                readonly_filesystem=bool(setup.get("readonly_filesystem")),
                private_tmp=bool(setup.get("private_tmp")),
                uid_drop=plan.drop_uid,
                capabilities_dropped=plan.user_namespace,
                socket_guard=not plan.namespace,
                python=plan.python,
                python_version=version,
                notes=_notes(plan, setup) + _interpreter_note(plan, version),
            )
            return plan, capabilities
    raise SandboxError(f"no sandbox isolation ({isolation}) works on this machine: " + "; ".join(failures))


def _plan_for(isolation: Isolation) -> tuple[Plan, SandboxCapabilities]:
    if isolation not in ("auto", "namespace", "basic"):
        raise ValueError(f"isolation must be 'auto', 'namespace' or 'basic', got {isolation!r}")
    with _plan_lock:
        if isolation not in _plans:
            _plans[isolation] = _probe(isolation)
        return _plans[isolation]


def sandbox_capabilities(isolation: Isolation = "auto") -> SandboxCapabilities:
    """What the sandbox provides on this machine for ``isolation`` (probed once per process by running code).

    ``auto`` picks the strongest that works: ``namespace`` (needs ``unshare`` and root or unprivileged user
    namespaces), else ``basic``. Raises SandboxError when the requested isolation cannot run code here.
    """
    return _plan_for(isolation)[1]


def run_python(code: str, limits: SandboxLimits | None = None, *, isolation: Isolation = "auto") -> SandboxResult:
    """Run ``code`` as the ``__main__`` script of a fresh sandboxed Python process and report how it ended.

    Whatever the code does (loop forever, fork, allocate, print, delete, kill, connect), this returns a
    SandboxResult once the run is over and everything it started is gone; it raises SandboxError only when the
    sandbox itself cannot be set up (a machine problem, never a property of ``code``). The sandbox (namespaces and
    supervisor) is taken from a per-process pool and reused by later calls; the program gets a fresh working
    directory, fresh temporary directories and, as root, a fresh uid.
    """
    plan, _ = _plan_for(isolation)
    runner = worker.Runner(plan)
    try:
        return runner.run(code, limits or SandboxLimits())
    finally:
        runner.close()


def run_many(
    codes: Sequence[str],
    limits: SandboxLimits | None = None,
    *,
    workers: int | None = None,
    isolation: Isolation = "auto",
) -> list[SandboxResult]:
    """:func:`run_python` over ``codes``, up to ``workers`` sandboxes at once (default: the CPU count); in order.

    Each sandbox runs its share of the programs one after the other (the next program is taken from the shared
    queue as soon as one ends). Identical codes run once and share their SandboxResult (the limits are the same for
    all), so a program that behaves differently from run to run gets the result of its one run.
    """
    if not codes:
        return []
    plan, _ = _plan_for(isolation)
    chosen = limits or SandboxLimits()
    unique = list(dict.fromkeys(codes))
    results: dict[str, SandboxResult] = {}
    pending = iter(unique)
    lock = threading.Lock()
    failed = threading.Event()

    def serve() -> None:
        runner = worker.Runner(plan)
        try:
            while not failed.is_set():
                with lock:
                    code = next(pending, None)
                if code is None:
                    return
                try:
                    results[code] = runner.run(code, chosen)
                except BaseException:
                    failed.set()
                    raise
        finally:
            runner.close()

    count = max(1, min(workers or os.cpu_count() or 1, len(unique)))
    if count == 1:
        serve()
    else:
        with ThreadPoolExecutor(max_workers=count, thread_name_prefix="divtrace-sandbox") as pool:
            for future in [pool.submit(serve) for _ in range(count)]:
                future.result()
    return [results[code] for code in codes]
