"""The operator's few Kubernetes API calls, with create-or-adopt semantics.

The official client is synchronous; kopf runs synchronous handlers in its thread
pool. Objects travel as plain dicts (``_preload_content=False``), exactly as the
builders make them and the API server returns them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf
import kubernetes
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    AutoscalingV2Api,
    BatchV1Api,
    Configuration,
    CoreV1Api,
    CustomObjectsApi,
    NetworkingV1Api,
    PolicyV1Api,
)
from kubernetes.client.exceptions import ApiException

from autovision.resources import GROUP, VERSION

NOT_FOUND = 404
CONFLICT = 409
MERGE_PATCH = "application/merge-patch+json"


class ChildConflictError(RuntimeError):
    """An object with a child's name exists but belongs to someone else."""


def load_configuration() -> Configuration:
    """The in-cluster service account, else the kubeconfig named by $KUBECONFIG now.

    The client's own default reads $KUBECONFIG once, at import; reading it here
    lets one process (a test) point the operator at a fresh API server.
    """
    configuration = Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    return configuration


def connection_info(configuration: Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from the same client configuration, so both talk to one server as one user."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def is_owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether ``obj`` has a controller owner reference to the object with this uid."""
    references = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(reference.get("uid") == uid and reference.get("controller") for reference in references)


@dataclass(frozen=True)
class ChildApi:
    """The client methods of one kind of namespaced child: read, create, patch, delete."""

    read: Callable[..., Any]
    create: Callable[..., Any]
    patch: Callable[..., Any]
    delete: Callable[..., Any]


class Kube:
    """Reads and idempotent creates of the operator's children and references; patches and deletes of serving ones."""

    def __init__(self, client: ApiClient) -> None:
        self.batch = BatchV1Api(client)
        self.core = CoreV1Api(client)
        self.custom = CustomObjectsApi(client)
        apps, policy, autoscaling = AppsV1Api(client), PolicyV1Api(client), AutoscalingV2Api(client)
        networking = NetworkingV1Api(client)
        # Children other than Jobs (serving ones, a multi-node search's Service), by kind.
        self.list_deployments = apps.list_namespaced_deployment
        self.children = {
            "Deployment": ChildApi(
                apps.read_namespaced_deployment,
                apps.create_namespaced_deployment,
                apps.patch_namespaced_deployment,
                apps.delete_namespaced_deployment,
            ),
            "Service": ChildApi(
                self.core.read_namespaced_service,
                self.core.create_namespaced_service,
                self.core.patch_namespaced_service,
                self.core.delete_namespaced_service,
            ),
            "PodDisruptionBudget": ChildApi(
                policy.read_namespaced_pod_disruption_budget,
                policy.create_namespaced_pod_disruption_budget,
                policy.patch_namespaced_pod_disruption_budget,
                policy.delete_namespaced_pod_disruption_budget,
            ),
            "HorizontalPodAutoscaler": ChildApi(
                autoscaling.read_namespaced_horizontal_pod_autoscaler,
                autoscaling.create_namespaced_horizontal_pod_autoscaler,
                autoscaling.patch_namespaced_horizontal_pod_autoscaler,
                autoscaling.delete_namespaced_horizontal_pod_autoscaler,
            ),
            "CronJob": ChildApi(
                self.batch.read_namespaced_cron_job,
                self.batch.create_namespaced_cron_job,
                self.batch.patch_namespaced_cron_job,
                self.batch.delete_namespaced_cron_job,
            ),
            "NetworkPolicy": ChildApi(
                networking.read_namespaced_network_policy,
                networking.create_namespaced_network_policy,
                networking.patch_namespaced_network_policy,
                networking.delete_namespaced_network_policy,
            ),
        }

    @classmethod
    def connect(cls) -> Kube:
        """A client for the cluster the operator runs in (or $KUBECONFIG's)."""
        return cls(ApiClient(load_configuration()))

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A batch/v1 Job, or None if there is none."""
        return _read(lambda: self.batch.read_namespaced_job(name, namespace, _preload_content=False))

    def read_resource(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An AutoVision resource, or None if there is none."""
        return _read(
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, _preload_content=False
            )
        )

    def patch_resource_status(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch an AutoVision resource's status now (kopf's own patch waits for the handler's end)."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": dict(patch)}, _preload_content=False
        )

    def secret_exists(self, namespace: str, name: str) -> bool:
        """Whether a Secret exists; its data is never looked at."""
        return _read(lambda: self.core.read_namespaced_secret(name, namespace, _preload_content=False)) is not None

    def service_account_exists(self, namespace: str, name: str) -> bool:
        """Whether a ServiceAccount exists (the one token-checking serving pods run as)."""
        return (
            _read(lambda: self.core.read_namespaced_service_account(name, namespace, _preload_content=False))
            is not None
        )

    def ensure_job(self, job: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create a Job unless it exists; return it and whether this call created it."""
        namespace, name = _identity(job)
        return _ensure(
            job,
            read=lambda: self.read_job(namespace, name),
            create=lambda: self.batch.create_namespaced_job(namespace, _plain(job), _preload_content=False),
        )

    def ensure_resource(self, plural: str, obj: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create an AutoVision resource unless it exists; return it and whether this call created it."""
        namespace, name = _identity(obj)
        return _ensure(
            obj,
            read=lambda: self.read_resource(plural, namespace, name),
            create=lambda: self.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, _plain(obj), _preload_content=False
            ),
        )

    def read_child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A serving child (Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler), or None."""
        api = self.children[kind]
        return _read(lambda: api.read(name, namespace, _preload_content=False))

    def ensure_child(self, obj: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create a child unless it exists; return it and whether this call created it."""
        namespace, name = _identity(obj)
        api = self.children[obj["kind"]]
        return _ensure(
            obj,
            read=lambda: self.read_child(obj["kind"], namespace, name),
            create=lambda: api.create(namespace, _plain(obj), _preload_content=False),
        )

    def patch_child(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch (RFC 7386) to a serving child; return the child as patched."""
        api = self.children[kind]
        return _decode(api.patch(name, namespace, dict(patch), _content_type=MERGE_PATCH, _preload_content=False))

    def deployments(self, namespace: str, match_labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The Deployments whose labels include ``match_labels`` (a ModelDeployment's models)."""
        listed = _decode(
            self.list_deployments(namespace, label_selector=_selector(match_labels), _preload_content=False)
        )
        items: list[dict[str, Any]] = listed["items"]
        return items

    def pods(self, namespace: str, match_labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The pods whose labels include ``match_labels`` (a ModelDeployment's gateway pods)."""
        listed = _decode(
            self.core.list_namespaced_pod(namespace, label_selector=_selector(match_labels), _preload_content=False)
        )
        items: list[dict[str, Any]] = listed["items"]
        return items

    def pod_get(self, namespace: str, pod: str, port: int, path: str) -> str:
        """GET ``path`` from a pod's port through the API server's pod proxy (one reachable address from anywhere)."""
        response: Any = self.core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:{port}", namespace, path.lstrip("/"), _preload_content=False
        )
        return str(response.data.decode())

    def delete_child(self, kind: str, namespace: str, name: str, owner_uid: str) -> bool:
        """Delete a serving child if it exists and this owner controls it; return whether it was deleted.

        The uid precondition makes sure a namesake created meanwhile is not the one deleted.
        """
        existing = self.read_child(kind, namespace, name)
        if existing is None or not is_owned_by(existing, owner_uid):
            return False
        options = {"preconditions": {"uid": existing["metadata"]["uid"]}}
        api = self.children[kind]
        return _read(lambda: api.delete(name, namespace, body=options, _preload_content=False)) is not None


def _selector(match_labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))


def _identity(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj["metadata"]
    return str(metadata["namespace"]), str(metadata["name"])


def _plain(obj: Mapping[str, Any]) -> Any:
    """A body for the client: it sends plain dicts as they are, model objects or not."""
    return dict(obj)


def _read(call: Callable[[], Any]) -> dict[str, Any] | None:
    try:
        return _decode(call())
    except ApiException as error:
        if error.status == NOT_FOUND:
            return None
        raise


def _decode(response: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(response.data)
    return decoded


def _ensure(
    obj: Mapping[str, Any], read: Callable[[], dict[str, Any] | None], create: Callable[[], Any]
) -> tuple[dict[str, Any], bool]:
    """Get, else create; a 409 means a concurrent or earlier create won, which is as good.

    An existing object must be ours (same controller uid): a leftover of a deleted
    namesake is not adopted but reported, and garbage collection removes it.
    """
    owner_uid = obj["metadata"]["ownerReferences"][0]["uid"]
    existing, created = read(), False
    if existing is None:
        try:
            existing, created = _decode(create()), True
        except ApiException as error:
            if error.status != CONFLICT:
                raise
            existing = read()
    if existing is None:
        raise ChildConflictError(f"{obj['kind']} {obj['metadata']['name']} exists but cannot be read")
    if not is_owned_by(existing, owner_uid):
        raise ChildConflictError(
            f"{obj['kind']} {obj['metadata']['name']} already exists and belongs to another object "
            "(a deleted namesake?); waiting for it to be removed"
        )
    return existing, created
