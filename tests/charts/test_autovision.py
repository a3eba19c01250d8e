"""The Helm chart, rendered in-process by the real Helm engine (helm-python-sdk).

The RBAC rules are checked against the operator's code in tests/test_rbac.py.
"""

from __future__ import annotations

import base64
import http.server
import importlib.util
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import prometheus_client
import pytest
import yaml
from botocore.exceptions import BotoCoreError

import autovision_operator.metrics  # noqa: F401  (registers the operator's metrics)
from autovision.crds import custom_resource_definition, escape_go_template
from autovision.embedded_s3 import free_port, weed_binary
from autovision.resources import GROUP, RESOURCE_TYPES
from autovision.settings import Settings
from autovision.storage import Storage, StorageError
from autovision_operator.builders import RUNAS_ID
from autovision_operator.config import OperatorConfig, kopf_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "autovision"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
NAMESPACE = "autovision-system"
FULLNAME = "av-autovision"
WATCHED = ["team-a", "team-b"]
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {
        "watchNamespaces": WATCHED,
        "storage": {"endpoint": "http://seaweedfs.storage:8333", "credentialsSecret": "s3-credentials"},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/av"}},
        "imagePullSecrets": [{"name": "regcred"}],
        "gpu": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "serving": {"tritonImage": "registry.example/tritonserver:26.06-py3", "gatewayImage": ""},
    },
    "existing-service-account": {
        "serviceAccount": {"create": False, "name": "autovision"},
    },
    "replicas-2-peering": {
        "operator": {"replicas": 2, "nodeSelector": {"kubernetes.io/os": "linux"}, "priorityClassName": "system"},
    },
    "bundled-storage": {
        "storage": {"bundled": {"enabled": True, "persistence": {"size": "50Gi", "storageClassName": "fast"}}},
    },
    "service-monitor": {
        "metrics": {"port": 9090, "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    },
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        },
        "storage": {"endpoint": "https://s3.eu-west-1.amazonaws.com"},
    },
    "serving-policy": {
        "imagePolicy": {"maxImageBytes": 10 * 1024**2, "maxImagePixels": 40_000_000, "decodeMemoryBytes": 4 * 1024**3},
        "serving": {
            "gateway": {"maxConcurrency": 8, "maxQueue": 0, "bodyTimeoutSeconds": 12.5, "upstreamTimeoutSeconds": 60}
        },
    },
    "console": {"console": {"enabled": True}, "networkPolicy": {"enabled": True}},
    "console-namespaced": {
        "watchNamespaces": WATCHED,
        "console": {"enabled": True, "namespace": "team-b", "reviewRole": False, "image": {"repository": "r/console"}},
        "storage": {"bundled": {"enabled": True}},
        "networkPolicy": {"enabled": True, "consoleFrom": [{"namespaceSelector": {}}]},
    },
    "everything": {
        "watchNamespaces": WATCHED,
        "operator": {"replicas": 3, "peering": {"enabled": True, "installCRDs": False}},
        "storage": {"bundled": {"enabled": True}},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "networkPolicy": {"enabled": True, "bundledStorageFrom": [{"podSelector": {"matchLabels": {"app": "upload"}}}]},
    },
}
# Free-form values whose keys are Kubernetes' own, documented by their parent.
FREE_FORM_VALUES = {
    "resources",
    "tolerations",
    "nodeSelector",
    "annotations",
    "affinity",
    "podAnnotations",
    "labels",
    "to",
    "metricsFrom",
    "bundledStorageFrom",
    "consoleFrom",
}
WARNING = 2
# Volume types the "restricted" Pod Security Standard allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
# The fields of prometheus-operator's ServiceMonitor (monitoring.coreos.com/v1,
# example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml) the
# chart sets, with their types and patterns; kubernetes-validate knows no CRDs.
PROMETHEUS_DURATION = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "properties": {"matchLabels": {"type": "object"}}},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {"type": "string", "pattern": PROMETHEUS_DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": PROMETHEUS_DURATION},
                        },
                    },
                },
            },
        },
    },
}


def render(values: dict[str, Any], chart: Path = CHART) -> dict[str, str]:
    """Render like `helm template` would: template path -> manifest text."""
    with helm_python.Chart.load(chart) as loaded:
        return loaded.render(values, name="av", namespace=NAMESPACE, is_install=True)


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for path, text in rendered.items() if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return objects(render(VALUE_SETS[request.param]))


