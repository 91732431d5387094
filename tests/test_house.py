"""The house rules that keep the code base readable: no import circles between the project's modules, and no
private (``_name``) name used outside the module that defines it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("irl_bilevel", "classic_rl", "llm", "irlb", "figures", "benchmarks")


def project_modules() -> dict[str, Path]:
    """``{dotted module name: file}`` of every Python file in the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, str | None, int]]:
    """``(module, name or None, line)`` for every import statement, at any depth (lazy imports in functions
    count: they close a circle at run time just the same)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found += [(base, alias.name, node.lineno) for alias in node.names]
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from a import b`` names module ``a.b`` where that is one)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, member, _ in imported_names(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            if member is not None and f"{target}.{member}" in modules:
                target = f"{target}.{member}"
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_between_project_modules():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_is_imported_from_another_module():
    modules = project_modules()
    modules.update({f"tests.{path.stem}": path for path in sorted((ROOT / "tests").glob("*.py"))})
    offenders = []
    for name, path in modules.items():
        for target, member, line in imported_names(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            root = target.split(".")[0]
            if root in PACKAGES and member is not None and member.startswith("_") and not member.startswith("__"):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {member} from {target}")
    assert offenders == []
