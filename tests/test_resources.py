"""The resource models: defaults, validation, conditions and manifest parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from autovision.resources import (
    API_VERSION,
    RESOURCE_TYPES,
    ArtifactPolicy,
    AutoscalingTarget,
    Condition,
    ConditionStatus,
    Dataset,
    DatasetSpec,
    DatasetStatus,
    EdgeFormat,
    EdgePreset,
    ModelDeployment,
    ModelDeploymentSpec,
    OptimizeFor,
    ResourceError,
    Split,
    Task,
    TrainingJob,
    TrainingJobSpec,
    TrainingTarget,
    find_condition,
    parse_resource,
    set_condition,
)

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def manifest(kind: str, spec: dict[str, Any], name: str = "example") -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def dataset(**spec: Any) -> dict[str, Any]:
    return manifest("Dataset", {"source": "s3://bucket/flowers.zip", **spec})


def training_job(**spec: Any) -> dict[str, Any]:
    return manifest("TrainingJob", {"datasetRef": {"name": "flowers"}, "budgetMilliNodeHours": 1000, **spec})


def model_deployment(**spec: Any) -> dict[str, Any]:
    return manifest("ModelDeployment", {"modelRef": {"trainingJob": "flowers-run"}, **spec})


def rejects(obj: dict[str, Any], *fragments: str) -> str:
    """Assert parsing fails, naming every fragment in the one error message."""
    with pytest.raises(ResourceError) as caught:
        parse_resource(obj)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- defaults and the wire format --------------------------------------------


def test_minimal_manifests_get_documented_defaults() -> None:
    ds = parse_resource(dataset())
    tj = parse_resource(training_job())
    md = parse_resource(model_deployment())
    assert isinstance(ds, Dataset)
    assert isinstance(tj, TrainingJob)
    assert isinstance(md, ModelDeployment)
    assert ds.spec.task is Task.SINGLE_LABEL
    assert (ds.spec.split.train, ds.spec.split.validation, ds.spec.split.test) == (80, 10, 10)
    assert ds.spec.storage_secret_ref is None
    assert ds.spec.import_pods is None, "derived by the operator"
    assert tj.spec.optimize_for is None
    assert tj.spec.search_optimize_for is OptimizeFor.BALANCED
    assert tj.spec.target is TrainingTarget.CLOUD
    assert tj.spec.edge_preset is None
    assert tj.spec.early_stopping is True
    assert tj.spec.artifact_policy is ArtifactPolicy.RETAIN
    assert (tj.spec.resources.nodes, tj.spec.resources.gpus_per_node) == (1, 1)
    assert md.spec.nodes == 1
    assert md.spec.score_threshold == 0.5
    assert md.spec.autoscaling is None
    assert ds.status.conditions == []
    assert tj.status.milli_node_hours_used == 0


def test_defaults_are_not_shared_between_instances() -> None:
    first, second = parse_resource(training_job()), parse_resource(training_job())
    assert isinstance(first, TrainingJob)
    assert isinstance(second, TrainingJob)
    first.spec.resources.node_selector["gpu"] = "a100"
    assert second.spec.resources.node_selector == {}


def test_wire_format_is_camel_case_and_round_trips() -> None:
    obj = training_job(resources={"gpusPerNode": 2, "nodeSelector": {"gpu": "h100"}}, deploy={"nodes": 2})
    parsed = parse_resource(obj)
    dumped = parsed.model_dump(mode="json", exclude_none=True)
    assert dumped["spec"]["budgetMilliNodeHours"] == 1000
    assert dumped["spec"]["resources"]["gpusPerNode"] == 2
    assert "budget_milli_node_hours" not in dumped["spec"]
    assert parse_resource(dumped) == parsed


def test_python_names_are_accepted_too() -> None:
    spec = DatasetSpec(source="file:///data/flowers.zip", storage_secret_ref={"name": "s3"})
    assert spec.storage_secret_ref is not None
    assert spec.storage_secret_ref.name == "s3"


# --- spec validation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "fragment"),
    [
        ({"train": 90}, "must sum to 100, got 110"),
        ({"train": 50, "validation": 10, "test": 10}, "got 70"),
        ({"train": 0, "validation": 50, "test": 50}, "greater than or equal to 1"),
        ({"train": 101, "validation": 0, "test": -1}, "less than or equal to 100"),
        ({"train": 80.5, "validation": 9.5, "test": 10}, "valid integer"),
    ],
)
def test_split_must_be_integer_percentages_summing_to_100(split: dict[str, Any], fragment: str) -> None:
    rejects(dataset(split=split), "spec.split", fragment)


@pytest.mark.parametrize(("pods", "fragment"), [(0, "greater than or equal to 1"), (257, "less than or equal to 256")])
def test_import_pods_are_bounded_by_what_the_trainer_slices(pods: int, fragment: str) -> None:
    rejects(dataset(importPods=pods), "spec.importPods", fragment)


def test_valid_splits_are_accepted() -> None:
    assert Split(train=100, validation=0, test=0).train == 100
    assert Split(train=70, validation=15, test=15, seed=7).seed == 7


@pytest.mark.parametrize(
    ("obj", "fragments"),
    [
        (dataset(task="Multi"), ("spec.task", "'SingleLabel' or 'MultiLabel'")),
        (dataset(source="flowers.zip"), ("spec.source", "should match pattern")),
        (
            dataset(storageSecretRef={"name": "s3", "accessKey": "AKIA"}),
            ("spec.storageSecretRef.accessKey", "Extra inputs"),
        ),
        (dataset(storageSecretRef={"name": "Not_A_Name"}), ("spec.storageSecretRef.name",)),
        (dataset(sourc="s3://typo"), ("spec.sourc", "Extra inputs are not permitted")),
        (training_job(optimizeFor="Fast"), ("spec.optimizeFor",)),
        (training_job(artifactPolicy="Keep"), ("spec.artifactPolicy",)),
        (training_job(budgetMilliNodeHours=0), ("spec.budgetMilliNodeHours", "greater than or equal to 10")),
        (training_job(resources={"nodes": 0}), ("spec.resources.nodes",)),
        (training_job(resources={"gpusPerNode": -1}), ("spec.resources.gpusPerNode",)),
        (training_job(resources={"tolerations": [{"operator": "Sometimes"}]}), ("tolerations.0.operator",)),
        (training_job(deploy={"nodes": 0}), ("spec.deploy.nodes",)),
        (model_deployment(nodes=0), ("spec.nodes",)),
        (model_deployment(scoreThreshold=1.5), ("spec.scoreThreshold", "less than or equal to 1")),
        (model_deployment(scoreThreshold=-0.1), ("spec.scoreThreshold",)),
        (
            model_deployment(autoscaling={"maxNodes": 4, "target": "gpu"}),
            ("spec.autoscaling.target", "'inflight' or 'cpu'"),
        ),
        (model_deployment(autoscaling={"minNodes": 5, "maxNodes": 4}), ("minNodes must not exceed maxNodes",)),
        (model_deployment(autoscaling={"minNodes": 1}), ("spec.autoscaling.maxNodes", "Field required")),
    ],
)
def test_invalid_specs_are_rejected(obj: dict[str, Any], fragments: tuple[str, ...]) -> None:
    rejects(obj, *fragments)


def test_budget_minimum_is_ten_milli_node_hours() -> None:
    spec = TrainingJobSpec.model_validate({"datasetRef": {"name": "d"}, "budgetMilliNodeHours": 10})
    assert spec.budget_milli_node_hours == 10
    rejects(training_job(budgetMilliNodeHours=9), "budgetMilliNodeHours")


@pytest.mark.parametrize("model_ref", [{"trainingJob": "flowers-run"}, {"uri": "s3://bucket/runs/flowers/triton"}])
def test_model_ref_accepts_exactly_one_source(model_ref: dict[str, str]) -> None:
    spec = ModelDeploymentSpec.model_validate({"modelRef": model_ref})
    assert spec.model_ref is not None
    assert (spec.model_ref.training_job is None) != (spec.model_ref.uri is None)


@pytest.mark.parametrize("model_ref", [{}, {"trainingJob": "a", "uri": "s3://b/c"}])
def test_model_ref_rejects_none_or_both(model_ref: dict[str, str]) -> None:
    rejects(model_deployment(modelRef=model_ref), "spec.modelRef", "exactly one of trainingJob or uri")


SPLIT = [{"trainingJob": "run-a", "percent": 90}, {"trainingJob": "run-b", "percent": 10}]


def test_traffic_splits_between_runs_with_a_shadow() -> None:
    md = parse_resource(manifest("ModelDeployment", {"traffic": SPLIT, "shadow": {"trainingJob": "run-c"}}))
    assert isinstance(md, ModelDeployment)
    assert [(item.training_job, item.percent) for item in md.spec.traffic or []] == [("run-a", 90), ("run-b", 10)]
    assert md.spec.model_ref is None
    assert md.spec.shadow is not None
    assert md.spec.shadow.training_job == "run-c"


def test_rollout_defaults() -> None:
    md = parse_resource(model_deployment(rollout={}))
    assert isinstance(md, ModelDeployment)
    assert md.spec.rollout is not None
    assert md.spec.rollout.steps == [10, 50, 100]
    assert (md.spec.rollout.gate.min_requests, md.spec.rollout.gate.min_agreement) == (100, None)
    assert not md.spec.rollout.paused
    assert not md.spec.rollout.abort


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"traffic": [{"trainingJob": "run-a", "percent": 90}]}, "sum to 100, got 90"),
        ({"traffic": [{"trainingJob": "run-a", "percent": 50}] * 2}, "appears twice"),
        ({}, "exactly one of modelRef or traffic"),
        ({"modelRef": {"trainingJob": "run-a"}, "traffic": SPLIT}, "exactly one of modelRef or traffic"),
        ({"traffic": SPLIT, "shadow": {"trainingJob": "run-b"}}, "shadow must not also be a primary"),
        ({"modelRef": {"trainingJob": "run-a"}, "shadow": {"trainingJob": "run-a"}}, "shadow must not"),
        ({"traffic": SPLIT, "rollout": {}}, "a rollout rolls out modelRef.trainingJob"),
        ({"modelRef": {"uri": "s3://b/m"}, "rollout": {}}, "a rollout rolls out modelRef.trainingJob"),
        ({"modelRef": {"trainingJob": "b"}, "rollout": {}, "shadow": {"trainingJob": "c"}}, "shadow or rollout"),
        ({"modelRef": {"trainingJob": "b"}, "rollout": {"steps": [50, 10, 100]}}, "steps must increase"),
        ({"modelRef": {"trainingJob": "b"}, "rollout": {"steps": [10, 50]}}, "end at 100"),
        ({"modelRef": {"trainingJob": "b"}, "rollout": {"steps": [0, 100]}}, "steps.0"),
        ({"modelRef": {"trainingJob": "b"}, "rollout": {"gate": {"minAgreement": 1.5}}}, "minAgreement"),
        ({"modelRef": {"trainingJob": "b"}, "rollout": {"gate": {"maxErrorRate": -0.1}}}, "maxErrorRate"),
        ({"modelRef": {"trainingJob": "b"}, "rollout": {"gate": {"minRequests": 0}}}, "minRequests"),
        ({"modelRef": {"trainingJob": "b"}, "rollout": {"gate": {"maxP99Ms": 0.5}}}, "maxP99Ms"),
    ],
)
def test_bad_traffic_and_rollouts_are_refused(spec: dict[str, Any], fragment: str) -> None:
    rejects(manifest("ModelDeployment", spec), fragment)


def test_autoscaling_defaults() -> None:
    md = parse_resource(model_deployment(autoscaling={"maxNodes": 8}))
    assert isinstance(md, ModelDeployment)
    assert md.spec.autoscaling is not None
    assert md.spec.autoscaling.min_nodes == 1
    assert md.spec.autoscaling.target is AutoscalingTarget.INFLIGHT


def test_status_ignores_fields_a_newer_operator_wrote() -> None:
    status = DatasetStatus.model_validate({"version": "sha256-ab", "fieldFromTheFuture": 1})
    assert status.version == "sha256-ab"


def test_status_parses_as_the_operator_writes_it() -> None:
    obj = dataset()
    obj["status"] = {
        "observedGeneration": 2,
        "version": "sha256-abc",
        "counts": {"total": 10, "perLabel": {"daisy": {"train": 8, "validation": 1, "test": 1}}},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Imported", "lastTransitionTime": "2026-11-23T12:00:00Z"}
        ],
    }
    parsed = parse_resource(obj)
    assert isinstance(parsed, Dataset)
    assert parsed.status.counts is not None
    assert parsed.status.counts.per_label["daisy"].train == 8
    assert parsed.status.conditions[0].last_transition_time == NOW


# --- conditions ---------------------------------------------------------------


def test_set_condition_adds_a_new_condition() -> None:
    conditions = set_condition([], "Ready", ConditionStatus.FALSE, "Importing", "reading the zip", NOW)
    assert conditions == [
        Condition(
            type="Ready",
            status=ConditionStatus.FALSE,
            reason="Importing",
            message="reading the zip",
            last_transition_time=NOW,
        )
    ]


def test_set_condition_keeps_transition_time_when_status_is_unchanged() -> None:
    before = set_condition([], "Ready", ConditionStatus.FALSE, "Importing", "1/2", NOW)
    later = NOW + timedelta(minutes=5)
    after = set_condition(before, "Ready", ConditionStatus.FALSE, "Deduplicating", "2/2", later, observed_generation=3)
    assert after[0].last_transition_time == NOW
    assert (after[0].reason, after[0].message, after[0].observed_generation) == ("Deduplicating", "2/2", 3)


def test_set_condition_moves_transition_time_when_status_changes() -> None:
    before = set_condition([], "Ready", ConditionStatus.FALSE, "Importing", "", NOW)
    later = NOW + timedelta(minutes=5)
    after = set_condition(before, "Ready", ConditionStatus.TRUE, "Imported", "", later)
    assert after[0].status is ConditionStatus.TRUE
    assert after[0].last_transition_time == later


def test_set_condition_leaves_other_conditions_and_its_input_alone() -> None:
    conditions = set_condition([], "Ready", ConditionStatus.UNKNOWN, "Starting", "", NOW)
    conditions = set_condition(conditions, "Searching", ConditionStatus.TRUE, "TrialsRunning", "", NOW)
    snapshot = [condition.model_copy() for condition in conditions]
    updated = set_condition(conditions, "Ready", ConditionStatus.TRUE, "Trained", "", NOW + timedelta(hours=1))
    assert conditions == snapshot
    assert [condition.type for condition in updated] == ["Ready", "Searching"]
    assert updated[1] is conditions[1]
    assert find_condition(updated, "Ready") == updated[0]
    assert find_condition(updated, "Failed") is None


def test_condition_times_have_second_precision_and_a_time_zone() -> None:
    conditions = set_condition([], "Ready", ConditionStatus.TRUE, "Ready", "", NOW.replace(microsecond=123456))
    assert conditions[0].last_transition_time == NOW
    assert conditions[0].model_dump(mode="json")["lastTransitionTime"] == "2026-11-23T12:00:00Z"
    with pytest.raises(ValidationError, match="timezone"):
        set_condition([], "Ready", ConditionStatus.TRUE, "Ready", "", datetime(2026, 1, 1))


@pytest.mark.parametrize("reason", ["", "not camel", "Trailing-", "9Starts"])
def test_condition_reason_must_be_camel_case(reason: str) -> None:
    with pytest.raises(ValidationError, match="reason"):
        set_condition([], "Ready", ConditionStatus.TRUE, reason, "", NOW)


# --- parse_resource -------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ([], "expected a mapping, got list"),
        ({"apiVersion": "v1", "kind": "Dataset"}, "apiVersion 'v1'"),
        ({"apiVersion": API_VERSION, "kind": "Model"}, "kind 'Model'"),
        ({"apiVersion": API_VERSION}, "kind None"),
        ({"apiVersion": API_VERSION, "kind": ["Dataset"]}, "kind ['Dataset']"),
    ],
)
def test_parse_resource_rejects_what_is_not_ours(obj: Any, fragment: str) -> None:
    with pytest.raises(ResourceError) as caught:
        parse_resource(obj)
    assert fragment in str(caught.value)


def test_parse_resource_reports_all_problems_in_one_message() -> None:
    obj = training_job(budgetMilliNodeHours=-5, optimizeFor="Fast", unknown=1)
    message = rejects(
        obj, "invalid TrainingJob 'example'", "spec.budgetMilliNodeHours", "spec.optimizeFor", "spec.unknown"
    )
    assert message.count(";") == 2
    assert "\n" not in message


def test_parse_resource_names_unnamed_objects_and_missing_spec() -> None:
    obj = {"apiVersion": API_VERSION, "kind": "ModelDeployment"}
    rejects(obj, "invalid ModelDeployment '<unnamed>'", "spec: Field required")


def test_every_kind_has_distinct_names() -> None:
    plurals = [resource.info.plural for resource in RESOURCE_TYPES]
    short_names = [name for resource in RESOURCE_TYPES for name in resource.info.short_names]
    assert len(set(plurals)) == len(plurals)
    assert len(set(short_names)) == len(short_names)
    assert [resource.__name__ for resource in RESOURCE_TYPES] == ["Dataset", "TrainingJob", "ModelDeployment"]


def test_training_job_export_formats_are_edge_formats_only() -> None:
    tj = parse_resource(training_job(export={"formats": ["tflite", "executorch"]}))
    assert isinstance(tj, TrainingJob)
    assert tj.spec.export.formats == [EdgeFormat.TFLITE, EdgeFormat.EXECUTORCH]
    rejects(training_job(export={"formats": ["onnx"]}), "spec.export.formats.0")


@pytest.mark.parametrize(
    ("preset", "optimize_for"),
    [
        ("HigherAccuracy", OptimizeFor.HIGH_ACCURACY),
        ("BestTradeOff", OptimizeFor.BALANCED),
        ("FasterPredictions", OptimizeFor.LOW_LATENCY),
    ],
)
def test_each_edge_preset_is_one_optimize_for(preset: str, optimize_for: OptimizeFor) -> None:
    tj = parse_resource(training_job(target="Edge", edgePreset=preset))
    assert isinstance(tj, TrainingJob)
    assert tj.spec.edge_preset is EdgePreset(preset)
    assert tj.spec.search_optimize_for is optimize_for


def test_an_edge_target_without_a_preset_keeps_optimize_for() -> None:
    tj = parse_resource(training_job(target="Edge", optimizeFor="HighAccuracy"))
    assert isinstance(tj, TrainingJob)
    assert (tj.spec.target, tj.spec.search_optimize_for) == (TrainingTarget.EDGE, OptimizeFor.HIGH_ACCURACY)


def test_a_preset_needs_the_edge_target_and_no_optimize_for() -> None:
    rejects(training_job(edgePreset="BestTradeOff"), "needs target Edge (--target edge)")
    rejects(training_job(target="Edge", edgePreset="BestTradeOff", optimizeFor="Balanced"), "give one or the other")


def test_an_edge_target_writes_tflite_whatever_formats_were_asked_for() -> None:
    asked = [EdgeFormat.COREML, EdgeFormat.TFLITE]
    assert TrainingTarget.EDGE.export_formats([]) == [EdgeFormat.TFLITE]
    assert TrainingTarget.EDGE.export_formats(asked) == [EdgeFormat.TFLITE, EdgeFormat.COREML]
    assert TrainingTarget.CLOUD.export_formats([EdgeFormat.COREML]) == [EdgeFormat.COREML]
