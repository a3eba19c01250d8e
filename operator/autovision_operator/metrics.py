"""Prometheus metrics of the operator: how reconciliation goes and what the runs cost.

Served by ``prometheus_client``'s HTTP server (see ``__main__``); the handlers
only record.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import kopf
from prometheus_client import Counter, Gauge, Histogram

from autovision.contract.files import DriftReport

P = ParamSpec("P")
R = TypeVar("R")

RECONCILIATIONS = Counter(
    "autovision_reconciliations",
    "Handler runs by resource kind, handler and outcome (success, retry, failure, error).",
    ["kind", "handler", "outcome"],
)
RECONCILE_DURATION = Histogram(
    "autovision_reconcile_duration_seconds",
    "Wall time of one handler run, by resource kind and handler.",
    ["kind", "handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
JOBS = Gauge(
    "autovision_jobs",
    "Child Jobs of unfinished resources, by resource kind and Job phase.",
    ["kind", "phase"],
)
RUNS_FINISHED = Counter(
    "autovision_runs_finished",
    "Imports and searches that reached their end, by resource kind and outcome (Succeeded, Failed).",
    ["kind", "outcome"],
)
MILLI_NODE_HOURS = Counter(
    "autovision_milli_node_hours_used",
    "Training budget spent, in thousandths of a node-hour of device time, by namespace.",
    ["namespace"],
)


def instrumented(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Count a handler's runs by outcome and time them.

    ``retry`` is a deliberate wait (kopf.TemporaryError), ``failure`` a permanent
    one, ``error`` anything unexpected (kopf retries those too).
    """

    def decorate(handler: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(handler)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            started, outcome = time.perf_counter(), "error"
            try:
                result = handler(*args, **kwargs)
                outcome = "success"
                return result
            except kopf.TemporaryError:
                outcome = "retry"
                raise
            except kopf.PermanentError:
                outcome = "failure"
                raise
            finally:
                RECONCILIATIONS.labels(kind, handler.__name__, outcome).inc()
                RECONCILE_DURATION.labels(kind, handler.__name__).observe(time.perf_counter() - started)

        return run

    return decorate


class JobPhases:
    """The last phase seen for each resource's Job, so that the gauge counts each resource once.

    Handlers run in kopf's thread pool, hence the lock.
    """

    def __init__(self, gauge: Gauge = JOBS) -> None:
        self._gauge = gauge
        self._phases: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()

    def observe(self, kind: str, namespace: str, name: str, phase: str | None) -> None:
        """Record the current phase of a resource's Job; None forgets the resource."""
        key = (kind, namespace, name)
        with self._lock:
            previous = self._phases.pop(key, None)
            if previous is not None:
                self._gauge.labels(kind, previous).dec()
            if phase is not None:
                self._phases[key] = phase
                self._gauge.labels(kind, phase).inc()


JOB_PHASES = JobPhases()


DRIFT = Gauge(
    "autovision_drift",
    "The last drift check of a ModelDeployment (spec.monitoring): 1 drift, 0 no drift, -1 unknown (too little "
    "traffic, or no check yet).",
    ["namespace", "deployment"],
)
DRIFT_P_VALUE = Gauge(
    "autovision_drift_p_value",
    "The last drift check's p-value per aspect (confidence, labels, embedding): drift below the check's threshold.",
    ["namespace", "deployment", "aspect"],
)
DRIFT_WINDOW_PREDICTIONS = Gauge(
    "autovision_drift_window_predictions",
    "Logged predictions in the last drift check's window.",
    ["namespace", "deployment"],
)
_DRIFT_VALUES = {"Drift": 1.0, "NoDrift": 0.0}


def observe_drift(namespace: str, deployment: str, report: DriftReport | None) -> None:
    """Set the drift gauges from a deployment's last check (None: no verdict, -1)."""
    DRIFT.labels(namespace, deployment).set(_DRIFT_VALUES.get(report.status, -1.0) if report else -1.0)
    DRIFT_WINDOW_PREDICTIONS.labels(namespace, deployment).set(report.predictions if report else 0)
    for test in report.tests if report else []:
        DRIFT_P_VALUE.labels(namespace, deployment, test.aspect).set(test.p_value)


def forget_drift(namespace: str, deployment: str) -> None:
    """Drop a deployment's drift gauges once it is no longer monitored."""
    for gauge in (DRIFT, DRIFT_WINDOW_PREDICTIONS):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, deployment)
    for aspect in ("confidence", "labels", "embedding"):
        with contextlib.suppress(KeyError):
            DRIFT_P_VALUE.remove(namespace, deployment, aspect)
