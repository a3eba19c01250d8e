"""Several models behind one gateway: the routing table and the statistics it keeps.

The operator writes a ``Routes`` (from a ``ModelDeployment``'s ``spec.traffic``,
``spec.rollout`` and ``spec.modelRef``) as JSON into the gateway's environment
(``contract.env.GATEWAY_ROUTES``); the gateway routes each request to one backend by
its percentage, copies it to the shadow if there is one, and counts what happened in
a ``TrafficStats`` that it serves at ``STATS_PATH``. Each gateway replica counts its
own requests; the operator merges the replicas' statistics (``TrafficStats.merged``)
before it judges a rollout's gate. Everything here is pure: no I/O.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The response header naming the run whose model answered a request.
MODEL_HEADER = "X-AutoVision-Model"
# Where a gateway serves its TrafficStats as JSON.
STATS_PATH = "/v1/traffic"
# Upper bounds (ms) of the latency histogram's buckets; a last bucket holds the rest.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10000,
)  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backend(_Strict):
    """One model's Triton, and the share of requests it answers."""

    run: str = Field(min_length=1, description="The finished training run whose model this Triton serves.")
    triton_url: str = Field(min_length=1, description="host:port of this model's Triton HTTP endpoint.")
    percent: int = Field(ge=0, le=100)


class Shadow(_Strict):
    """A model that gets a copy of every routed request; its answers are compared, never returned."""

    run: str = Field(min_length=1)
    triton_url: str = Field(min_length=1)


class Routes(_Strict):
    """The gateway's routing table: backends whose percentages sum to 100, and an optional shadow."""

    backends: tuple[Backend, ...] = Field(min_length=1)
    shadow: Shadow | None = None
    # A request header whose value keeps a client on one backend; None routes each request afresh.
    sticky_header: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        runs = [backend.run for backend in self.backends]
        if len(set(runs)) != len(runs):
            raise ValueError(f"a run appears twice in the split: {runs}")
        total = sum(backend.percent for backend in self.backends)
        if total != 100:
            raise ValueError(f"the split's percentages sum to {total}, not 100")
        if self.shadow is not None and self.shadow.run in runs:
            raise ValueError(f"the shadow {self.shadow.run!r} is also a primary model")
        return self

    @classmethod
    def single(cls, run: str, triton_url: str) -> Routes:
        """One model answering every request: ``spec.modelRef``'s shorthand."""
        return cls(backends=(Backend(run=run, triton_url=triton_url, percent=100),))

    def pick(self, draw: float) -> Backend:
        """The backend for a request whose uniform draw in [0, 1) is ``draw``."""
        point = draw * 100
        reached = 0
        for backend in self.backends:
            reached += backend.percent
            if point < reached:
                return backend
        return next(backend for backend in reversed(self.backends) if backend.percent > 0)


def sticky_draw(value: str) -> float:
    """A draw in [0, 1) fixed by a header's value, so one client keeps landing on one backend."""
    digest = hashlib.sha256(value.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ModelStats(BaseModel):
    """Requests, errors and a latency histogram of one model, as counted by one or more gateways."""

    requests: int = 0
    errors: int = 0
    latency_counts: list[int] = Field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))

    def observe(self, latency_ms: float, ok: bool) -> None:
        """Count one answered request."""
        self.requests += 1
        self.errors += 0 if ok else 1
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1

    def merged(self, other: ModelStats) -> ModelStats:
        """The statistics of both counts together (two gateway replicas, say)."""
        counts = [a + b for a, b in zip(self.latency_counts, other.latency_counts, strict=True)]
        requests, errors = self.requests + other.requests, self.errors + other.errors
        return ModelStats(requests=requests, errors=errors, latency_counts=counts)

    def latency_quantile_ms(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q``; None before any request.

        Past the last bound the answer is the last bound: a p99 beyond 10 s reads as 10 s.
        """
        total = sum(self.latency_counts)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for bound, count in zip((*LATENCY_BUCKETS_MS, LATENCY_BUCKETS_MS[-1]), self.latency_counts, strict=True):
            seen += count
            if seen >= rank:
                return bound
        return LATENCY_BUCKETS_MS[-1]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


class ShadowStats(BaseModel):
    """How often the shadow's top-1 agreed with the primary's answer to the same request.

    ``dropped`` counts copies never sent because the shadow's bounded queue was full (a slow
    or stalled shadow): they are neither compared nor errors.
    """

    run: str
    compared: int = 0
    agreed: int = 0
    errors: int = 0
    dropped: int = 0

    def observe(self, primary_top1: str, shadow_top1: str | None) -> None:
        """Count one compared request; ``shadow_top1`` None when the shadow failed."""
        if shadow_top1 is None:
            self.errors += 1
            return
        self.compared += 1
        self.agreed += primary_top1 == shadow_top1

    def drop(self) -> None:
        """Count one copy the gateway had no room to send."""
        self.dropped += 1

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


class TrafficStats(BaseModel):
    """What one gateway (or, merged, all of them) saw per model since it started."""

    models: dict[str, ModelStats] = Field(default_factory=dict)
    shadow: ShadowStats | None = None

    def merged(self, other: TrafficStats) -> TrafficStats:
        """Both gateways' counts together, as the operator reads them across replicas."""
        models = dict(self.models)
        for run, stats in other.models.items():
            models[run] = models[run].merged(stats) if run in models else stats
        return TrafficStats(models=models, shadow=_merged_shadow(self.shadow, other.shadow))


def _merged_shadow(first: ShadowStats | None, second: ShadowStats | None) -> ShadowStats | None:
    if first is None or second is None or first.run != second.run:
        return first or second
    return ShadowStats(
        run=first.run,
        compared=first.compared + second.compared,
        agreed=first.agreed + second.agreed,
        errors=first.errors + second.errors,
        dropped=first.dropped + second.dropped,
    )
