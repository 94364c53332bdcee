"""The house rules a newcomer relies on, checked on the source: imports between pricetune's packages go
one way, and no function runs past 80 lines."""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pricetune"
LONGEST = 80


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, ".".join(parts), ast.parse(path.read_text(encoding="utf-8"))


def _imported(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def test_imports_between_packages_go_one_way():
    top = lambda module: ".".join(module.split(".")[:2])  # noqa: E731  pricetune.<package or module>
    edges = defaultdict(set)
    for path, name, tree in _modules():
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom):
                targets = [_imported(name, path.name == "__init__.py", node)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                if target.startswith("pricetune.") and top(target) != top(name):
                    edges[top(name)].add(top(target))
    circles = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, ())})
    assert circles == [], f"packages that import each other: {circles}"


def test_no_function_runs_past_80_lines():
    long = [f"{path.relative_to(PACKAGE.parent)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, _, tree in _modules() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > LONGEST]
    assert long == []
