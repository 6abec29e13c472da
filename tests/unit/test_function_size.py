"""No function or method of the package or the handlers is 200 lines or longer: each does
one step (see docs/DEVELOPING.md), and a longer one is split into named steps."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = (REPO / "shared" / "custseg", REPO / "functions")
LIMIT = 200


def long_functions(source: str, limit: int = LIMIT) -> list[tuple[str, int, int]]:
    """(qualified name, first line, lines) of each function or method in ``source``
    spanning ``limit`` lines or more (decorators excluded, nested functions too)."""
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    span = (child.end_lineno or child.lineno) - child.lineno + 1
                    if span >= limit:
                        found.append((name, child.lineno, span))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def test_no_function_is_200_lines_or_longer() -> None:
    files = [p for root in ROOTS for p in sorted(root.rglob("*.py"))]
    assert len(files) > 40
    too_long = [
        f"{path.relative_to(REPO)}:{line} {name} ({span} lines)"
        for path in files
        for name, line, span in long_functions(path.read_text(encoding="utf-8"))
    ]
    assert too_long == []


def test_the_check_sees_methods_and_nested_functions() -> None:
    def body(indent: int, lines: int) -> str:
        return "\n".join(" " * indent + f"x = {i}" for i in range(lines))

    source = (
        f"class A:\n    def long(self):\n{body(8, LIMIT - 1)}\n"
        f"def outer():\n    if True:\n        def inner():\n{body(12, LIMIT - 1)}\n"
        f"def short():\n{body(4, LIMIT - 2)}\n"
    )
    found = long_functions(source)
    assert [(name, span) for name, _, span in found] == [
        ("A.long", LIMIT),
        ("outer", LIMIT + 2),
        ("outer.inner", LIMIT),
    ]
