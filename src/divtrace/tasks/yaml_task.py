"""Tasks from YAML files: a prompts file, a template and an optional verifier, without writing Python.

Example ``my_task.yaml``::

    name: capitals
    prompts: capitals.jsonl          # JSONL or Parquet rows, relative to this file
    template: "Q: What is the capital of {country}?\\nA:"
    id_field: id                     # optional: row field with a stable id (else the row index)
    n: 50                            # optional: prompts used by default (else all rows)
    stop: ["\\n"]                    # optional
    max_new_tokens: 64               # optional
    verifier: gsm8k                  # optional: a registered verifier name
    references: [answer]             # row fields handed to the verifier
    family: custom                   # optional
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from divtrace import plugins
from divtrace.errors import DivtraceError
from divtrace.tasks.base import DataSource, Task, template_format
from divtrace.tasks.sources import read_table_rows
from divtrace.yaml_files import read_yaml_mapping


class TaskFile(BaseModel):
    """The schema of a task YAML file (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    prompts: Path
    template: str = Field(min_length=1)
    id_field: str | None = None
    n: int | None = Field(None, ge=1)
    stop: list[str] = Field(default_factory=list)
    max_new_tokens: int = Field(512, ge=1)
    verifier: str | None = None
    references: list[str] = Field(default_factory=list)
    family: str = "custom"
    description: str = ""
    code: bool = False

    @field_validator("verifier")
    @classmethod
    def _known_verifier(cls, value: str | None) -> str | None:
        known = sorted(plugins.names("verifier"))
        if value is not None and value not in known:
            raise ValueError(f"unknown verifier {value!r}; known: {', '.join(known)}")
        return value


#: The suffixes of a task file; a study's task named with one is the file's task.
TASK_FILE_SUFFIXES = (".yaml", ".yml")


def task_file_label(name: str) -> str | None:
    """The label a study's task ``name`` gives its samples: ``name`` itself, or for a task file (a ``.yaml`` or
    ``.yml`` path) the ``name`` it holds; None when that file cannot be read or holds no name (loading the task with
    :func:`load_task_file` says why)."""
    if not name.endswith(TASK_FILE_SUFFIXES):
        return name
    try:
        raw = read_yaml_mapping(Path(name), missing="", not_a_mapping="")
    except DivtraceError:
        return None
    label = raw.get("name")
    return label if isinstance(label, str) and label else None


def load_task_file(path: str | Path) -> Task:
    """The task described by a YAML file.

    Raises DivtraceError naming the file and the offending key (or the YAML line) for any problem: not YAML,
    unknown or missing keys, a prompts file that does not exist, a template field the rows lack.
    """
    path = Path(path)
    raw = read_yaml_mapping(
        path,
        missing="task file not found",
        not_a_mapping="a task file is a mapping of keys (name, prompts, template, ...)",
    )
    try:
        spec = TaskFile.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"key '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in err.errors())
        raise DivtraceError(f"{path}: {problems}") from None
    prompts = spec.prompts if spec.prompts.is_absolute() else path.parent / spec.prompts
    if not prompts.exists():
        raise DivtraceError(f"{path}: key 'prompts': {prompts} does not exist")
    rows = read_table_rows(prompts)
    if not rows:
        raise DivtraceError(f"{path}: key 'prompts': {prompts} holds no rows")
    render = template_format(spec.template)
    try:
        render(rows[0])
    except DivtraceError as err:
        raise DivtraceError(f"{path}: key 'template': {err}") from None
    return Task(
        name=spec.name,
        family=spec.family,
        source=DataSource(local_file=prompts),
        prompt_format=render,
        template=spec.template,
        default_n=spec.n or len(rows),
        stop=tuple(spec.stop),
        max_new_tokens=spec.max_new_tokens,
        verifier=spec.verifier,
        id_field=spec.id_field,
        reference_fields=tuple(spec.references),
        code=spec.code,
        description=spec.description,
    )
