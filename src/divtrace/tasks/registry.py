"""The task registry: the study's built-in tasks, the quickstart's bundled tasks, and tasks registered at run
time or read from YAML."""

from __future__ import annotations

from pathlib import Path

from divtrace.errors import DivtraceError
from divtrace.tasks.base import Task
from divtrace.tasks.builtin import BUILTIN_TASKS

_TASKS: dict[str, Task] = {task.name: task for task in BUILTIN_TASKS}


def _register_bundled() -> None:
    """Register the quickstart study's bundled tasks (``open_ended``, ``arithmetic``) after the study's own."""
    from divtrace.tasks.bundled import QUICKSTART_TASK_FILES
    from divtrace.tasks.yaml_task import load_task_file

    for path in QUICKSTART_TASK_FILES:
        task = load_task_file(path)
        _TASKS.setdefault(task.name, task)


_register_bundled()


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Make ``task`` available by name; a name already taken is an error unless ``replace``."""
    if task.name in _TASKS and not replace and _TASKS[task.name] != task:
        raise DivtraceError(f"a task named {task.name!r} already exists")
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task called ``name``, or a ``.yaml``/``.yml`` task file's task (registered on first use).

    Raises DivtraceError listing the known names for an unknown one.
    """
    if name.endswith((".yaml", ".yml")):
        from divtrace.tasks.yaml_task import load_task_file

        return register_task(load_task_file(Path(name)), replace=True)
    if name not in _TASKS:
        raise DivtraceError(f"unknown task {name!r}; known tasks: {', '.join(task_names())} (or a task .yaml file)")
    return _TASKS[name]


def task_names() -> list[str]:
    """Registered task names, built-in ones first in the study's order."""
    return list(_TASKS)


def all_tasks() -> list[Task]:
    """Every registered task, in :func:`task_names` order."""
    return list(_TASKS.values())
