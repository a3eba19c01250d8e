"""The trainer's exit codes: what each means to its Job, and that nobody spells one by hand."""

from __future__ import annotations

import ast

from autovision.contract import exit_codes
from tests.support.source_scan import python_sources

EXIT_CALLS = {"exit", "SystemExit", "Exit", "_exit"}


def test_the_codes_are_distinct_and_outside_the_shells() -> None:
    codes = {exit_codes.SUCCESS, exit_codes.BAD_INPUT, exit_codes.TEMPORARY_FAILURE}
    assert len(codes) == 3
    assert all(0 <= code < 126 for code in codes), "126 and up are the shell's and signals'"


def test_no_exit_code_is_a_literal_outside_the_contract() -> None:
    """Outside the CLI's own codes (1 for an error, 130 for Ctrl-C), exits name a constant."""
    literal = []
    for path, tree in python_sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in EXIT_CALLS:
                values = [*node.args, *(keyword.value for keyword in node.keywords)]
                codes = [value.value for value in values if isinstance(value, ast.Constant)]
                literal += [f"{path}:{node.lineno}: {code!r}" for code in codes if code not in (0, 1, 130)]
            if isinstance(node, ast.Dict) and any(getattr(key, "value", None) == "values" for key in node.keys):
                found = [value for value in ast.walk(node) if isinstance(value, ast.Constant) and value.value == 2]
                literal += [f"{path}:{node.lineno}: a podFailurePolicy code" for _ in found]
    assert literal == [], "use autovision.contract.exit_codes"
