"""Prometheus metrics of the operator: how reconciliation goes and what the runs cost.

Served by ``prometheus_client``'s HTTP server (see ``__main__``); the handlers
only record.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import kopf
from prometheus_client import Counter, Gauge, Histogram

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
