"""The steps every handler shares, whatever resource it reconciles.

Handlers of all three resources load their resource the same way, write status
the same way, read the resources they reference the same way, and wait the same
way for what is missing: they raise ``NotReadyError``, and ``handler`` (the
decorator every kopf handler here wears) turns it into a Ready=False condition
with its reason, a warning event when that reason first appears, and a kopf
retry with the configured backoff. This module imports no handler module, so
every handler module can import it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import kopf
from botocore.exceptions import BotoCoreError

from autovision.resources import Dataset, ModelDeployment, ResourceError, ResourceStatus, TrainingJob, parse_resource
from autovision.storage import Storage, StorageError
from autovision_operator.config import OperatorConfig
from autovision_operator.kube import Kube
from autovision_operator.metrics import instrumented
from autovision_operator.status import ready_condition, status_patch, waiting

ParsedT = TypeVar("ParsedT", Dataset, TrainingJob, ModelDeployment)
# What kopf hands to handlers as ``logger``.
Logger = logging.Logger | logging.LoggerAdapter[Any]
# A kopf handler: kopf passes everything by keyword (body, patch, memo, retry ...).
Handler = Callable[..., None]

# What reading or deleting in storage raises when the store cannot be reached (or
# an object vanished under us): s3fs maps S3's answers to OSError, but a refused
# connection or missing credentials come through as botocore's own errors.
STORAGE_ERRORS: Final = (StorageError, OSError, BotoCoreError)


class ResourceLocks:
    """One lock per resource (by uid): kopf runs a resource's timer and its change handlers at the same time,
    in threads, and two reconciles of one resource must not both act on the same status."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def of(self, uid: str) -> threading.Lock:
        """The lock of the resource with this uid."""
        with self._guard:
            return self._locks.setdefault(uid, threading.Lock())


@dataclass(frozen=True)
class Context:
    """What every handler needs, created once at start-up and kept in kopf's memo."""

    config: OperatorConfig
    kube: Kube
    locks: ResourceLocks = field(default_factory=ResourceLocks)

    def storage(self) -> Storage:
        """The storage root the trainer writes to, as the operator reads it."""
        return Storage(self.config.storage_root, self.config.storage_settings())


class NotReadyError(Exception):
    """Raised by a handler that cannot go on until something changes: a reference, a Secret, storage.

    ``reason`` (CamelCase) and ``message`` become the Ready=False condition and
    the warning event. ``status`` is what the resource's status should show
    meanwhile, when the handler knows better than the stored one, and ``note``
    is added to the condition's message (not the event's), e.g. what is still served.
    """

    def __init__(self, reason: str, message: str, *, status: ResourceStatus | None = None, note: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.note = note


def now() -> dt.datetime:
    """The time conditions are stamped with (UTC, one clock for all handlers)."""
    return dt.datetime.now(dt.UTC)


def load(model: type[ParsedT], body: kopf.Body, patch: kopf.Patch) -> ParsedT:
    """Parse the resource; an invalid one gets an InvalidSpec condition and no retry."""
    try:
        resource = parse_resource(body)
    except ResourceError as error:
        current = ResourceStatus.model_validate(body.get("status") or {})
        write(patch, current, waiting(current, "InvalidSpec", str(error), now()))
        kopf.warn(body, reason="InvalidSpec", message=str(error))
        raise kopf.PermanentError(str(error)) from None
    if not isinstance(resource, model):
        raise kopf.PermanentError(f"expected a {model.__name__}, got a {type(resource).__name__}")
    return resource


def write(patch: kopf.Patch, old: ResourceStatus, new: ResourceStatus) -> None:
    """Put the status changes (only those) into kopf's patch, which kopf applies after the handler."""
    patch.status.update(status_patch(old, new))


def warn_once(body: kopf.Body, current: ResourceStatus, reason: str, message: str) -> None:
    """A warning event when the Ready condition's reason first becomes ``reason``, not on every retry."""
    previous = ready_condition(current)
    if previous is None or previous.reason != reason:
        kopf.warn(body, reason=reason, message=message)


def referenced(kube: Kube, model: type[ParsedT], namespace: str, name: str, *, not_ready: str) -> ParsedT:
    """A resource another one names (a Dataset, a TrainingJob), read and parsed.

    Until it exists: NotReadyError ``<Kind>NotFound``; while it does not parse as
    ``model``: NotReadyError ``not_ready``.
    """
    kind = model.__name__
    raw = kube.read_resource(model.info.plural, namespace, name)
    if raw is None:
        raise NotReadyError(f"{kind}NotFound", f"{kind} {name} not found in {namespace}")
    try:
        resource = parse_resource(raw)
    except ResourceError as error:
        raise NotReadyError(not_ready, str(error)) from None
    if not isinstance(resource, model):
        raise NotReadyError(not_ready, f"{name} is not a {kind}")
    return resource


@contextlib.contextmanager
def storage_available(doing: str) -> Iterator[None]:
    """Storage errors inside as NotReadyError StorageUnavailable: an unreachable store fails no run, it is waited for.

    ``doing`` completes "cannot ...", e.g. ``read s3://bucket/key``.
    """
    try:
        yield
    except STORAGE_ERRORS as error:
        raise NotReadyError("StorageUnavailable", f"cannot {doing}: {error}") from error


def read_stored(storage: Storage, key: str) -> Any | None:
    """A JSON object the trainer writes, or None before it wrote it; storage errors are waited for."""
    with storage_available(f"read {storage.uri(key)}"):
        return storage.read_json(key) if storage.exists(key) else None


def handler(kind: str, *, retry: bool = True) -> Callable[[Handler], Handler]:
    """Make a function a kopf handler of ``kind``: instrumented, and the one place a NotReadyError is handled.

    A NotReadyError becomes Ready=False with its reason, and a warning event when
    that reason first appears; then, with ``retry``, kopf retries the handler
    after ``config.retry_delay`` (exponential backoff). Without ``retry`` the
    handler ends there: for handlers whose work a timer retries anyway.
    """

    def decorate(function: Handler) -> Handler:
        @functools.wraps(function)
        def run(**kwargs: Any) -> None:
            try:
                function(**kwargs)
            except NotReadyError as problem:
                _show(problem, kwargs["body"], kwargs["patch"])
                if retry:
                    delay = kwargs["memo"].context.config.retry_delay(kwargs["retry"])
                    raise kopf.TemporaryError(problem.message, delay=delay) from None

        return instrumented(kind)(run)

    return decorate


def _show(problem: NotReadyError, body: kopf.Body, patch: kopf.Patch) -> None:
    """Ready=False with the problem's reason, and the event when the reason is new."""
    stored = dict(body.get("status") or {})
    shown = problem.status or ResourceStatus.model_validate(stored)
    old = type(shown).model_validate(stored)
    write(patch, old, waiting(shown, problem.reason, problem.message + problem.note, now()))
    warn_once(body, old, problem.reason, problem.message)
