"""Reading the YAML files a user writes (studies, task files) with errors that name the file and the line."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from divtrace.errors import DivtraceError
from divtrace.text_files import read_utf8

if TYPE_CHECKING:
    from pydantic import ValidationError

#: A part of a validation error's location that names no key (a union's tag): ``(location, index) -> bool``.
NotAKey = Callable[[tuple[int | str, ...], int], bool]


def read_yaml_mapping(path: Path, *, missing: str, not_a_mapping: str) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path``.

    Raises DivtraceError, one line starting with the path: ``"<path>: <missing>"`` when there is no such file,
    ``"<path>, line N: not UTF-8 text (byte 0x.. at byte offset B)..."`` or ``"..., line N: binary data..."`` for a
    file that is not UTF-8 text (:func:`~divtrace.text_files.read_utf8`), ``"<path>, line N: not valid YAML
    (...)"`` for a syntax error or a character YAML does not allow, ``"<path>: <not_a_mapping>"`` when the
    document is not a mapping.
    """
    try:
        text = read_utf8(path)
    except FileNotFoundError:
        raise DivtraceError(f"{path}: {missing}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.reader.ReaderError as err:  # a control character: valid UTF-8, not allowed in YAML
        line = text.count("\n", 0, err.position) + 1
        offset = len(text[: err.position].encode())
        raise DivtraceError(
            f"{path}, line {line}: not valid YAML (character U+{err.character:04X} at byte offset {offset} is not "
            "allowed in YAML)"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise DivtraceError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise DivtraceError(f"{path}: {not_a_mapping}")
    return raw


def key_problems(error: ValidationError, not_a_key: NotAKey, explain: Mapping[str, str] | None = None) -> list[str]:
    """Each problem of a pydantic ``error`` in a file's terms: ``key 'stages.1.parent': message``, the key dotted
    from the error's location without the parts ``not_a_key`` says are none (the tags of unions), the message
    without pydantic's ``Value error, `` prefix, or ``explain``'s sentence for the error's type; a problem of the
    whole file is its message alone."""
    problems = []
    for item in error.errors():
        location = tuple(item["loc"])
        key = ".".join(str(part) for index, part in enumerate(location) if not not_a_key(location, index))
        message = (explain or {}).get(item["type"]) or str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"key '{key}': {message}" if key else message)
    return problems
