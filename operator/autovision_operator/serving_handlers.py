"""kopf handlers of ModelDeployments: models served by Triton, behind a gateway that splits the traffic.

One level-triggered reconciliation, a thin layer of I/O around the pure builders
(``serving_builders``), the plan of what to serve (``traffic_plan``, ``rollout``)
and status mapping (``serving_status``):

1. resolve the model ``spec.modelRef`` names (a Ready TrainingJob's Triton
   repository, or a URI) and the Secret the pods read it with;
2. create, or patch where they differ, the Service, PodDisruptionBudget, Triton
   Deployment and (with ``spec.autoscaling``) HorizontalPodAutoscaler; remove an
   autoscaler no longer wanted; likewise the explainer's Deployment and Service
   (``spec.explain``, ``explain_builders``), and the drift check's CronJob (``spec.monitoring``,
   ``monitor_builders``), whose last report sets the ``Drift`` condition;
3. map the Deployment's rollout into status.
1. read the gateway's current routing table (from its Deployment) and the counts
   of the gateway pods that route by it (each pod's ``traffic.STATS_PATH``, through
   the API server's pod proxy), and whether a rollout's candidate is ready;
2. plan what to serve: the split, the shadow, the rollout's next state;
3. resolve every model the plan needs (a Ready TrainingJob's Triton repository,
   or a URI) and the Secret its pods read it with: a run that does not exist or
   has not finished stops here with a clear condition, and what is served stays;
4. create, or patch where they differ, each model's Triton Deployment, Service,
   PodDisruptionBudget and (with ``spec.autoscaling``) HorizontalPodAutoscaler;
5. hand the gateway the new table once every model in it is ready, and converge
   the gateway's Deployment, Service and PodDisruptionBudget (and, with token
   checks, the NetworkPolicy); remove the models nothing routes to any more once
   the gateway's pods all route by the new table;
6. map the primary model's Deployment, the counts, the rollout and the history into status.

A timer runs it every poll interval: it follows rollouts and autoscaling into
status, advances gated rollouts, puts back children edited or deleted by hand,
and, while the model cannot be served, retries with exponential backoff
(Ready=False with the reason). A spec change (a new model, ``kubectl scale``,
``kubectl patch`` of ``spec.rollout.paused``) runs it at once. Running it twice,
or both at the same time, converges to the same state; the rollout's state lives
in status, so an operator restarted mid-rollout resumes it.

kopf puts its finalizer on every ModelDeployment because of the timer: deleting
one needs the operator running. The children go with it by owner reference.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from autovision.contract.files import DriftReport
from autovision.contract.keys import drift_report_key, prediction_log_prefix
from autovision.resources import (
    GROUP,
    VERSION,
    Dataset,
    ModelDeployment,
    ModelDeploymentStatus,
    ResourceError,
    RolloutPhase,
    RolloutStatus,
    ServedModelRecord,
    TrainingJob,
    parse_resource,
)
from autovision.serving.traffic import STATS_PATH, Routes, TrafficStats
from autovision_operator.explain_builders import (
    build_explainer_deployment,
    build_explainer_service,
    explained_model_uri,
)
from autovision_operator.kube import ChildConflictError, is_owned_by
from autovision_operator.metrics import forget_drift, observe_drift
from autovision_operator.monitor_builders import build_monitor_cronjob, drift_condition, monitor_name
from autovision_operator.reconcile import STORAGE_ERRORS, Context, NotReadyError, handler, load, now, referenced
from autovision_operator.rollout import Observation
from autovision_operator.serving_builders import (
    GATEWAY_COMPONENT,
    MODEL_LABEL,
    PREDICT,
    ROUTES_ANNOTATION,
    ServedModel,
    applied_routes,
    build_gateway_deployment,
    build_gateway_service,
    build_horizontal_pod_autoscaler,
    build_network_policy,
    build_pod_disruption_budget,
    build_triton_deployment,
    build_triton_service,
    child_patch,
    explainer_name,
    logs_predictions,
    model_name,
    model_selector,
    routes,
    routes_digest,
    selector_labels,
    serving_endpoints,
    serving_name,
    serving_secret,
    serving_service_account,
    trained_model,
    uri_model,
)
from autovision_operator.serving_status import (
    observe_deployment,
    rollout_condition,
    serving_status,
    traffic_status,
    updated_history,
)
from autovision_operator.status import Cond, status_patch, with_conditions
from autovision_operator.traffic_plan import applied_split, plan

logger = logging.getLogger(__name__)
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
    """Serve the spec and write status; NotReadyError, showing what is still served, while it cannot be served.

    The timer and the spec-change handler of one ModelDeployment run at the same time;
    each takes the resource's lock, reads the resource afresh (kopf's body may predate
    the other's status) and writes its status before letting go, so a rollout never
    acts twice on one step or goes back to an older one.
    """
    with context.locks.of(str(body.metadata.uid)):
        deployment = _current(context, load(ModelDeployment, body, patch))
        try:
            new = _serve(context, body, deployment)
        except NotReadyError as problem:
            observed, serving = _still_served(context, deployment)
            raise NotReadyError(problem.reason, problem.message, status=observed, note=serving) from None
        new = new.model_copy(update={"observed_generation": deployment.metadata.generation})
        changes = status_patch(deployment.status, new)
        if changes:
            namespace, name = str(deployment.metadata.namespace), str(deployment.metadata.name)
            context.kube.patch_resource_status(ModelDeployment.info.plural, namespace, name, changes)
    if new.model_version and new.model_version != deployment.status.model_version:
        message = f"serving {new.model_version} on {new.ready_nodes} node(s)"
        kopf.info(body, reason="ModelServed", message=message)
    _announce_rollout(body, deployment.status.rollout, new.rollout)


def _current(context: Context, deployment: ModelDeployment) -> ModelDeployment:
    """The ModelDeployment as the API server has it now; ``deployment`` when it cannot be read or parsed."""
    namespace, name = str(deployment.metadata.namespace), str(deployment.metadata.name)
    fresh = context.kube.read_resource(ModelDeployment.info.plural, namespace, name)
    try:
        current = parse_resource(fresh) if fresh is not None else deployment
    except ResourceError:
        return deployment
    return current if isinstance(current, ModelDeployment) else deployment


def _serve(context: Context, body: kopf.Body, deployment: ModelDeployment) -> ModelDeploymentStatus:
    """Plan, resolve the models and their credentials, converge the children; return the new status."""
    namespace = str(deployment.metadata.namespace)
    account = serving_service_account(deployment, context.config)
    if account and not context.kube.service_account_exists(namespace, account):
        message = (
            f"ServiceAccount {account} (the serving pods' identity for spec.auth.requireToken) not found in "
            f"{namespace}: install the chart with servingAuth.namespaces including {namespace}"
        )
        raise NotReadyError("ServiceAccountNotFound", message)
    gateway = _owned(context, deployment, serving_name(deployment))
    applied = applied_routes(gateway) if gateway else None
    stats = _gateway_stats(context, deployment, applied)
    target = _target(context, deployment)
    spec = deployment.spec
    candidate = spec.model_ref.training_job if spec.rollout and spec.model_ref else None
    candidate_ready = candidate is not None and _ready(_owned(context, deployment, model_name(deployment, candidate)))
    decided = plan(
        spec,
        target.run if target else None,
        applied,
        deployment.status.rollout,
        Observation(candidate_ready, stats),
        now(),
    )
    models = {
        run: target if target and run == target.run else _trained(context, deployment, run) for run in decided.runs
    }
    tritons = {run: _converge_model(context, body, deployment, model) for run, model in models.items()}
    # Models the gateway still routes to but the plan no longer needs: read, not converged, until they go.
    for run in set(applied_split(applied)) - set(tritons):
        if (triton := _owned(context, deployment, model_name(deployment, run))) is not None:
            tritons[run] = triton
    wanted = routes(deployment, decided.split, decided.shadow)
    routed = set(decided.split) | ({decided.shadow} if decided.shadow else set())
    table = wanted if applied is None or all(_ready(tritons[run]) for run in routed) else applied
    primary = models.get(_primary(table))
    log_secret = _model_secret(context, deployment, primary) if primary and logs_predictions(deployment) else None
    gateway = _converge_gateway(context, body, deployment, table, log_secret)
    _remove_unrouted(context, body, deployment, gateway, table, set(decided.runs))
    _converge_explainer(context, body, deployment, primary)
    drift = _converge_monitor(context, body, deployment, primary)
    status = _status(deployment, table, tritons, stats, decided.rollout, models)
    return with_conditions(status, now(), drift) if drift else status


def _target(context: Context, deployment: ModelDeployment) -> ServedModel | None:
    """The model ``spec.modelRef`` names (a URI as it is, or the referenced TrainingJob's); None with spec.traffic."""
    ref = deployment.spec.model_ref
    if ref is None:
        return None
    if ref.uri is not None:
        return uri_model(ref.uri, context.config.s3_endpoint_url)
    return _trained(context, deployment, str(ref.training_job))


def _trained(context: Context, deployment: ModelDeployment, run: str) -> ServedModel:
    """The model of a TrainingJob; NotReadyError TrainingJobNotFound or ModelNotReady while it cannot be served."""
    namespace = str(deployment.metadata.namespace)
    training_job = referenced(context.kube, TrainingJob, namespace, run, not_ready="ModelNotReady")
    model = trained_model(training_job, context.config.s3_endpoint_url)
    dataset = _training_dataset(context, namespace, model.dataset) if model.dataset else None
    return dataclasses.replace(model, dataset_version=dataset.status.version if dataset else None)


def _training_dataset(context: Context, namespace: str, name: str) -> Dataset | None:
    """The Dataset a model was trained on, if it still exists and parses; it only names the credentials."""
    try:
        return referenced(context.kube, Dataset, namespace, name, not_ready="DatasetNotReady")
    except NotReadyError:
        return None


def _converge_model(
    context: Context, body: kopf.Body, deployment: ModelDeployment, model: ServedModel
) -> dict[str, Any]:
    """One model's children: its credentials checked, then Service, PDB, Triton Deployment and autoscaler (or none)."""
    namespace = str(deployment.metadata.namespace)
    secret = _model_secret(context, deployment, model)
    autoscaled = deployment.spec.autoscaling is not None
    _converge(context, body, build_triton_service(deployment, model.run))
    _converge(context, body, build_pod_disruption_budget(deployment, model.run))
    desired = build_triton_deployment(deployment, model, context.config, secret)
    triton = _converge(context, body, desired, omit_replicas=autoscaled)
    name, uid = model_name(deployment, model.run), str(deployment.metadata.uid)
    if autoscaled:
        _converge(context, body, build_horizontal_pod_autoscaler(deployment, model.run))
    elif context.kube.delete_child("HorizontalPodAutoscaler", namespace, name, uid):
        message = f"deleted HorizontalPodAutoscaler {name}: spec.nodes sets the replicas again"
        kopf.info(body, reason="AutoscalerDeleted", message=message)
    return triton


def _model_secret(context: Context, deployment: ModelDeployment, model: ServedModel) -> str | None:
    """The Secret the pods read ``model`` with (None: the pods' own identity); SecretNotFound when it is missing."""
    namespace = str(deployment.metadata.namespace)
    dataset = _training_dataset(context, namespace, model.dataset) if model.dataset else None
    secret = serving_secret(deployment, dataset, context.config)
    if secret and not context.kube.secret_exists(namespace, secret):
        message = f"Secret {secret} (storage credentials of the model {model.run}) not found in {namespace}"
        raise NotReadyError("SecretNotFound", message)
    return secret


def _primary(table: Routes) -> str:
    """The run with the largest share: the one status describes and the explainer explains."""
    return max(table.backends, key=lambda backend: backend.percent).run


def _converge_explainer(
    context: Context, body: kopf.Body, deployment: ModelDeployment, primary: ServedModel | None
) -> None:
    """``spec.explain``'s Deployment and Service for the primary model (read with its pods' credentials), or
    neither when it is unset."""
    name, namespace = explainer_name(deployment), str(deployment.metadata.namespace)
    explain = deployment.spec.explain
    if explain is None or primary is None:
        for kind in ("Deployment", "Service"):
            if context.kube.delete_child(kind, namespace, name, str(deployment.metadata.uid)):
                kopf.info(body, reason="ExplainerDeleted", message=f"deleted {kind} {name}: spec.explain is unset")
        return
    # A TrainingJob's model names its Dataset; a modelRef.uri's does not, and needs spec.explain.modelUri.
    training_job = (
        referenced(context.kube, TrainingJob, namespace, primary.run, not_ready="ModelNotReady")
        if explain.model_uri is None and primary.dataset is not None
        else None
    )
    model_uri = explained_model_uri(explain, training_job)
    secret = _model_secret(context, deployment, primary)
    _converge(context, body, build_explainer_service(deployment))
    _converge(context, body, build_explainer_deployment(deployment, model_uri, context.config, secret))


def _converge_monitor(
    context: Context, body: kopf.Body, deployment: ModelDeployment, primary: ServedModel | None
) -> Cond | None:
    """``spec.monitoring``'s CronJob on the primary model and the Drift condition from its last report; neither
    (CronJob deleted, gauges dropped) when it is unset. A check that cannot run never holds up serving: it
    shows as Drift Unknown with the reason."""
    name, namespace = monitor_name(deployment), str(deployment.metadata.namespace)
    monitoring = deployment.spec.monitoring
    if monitoring is None or primary is None:
        if context.kube.delete_child("CronJob", namespace, name, str(deployment.metadata.uid)):
            kopf.info(body, reason="MonitorDeleted", message=f"deleted CronJob {name}: spec.monitoring is unset")
        forget_drift(namespace, str(deployment.metadata.name))
        return None
    training_job = (
        referenced(context.kube, TrainingJob, namespace, primary.run, not_ready="ModelNotReady")
        if primary.dataset is not None
        else None
    )
    artifacts = training_job.status.artifacts if training_job is not None else None
    if artifacts is None or not artifacts.model:
        return drift_condition(None, f"spec.monitoring needs a TrainingJob's model directory; {primary.run} has none")
    secret = _model_secret(context, deployment, primary)
    _converge(context, body, build_monitor_cronjob(deployment, artifacts.model, context.config, secret))
    report, problem = _drift_report(context, deployment)
    observe_drift(namespace, str(deployment.metadata.name), report)
    return drift_condition(report, problem)


def _drift_report(context: Context, deployment: ModelDeployment) -> tuple[DriftReport | None, str]:
    """The deployment's last drift report (None before the first check), or why it cannot be read."""
    key = drift_report_key(prediction_log_prefix(str(deployment.metadata.namespace), str(deployment.metadata.name)))
    storage = context.storage()
    try:
        if not storage.exists(key):
            return None, ""
        return DriftReport.model_validate(storage.read_json(key)), ""
    except (*STORAGE_ERRORS, ValueError) as error:
        return None, f"the drift report {storage.uri(key)} cannot be read: {error}"


def _converge_gateway(
    context: Context, body: kopf.Body, deployment: ModelDeployment, table: Routes, log_secret: str | None
) -> dict[str, Any]:
    """The gateway's Service, PDB and Deployment (its replicas left alone once created, writing the prediction
    log with ``log_secret``'s credentials); the NetworkPolicy or none."""
    _converge(context, body, build_gateway_service(deployment))
    _converge(context, body, build_pod_disruption_budget(deployment, None))
    desired = build_gateway_deployment(deployment, table, context.config, log_secret)
    gateway = _converge(context, body, desired, omit_replicas=True)
    namespace, name, uid = str(deployment.metadata.namespace), serving_name(deployment), str(deployment.metadata.uid)
    if deployment.spec.auth.require_token:
        _converge(context, body, build_network_policy(deployment))
    else:
        context.kube.delete_child("NetworkPolicy", namespace, name, uid)
    return gateway


def _remove_unrouted(  # noqa: PLR0917 - the state the decision rests on
    context: Context,
    body: kopf.Body,
    deployment: ModelDeployment,
    gateway: dict[str, Any],
    table: Routes,
    planned: set[str],
) -> None:
    """Delete the children of models neither planned nor routed to, once every gateway pod routes by ``table``."""
    rollout = observe_deployment(gateway)
    digest = (gateway["spec"]["template"]["metadata"].get("annotations") or {}).get(ROUTES_ANNOTATION)
    if not rollout.complete or digest != routes_digest(table):
        return
    keep = {"", *(model_selector(deployment, run)[MODEL_LABEL] for run in planned | set(applied_split(table)))}
    namespace, uid = str(deployment.metadata.namespace), str(deployment.metadata.uid)
    selector = selector_labels(deployment)
    for triton in context.kube.deployments(namespace, selector):
        found = triton["metadata"].get("labels") or {}
        # The label selector again, besides the API server's: a Deployment without a model label is the gateway.
        if not selector.items() <= found.items() or found.get(MODEL_LABEL, "") in keep or not is_owned_by(triton, uid):
            continue
        name = triton["metadata"]["name"]
        for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Deployment"):
            context.kube.delete_child(kind, namespace, name, uid)
        kopf.info(body, reason="ModelRemoved", message=f"deleted {name}: no request is routed to it any more")


def _gateway_stats(context: Context, deployment: ModelDeployment, table: Routes | None) -> TrafficStats:
    """The merged counts of the ready gateway pods that route by ``table``; pods that do not answer are left out."""
    merged = TrafficStats()
    if table is None:
        return merged
    namespace, digest = str(deployment.metadata.namespace), routes_digest(table)
    selector = selector_labels(deployment, GATEWAY_COMPONENT)
    for pod in context.kube.pods(namespace, selector):
        metadata = pod["metadata"]
        routing = (metadata.get("annotations") or {}).get(ROUTES_ANNOTATION)
        running = (pod.get("status") or {}).get("phase") == "Running"
        if not selector.items() <= (metadata.get("labels") or {}).items() or routing != digest or not running:
            continue
        try:
            answer = context.kube.pod_get(namespace, pod["metadata"]["name"], PREDICT.number, STATS_PATH)
            merged = merged.merged(TrafficStats.model_validate_json(answer))
        except (ApiException, ValidationError, OSError) as error:
            logger.warning("no traffic counts from gateway pod %s: %s", pod["metadata"]["name"], error)
    return merged


def _status(  # noqa: PLR0917 - everything status shows
    deployment: ModelDeployment,
    table: Routes,
    tritons: dict[str, dict[str, Any]],
    stats: TrafficStats,
    rollout: RolloutStatus | None,
    models: dict[str, ServedModel],
) -> ModelDeploymentStatus:
    """Status: the primary model's Deployment (scale, Ready), the counts, the rollout and the history."""
    primary = _primary(table)
    triton = tritons.get(primary)
    endpoints = serving_endpoints(deployment, primary)
    moment = now()
    status = serving_status(deployment.status, observe_deployment(triton) if triton else None, endpoints, moment)
    traffic, shadow = traffic_status(table, stats)
    records = {run: _record(model) for run, model in models.items()}
    history = updated_history(status.history, table, records, rollout, moment)
    status = status.model_copy(update={"traffic": traffic, "shadow": shadow, "rollout": rollout, "history": history})
    return with_conditions(status, moment, rollout_condition(rollout)) if rollout else status


def _record(model: ServedModel) -> ServedModelRecord:
    """A history record of a model that starts serving (its ``since`` is set when it does)."""
    return ServedModelRecord(
        training_job=model.run,
        dataset_version=model.dataset_version,
        evaluation=model.evaluation,
        since=now(),
    )


def _announce_rollout(body: kopf.Body, old: RolloutStatus | None, new: RolloutStatus | None) -> None:
    """An event for every step of a rollout: started, promoted to a stage, paused, rolled back, aborted."""
    if new is None or (
        old is not None and (old.candidate, old.phase, old.step) == (new.candidate, new.phase, new.step)
    ):
        return
    reason = f"Rollout{new.phase.value}"
    message = f"{new.candidate} at {new.percent} % (stable {new.stable}): {new.message}"
    if new.phase in {RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED}:
        kopf.warn(body, reason=reason, message=message)
    else:
        kopf.info(body, reason=reason, message=message)


def _owned(context: Context, deployment: ModelDeployment, name: str) -> dict[str, Any] | None:
    """This ModelDeployment's Deployment of that name, if there is one."""
    found = context.kube.read_child("Deployment", str(deployment.metadata.namespace), name)
    return found if found is not None and is_owned_by(found, str(deployment.metadata.uid)) else None


def _ready(triton: dict[str, Any] | None) -> bool:
    """Whether a Deployment's pods all run its template and are ready."""
    return triton is not None and observe_deployment(triton).complete


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
    """What the gateway still routes to (nodes, modelVersion of its primary) while the spec cannot be served."""
    observed = deployment.status
    gateway = _owned(context, deployment, serving_name(deployment))
    table = applied_routes(gateway) if gateway else None
    if table is not None:
        primary = max(table.backends, key=lambda backend: backend.percent).run
        triton = _owned(context, deployment, model_name(deployment, primary))
        if triton is not None:
            endpoints = serving_endpoints(deployment, primary)
            observed = serving_status(observed, observe_deployment(triton), endpoints, now())
    return observed, f"; still serving {observed.model_version}" if observed.model_version else ""
