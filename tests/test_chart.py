"""The Helm chart, rendered in-process by the real Helm engine (helm-python-sdk)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from autovision.crds import custom_resource_definition, escape_go_template
from autovision.resources import RESOURCE_TYPES

CHART = Path(__file__).resolve().parent.parent / "charts" / "autovision"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
NAMESPACE = "autovision-system"
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {
        "watchNamespaces": ["team-a", "team-b"],
        "storage": {"endpoint": "http://seaweedfs.storage:8333", "credentialsSecret": "s3-credentials"},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/av"}},
        "imagePullSecrets": [{"name": "regcred"}],
        "gpu": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
    },
    "existing-service-account": {
        "serviceAccount": {"create": False, "name": "autovision"},
        "operator": {"replicas": 2},
    },
}
# Free-form values whose keys are Kubernetes' own, documented by their parent.
FREE_FORM_VALUES = {"resources", "tolerations", "nodeSelector", "annotations"}
WARNING = 2


def render(values: dict[str, Any], chart: Path = CHART) -> dict[str, str]:
    """Render like `helm template` would: template path -> manifest text."""
    with helm_python.Chart.load(chart) as loaded:
        return loaded.render(values, name="av", namespace=NAMESPACE, is_install=True)


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for path, text in rendered.items() if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return objects(render(VALUE_SETS[request.param]))


def pod_templates(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in manifests:
        template = obj.get("spec", {}).get("template")
        if template is not None:
            yield f"{obj['kind']}/{obj['metadata']['name']}", template["spec"]


def of_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in manifests if obj["kind"] == kind]


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


# --- rendered objects ----------------------------------------------------------


def test_every_object_is_valid_kubernetes(rendered: list[dict[str, Any]]) -> None:
    for obj in rendered:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, True)


def test_namespaced_objects_live_in_the_release_namespace(rendered: list[dict[str, Any]]) -> None:
    for obj in of_kind(rendered, "Deployment") + of_kind(rendered, "ServiceAccount"):
        assert obj["metadata"]["namespace"] == NAMESPACE


def test_pods_meet_the_restricted_pod_security_standard(rendered: list[dict[str, Any]]) -> None:
    templates = list(pod_templates(rendered))
    assert templates, "no pod templates rendered"
    for name, pod in templates:
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC")), name
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context.get("privileged") is not True, name
            assert context.get("runAsUser", pod["securityContext"].get("runAsUser")) != 0, name


def test_operator_deployment(rendered: list[dict[str, Any]]) -> None:
    (deployment,) = of_kind(rendered, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["autovision-operator"]
    assert container["image"] == "ghcr.io/autovision/operator:0.1.0"
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert probe["port"] == "health"
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["AUTOVISION_TRAINER_IMAGE"] == "ghcr.io/autovision/trainer:0.1.0"
    assert env["AUTOVISION_LIVENESS_ENDPOINT"] == "http://0.0.0.0:8080/healthz"
    service_accounts = [obj["metadata"]["name"] for obj in of_kind(rendered, "ServiceAccount")]
    assert pod["serviceAccountName"] in [*service_accounts, "autovision"]


def test_rbac_is_least_privilege(rendered: list[dict[str, Any]]) -> None:
    (role,) = of_kind(rendered, "ClusterRole")
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for (group, resource), verbs in granted.items():
        assert "*" not in {group, resource, *verbs}, (group, resource)
    for resource in (resource.info.plural for resource in RESOURCE_TYPES):
        assert granted["autovision.dev", resource] == {"get", "list", "watch", "patch"}
        assert granted["autovision.dev", f"{resource}/status"] == {"get", "patch"}
    assert granted["batch", "jobs"] == {"create", "get", "list", "watch", "patch", "delete"}
    assert granted["", "secrets"] == {"get"}
    assert granted["", "events"] == {"create", "patch"}
    assert granted["kopf.dev", "kopfpeerings"] == {"get", "list", "watch", "patch"}
    serving = {"get", "list", "watch", "create", "patch", "update", "delete"}
    for key in [("apps", "deployments"), ("", "services"), ("policy", "poddisruptionbudgets")]:
        assert granted[key] == serving
    assert granted["autoscaling", "horizontalpodautoscalers"] == serving


def test_watch_namespaces_limit_the_grant_to_those_namespaces() -> None:
    rendered = objects(render(VALUE_SETS["namespaced"]))
    assert of_kind(rendered, "ClusterRoleBinding") == []
    bindings = of_kind(rendered, "RoleBinding")
    assert sorted(binding["metadata"]["namespace"] for binding in bindings) == ["team-a", "team-b"]
    (deployment,) = of_kind(rendered, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["AUTOVISION_WATCH_NAMESPACES"] == "team-a,team-b"
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]


def test_default_grant_is_cluster_wide() -> None:
    rendered = objects(render({}))
    (binding,) = of_kind(rendered, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "av-autovision", "namespace": NAMESPACE}]
    assert of_kind(rendered, "RoleBinding") == []


# --- CRDs in the chart -------------------------------------------------------------


def test_rendered_crds_equal_the_generated_ones(rendered: list[dict[str, Any]]) -> None:
    crds = {obj["metadata"]["name"]: obj for obj in of_kind(rendered, "CustomResourceDefinition")}
    expected = [custom_resource_definition(resource, for_chart=True) for resource in RESOURCE_TYPES]
    assert crds == {crd["metadata"]["name"]: crd for crd in expected}


def test_escaped_template_delimiters_render_verbatim(tmp_path: Path) -> None:
    """Generated text that happened to contain `{{` would still render as itself."""
    text = 'description: "use {{ .Values.x }} and {{{ or }}"\n'
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "templates" / "probe.yaml").write_text(escape_go_template(text))
    assert render({}, chart) == {"probe/templates/probe.yaml": text}
