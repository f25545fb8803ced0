"""The sandbox supervisor runs under ``python -I -S`` (cold workers) or the programs' interpreter (warm ones): it
must import nothing but the standard library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import divtrace.sandbox.supervisor as supervisor_module

SUPERVISOR = Path(supervisor_module.__file__)


def _imported_modules(tree: ast.Module) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"line {node.lineno}: a relative import in the supervisor"
            found.append((node.lineno, node.module or ""))
    return found


def test_supervisor_imports_the_standard_library_only() -> None:
    tree = ast.parse(SUPERVISOR.read_text(encoding="utf-8"))
    imports = _imported_modules(tree)
    assert imports, "the parser found no imports at all: this test would pass on anything"
    outside = [f"line {line}: {name}" for line, name in imports if name.split(".")[0] not in sys.stdlib_module_names]
    assert outside == [], f"the supervisor imports modules outside the standard library: {outside}"


def test_the_rule_catches_a_third_party_import(tmp_path: Path) -> None:
    """The check itself: the same walk flags a module outside the standard library."""
    tree = ast.parse("import os\nif False:\n    from divtrace.errors import DivtraceError\n")
    names = [name.split(".")[0] for _, name in _imported_modules(tree)]
    assert [name for name in names if name not in sys.stdlib_module_names] == ["divtrace"]


def test_supervisor_compiles_and_loads_under_isolated_mode_without_site() -> None:
    """Loaded as the sandbox loads it (``-I -S``, no site-packages, not as __main__): it defines its entry point."""
    code = (
        "import _frozen_importlib_external as e\n"
        f"path = {str(SUPERVISOR)!r}\n"
        "c = e.SourceFileLoader('probe', path).get_code('probe')\n"
        "ns = {'__name__': 'probe', '__file__': path, '__builtins__': __builtins__}\n"
        "exec(c, ns)\n"
        "import sys\n"
        "print(callable(ns['_supervise']), sorted(m for m in sys.modules if m.startswith('divtrace')))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True []"