def pod_specs(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod the manifests make: pod templates of workloads, and bare Pods (test hooks)."""
    for obj in manifests:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "Pod":
            yield name, obj["spec"]
        template = obj.get("spec", {}).get("template")
        if template is not None:
            yield name, template["spec"]


def of_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in manifests if obj["kind"] == kind]


def named(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [obj for obj in of_kind(manifests, kind) if obj["metadata"]["name"] == name]
    return obj


def operator_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = named(manifests, "Deployment", FULLNAME)["spec"]["template"]["spec"][
        "containers"
    ]
    (container,) = containers
    return container


def env_of(container: dict[str, Any]) -> dict[str, str | None]:
    return {item["name"]: item.get("value") for item in container["env"]}


def structural_to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural schema as plain JSON Schema (x-kubernetes-* keys dropped)."""
    converted = {key: value for key, value in node.items() if not key.startswith("x-kubernetes")}
    if "properties" in node:
        converted["properties"] = {name: structural_to_json_schema(child) for name, child in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            converted["additionalProperties"] = False
    return converted


# --- chart metadata and lint ---------------------------------------------------------


def test_chart_metadata() -> None:
    with helm_python.Chart.load(CHART) as chart:
        metadata = chart.metadata
    assert metadata["apiVersion"] == "v2"
    assert (metadata["name"], metadata["version"]) == ("autovision", "0.1.0")
    assert metadata["appVersion"] == version("autovision"), "appVersion must follow the Python package"


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_lint_is_clean(values: str) -> None:
    report = helm_python.lint(
        CHART, VALUE_SETS[values], strict=True, namespace=NAMESPACE, kube_version=f"v{KUBERNETES_VERSION}"
    )
    problems = [message for message in report["messages"] if message["severity"] >= WARNING]
    assert report["errors"] == []
    assert problems == []


def test_every_value_is_commented() -> None:
    """Each key has a comment line right above it, except inside Kubernetes-typed values."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    free_form_indent: int | None = None
    for number, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if free_form_indent is not None and (indent > free_form_indent or line.lstrip().startswith("- ")):
            continue
        free_form_indent = None
        key = re.match(r"^\s*([A-Za-z][\w.-]*):", line)
        if key is None:
            continue
        assert lines[number - 1].lstrip().startswith("#"), f"values.yaml:{number + 1}: `{key.group(1)}` has no comment"
        if key.group(1) in FREE_FORM_VALUES:
            free_form_indent = indent


def schema_keys(node: dict[str, Any], definitions: dict[str, Any], path: str = "") -> Iterator[str]:
    node = definitions[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node
    for name, child in node.get("properties", {}).items():
        yield f"{path}{name}"
        if name not in FREE_FORM_VALUES:
            yield from schema_keys(child, definitions, f"{path}{name}.")


def value_keys(node: Any, path: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for name, child in node.items():
            yield f"{path}{name}"
            if name not in FREE_FORM_VALUES:
                yield from value_keys(child, f"{path}{name}.")


def test_schema_describes_exactly_the_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    in_schema = set(schema_keys(schema, schema["definitions"])) - {"global"}
    assert in_schema == set(value_keys(values))
    jsonschema.Draft7Validator(schema).validate(values)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"operator": {"replicas": "2"}}, "/operator/replicas"),
        ({"operator": {"replicas": -1}}, "/operator/replicas"),
        ({"operater": {"replicas": 2}}, "operater"),
        ({"operator": {"image": {"pullPolicy": "Sometimes"}}}, "/operator/image/pullPolicy"),
        ({"operator": {"resources": {"limits": {"memory": ["1Gi"]}}}}, "/operator/resources/limits/memory"),
        ({"operator": {"peering": {"enabled": "yes"}}}, "/operator/peering/enabled"),
        ({"watchNamespaces": "team-a"}, "/watchNamespaces"),
        ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
        ({"importUriSchemes": ["gs"]}, "/importUriSchemes/0"),
        ({"importUriSchemes": []}, "/importUriSchemes"),
        ({"imagePullSecrets": ["regcred"]}, "/imagePullSecrets/0"),
        ({"storage": {"root": "/data"}}, "/storage/root"),
        ({"storage": {"endpoint": "seaweedfs:8333"}}, "/storage/endpoint"),
        ({"storage": {"bundled": {"enabled": 1}}}, "/storage/bundled/enabled"),
        ({"storage": {"bundled": {"persistence": {"size": "lots"}}}}, "/storage/bundled/persistence/size"),
        ({"gpu": {"tolerations": {"key": "nvidia.com/gpu"}}}, "/gpu/tolerations"),
        ({"gpu": {"nodeSelector": {"gpu": True}}}, "/gpu/nodeSelector/gpu"),
        ({"metrics": {"port": 8080}}, "/metrics/port"),
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "/metrics/serviceMonitor/interval"),
        ({"networkPolicy": {"enabled": "true"}}, "/networkPolicy/enabled"),
        ({"networkPolicy": {"apiServer": {"ports": ["https"]}}}, "/networkPolicy/apiServer/ports/0"),
        ({"networkPolicy": {"metricsFrom": [{"namespace": "monitoring"}]}}, "/networkPolicy/metricsFrom/0"),
        ({"serviceAccount": {"create": "false"}}, "/serviceAccount/create"),
        ({"imagePolicy": {"maxImageBytes": 0}}, "/imagePolicy/maxImageBytes"),
        ({"imagePolicy": {"maxImagePixels": 2 * 89_478_485 + 1}}, "/imagePolicy/maxImagePixels"),
        ({"imagePolicy": {"decodeMemoryBytes": "2Gi"}}, "/imagePolicy/decodeMemoryBytes"),
        ({"serving": {"gateway": {"maxConcurrency": 0}}}, "/serving/gateway/maxConcurrency"),
        ({"serving": {"gateway": {"maxQueue": -1}}}, "/serving/gateway/maxQueue"),
        ({"serving": {"gateway": {"bodyTimeoutSeconds": 0}}}, "/serving/gateway/bodyTimeoutSeconds"),
        ({"serving": {"gateway": {"upstreamTimeoutSeconds": "30s"}}}, "/serving/gateway/upstreamTimeoutSeconds"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(complaint)):
        render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"operator": {"replicas": 2, "peering": {"enabled": False}}}, "needs operator.peering.enabled"),
        ({"storage": {"bundled": {"enabled": True}, "endpoint": "http://s3:8333"}}, "leave storage.endpoint"),
        ({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}, "needs metrics.enabled"),
        ({"watchNamespaces": ["a"], "console": {"enabled": True, "namespace": "b"}}, "must be one of watchNamespaces"),
    ],
)
def test_contradictory_values_fail_with_a_reason(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render(values)


# --- rendered objects ----------------------------------------------------------


def test_every_object_is_valid(rendered: list[dict[str, Any]]) -> None:
    """Built-in kinds by kubernetes-validate; custom resources by their CRD's schema."""
    crds = {
        (crd["spec"]["group"], crd["spec"]["names"]["kind"]): crd
        for crd in of_kind(rendered, "CustomResourceDefinition")
    }
    for obj in rendered:
        group = obj["apiVersion"].rpartition("/")[0]
        if (group, obj["kind"]) in crds:
            (served,) = crds[group, obj["kind"]]["spec"]["versions"]
            assert obj["apiVersion"] == f"{group}/{served['name']}"
            body = {key: value for key, value in obj.items() if key not in {"apiVersion", "kind", "metadata"}}
            jsonschema.validate(body, structural_to_json_schema(served["schema"]["openAPIV3Schema"]))
        elif obj["kind"] in {"KopfPeering", "ClusterKopfPeering"}:
            # peering.installCRDs false: the CRDs come from elsewhere; the object carries no fields.
            assert set(obj) == {"apiVersion", "kind", "metadata"}
        elif group == "monitoring.coreos.com":
            jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, True)


def test_namespaced_objects_live_in_the_release_namespace(rendered: list[dict[str, Any]]) -> None:
    release_scoped = {"Deployment", "ServiceAccount", "Service", "Secret", "PersistentVolumeClaim", "Pod"}
    for obj in rendered:
        if obj["kind"] in release_scoped | {"NetworkPolicy", "PodDisruptionBudget", "ServiceMonitor"}:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


def test_pods_meet_the_restricted_pod_security_standard(rendered: list[dict[str, Any]]) -> None:
    pods = list(pod_specs(rendered))
    assert pods, "no pods rendered"
    for name, pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == RUNAS_ID, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC")), name
        for volume in pod.get("volumes", []):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, f"{name}: volume {volume}"
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context.get("privileged") is not True, name
            assert context.get("runAsUser", pod["securityContext"].get("runAsUser")) != 0, name
            assert not any(port.get("hostPort") for port in container.get("ports", [])), name
            assert "resources" in container, name


def test_the_images_run_as_the_chart_user() -> None:
    """The Dockerfiles' USER is the chart's runAsUser, and their bases are pinned."""
    for dockerfile in ("operator/Dockerfile", "trainer-image/Dockerfile"):
        text = (ROOT / dockerfile).read_text()
        assert re.findall(r"^USER (\S+)$", text, re.MULTILINE)[-1] == f"{RUNAS_ID}:{RUNAS_ID}", dockerfile
        bases = re.findall(r"^ARG \w+_IMAGE=(\S+)$", text, re.MULTILINE)
        assert bases, dockerfile
        for base in bases:
            assert re.search(r":[0-9][\w.-]*", base), f"{dockerfile}: unpinned {base}"
            assert "latest" not in base, f"{dockerfile}: unpinned {base}"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored, "the build context is an allow-list"
    assert not any(line.startswith("!") and ".venv" in line for line in ignored)


# --- the operator --------------------------------------------------------------


def test_operator_deployment(rendered: list[dict[str, Any]]) -> None:
    deployment = named(rendered, "Deployment", FULLNAME)
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container(rendered)
    assert container["command"] == ["autovision-operator"]
    assert container["image"] == "ghcr.io/autovision/operator:0.1.0"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    env = env_of(container)
    assert env["AUTOVISION_TRAINER_IMAGE"] == "ghcr.io/autovision/trainer:0.1.0"
    assert env["AUTOVISION_LIVENESS_ENDPOINT"] == "http://0.0.0.0:8080/healthz"
    assert "AUTOVISION_STORAGE_ENDPOINT" not in env, "autovision.settings reads AUTOVISION_S3_ENDPOINT_URL"
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    service_accounts = [obj["metadata"]["name"] for obj in of_kind(rendered, "ServiceAccount")]
    assert pod["serviceAccountName"] in [*service_accounts, "autovision"]


def operator_config(container: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> OperatorConfig:
    """The configuration the operator would read from this container's environment."""
    downward = {"metadata.namespace": NAMESPACE, "metadata.name": f"{FULLNAME}-0"}
    for item in container["env"]:
        value = item.get("value")
        if value is None:
            value = downward[item["valueFrom"]["fieldRef"]["fieldPath"]]
        monkeypatch.setenv(item["name"], value)
    return OperatorConfig()


def test_the_operator_reads_every_variable_the_chart_sets(
    rendered: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    container = operator_container(rendered)
    read = set()
    for name, field in OperatorConfig.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", None) or [f"AUTOVISION_{name.upper()}"]
        read |= {str(alias).upper() for alias in aliases}
    chart_sets = {name for name in env_of(container) if name.startswith("AUTOVISION_")}
    assert chart_sets <= read, f"the operator ignores {sorted(chart_sets - read)}"
    config = operator_config(container, monkeypatch)
    assert config.namespace == NAMESPACE
    assert config.liveness_endpoint == "http://0.0.0.0:8080/healthz"


def test_imports_read_only_the_schemes_the_chart_allows(
    rendered: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default no import reads the pod's own disk; narrowing the value reaches the operator's config."""
    assert operator_config(operator_container(rendered), monkeypatch).import_uri_schemes == ("s3", "http", "https")
    narrowed = operator_container(objects(render({"importUriSchemes": ["s3"]})))
    assert operator_config(narrowed, monkeypatch).import_uri_schemes == ("s3",)


def test_environment_contract_of_the_namespaced_install(monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = objects(render(VALUE_SETS["namespaced"]))
    container = operator_container(manifests)
    config = operator_config(container, monkeypatch)
    assert config.watch_namespaces == tuple(WATCHED)
    assert config.s3_endpoint_url == "http://seaweedfs.storage:8333"
    assert config.storage_secret == "s3-credentials"
    assert config.metrics_port == 8081
    assert config.triton_image == "registry.example/tritonserver:26.06-py3"
    assert [secret.name for secret in config.image_pull_secrets] == ["regcred"]
    assert config.gpu_node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert [toleration.key for toleration in config.gpu_tolerations] == ["nvidia.com/gpu"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]


SERVING_SETTINGS = (
    "max_image_bytes",
    "max_image_pixels",
    "decode_memory_bytes",
    "gateway_max_concurrency",
    "gateway_max_queue",
    "gateway_body_timeout_seconds",
    "gateway_upstream_timeout_seconds",
)


def test_image_policy_and_gateway_bounds_default_to_the_settings_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset in the values, the operator gets exactly the defaults the core documents (2 GiB as digits, not 2.1e+09)."""
    config = operator_config(operator_container(objects(render({}))), monkeypatch)
    for name in SERVING_SETTINGS:
        assert getattr(config, name) == Settings.model_fields[name].default, name


def test_image_policy_and_gateway_bounds_reach_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the values set is what the operator passes to Jobs and serving pods, and sizes Triton's pod from."""
    config = operator_config(operator_container(objects(render(VALUE_SETS["serving-policy"]))), monkeypatch)
    assert (config.max_image_bytes, config.max_image_pixels) == (10 * 1024**2, 40_000_000)
    assert config.decode_memory_bytes == 4 * 1024**3
    assert (config.gateway_max_concurrency, config.gateway_max_queue) == (8, 0)
    assert (config.gateway_body_timeout_seconds, config.gateway_upstream_timeout_seconds) == (12.5, 60.0)


def test_metrics_are_declared_served_and_scraped(monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = objects(render(VALUE_SETS["service-monitor"]))
    container = operator_container(manifests)
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    assert operator_config(container, monkeypatch).metrics_port == 9090
    service = named(manifests, "Service", FULLNAME)
    assert {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"} in service["spec"]["ports"]
    (monitor,) = of_kind(manifests, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == ["metrics"]


def test_metrics_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = objects(render({"metrics": {"enabled": False}}))
    container = operator_container(manifests)
    assert [port["name"] for port in container["ports"]] == ["health"]
    assert operator_config(container, monkeypatch).metrics_port is None
    assert [port["name"] for port in named(manifests, "Service", FULLNAME)["spec"]["ports"]] == ["health"]


# --- RBAC scope (the rules themselves: tests/test_rbac.py) ---------------------------------


def test_watch_namespaces_limit_the_grant_to_those_namespaces() -> None:
    rendered = objects(render(VALUE_SETS["namespaced"]))
    assert of_kind(rendered, "ClusterRole") == of_kind(rendered, "ClusterRoleBinding") == []
    for kind in ("Role", "RoleBinding"):
        assert sorted(obj["metadata"]["namespace"] for obj in of_kind(rendered, kind)) == WATCHED


def test_default_grant_is_cluster_wide() -> None:
    rendered = objects(render({}))
    (binding,) = of_kind(rendered, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert of_kind(rendered, "RoleBinding") == []


# --- kopf peering --------------------------------------------------------------------


@pytest.mark.parametrize(("watch", "kind"), [((), "ClusterKopfPeering"), (tuple(WATCHED), "KopfPeering")])
def test_peering_objects_are_the_ones_kopf_looks_for(watch: tuple[str, ...], kind: str) -> None:
    settings = kopf_settings(OperatorConfig(storage_root="s3://autovision", trainer_image="t", watch_namespaces=watch))
    assert settings.peering.clusterwide == (kind == "ClusterKopfPeering")
    manifests = objects(render({"watchNamespaces": list(watch), "operator": {"replicas": 2}}))
    peerings = of_kind(manifests, kind)
    assert {obj["metadata"]["name"] for obj in peerings} == {settings.peering.name}
    assert sorted(obj["metadata"].get("namespace", "") for obj in peerings) == (sorted(watch) or [""])
    for obj in peerings:
        # Created after the CRDs exist, re-created by later installs and upgrades.
        assert obj["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    crds = {crd["metadata"]["name"]: crd for crd in of_kind(manifests, "CustomResourceDefinition")}
    for name, scope in [("clusterkopfpeerings.kopf.dev", "Cluster"), ("kopfpeerings.kopf.dev", "Namespaced")]:
        assert crds[name]["spec"]["scope"] == scope
        assert crds[name]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert "app.kubernetes.io/part-of" not in crds[name]["metadata"]["labels"], "shared by every kopf operator"


def test_replicas_get_distinct_peering_priorities(monkeypatch: pytest.MonkeyPatch) -> None:
    config = OperatorConfig(storage_root="s3://autovision", trainer_image="t")
    priorities = set()
    for pod in (f"{FULLNAME}-7d9f-abcde", f"{FULLNAME}-7d9f-fghij"):
        monkeypatch.setenv("POD_ID", pod)  # what the chart sets, from metadata.name
        priorities.add(kopf_settings(config).peering.priority)
    assert len(priorities) == 2


def test_several_replicas_spread_and_keep_one_through_drains() -> None:
    manifests = objects(render(VALUE_SETS["replicas-2-peering"]))
    pod = named(manifests, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    (budget,) = of_kind(manifests, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert of_kind(objects(render({})), "PodDisruptionBudget") == [], "one replica: no budget blocking drains"


def test_peering_can_rely_on_crds_installed_elsewhere() -> None:
    manifests = objects(render({"operator": {"peering": {"enabled": True, "installCRDs": False}}}))
    assert not [crd for crd in of_kind(manifests, "CustomResourceDefinition") if crd["spec"]["group"] == "kopf.dev"]
    assert of_kind(manifests, "ClusterKopfPeering")


# --- bundled storage --------------------------------------------------------------------


def test_bundled_storage_is_off_by_default() -> None:
    manifests = objects(render({}))
    assert not [obj for obj in manifests if obj["metadata"]["name"] == f"{FULLNAME}-storage"]
    assert operator_container(manifests).get("envFrom") is None, "ambient credentials (IRSA, workload identity)"


def test_bundled_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = objects(render(VALUE_SETS["bundled-storage"]))
    name = f"{FULLNAME}-storage"
    deployment = named(manifests, "Deployment", name)
    claim = named(manifests, "PersistentVolumeClaim", name)
    service = named(manifests, "Service", name)
    secret = named(manifests, "Secret", name)
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == RUNAS_ID, "the volume must be writable by the non-root user"
    assert {volume["name"]: volume for volume in pod["volumes"]}["data"]["persistentVolumeClaim"] == {"claimName": name}
    (container,) = pod["containers"]
    assert "-s3.config=/etc/seaweedfs/s3.json" in container["args"]
    assert "-master.telemetry=false" in container["args"]
    assert service["spec"]["ports"] == [{"name": "s3", "port": 8333, "targetPort": "s3", "protocol": "TCP"}]
    # The operator reaches it with the generated credentials, which SeaweedFS accepts.
    config = operator_config(operator_container(manifests), monkeypatch)
    assert config.s3_endpoint_url == f"http://{name}.{NAMESPACE}.svc:8333"
    assert operator_container(manifests)["envFrom"] == [{"secretRef": {"name": name}}]
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert set(data) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, "envFrom gets nothing else"
    identities = named(manifests, "Secret", f"{name}-identities")["data"]["s3.json"]
    (identity,) = json.loads(base64.b64decode(identities))["identities"]
    assert identity["credentials"] == [
        {"accessKey": data["AWS_ACCESS_KEY_ID"], "secretKey": data["AWS_SECRET_ACCESS_KEY"]}
    ]
    assert len(data["AWS_SECRET_ACCESS_KEY"]) >= 40


@pytest.mark.e2e
@pytest.mark.seaweedfs
def test_bundled_storage_serves_s3_only_to_the_generated_credentials(tmp_path: Path) -> None:
    """The rendered `weed server` command and identities, run for real (with free ports and a temp dir)."""
    manifests = objects(render(VALUE_SETS["bundled-storage"]))
    name = f"{FULLNAME}-storage"
    (container,) = named(manifests, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    credentials = {
        key: base64.b64decode(value).decode() for key, value in named(manifests, "Secret", name)["data"].items()
    }
    (tmp_path / "s3.json").write_bytes(
        base64.b64decode(named(manifests, "Secret", f"{name}-identities")["data"]["s3.json"])
    )
    (tmp_path / "data").mkdir()
    s3_port = free_port()
    args = [
        arg.replace("-dir=/data", f"-dir={tmp_path / 'data'}")
        .replace("/etc/seaweedfs/s3.json", str(tmp_path / "s3.json"))
        .replace("-s3.port=8333", f"-s3.port={s3_port}")
        for arg in container["args"]
    ]
    ports = [f"-{flag}={free_port()}" for flag in ("s3.port.grpc", "master.port", "master.port.grpc")]
    ports += [f"-{flag}={free_port()}" for flag in ("volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc")]
    log = tmp_path / "weed.log"
    with log.open("wb") as output:
        server = subprocess.Popen([weed_binary(), *args, *ports], cwd=tmp_path, stdout=output, stderr=output)
    endpoint = f"http://127.0.0.1:{s3_port}"

    def client(key: str, secret: str) -> Storage:
        settings = Settings(
            storage_root="s3://autovision", s3_endpoint_url=endpoint, s3_access_key_id=key, s3_secret_access_key=secret
        )
        return Storage("s3://autovision", settings)

    try:
        deadline = time.monotonic() + 120  # generous: CI shares 2 cores with other servers
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/healthz", timeout=5) as response:  # the probes' path
                    assert response.status == 200
                    break
            except OSError:
                assert server.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(1)
        owner = client(credentials["AWS_ACCESS_KEY_ID"], credentials["AWS_SECRET_ACCESS_KEY"])
        while True:  # the S3 gateway answers before its filer does
            try:
                owner.write_bytes("probe/hello.txt", b"hello")
                break
            except (OSError, StorageError, BotoCoreError):
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(1)
        assert owner.read_bytes("probe/hello.txt") == b"hello"
        with pytest.raises((OSError, StorageError)):
            client(credentials["AWS_ACCESS_KEY_ID"], "wrong").read_bytes("probe/hello.txt")
    finally:
        server.kill()  # a throw-away server: no graceful shutdown needed
        server.wait()


# --- network policies -------------------------------------------------------------------------


def egress_ports(policy: dict[str, Any]) -> list[set[int | str]]:
    return [{port["port"] for port in rule["ports"]} for rule in policy["spec"]["egress"]]


def test_network_policy_of_the_operator() -> None:
    manifests = objects(render(VALUE_SETS["network-policy"]))
    (policy,) = of_kind(manifests, "NetworkPolicy")
    pod_labels = named(manifests, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert egress_ports(policy) == [{53}, {443, 6443}, {443}], "DNS, API server, storage over https"
    (scrape,) = [
        rule for rule in policy["spec"]["ingress"] if "from" in rule and "namespaceSelector" in rule["from"][0]
    ]
    assert scrape["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    plain = objects(
        render({"networkPolicy": {"enabled": True}, "storage": {"endpoint": "http://seaweedfs.storage:8333"}})
    )
    assert egress_ports(of_kind(plain, "NetworkPolicy")[0])[-1] == {8333}


def test_network_policy_of_the_bundled_storage() -> None:
    manifests = objects(render(VALUE_SETS["everything"]))
    storage = named(manifests, "NetworkPolicy", f"{FULLNAME}-storage")
    assert storage["spec"]["egress"] == [], "SeaweedFS opens no connections"
    (rule,) = storage["spec"]["ingress"]
    assert rule["ports"] == [{"port": "s3", "protocol": "TCP"}]
    jobs = [peer for peer in rule["from"] if "namespaceSelector" in peer]
    assert jobs[0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "autovision-operator"}}
    assert jobs[0]["namespaceSelector"]["matchExpressions"][0]["values"] == WATCHED
    assert {"podSelector": {"matchLabels": {"app": "upload"}}} in rule["from"]
    operator = named(manifests, "NetworkPolicy", FULLNAME)
    assert egress_ports(operator)[-1] == {8333}


# --- helm test -----------------------------------------------------------------------------


class _Endpoints(http.server.BaseHTTPRequestHandler):
    """kopf's liveness endpoint and the operator's real metrics, as the Service serves them."""

    def do_GET(self) -> None:
        if self.path == "/healthz":
            body = b"{}"
        elif self.path == "/metrics":
            body = prometheus_client.generate_latest()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def test_helm_test_checks_the_operator_through_its_service() -> None:
    manifests = objects(render({}))
    (pod,) = [obj for obj in of_kind(manifests, "Pod") if obj["metadata"]["annotations"]["helm.sh/hook"] == "test"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == operator_container(manifests)["image"], "no other image to pull"
    service = named(manifests, "Service", FULLNAME)
    assert {port["name"] for port in service["spec"]["ports"]} == {"health", "metrics"}
    # Run the check itself against stand-ins for the Service: it passes, and fails when unhealthy.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endpoints)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        local = f"http://127.0.0.1:{server.server_address[1]}"
        script = re.sub(rf"http://{FULLNAME}\.{NAMESPACE}\.svc:\d+", local, container["args"][0])
        result = subprocess.run(
            [sys.executable, *container["command"][1:], script], check=False, capture_output=True, timeout=30
        )
        assert result.returncode == 0, result.stderr.decode()
        assert b"metrics: ok" in result.stdout
        broken = script.replace("/healthz", "/missing").replace("deadline = time.monotonic() + 120", "deadline = 0")
        result = subprocess.run([sys.executable, "-c", broken], check=False, capture_output=True, timeout=30)
        assert result.returncode != 0
    finally:
        server.shutdown()


# --- NOTES ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["defaults", "bundled-storage", "namespaced"])
def test_notes_give_the_next_steps(values: str) -> None:
    notes = render(VALUE_SETS[values])["autovision/templates/NOTES.txt"]
    for step in (
        f"helm test av --namespace {NAMESPACE}",
        "apply -f examples/dataset.yaml",
        "apply -f examples/trainingjob.yaml",
        "apply -f examples/modeldeployment.yaml",
        "wait dataset/flowers --for=condition=Ready",
        "get autovision",
        "{.status.endpoints.predict}",
        '"imageBytes"',
    ):
        assert step in notes, step
    assert (f"get secret {FULLNAME}-storage" in notes) == (values == "bundled-storage")


# --- CRDs in the chart -------------------------------------------------------------


def test_rendered_crds_equal_the_generated_ones(rendered: list[dict[str, Any]]) -> None:
    crds = {
        obj["metadata"]["name"]: obj
        for obj in of_kind(rendered, "CustomResourceDefinition")
        if obj["spec"]["group"] == GROUP
    }
    expected = [custom_resource_definition(resource, for_chart=True) for resource in RESOURCE_TYPES]
    assert crds == {crd["metadata"]["name"]: crd for crd in expected}
    plain = {crd["metadata"]["name"]: crd for crd in (custom_resource_definition(r) for r in RESOURCE_TYPES)}
    for name, crd in crds.items():
        without_annotations = {**crd, "metadata": {k: v for k, v in crd["metadata"].items() if k != "annotations"}}
        assert without_annotations == plain[name], f"{name} differs from crds/ beyond the keep annotation"


def test_escaped_template_delimiters_render_verbatim(tmp_path: Path) -> None:
    """Generated text that happened to contain `{{` would still render as itself."""
    text = 'description: "use {{ .Values.x }} and {{{ or }}"\n'
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "templates" / "probe.yaml").write_text(escape_go_template(text))
    assert render({}, chart) == {"probe/templates/probe.yaml": text}


# --- token checks of serving (servingAuth) ----------------------------------------------


def test_serving_auth_creates_nothing_by_default() -> None:
    rendered = objects(render({}))
    assert [obj for obj in rendered if obj["metadata"]["name"].endswith("-serving-auth")] == []
    assert [obj for obj in of_kind(rendered, "ServiceAccount") if obj["metadata"]["namespace"] != NAMESPACE] == []


def test_serving_auth_grants_the_serving_account_exactly_the_gateways_reviews(monkeypatch: pytest.MonkeyPatch) -> None:
    from autovision.auth.kubernetes import ACCESS_REVIEWS, TOKEN_REVIEWS

    rendered = objects(render({"servingAuth": {"namespaces": ["team-a", "team-b"]}}))
    accounts = [obj for obj in of_kind(rendered, "ServiceAccount") if obj["metadata"]["namespace"] != NAMESPACE]
    assert sorted((obj["metadata"]["namespace"], obj["metadata"]["name"]) for obj in accounts) == [
        ("team-a", "autovision-serving"),
        ("team-b", "autovision-serving"),
    ]
    assert all(obj["automountServiceAccountToken"] is False for obj in accounts)
    (role,) = [obj for obj in of_kind(rendered, "ClusterRole") if obj["metadata"]["name"].endswith("-serving-auth")]
    # What the gateway posts (/apis/GROUP/VERSION/PLURAL), as RBAC names it.
    called = {(path.split("/")[2], path.split("/")[4], "create") for path in (TOKEN_REVIEWS, ACCESS_REVIEWS)}
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == called
    (binding,) = [
        obj for obj in of_kind(rendered, "ClusterRoleBinding") if obj["metadata"]["name"].endswith("-serving-auth")
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "autovision-serving", "namespace": namespace}
        for namespace in ("team-a", "team-b")
    ]
    for obj in [*accounts, role, binding]:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, True)
    # The operator runs token-checking pods as that account.
    assert operator_config(operator_container(rendered), monkeypatch).serving_service_account == "autovision-serving"


# --- the console (console.enabled) --------------------------------------------------------

CONSOLE = f"{FULLNAME}-console"


def console_objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = objects(render(values))
    return [obj for obj in rendered if obj["metadata"]["name"].startswith(CONSOLE)]


def test_the_console_is_off_by_default() -> None:
    assert console_objects({}) == []


def test_console_deployment_runs_the_cluster_app_with_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    from autovision.console.cluster_app import parse_arguments

    rendered = console_objects({"console": {"enabled": True}})
    deployment = named(rendered, "Deployment", CONSOLE)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/autovision/trainer:0.1.0", "the trainer image holds the console"
    assert container["command"][:2] == ["python", "-m"]
    assert importlib.util.find_spec(container["command"][2]) is not None
    arguments = parse_arguments(container["args"])
    assert (arguments.namespace, arguments.port) == (NAMESPACE, 8750)
    assert {"name": "http", "containerPort": 8750, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/login", "port": "http"}
    for name, value in env_of(container).items():
        monkeypatch.setenv(name, str(value))
    settings = Settings()
    assert (settings.storage_root, settings.max_image_bytes) == ("s3://autovision", 31457280)
    assert pod["serviceAccountName"] == CONSOLE
    assert pod["automountServiceAccountToken"] is True
    account = named(rendered, "ServiceAccount", CONSOLE)
    assert account["automountServiceAccountToken"] is False
    service = named(rendered, "Service", CONSOLE)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "http", "port": 8750, "targetPort": "http", "protocol": "TCP"}]


def test_console_network_policy_reaches_the_api_storage_and_gateways() -> None:
    values = {"console": {"enabled": True, "namespace": "team-a"}, "networkPolicy": {"enabled": True}}
    values |= {"storage": {"bundled": {"enabled": True}}}
    rendered = objects(render(values))
    policy = named(rendered, "NetworkPolicy", CONSOLE)
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert egress_ports(policy) == [{53}, {443, 6443}, {8333}, {8080}]
    gateways = policy["spec"]["egress"][-1]["to"][0]
    assert gateways["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}
    storage = named(rendered, "NetworkPolicy", f"{FULLNAME}-storage")
    console_pods = named(rendered, "Deployment", CONSOLE)["spec"]["selector"]["matchLabels"]
    assert {"podSelector": {"matchLabels": console_pods}} in storage["spec"]["ingress"][0]["from"]
