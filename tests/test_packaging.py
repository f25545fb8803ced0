"""The declared Python is the Python the code needs: pyproject's requires-python, ruff's target and mypy's
python_version name one version, and mypy (strict, in .ci/run) checks the code against it, so a feature newer than
the declared minimum (``typing.Self`` needs 3.11) fails CI instead of an install on the older Python."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_declared_python_is_the_one_checked() -> None:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    match = re.fullmatch(r">=\s*3\.(\d+)", config["project"]["requires-python"])
    assert match, config["project"]["requires-python"]
    minor = int(match.group(1))
    assert config["tool"]["mypy"]["python_version"] == f"3.{minor}"
    assert config["tool"]["ruff"]["target-version"] == f"py3{minor}"
    assert sys.version_info >= (3, minor)  # the suite itself runs on a Python the project accepts
