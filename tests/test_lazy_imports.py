"""``import divtrace`` (and its light parts: the sandbox) stays light: the public names are imported on first use."""

from __future__ import annotations

import subprocess
import sys

import divtrace


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_importing_divtrace_or_its_sandbox_does_not_import_the_scientific_stack() -> None:
    for statement in ("import divtrace", "import divtrace.sandbox", "from divtrace.sandbox import run_many"):
        loaded = _modules_after(statement)
        assert "divtrace" in loaded  # the check itself ran
        assert not {"pandas", "numpy", "scipy"} & loaded, statement


def test_every_public_name_resolves() -> None:
    for name in divtrace.__all__:
        assert getattr(divtrace, name) is not None
    assert set(divtrace.__all__) <= set(dir(divtrace))
    loaded = _modules_after("import divtrace\ndivtrace.run")
    assert "pandas" in loaded  # used: imported


def test_score_is_the_function_even_after_its_subpackage_is_imported() -> None:
    """``divtrace.score`` names a function and a subpackage: importing ``divtrace.score.*`` first must not leave
    the module in its place (the order of the full test suite did, once the names became lazy)."""
    code = (
        "import divtrace.score.metrics, divtrace\n"
        "assert callable(divtrace.score) and divtrace.score.__module__ == 'divtrace', divtrace.score\n"
        "from divtrace import score\n"
        "assert score is divtrace.score\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
