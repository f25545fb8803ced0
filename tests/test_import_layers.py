"""No import cycles between divtrace's packages, hidden ones included: every ``import`` counts, at module level or
inside a function, so a cycle cannot hide behind a function-level import. What two packages both need moves below
them (``divtrace.hub`` for the hub check that tasks and generate share; ``divtrace.plugins`` for verifier names)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "divtrace"


def package_imports(root: Path = PACKAGE) -> dict[str, set[str]]:
    """``divtrace.X`` -> the other ``divtrace.Y`` it imports anywhere in its files (X a subpackage or module)."""
    edges: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        owner = ".".join(parts[:2]) if len(parts) > 1 else parts[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                name = module.split(".")[1] if module.startswith("divtrace.") else None
                exists = name is not None and ((root / name).is_dir() or (root / f"{name}.py").is_file())
                if exists and f"divtrace.{name}" != owner:
                    edges.setdefault(owner, set()).add(f"divtrace.{name}")
    return edges


def cycles(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Edges ``a -> b`` from which ``a`` is reachable again."""

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        stack = [start]
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    return sorted((a, b) for a, targets in edges.items() for b in targets if a in reachable(b))


def test_the_packages_import_one_way() -> None:
    edges = package_imports()
    assert "divtrace.tasks" in edges and "divtrace.verify" in edges  # the scan sees the packages
    assert cycles(edges) == []


def test_the_scan_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    root = tmp_path / "divtrace"
    for package in ("a", "b"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "a" / "m.py").write_text("from divtrace.b import thing\n")
    (root / "b" / "n.py").write_text("def late():\n    from divtrace.a.m import other\n")
    assert cycles(package_imports(root)) == [("divtrace.a", "divtrace.b"), ("divtrace.b", "divtrace.a")]
