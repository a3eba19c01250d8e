"""The generated CRDs: in sync with the models, structural, valid, and agreeing with pydantic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, Field

from autovision.crds import (
    CHART_CRD_DIR,
    CRD_DIR,
    KEEP_ON_UNINSTALL,
    REGENERATE_COMMAND,
    SchemaError,
    crd_filename,
    custom_resource_definition,
    render_crds,
    structural_schema,
    write_all_crds,
    write_crds,
)
from autovision.resources import API_VERSION, RESOURCE_TYPES, ModelDeployment, Resource, ResourceError, parse_resource
from tests.support.cel import cel_violations

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
KUBERNETES_VERSION = kubernetes_validate.latest_version()
# Logical junctors and references have no place in a structural schema (see
# "Specifying a structural schema" in the Kubernetes CRD documentation).
FORBIDDEN_KEYWORDS = {"$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "not", "title"}


def schema_of(resource: type[Resource]) -> dict[str, Any]:
    crd = custom_resource_definition(resource)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below (and including) ``node``, with its path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def strict_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A CRD schema node as plain JSON Schema, as the API server applies it.

    ``nullable`` becomes a null type, ``x-kubernetes-*`` keys are dropped (CEL
    rules are not evaluated here; the models enforce the same rules), and
    unknown fields are rejected as kubectl's default strict field validation does.
    """
    converted = {key: value for key, value in node.items() if key != "nullable" and not key.startswith("x-kubernetes")}
    if node.get("nullable"):
        converted["type"] = [node["type"], "null"]
    if "properties" in node:
        converted["properties"] = {name: strict_json_schema(child) for name, child in node["properties"].items()}
        converted["additionalProperties"] = False
    if "items" in node:
        converted["items"] = strict_json_schema(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        converted["additionalProperties"] = strict_json_schema(node["additionalProperties"])
    return converted


def schema_errors(obj: dict[str, Any]) -> list[str]:
    resource = next(resource for resource in RESOURCE_TYPES if resource.__name__ == obj["kind"])
    validator = jsonschema.Draft202012Validator(strict_json_schema(schema_of(resource)))
    return [f"{'.'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(obj)]


def load_examples() -> list[dict[str, Any]]:
    return [doc for path in EXAMPLES for doc in yaml.safe_load_all(path.read_text()) if doc]


# --- the files on disk -------------------------------------------------------------


@pytest.mark.parametrize(("directory", "for_chart"), [(CRD_DIR, False), (CHART_CRD_DIR, True)])
def test_crd_files_match_the_models(directory: Path, for_chart: bool) -> None:
    expected = render_crds(for_chart=for_chart)
    on_disk = {path.name: path.read_text() for path in (ROOT / directory).glob("*.yaml")}
    hint = f"{directory}/ is out of date: run `{REGENERATE_COMMAND}` (autovision.crds.write_all_crds())"
    assert sorted(on_disk) == sorted(expected), hint
    for name, text in expected.items():
        assert on_disk[name] == text, f"{name}: {hint}"


def test_rendering_is_deterministic() -> None:
    assert render_crds() == render_crds()
    assert render_crds(for_chart=True) == render_crds(for_chart=True)


def test_write_crds_writes_every_kind_and_removes_stale_ones(tmp_path: Path) -> None:
    stale = tmp_path / "gone.autovision.dev.yaml"
    stale.write_text("old")
    unrelated = tmp_path / "README.md"
    unrelated.write_text("kept")
    written = write_crds(tmp_path)
    assert sorted(path.name for path in written) == sorted(crd_filename(resource) for resource in RESOURCE_TYPES)
    assert not stale.exists()
    assert unrelated.exists()
    assert {path.name: path.read_text() for path in written} == render_crds()


def test_write_all_crds_writes_both_copies(tmp_path: Path) -> None:
    written = write_all_crds(tmp_path)
    assert {path.parent.relative_to(tmp_path) for path in written} == {CRD_DIR, CHART_CRD_DIR}
    for directory, for_chart in [(CRD_DIR, False), (CHART_CRD_DIR, True)]:
        on_disk = {path.name: path.read_text() for path in (tmp_path / directory).iterdir()}
        assert on_disk == render_crds(for_chart=for_chart)


def test_only_the_chart_copy_is_kept_on_uninstall() -> None:
    for text in render_crds().values():
        assert "annotations" not in yaml.safe_load(text)["metadata"]
    for text in render_crds(for_chart=True).values():
        assert yaml.safe_load(text)["metadata"]["annotations"] == KEEP_ON_UNINSTALL


# --- the CRDs themselves -------------------------------------------------------------


@pytest.mark.parametrize("for_chart", [False, True])
@pytest.mark.parametrize("resource", RESOURCE_TYPES, ids=lambda resource: resource.__name__)
def test_crd_is_a_valid_kubernetes_object(resource: type[Resource], for_chart: bool) -> None:
    kubernetes_validate.validate(custom_resource_definition(resource, for_chart=for_chart), KUBERNETES_VERSION, True)


@pytest.mark.parametrize("resource", RESOURCE_TYPES, ids=lambda resource: resource.__name__)
def test_crd_shape(resource: type[Resource]) -> None:
    crd = custom_resource_definition(resource)
    spec = crd["spec"]
    (version,) = spec["versions"]
    assert crd["metadata"]["name"] == f"{resource.info.plural}.autovision.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == resource.__name__
    assert f"{spec['group']}/{version['name']}" == API_VERSION
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"]["status"] == {}
    assert ("scale" in version["subresources"]) == (resource is ModelDeployment)


def test_model_deployment_scales_through_nodes() -> None:
    (version,) = custom_resource_definition(ModelDeployment)["spec"]["versions"]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.nodes",
        "statusReplicasPath": ".status.nodes",
        "labelSelectorPath": ".status.selector",
    }
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    assert schema["status"]["properties"]["selector"]["type"] == "string"


@pytest.mark.parametrize("resource", RESOURCE_TYPES, ids=lambda resource: resource.__name__)
def test_schema_is_structural(resource: type[Resource]) -> None:
    schema = schema_of(resource)
    assert schema["properties"]["metadata"] == {"type": "object"}
    for path, node in walk(schema):
        assert "type" in node, f"{path} has no type"
        assert not FORBIDDEN_KEYWORDS & node.keys(), f"{path} uses {FORBIDDEN_KEYWORDS & node.keys()}"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "x-kubernetes-preserve-unknown-fields" not in node, f"{path} is free-form"
        if node["type"] == "object" and path != ".metadata":
            assert "properties" in node or "additionalProperties" in node, f"{path} is an untyped object"
        for key in node.get("x-kubernetes-list-map-keys", []):
            assert key in node["items"]["required"], f"{path}: map key {key} must be required"


@pytest.mark.parametrize("resource", RESOURCE_TYPES, ids=lambda resource: resource.__name__)
def test_defaults_are_valid_values(resource: type[Resource]) -> None:
    """The API server refuses a CRD whose defaults do not validate against their own schema."""
    for path, node in walk(schema_of(resource)):
        if "default" in node:
            jsonschema.validate(node["default"], strict_json_schema(node))
            assert node["default"] is not None, path


@pytest.mark.parametrize("resource", RESOURCE_TYPES, ids=lambda resource: resource.__name__)
def test_every_field_is_described(resource: type[Resource]) -> None:
    nodes = walk(schema_of(resource))
    undescribed = [path for path, node in nodes if not (node.get("description") or path.endswith("{}"))]
    assert undescribed == [".metadata"], undescribed


@pytest.mark.parametrize("resource", RESOURCE_TYPES, ids=lambda resource: resource.__name__)
def test_conditions_are_a_map_keyed_by_type(resource: type[Resource]) -> None:
    conditions = schema_of(resource)["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    condition = conditions["items"]
    assert set(condition["required"]) == {"type", "status", "reason", "lastTransitionTime"}
    assert condition["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert condition["properties"]["lastTransitionTime"]["format"] == "date-time"


def field_at(schema: dict[str, Any], json_path: str) -> dict[str, Any]:
    """The schema node a printer column's JSONPath selects (filters select list items)."""
    node = schema
    for part in json_path.removeprefix(".").split("."):
        name, _, selector = part.partition("[")
        node = node["properties"][name]
        if selector:
            node = node["items"]
    return node


@pytest.mark.parametrize("resource", RESOURCE_TYPES, ids=lambda resource: resource.__name__)
def test_printer_columns_point_at_fields_of_their_type(resource: type[Resource]) -> None:
    schema = schema_of(resource)
    (version,) = custom_resource_definition(resource)["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    assert columns[0]["name"] == "Ready"
    assert columns[0]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns[-1] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
        "description": "Time since creation.",
        "priority": 0,
    }
    for column in columns[:-1]:
        node = field_at(schema, column["jsonPath"].replace('[?(@.type=="Ready")]', "[]"))
        assert node["type"] == column["type"], column


def test_printer_columns_of_each_kind() -> None:
    names = {
        resource.__name__: [column.name for column in resource.info.printer_columns] for resource in RESOURCE_TYPES
    }
    assert names == {
        "Dataset": ["Ready", "Reason", "Version", "Images", "Age"],
        "TrainingJob": ["Ready", "Reason", "Best", "Budget Used", "Age"],
        "ModelDeployment": ["Ready", "Reason", "Nodes", "Ready Nodes", "Model Version", "Age"],
    }


def test_spec_rules_of_model_deployments_are_cel_validations() -> None:
    """What spans fields of the spec (modelRef or traffic, the shadow, the rollout) the API server checks too."""
    schema = schema_of(ModelDeployment)
    messages = [validation["message"] for validation in schema["properties"]["spec"]["x-kubernetes-validations"]]
    assert messages == [
        "set exactly one of modelRef or traffic",
        "a rollout rolls out modelRef.trainingJob: set modelRef.trainingJob, not traffic or a uri",
        "the shadow must not also be a primary model",
        "a rollout shadows its candidate itself: set shadow or rollout, not both",
        "the primary model (the largest share) runs spec.nodes: set nodes only on the others",
    ]


@pytest.mark.parametrize(
    ("resource", "path", "rule"),
    [
        ("Dataset", ".spec.split", "self.train + self.validation + self.test == 100"),
        ("ModelDeployment", ".spec.modelRef", "has(self.trainingJob) != has(self.uri)"),
        ("ModelDeployment", ".spec.autoscaling", "self.minNodes <= self.maxNodes"),
        ("ModelDeployment", ".spec.traffic", "self.map(t, t.percent).sum() == 100"),
        ("ModelDeployment", ".spec.rollout", "self.steps.isSorted() && self.steps[size(self.steps) - 1] == 100"),
    ],
)
def test_cross_field_rules_are_cel_validations(resource: str, path: str, rule: str) -> None:
    schema = schema_of(next(model for model in RESOURCE_TYPES if model.__name__ == resource))
    node = dict(walk(schema))[path]
    assert [validation["rule"] for validation in node["x-kubernetes-validations"]] == [rule]


def test_enums_defaults_and_bounds_reach_the_schema() -> None:
    spec = schema_of(next(model for model in RESOURCE_TYPES if model.__name__ == "TrainingJob"))["properties"]["spec"]
    properties = spec["properties"]
    assert properties["optimizeFor"]["enum"] == ["Balanced", "LowLatency", "HighAccuracy"]
    assert "default" not in properties["optimizeFor"], "absent means Balanced, so that edgePreset may set it"
    assert properties["target"]["enum"] == ["Cloud", "Edge"]
    assert properties["target"]["default"] == "Cloud"
    assert properties["edgePreset"]["enum"] == ["HigherAccuracy", "BestTradeOff", "FasterPredictions"]
    assert properties["artifactPolicy"]["enum"] == ["Retain", "Delete"]
    assert properties["budgetMilliNodeHours"]["minimum"] == 10
    assert properties["resources"]["properties"]["nodeSelector"]["additionalProperties"] == {"type": "string"}
    assert properties["deploy"]["nullable"] is True
    backbones = properties["backbones"]
    assert (backbones["x-kubernetes-list-type"], backbones["x-kubernetes-list-map-keys"]) == ("map", ["name"])
    assert backbones["items"]["properties"]["architecture"]["enum"] == ["resnet18", "resnet34", "resnet50", "resnet101"]
    assert backbones["items"]["required"] == ["name", "architecture", "weightsUri"]
    assert spec["required"] == ["datasetRef", "budgetMilliNodeHours"]


# --- the converter's refusals -------------------------------------------------------


class _Exclusive(BaseModel):
    value: int = Field(gt=0)


class _Union(BaseModel):
    value: int | str


@pytest.mark.parametrize(("model", "fragment"), [(_Exclusive, "exclusiveMinimum"), (_Union, "X | None")])
def test_constructs_without_a_structural_form_are_refused(model: type[BaseModel], fragment: str) -> None:
    schema = model.model_json_schema()
    with pytest.raises(SchemaError, match=fragment.replace("|", r"\|")):
        structural_schema(schema, schema.get("$defs", {}))


# --- examples: the schema and the models agree ---------------------------------------


def test_examples_cover_every_kind() -> None:
    kinds = {doc["kind"] for doc in load_examples()}
    assert {resource.__name__ for resource in RESOURCE_TYPES} <= kinds


@pytest.mark.parametrize("example", load_examples(), ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}")
def test_example_is_valid(example: dict[str, Any]) -> None:
    if example["apiVersion"] != API_VERSION:
        kubernetes_validate.validate(example, KUBERNETES_VERSION, True)
        return
    assert schema_errors(example) == []
    assert parse_resource(example).metadata.name == example["metadata"]["name"]


def crd_schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of one of our kinds, as the CRD file carries it."""
    return schema_of(next(model for model in RESOURCE_TYPES if model.__name__ == kind))


def example_of(kind: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(next(path for path in EXAMPLES if path.stem == kind.lower()).read_text())
    return doc


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("Dataset", "task", "Multi"),
        ("Dataset", "source", "flowers.zip"),
        ("Dataset", "spilt", {"train": 80}),
        ("TrainingJob", "optimizeFor", "Fastest"),
        ("TrainingJob", "target", "Phone"),
        ("TrainingJob", "edgePreset", "LowLatency"),
        ("TrainingJob", "budgetMilliNodeHours", 0),
        ("TrainingJob", "resources", {"nodes": 0}),
        ("TrainingJob", "backbones", [{"name": "mine", "architecture": "resnet152", "weightsUri": "s3://b/w.pth"}]),
        ("TrainingJob", "backbones", [{"name": "my_net", "architecture": "resnet18", "weightsUri": "s3://b/w.pth"}]),
        ("TrainingJob", "backbones", [{"name": "mine", "architecture": "resnet18", "weightsUri": "w.pth"}]),
        ("TrainingJob", "backbones", [{"name": "mine", "architecture": "resnet18"}]),
        ("ModelDeployment", "scoreThreshold", 2),
        ("ModelDeployment", "autoscaling", {"maxNodes": 2, "target": "gpu"}),
        ("ModelDeployment", "modelRef", {"trainingJob": "run", "secretKey": "x"}),
        ("ModelDeployment", "traffic", [{"trainingJob": "run-a", "percent": 101}]),
        ("ModelDeployment", "rollout", {"gate": {"minAgreement": 2}}),
        ("ModelDeployment", "logging", {"rate": 1.5}),
        ("ModelDeployment", "logging", {"rate": -0.1}),
        ("ModelDeployment", "logging", {"images": True}),
    ],
)
def test_schema_and_model_both_reject(kind: str, field: str, value: Any) -> None:
    bad = example_of(kind)
    bad["spec"][field] = value
    assert schema_errors(bad), "the CRD schema accepted it"
    with pytest.raises(ResourceError):
        parse_resource(bad)


SPLIT = [{"trainingJob": "run-a", "percent": 90}, {"trainingJob": "run-b", "percent": 10}]


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        ("Dataset", {"split": {"train": 80, "validation": 10, "test": 20}}, None),
        ("TrainingJob", {"optimizeFor": None, "edgePreset": "BestTradeOff"}, "needs target Edge"),
        ("TrainingJob", {"target": "Cloud", "optimizeFor": None, "edgePreset": "HigherAccuracy"}, "(--target edge)"),
        ("TrainingJob", {"target": "Edge", "edgePreset": "FasterPredictions"}, "an edge preset sets optimizeFor"),
        ("ModelDeployment", {"modelRef": {"trainingJob": "run", "uri": "s3://b/m"}}, "set exactly one of"),
        ("ModelDeployment", {"autoscaling": {"minNodes": 3, "maxNodes": 2}}, None),
        ("ModelDeployment", {"modelRef": None, "traffic": [{"trainingJob": "run-a", "percent": 90}]}, "sum to 100"),
        ("ModelDeployment", {"traffic": SPLIT}, "exactly one of modelRef or traffic"),
        ("ModelDeployment", {"shadow": {"trainingJob": "flowers-run"}}, "shadow must not also be a primary"),
        ("ModelDeployment", {"modelRef": None, "traffic": SPLIT, "shadow": {"trainingJob": "run-b"}}, "shadow must"),
        ("ModelDeployment", {"modelRef": None, "traffic": SPLIT, "rollout": {}}, "a rollout rolls out modelRef"),
        ("ModelDeployment", {"rollout": {}, "shadow": {"trainingJob": "other"}}, "set shadow or rollout"),
        ("ModelDeployment", {"rollout": {"steps": [50, 10, 100]}}, None),
        ("ModelDeployment", {"rollout": {"steps": [10, 50]}}, None),
        (
            "ModelDeployment",
            {"modelRef": None, "traffic": [{**SPLIT[0], "nodes": 3}, SPLIT[1]]},
            "the primary model (the largest share) runs spec.nodes",
        ),
    ],
)
def test_cross_field_rules_reject_in_cel_and_in_the_model(kind: str, spec: dict[str, Any], message: str | None) -> None:
    """The CRD's CEL rules, run by a CEL interpreter as the API server would, and the model refuse alike."""
    bad = example_of(kind)
    bad["spec"].update(spec)
    bad["spec"] = {field: value for field, value in bad["spec"].items() if value is not None}
    assert schema_errors(bad) == []
    violations = cel_violations(crd_schema(kind), bad)
    assert len(violations) == 1, violations
    assert message is None or message in violations[0]
    with pytest.raises(ResourceError):
        parse_resource(bad)


def test_list_map_keys_reject_a_run_twice_in_the_model() -> None:
    """The API server refuses duplicate keys of a list-map before any CEL rule; the model refuses them too."""
    bad = example_of("TrainingJob")
    bad["spec"]["backbones"] = [{"name": "a", "architecture": "resnet18", "weightsUri": "s3://b/w"}] * 2
    assert schema_errors(bad) == []
    with pytest.raises(ResourceError):
        parse_resource(bad)


@pytest.mark.parametrize("example", load_examples(), ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}")
def test_examples_pass_every_cel_rule(example: dict[str, Any]) -> None:
    if example["apiVersion"] == API_VERSION:
        assert cel_violations(crd_schema(example["kind"]), example) == []


def test_other_models_of_a_split_may_set_their_own_nodes() -> None:
    good = example_of("ModelDeployment")
    del good["spec"]["modelRef"]
    good["spec"]["traffic"] = [SPLIT[0], {**SPLIT[1], "nodes": 1}]
    good["spec"]["shadow"] = {"trainingJob": "run-c", "nodes": 2}
    assert cel_violations(crd_schema("ModelDeployment"), good) == []
    assert parse_resource(good).metadata.name == good["metadata"]["name"]
