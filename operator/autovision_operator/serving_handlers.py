"""kopf handlers of ModelDeployments: the model served by Triton, scaled by node count.

One level-triggered reconciliation, a thin layer of I/O around the pure builders
(``serving_builders``) and status mapping (``serving_status``):

1. resolve the model ``spec.modelRef`` names (a Ready TrainingJob's Triton
   repository, or a URI) and the Secret the pods read it with;
2. create, or patch where they differ, the Service, PodDisruptionBudget, Triton
   Deployment and (with ``spec.autoscaling``) HorizontalPodAutoscaler; remove an
   autoscaler no longer wanted; likewise the explainer's Deployment and Service
   (``spec.explain``, ``explain_builders``);
3. map the Deployment's rollout into status.

A timer runs it every poll interval: it follows rollouts and autoscaling into
status, puts back children edited or deleted by hand, and, while the model
cannot be served, retries with exponential backoff (Ready=False with the
reason). A spec change (a new model, ``kubectl scale``, autoscaling) runs it at
once. Running it twice, or both at the same time, converges to the same state.

kopf puts its finalizer on every ModelDeployment because of the timer: deleting
one needs the operator running. The children go with it by owner reference.
"""

from __future__ import annotations

from typing import Any

import kopf

from autovision.resources import GROUP, VERSION, Dataset, ModelDeployment, ModelDeploymentStatus, TrainingJob
from autovision_operator.explain_builders import (
    build_explainer_deployment,
    build_explainer_service,
    explained_model_uri,
)
from autovision_operator.kube import ChildConflictError, is_owned_by
from autovision_operator.reconcile import Context, NotReadyError, handler, load, now, referenced, write
from autovision_operator.serving_builders import (
    ServedModel,
    build_horizontal_pod_autoscaler,
    build_pod_disruption_budget,
    build_triton_deployment,
    build_triton_service,
    child_patch,
    explainer_name,
    serving_endpoints,
    serving_name,
    serving_secret,
    serving_service_account,
    trained_model,
    uri_model,
)
from autovision_operator.serving_status import observe_deployment, serving_status

MODEL_DEPLOYMENTS = (GROUP, VERSION, ModelDeployment.info.plural)
KIND = "ModelDeployment"


def register(registry: kopf.OperatorRegistry, interval: float) -> None:
    """Register the ModelDeployment handlers: a reconciling timer and an immediate run on spec changes."""
    kopf.timer(*MODEL_DEPLOYMENTS, interval=interval, registry=registry)(reconcile_serving)
    kopf.on.update(*MODEL_DEPLOYMENTS, field="spec", registry=registry)(apply_spec_change)


