"""CustomResourceDefinitions generated from the resource models.

``autovision.resources`` is the single source of truth; this module turns each
model's pydantic JSON schema into a *structural* OpenAPI v3 schema as the API
server requires (every node typed, no references, ``nullable`` instead of
``anyOf`` with null) and wraps it in an apiextensions.k8s.io/v1 CRD.

The CRDs are written twice: to ``crds/`` for ``kubectl apply -f crds/``, and into
the Helm chart's templates (not Helm's ``crds/`` folder, which Helm installs
once and never upgrades) with ``helm.sh/resource-policy: keep`` so that
uninstalling the chart never deletes users' resources. ``write_all_crds``
writes both; a test fails when either copy drifts from the models.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from autovision.resources import GROUP, RESOURCE_TYPES, VERSION, KindInfo, PrinterColumn, Resource

CRD_DIR: Final = Path("crds")
CHART_CRD_DIR: Final = Path("charts/autovision/templates/crds")
KEEP_ON_UNINSTALL: Final = {"helm.sh/resource-policy": "keep"}
REGENERATE_COMMAND: Final = "autovision crds"

_HEADER = f"# Generated from autovision.resources by `{REGENERATE_COMMAND}`. Do not edit.\n"
# JSON-schema keywords a structural schema may carry as they are.
_KEPT_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "enum",
        "format",
        "default",
        "required",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
    }
)
_NULL = {"type": "null"}


class SchemaError(ValueError):
    """A model uses a JSON-schema construct that has no structural equivalent."""


def structural_schema(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """Convert one pydantic JSON-schema node into a structural OpenAPI v3 node.

    Anything not known to be valid in a CRD raises SchemaError, so that a new
    model feature (say ``gt=``, whose ``exclusiveMinimum`` differs between JSON
    Schema and OpenAPI v3) fails generation instead of producing a CRD the API
    server rejects.
    """
    node = _inline(node, defs)
    if "anyOf" in node:
        return _nullable(node, defs)
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if _is_dropped(key, value):
            continue
        if key == "properties":
            converted[key] = {name: structural_schema(sub, defs) for name, sub in value.items()}
        elif key in {"items", "additionalProperties"}:
            converted[key] = structural_schema(value, defs)
        elif key in _KEPT_KEYWORDS or key.startswith("x-kubernetes-"):
            converted[key] = value
        else:
            raise SchemaError(f"unsupported JSON-schema keyword {key!r} in {dict(node)}")
    if "type" not in converted:
        raise SchemaError(f"schema node without a type: {dict(node)}")
    return converted


def _is_dropped(key: str, value: Any) -> bool:
    """Keys with no place in a CRD schema.

    Titles are noise; ``additionalProperties: false`` (from extra="forbid") is
    not allowed beside ``properties`` (the API server prunes or, with strict
    field validation, rejects unknown fields by itself); ``default: null`` only
    restates that an optional field is absent.
    """
    return key == "title" or (key == "additionalProperties" and value is False) or (key == "default" and value is None)


def _inline(node: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Replace a $ref by its definition; the referring field's own keys win."""
    if "$ref" not in node:
        return node
    target = defs[node["$ref"].removeprefix("#/$defs/")]
    return {**_inline(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}


def _nullable(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``X | None`` (anyOf X, null) into X with ``nullable: true``."""
    branches = node["anyOf"]
    others = [branch for branch in branches if branch != _NULL]
    if len(branches) != 2 or len(others) != 1:
        raise SchemaError(f"only `X | None` unions have a structural form: {dict(node)}")
    siblings = {key: value for key, value in node.items() if key != "anyOf"}
    return {**structural_schema({**others[0], **siblings}, defs), "nullable": True}


def openapi_schema(resource: type[Resource]) -> dict[str, Any]:
    """The openAPIV3Schema of one kind: standard envelope, spec and status from the model."""
    schema = resource.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})
    fields = schema["properties"]
    # No default for status: the API server would otherwise add an empty status
    # to every object it returns, before the operator has observed anything.
    status = {key: value for key, value in fields["status"].items() if key != "default"}
    return {
        "type": "object",
        "description": schema["description"],
        "properties": {
            "apiVersion": {"type": "string", "description": "The versioned schema of this object."},
            "kind": {"type": "string", "description": "The REST resource this object represents."},
            "metadata": {"type": "object"},
            "spec": structural_schema(fields["spec"], defs),
            "status": structural_schema(status, defs),
        },
        "required": ["spec"],
    }


def custom_resource_definition(resource: type[Resource], *, for_chart: bool = False) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CRD of one kind, as a plain dict.

    ``for_chart`` adds the annotation that makes Helm keep the CRD (and so every
    Dataset, TrainingJob and ModelDeployment) when the release is uninstalled.
    """
    info = resource.info
    kind = resource.__name__
    metadata: dict[str, Any] = {"name": f"{info.plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "autovision"}}
    if for_chart:
        metadata["annotations"] = dict(KEEP_ON_UNINSTALL)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": info.plural,
                "singular": kind.lower(),
                "shortNames": list(info.short_names),
                "categories": list(info.categories),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema(resource)},
                    "subresources": _subresources(info),
                    "additionalPrinterColumns": [_printer_column(column) for column in info.printer_columns],
                }
            ],
        },
    }


def _subresources(info: KindInfo) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if info.scale is not None:
        subresources["scale"] = {
            "specReplicasPath": info.scale.spec_replicas,
            "statusReplicasPath": info.scale.status_replicas,
            "labelSelectorPath": info.scale.label_selector,
        }
    return subresources


def _printer_column(column: PrinterColumn) -> dict[str, Any]:
    return {
        "name": column.name,
        "type": column.type,
        "jsonPath": column.json_path,
        "description": column.description,
        "priority": column.priority,
    }


def crd_filename(resource: type[Resource]) -> str:
    """The file a kind's CRD is written to, named like the CRD: datasets.autovision.dev.yaml."""
    return f"{resource.info.plural}.{GROUP}.yaml"


def render_crds(*, for_chart: bool = False) -> dict[str, str]:
    """Every CRD as YAML text by file name; deterministic, so drift is a plain diff.

    ``for_chart`` renders the chart's copy: with the keep annotation, and safe
    to place among Helm templates (Go-template delimiters escaped).
    """
    return {
        crd_filename(resource): _to_yaml(custom_resource_definition(resource, for_chart=for_chart), for_chart=for_chart)
        for resource in RESOURCE_TYPES
    }


def _to_yaml(crd: dict[str, Any], *, for_chart: bool) -> str:
    text = _HEADER + yaml.safe_dump(crd, sort_keys=True)
    return escape_go_template(text) if for_chart else text


def escape_go_template(text: str) -> str:
    """Make ``text`` render verbatim as a Helm template: ``{{`` becomes ``{{ "{{" }}``."""
    return text.replace("{{", '{{ "{{" }}')


def write_crds(directory: Path, *, for_chart: bool = False) -> list[Path]:
    """Write every CRD into ``directory``, removing CRD files of kinds that no longer exist."""
    rendered = render_crds(for_chart=for_chart)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f"*.{GROUP}.yaml"):
        if stale.name not in rendered:
            stale.unlink()
    paths = [directory / name for name in rendered]
    for path in paths:
        path.write_text(rendered[path.name], encoding="utf-8")
    return paths


def write_all_crds(root: Path = Path(".")) -> list[Path]:
    """Rewrite both copies of the CRDs under the repository ``root``: what `autovision crds` runs."""
    return [*write_crds(root / CRD_DIR), *write_crds(root / CHART_CRD_DIR, for_chart=True)]
