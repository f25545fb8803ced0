"""Reading a study: a YAML file or a preset by name, validated with errors that name the file and the key at fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from divtrace.errors import DivtraceError
from divtrace.study.presets import PRESETS
from divtrace.study.spec import _UNION_TAGS, Study
from divtrace.yaml_files import key_problems, read_yaml_mapping


def load_study(source: str | Path) -> Study:
    """A study from a YAML file, or a preset by name (``quickstart``, ``olmo3-7b``).

    Raises DivtraceError naming the file and each key at fault.
    """
    if str(source) in PRESETS:
        return PRESETS[str(source)]()
    path = Path(source)
    raw = read_yaml_mapping(
        path,
        missing=f"no such study file (presets: {', '.join(PRESETS)})",
        not_a_mapping="a study file is a mapping (name, checkpoints, tasks, ...)",
    )
    return parse_study(raw, str(path))


def parse_study(raw: dict[str, Any], where: str = "study") -> Study:
    """Validate a study given as a dict; errors name ``where`` and the keys at fault."""
    try:
        return Study.model_validate(raw)
    except ValidationError as err:
        problems = key_problems(err, lambda location, index: location[index] in _UNION_TAGS)
        raise DivtraceError(f"{where}: " + "; ".join(problems)) from None
    except DivtraceError as err:
        raise DivtraceError(f"{where}: key 'checkpoints': {err}") from None
