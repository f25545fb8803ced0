"""Tasks: where prompts come from, how they are rendered, and how outputs are verified."""

from divtrace.tasks.base import DataSource, Task
from divtrace.tasks.registry import all_tasks, get_task, register_task, task_names
from divtrace.tasks.sources import load_prompts, load_rows

__all__ = ["DataSource", "Task", "all_tasks", "get_task", "load_prompts", "load_rows", "register_task", "task_names"]
