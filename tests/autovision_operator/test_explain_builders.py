"""The explainer's children (spec.explain): schema-valid, sized by the spec, reached by the gateway."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from autovision.contract import env
from autovision.resources import ModelDeployment, TrainingJob, parse_resource
from autovision.serving.traffic import Routes
from autovision_operator import explain_builders as eb
from autovision_operator.reconcile import NotReadyError
from autovision_operator.serving_builders import GATEWAY_CONTAINER, build_gateway_deployment
from tests.support.operator import make_config

K8S_VERSION = kubernetes_validate.latest_version()
MODEL_DIR = "s3://autovision/runs/ml/flowers-run/0f1e/model"
EXPLAIN = {"cpu": "2", "memory": "3Gi", "replicas": 2, "timeLimitSeconds": 20}


def model_deployment(**spec: Any) -> ModelDeployment:
    deployment = parse_resource(
        {
            "apiVersion": "autovision.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "flowers", "namespace": "ml", "uid": "uid-md"},
            "spec": {"modelRef": {"trainingJob": "flowers-run"}, **spec},
        }
    )
    assert isinstance(deployment, ModelDeployment)
    return deployment


def training_job(artifacts: dict[str, str]) -> TrainingJob:
    job = parse_resource(
        {
            "apiVersion": "autovision.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "flowers-run", "namespace": "ml", "uid": "0f1e"},
            "spec": {"datasetRef": {"name": "flowers"}, "budgetMilliNodeHours": 1000},
            "status": {"artifacts": artifacts},
        }
    )
    assert isinstance(job, TrainingJob)
    return job


def test_the_explainer_deployment_and_service_are_valid_owned_and_sized_by_the_spec() -> None:
    deployment = model_deployment(explain=EXPLAIN)
    config = make_config(s3_endpoint_url="http://seaweedfs.storage:8333")
    built = eb.build_explainer_deployment(deployment, MODEL_DIR, config, "s3-credentials")
    service = eb.build_explainer_service(deployment)
    for obj in (built, service):
        kubernetes_validate.validate(obj, K8S_VERSION, True)
        assert obj["metadata"]["name"] == "flowers-explainer"
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-md"
    assert built["spec"]["replicas"] == 2
    (container,) = built["spec"]["template"]["spec"]["containers"]
    assert container["args"][:1] == [MODEL_DIR]
    assert "--time-limit=20" in container["args"]
    assert "--public-name=flowers" in container["args"]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "3Gi"}, "limits": {"memory": "3Gi"}}
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert {"name": env.S3_ENDPOINT_URL, "value": "http://seaweedfs.storage:8333"} in container["env"]
    assert container["image"] == config.serving_gateway_image
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    selector = built["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    assert selector["app.kubernetes.io/component"] == "explainer"  # never the serving pods'


def test_the_gateway_is_pointed_at_the_explainer_only_with_spec_explain() -> None:
    table = Routes.single("flowers-run", "flowers-flowers-run.ml.svc:8000")

    def gateway_env(deployment: ModelDeployment) -> list[dict[str, Any]]:
        pod = build_gateway_deployment(deployment, table, make_config())["spec"]["template"]["spec"]
        variables: list[dict[str, Any]] = next(c for c in pod["containers"] if c["name"] == GATEWAY_CONTAINER)["env"]
        return variables

    url = {"name": env.GATEWAY_EXPLAINER_URL, "value": "http://flowers-explainer.ml.svc:8090"}
    assert url in gateway_env(model_deployment(explain={}))
    assert all(item["name"] != env.GATEWAY_EXPLAINER_URL for item in gateway_env(model_deployment()))


def test_the_explained_model_is_the_spec_s_or_the_training_job_s() -> None:
    explain = model_deployment(explain={"modelUri": "s3://b/mine/model"}).spec.explain
    assert explain is not None
    assert eb.explained_model_uri(explain, None) == "s3://b/mine/model"
    default = model_deployment(explain={}).spec.explain
    assert default is not None
    assert eb.explained_model_uri(default, training_job({"model": MODEL_DIR})) == MODEL_DIR
    with pytest.raises(NotReadyError, match=r"set spec\.explain\.modelUri") as refused:
        eb.explained_model_uri(default, None)
    assert refused.value.reason == "ExplainModelUnknown"
    with pytest.raises(NotReadyError):
        eb.explained_model_uri(default, training_job({}))


def test_spec_explain_bounds_its_quantities_and_time() -> None:
    with pytest.raises(ValueError, match="memory"):
        model_deployment(explain={"memory": "lots"})
    with pytest.raises(ValueError, match=r"timeLimitSeconds|time_limit_seconds"):
        model_deployment(explain={"timeLimitSeconds": 3600})
