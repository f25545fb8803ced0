"""Tasks in the plug-in registry (:mod:`divtrace.plugins`, kind ``task``): the study's built-in tasks, the bundled
tasks (the quickstart's and the lab's), and tasks registered at run time or read from YAML. Tasks are data, so their
entries are the Task objects themselves, registered when this module is imported."""

from __future__ import annotations

from pathlib import Path

from divtrace import plugins
from divtrace.errors import DivtraceError
from divtrace.tasks.base import Task
from divtrace.tasks.builtin import BUILTIN_TASKS


def _register_builtin() -> None:
    """Register the study's tasks, then the bundled ones: the quickstart study's (``open_ended``, ``arithmetic``)
    and the lab's (``lab_prompts``, ``lab_arithmetic``)."""
    from divtrace.tasks.bundled import BUNDLED_TASK_FILES
    from divtrace.tasks.yaml_task import load_task_file

    for task in BUILTIN_TASKS:
        plugins.register("task", task.name, task, replace_existing=True)
    for path in BUNDLED_TASK_FILES:
        task = load_task_file(path)
        if task.name not in plugins.names("task"):
            plugins.register("task", task.name, task)


_register_builtin()


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Make ``task`` available by name; a name already taken (by a different task) is a DivtraceError unless
    ``replace``."""
    if task.name in plugins.names("task") and not replace and plugins.load("task", task.name) != task:
        raise DivtraceError(f"a task named {task.name!r} already exists")
    plugins.register("task", task.name, task, replace_existing=True)
    return task


def get_task(name: str) -> Task:
    """The task called ``name``, or a ``.yaml``/``.yml`` task file's task (registered on first use).

    Raises DivtraceError listing the known names for an unknown one.
    """
    from divtrace.tasks.yaml_task import TASK_FILE_SUFFIXES, load_task_file

    if name.endswith(TASK_FILE_SUFFIXES):
        return register_task(load_task_file(Path(name)), replace=True)
    task = plugins.load("task", name)
    if not isinstance(task, Task):
        raise DivtraceError(f"task plug-in {name!r} is not a Task ({task!r})")
    return task


def task_names() -> list[str]:
    """Registered task names, built-in ones first in the study's order."""
    return plugins.names("task")


def all_tasks() -> list[Task]:
    """Every registered task, in :func:`task_names` order."""
    return [get_task(name) for name in task_names()]
