"""Reading the YAML files a user writes (studies, task files) with errors that name the file and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from divtrace.errors import DivtraceError


def read_yaml_mapping(path: Path, *, missing: str, not_a_mapping: str) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path``.

    Raises DivtraceError starting with the path: ``"<path>: <missing>"`` when there is no such file, ``"<path>,
    line N: not valid YAML (...)"`` for a syntax error, ``"<path>: <not_a_mapping>"`` when the document is not a
    mapping.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DivtraceError(f"{path}: {missing}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise DivtraceError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise DivtraceError(f"{path}: {not_a_mapping}")
    return raw
