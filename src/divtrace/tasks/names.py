"""Map the task names of other harnesses (lm-evaluation-harness, lighteval) onto divtrace's tasks.

Imported records keep the task label their tool logged (``gsm8k_cot_zeroshot``, ``lighteval|gsm8k|0|0``...): it is
what every table and the report show. Verification needs a divtrace task, for its verifier and reference schema;
:func:`resolve_task` finds it:

1. an explicit mapping wins (``task_map``, from ``--task-map SOURCE=TASK``), keyed by the label as logged or by
   its base name (below);
2. a label that is a divtrace task (or a task ``.yaml`` file) is itself;
3. the base name: lighteval's ``suite|task|shots[|truncation]`` and ``task|shots`` lose the suite and the
   numeric parts (``lighteval|gsm8k|0|0`` -> ``gsm8k``), a metric suffix ``@...`` goes, ``:`` reads as ``_``
   (``math:algebra`` -> ``math_algebra``); then the base name itself or a known family of variants:
   ``gsm8k*`` (``gsm8k_cot``, ``gsm8k_cot_self_consistency``, ``gsm8k_cot_zeroshot``, ...) -> ``gsm8k``;
   ``hendrycks_math*``, ``minerva_math*``, ``math_500``, ``math*`` -> ``math_<subject>`` when divtrace has that
   subject, else ``math_algebra`` (every MATH subject has the same verifier); ``humaneval*`` -> ``humaneval``;
   ``mbpp*`` -> ``mbpp``; ``ifeval*`` -> ``ifeval``; ``truthfulqa_gen`` -> ``truthfulqa``; ``cruxeval*`` ->
   ``cruxeval``.

Anything else is not resolved; the resolution then says why and what to do (``--task-map``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from divtrace.errors import DivtraceError
from divtrace.tasks.registry import get_task, task_names

#: Verifiable divtrace tasks that variant families map onto, by the prefix of the base name.
FAMILY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gsm8k", "gsm8k"),
    ("humaneval", "humaneval"),
    ("mbpp", "mbpp"),
    ("ifeval", "ifeval"),
    ("truthfulqa_gen", "truthfulqa"),
    ("cruxeval", "cruxeval"),
)
#: MATH task names and their subject (``minerva_math_algebra`` -> ``algebra``); ``mathqa`` is not one.
MATH_NAME = re.compile(r"^(?:hendrycks_|minerva_)?math(?:_(?P<subject>.+))?$")
#: The MATH task whose verifier checks a subject divtrace has no task for.
MATH_FALLBACK = "math_algebra"
_SHOTS = re.compile(r"^\d+$")


@dataclass(frozen=True)
class TaskResolution:
    """Which divtrace task verifies the records labelled ``label``.

    ``task`` is the divtrace task's name (None when none was found); ``how`` says how it was found (for the
    settings and messages); ``reason`` says, when ``task`` is None, why and what to do.
    """

    label: str
    task: str | None
    how: str
    reason: str | None = None


def base_task_name(label: str) -> str:
    """A logged task name without harness decorations: suite prefix, shot counts, metric suffix; ``:`` -> ``_``.

    ``lighteval|gsm8k|0|0`` -> ``gsm8k``; ``gsm8k|5`` -> ``gsm8k``; ``leaderboard|math:algebra|4`` ->
    ``math_algebra``; ``gsm8k_cot`` -> ``gsm8k_cot`` (variants are mapped by :func:`resolve_task`).
    """
    parts = [part.strip() for part in label.split("|")]
    words = [part for part in parts if part and not _SHOTS.match(part)]
    name = words[-1] if words else label.strip()
    return name.split("@", 1)[0].replace(":", "_").strip().lower()


def _known(name: str) -> bool:
    return name in task_names()


def _family(base: str) -> str | None:
    """The divtrace task a variant family maps ``base`` onto, or None."""
    for prefix, task in FAMILY_PREFIXES:
        if base.startswith(prefix) and _known(task):
            return task
    match = MATH_NAME.match(base)
    if match is None:
        return None
    subject = match["subject"]
    return f"math_{subject}" if subject and _known(f"math_{subject}") else MATH_FALLBACK


def resolve_task(label: str, task_map: Mapping[str, str] | None = None) -> TaskResolution:
    """The divtrace task that verifies records labelled ``label`` (see the module docstring for the rules).

    Contract: never raises for an unknown label (the resolution's ``task`` is None and ``reason`` says what to
    do); raises :class:`DivtraceError` when ``task_map`` maps ``label`` onto a task divtrace does not know,
    naming the mapping and the known tasks.
    """
    base = base_task_name(label)
    mapping = dict(task_map or {})
    for key in (label, base):
        if key in mapping:
            target = mapping[key]
            try:
                get_task(target)
            except DivtraceError:
                raise DivtraceError(
                    f"task map {key}={target}: {target!r} is not a divtrace task; known tasks: "
                    f"{', '.join(task_names())} (or a task .yaml file)"
                ) from None
            return TaskResolution(label, target, f"task map {key}={target}")
    if _known(label) or label.endswith((".yaml", ".yml")):
        return TaskResolution(label, label, "divtrace task")
    if _known(base):
        return TaskResolution(label, base, f"{label} -> {base} (suite and shot counts removed)")
    family = _family(base)
    if family is not None:
        return TaskResolution(label, family, f"{label} -> {family} (a {family} variant)")
    return TaskResolution(
        label,
        None,
        "not found",
        f"task {label!r} is not one divtrace can verify (no divtrace task of that name or family); if it is a "
        f"variant of a verifiable task, name it with --task-map {label}=TASK (verifiable tasks: "
        f"{', '.join(verifiable_task_names())})",
    )


def verifiable_task_names() -> list[str]:
    """Names of the registered tasks that have a verifier, in registry order."""
    return [name for name in task_names() if get_task(name).verifiable]


def parse_task_map(items: Iterable[str]) -> dict[str, str]:
    """``SOURCE=TASK`` strings (the repeatable ``--task-map`` option) as a dict; the last one for a SOURCE wins.

    Raises :class:`DivtraceError` naming an item that is not ``SOURCE=TASK`` with both sides non-empty.
    """
    mapping: dict[str, str] = {}
    for item in items:
        source, sep, target = item.rpartition("=")
        source, target = source.strip(), target.strip()
        if not sep or not source or not target:
            raise DivtraceError(f"--task-map {item!r}: expected SOURCE=TASK, e.g. gsm8k_cot_zeroshot=gsm8k")
        mapping[source] = target
    return mapping
