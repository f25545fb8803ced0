"""Reading the YAML files a user writes (studies, task files) with errors that name the file and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from divtrace.errors import DivtraceError
from divtrace.text_files import read_utf8


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
