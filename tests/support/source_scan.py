"""Reading the project's own Python source, for tests that check what is spelled where."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = ("src", "operator", "trainer-image")
CONTRACT = REPO / "src" / "autovision" / "contract"


def python_sources() -> Iterator[tuple[Path, ast.Module]]:
    """Every module of the three packages outside the contract, parsed, with its path from the repo root."""
    for root in SOURCE_ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            if CONTRACT not in path.parents:
                yield path.relative_to(REPO), ast.parse(path.read_text(), str(path))


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes: prose may name a file, code may not."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def source_strings() -> Iterator[tuple[str, str]]:
    """Every string literal in code (f-string parts included, docstrings left out), with where it is."""
    for path, tree in python_sources():
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                yield f"{path}:{node.lineno}", node.value
