"""Pure builders of a ModelDeployment's explainer (``spec.explain``): its Deployment and Service.

The explainer (``autovision.serving.explainer``) needs torch and CPUs, which the
gateway beside Triton has not, so it runs in pods of its own: the serving image
(which carries torch), ``spec.explain``'s CPU and memory, the model's storage
credentials to read the run's TorchScript and model card, and no GPU. The
gateway forwards ``:explain`` to its Service (``serving_builders.explainer_env``,
beside the explainer's name and port, which the gateway's pod spec needs); without
``spec.explain`` neither child exists and ``:explain`` answers 404.
Nothing here talks to a server.
"""

from __future__ import annotations

from typing import Any, Final

from autovision.contract import env
from autovision.resources import ExplainSpec, ModelDeployment, TrainingJob
from autovision_operator.builders import (
    RUNAS_ID,
    image_policy_env,
    labels,
    owner_reference,
    restricted_security_context,
    secret_env_from,
)
from autovision_operator.config import OperatorConfig
from autovision_operator.reconcile import NotReadyError
from autovision_operator.serving_builders import (
    EXPLAIN,
    EXPLAINER_SUFFIX,
    PRE_STOP_SECONDS,
    REVISION_HISTORY_LIMIT,
    TERMINATION_GRACE_SECONDS,
    explainer_name,
)

COMPONENT: Final = EXPLAINER_SUFFIX
CONTAINER: Final = "explainer"
COMMAND: Final = ("python", "-m", "autovision.serving.explainer")


def explained_model_uri(explain: ExplainSpec, training_job: TrainingJob | None) -> str:
    """The model directory the explainer reads: ``spec.explain.modelUri``, else the TrainingJob's model artifact.

    NotReadyError ExplainModelUnknown when neither names one (a ``modelRef.uri`` without ``modelUri``,
    or a TrainingJob without a model yet).
    """
    if explain.model_uri is not None:
        return explain.model_uri
    artifacts = training_job.status.artifacts if training_job is not None else None
    if artifacts is None or not artifacts.model:
        raise NotReadyError(
            "ExplainModelUnknown",
            "spec.explain needs the model directory: set spec.explain.modelUri, or serve a TrainingJob's model",
        )
    return artifacts.model


def _selector(deployment: ModelDeployment) -> dict[str, str]:
    keys = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")
    all_labels = labels(COMPONENT, deployment)
    return {key: all_labels[key] for key in keys}


def _child(deployment: ModelDeployment, api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": explainer_name(deployment),
            "namespace": deployment.metadata.namespace,
            "labels": labels(COMPONENT, deployment),
            "ownerReferences": [owner_reference(deployment)],
        },
        "spec": spec,
    }


def _container(
    deployment: ModelDeployment, explain: ExplainSpec, model_uri: str, config: OperatorConfig, secret: str | None
) -> dict[str, Any]:
    """The explainer on the run's model directory, with the operator's storage and image settings."""
    variables = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
        *image_policy_env(config),
    ]
    if config.s3_endpoint_url:
        variables.append({"name": env.S3_ENDPOINT_URL, "value": config.s3_endpoint_url})
    probe = {"httpGet": {"path": "/healthz", "port": EXPLAIN.name}, "periodSeconds": 10, "timeoutSeconds": 5}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": config.serving_gateway_image,
        "imagePullPolicy": config.trainer_image_pull_policy,
        "command": list(COMMAND),
        "args": [
            model_uri,
            "--host=0.0.0.0",
            f"--port={EXPLAIN.number}",
            f"--public-name={deployment.metadata.name}",
            f"--score-threshold={deployment.spec.score_threshold}",
            f"--time-limit={explain.time_limit_seconds:g}",
        ],
        "env": variables,
        "ports": [{"name": EXPLAIN.name, "containerPort": EXPLAIN.number, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": explain.cpu, "memory": explain.memory},
            "limits": {"memory": explain.memory},
        },
        # Loading torch and the model takes a while; the readiness probe gates traffic until then.
        "startupProbe": {**probe, "failureThreshold": 30},
        "readinessProbe": {**probe, "failureThreshold": 3},
        "livenessProbe": {**probe, "failureThreshold": 6},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}},
        "securityContext": restricted_security_context(RUNAS_ID),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        **secret_env_from(secret),
    }
    return container


def build_explainer_deployment(
    deployment: ModelDeployment, model_uri: str, config: OperatorConfig, secret: str | None
) -> dict[str, Any]:
    """The apps/v1 Deployment of ``spec.explain.replicas`` explainer pods (no GPU) on ``model_uri``."""
    explain = deployment.spec.explain
    if explain is None:
        raise ValueError(f"ModelDeployment {deployment.metadata.name} has no spec.explain")
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(deployment, explain, model_uri, config, secret)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }
    if config.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [item.model_dump(mode="json") for item in config.image_pull_secrets]
    return _child(
        deployment,
        "apps/v1",
        "Deployment",
        {
            "replicas": explain.replicas,
            "selector": {"matchLabels": _selector(deployment)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
            "template": {"metadata": {"labels": labels(COMPONENT, deployment)}, "spec": pod_spec},
        },
    )


def build_explainer_service(deployment: ModelDeployment) -> dict[str, Any]:
    """The v1 Service in front of the explainer pods, which only the gateway calls."""
    port = {
        "name": EXPLAIN.name,
        "port": EXPLAIN.number,
        "targetPort": EXPLAIN.name,
        "protocol": "TCP",
        "appProtocol": EXPLAIN.app_protocol,
    }
    return _child(
        deployment, "v1", "Service", {"type": "ClusterIP", "selector": _selector(deployment), "ports": [port]}
    )