@handler(KIND)
def reconcile_serving(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Every poll interval: converge children and status; retry with backoff while the model is not servable."""
    _reconcile(memo.context, body, patch)


@handler(KIND, retry=False)
def apply_spec_change(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """A spec change takes effect at once rather than at the next tick; the timer retries what cannot."""
    _reconcile(memo.context, body, patch)


def _reconcile(context: Context, body: kopf.Body, patch: kopf.Patch) -> None:
    """Serve the spec and write status; NotReadyError, showing what is still served, while it cannot be served."""
    deployment = load(ModelDeployment, body, patch)
    try:
        triton = _serve(context, body, deployment)
    except NotReadyError as problem:
        observed, serving = _still_served(context, deployment)
        raise NotReadyError(problem.reason, problem.message, status=observed, note=serving) from None
    new = serving_status(deployment.status, observe_deployment(triton), serving_endpoints(deployment), now())
    new = new.model_copy(update={"observed_generation": deployment.metadata.generation})
    write(patch, deployment.status, new)
    if new.model_version and new.model_version != deployment.status.model_version:
        message = f"serving {new.model_version} on {new.ready_nodes} node(s)"
        kopf.info(body, reason="ModelServed", message=message)


def _serve(context: Context, body: kopf.Body, deployment: ModelDeployment) -> dict[str, Any]:
    """Resolve the model and its credentials, then converge the children; return the Triton Deployment."""
    namespace = str(deployment.metadata.namespace)
    model = _model(context, deployment)
    dataset = _training_dataset(context, namespace, model.dataset) if model.dataset else None
    secret = serving_secret(deployment, dataset, context.config)
    if secret and not context.kube.secret_exists(namespace, secret):
        message = f"Secret {secret} (storage credentials of the model) not found in {namespace}"
        raise NotReadyError("SecretNotFound", message)
    account = serving_service_account(deployment, context.config)
    if account and not context.kube.service_account_exists(namespace, account):
        message = (
            f"ServiceAccount {account} (the serving pods' identity for spec.auth.requireToken) not found in "
            f"{namespace}: install the chart with servingAuth.namespaces including {namespace}"
        )
        raise NotReadyError("ServiceAccountNotFound", message)
    return _converge_children(context, body, deployment, model, secret)


def _model(context: Context, deployment: ModelDeployment) -> ServedModel:
    """The model ``spec.modelRef`` names: a URI as it is, or the referenced TrainingJob's."""
    ref, endpoint = deployment.spec.model_ref, context.config.s3_endpoint_url
    if ref.uri is not None:
        return uri_model(ref.uri, endpoint)
    namespace, name = str(deployment.metadata.namespace), str(ref.training_job)
    return trained_model(referenced(context.kube, TrainingJob, namespace, name, not_ready="ModelNotReady"), endpoint)


def _training_dataset(context: Context, namespace: str, name: str) -> Dataset | None:
    """The Dataset a model was trained on, if it still exists and parses; it only names the credentials."""
    try:
        return referenced(context.kube, Dataset, namespace, name, not_ready="DatasetNotReady")
    except NotReadyError:
        return None


def _converge_children(
    context: Context, body: kopf.Body, deployment: ModelDeployment, model: ServedModel, secret: str | None
) -> dict[str, Any]:
    """Create or patch every child; with an autoscaler, it (not ``spec.nodes``) sets the replicas."""
    autoscaled = deployment.spec.autoscaling is not None
    _converge(context, body, build_triton_service(deployment))
    _converge(context, body, build_pod_disruption_budget(deployment))
    desired = build_triton_deployment(deployment, model, context.config, secret)
    triton = _converge(context, body, desired, omit_replicas=autoscaled)
    name, namespace, uid = serving_name(deployment), str(deployment.metadata.namespace), str(deployment.metadata.uid)
    if autoscaled:
        _converge(context, body, build_horizontal_pod_autoscaler(deployment))
    elif context.kube.delete_child("HorizontalPodAutoscaler", namespace, name, uid):
        message = f"deleted HorizontalPodAutoscaler {name}: spec.nodes sets the replicas again"
        kopf.info(body, reason="AutoscalerDeleted", message=message)
    _converge_explainer(context, body, deployment, secret)
    return triton


def _converge_explainer(context: Context, body: kopf.Body, deployment: ModelDeployment, secret: str | None) -> None:
    """``spec.explain``'s Deployment and Service (reading the model with the serving pods' credentials), or
    neither when it is unset."""
    name, namespace = explainer_name(deployment), str(deployment.metadata.namespace)
    explain = deployment.spec.explain
    if explain is None:
        for kind in ("Deployment", "Service"):
            if context.kube.delete_child(kind, namespace, name, str(deployment.metadata.uid)):
                kopf.info(body, reason="ExplainerDeleted", message=f"deleted {kind} {name}: spec.explain is unset")
        return
    job = deployment.spec.model_ref.training_job
    training_job = (
        referenced(context.kube, TrainingJob, namespace, job, not_ready="ModelNotReady")
        if explain.model_uri is None and job is not None
        else None
    )
    model_uri = explained_model_uri(explain, training_job)
    _converge(context, body, build_explainer_service(deployment))
    _converge(context, body, build_explainer_deployment(deployment, model_uri, context.config, secret))


def _converge(
    context: Context, body: kopf.Body, desired: dict[str, Any], *, omit_replicas: bool = False
) -> dict[str, Any]:
    """Create a child, or patch it where it differs from ``desired``; return it as the server has it."""
    kind, name, namespace = desired["kind"], desired["metadata"]["name"], desired["metadata"]["namespace"]
    try:
        existing, created = context.kube.ensure_child(desired)
    except ChildConflictError as error:
        raise NotReadyError("ChildConflict", str(error)) from None
    if created:
        kopf.info(body, reason=f"{kind}Created", message=f"created {kind} {name}")
        return existing
    update = child_patch(desired, existing, omit_replicas=omit_replicas)
    if update is None:
        return existing
    kopf.info(body, reason=f"{kind}Updated", message=f"updated {kind} {name} to the spec")
    return context.kube.patch_child(kind, namespace, name, update)


def _still_served(context: Context, deployment: ModelDeployment) -> tuple[ModelDeploymentStatus, str]:
    """What an existing Deployment still serves (nodes, modelVersion) while the spec cannot be, and a note saying so."""
    observed, meta = deployment.status, deployment.metadata
    triton = context.kube.read_child("Deployment", str(meta.namespace), serving_name(deployment))
    if triton is not None and is_owned_by(triton, str(meta.uid)):
        observed = serving_status(observed, observe_deployment(triton), serving_endpoints(deployment), now())
    return observed, f"; still serving {observed.model_version}" if observed.model_version else ""
