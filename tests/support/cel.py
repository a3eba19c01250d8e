"""A CRD's CEL validation rules, evaluated as the API server would, with cel-python.

No kube-apiserver runs here, so the ``x-kubernetes-validations`` of our CRDs are
evaluated by a real CEL interpreter instead: defaults are applied first (the API
server validates the defaulted object), then every rule runs with ``self`` bound
to the value at its node, for each node present in the object. Kubernetes adds
library functions to CEL; the two our rules use, ``sum`` and ``isSorted`` of its
list library (https://kubernetes.io/docs/reference/using-api/cel/), are supplied
here. A rule that fails to evaluate counts as violated, as it does on the API server.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError


def _sum(values: Any) -> Any:
    total = sum(values)
    return celtypes.DoubleType(total) if isinstance(total, float) else celtypes.IntType(total)


def _is_sorted(values: Any) -> celtypes.BoolType:
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(list(values))))


KUBERNETES_LIST_FUNCTIONS = {"sum": _sum, "isSorted": _is_sorted}


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with the schema's defaults filled in where fields are absent, as the API server does."""
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value and value[name] is not None:
                value[name] = with_defaults(child, value[name])
    elif isinstance(value, list) and "items" in schema:
        value = [with_defaults(schema["items"], item) for item in value]
    return value


def _rules_at(schema: dict[str, Any], value: Any) -> Iterator[tuple[str, Any]]:
    """Every (rule, message) of the schema's nodes that ``value`` has, with the value it applies to."""
    if value is None:
        return
    for validation in schema.get("x-kubernetes-validations", []):
        yield validation["rule"], (validation["message"], value)
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                yield from _rules_at(child, value[name])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            yield from _rules_at(schema["items"], item)


def cel_violations(schema: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """The messages of the CEL rules ``obj`` breaks under ``schema`` (an openAPIV3Schema), in schema order."""
    environment = celpy.Environment()
    violated = []
    for rule, (message, value) in _rules_at(schema, with_defaults(schema, obj)):
        program = environment.program(environment.compile(rule), functions=KUBERNETES_LIST_FUNCTIONS)
        try:
            holds = bool(program.evaluate({"self": json_to_cel(value)}) == celtypes.BoolType(True))
        except CELEvalError:
            holds = False
        if not holds:
            violated.append(message)
    return violated
