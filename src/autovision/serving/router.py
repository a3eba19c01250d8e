"""The gateway's I/O half of a traffic split: one Triton client per model, the shadow's copies, the counts.

``traffic.Routes`` says which model answers a request; a ``Router`` keeps one upstream
client per backend (each model's own Triton, serving it under the gateway's model
name), sends each request to the backend its draw picks (a fixed draw per value of
the sticky header, when the routes name one), counts it in the replica's
``TrafficStats``, and hands a copy of each routed image to the shadow.

The shadow never delays or changes an answer: copies go into a bounded queue that a
few worker tasks drain, so the client's request returns as soon as its own model
answers. A copy that finds the queue full is dropped and counted (``ShadowStats.dropped``);
a shadow that fails or does not answer within the upstream timeout counts as its error.

Every dialect's predictions pass through ``classify``, so it is the prediction log's one
hook: a request the log samples asks Triton for the model's embedding too (when the model
exports one), and once its model has answered each image is handed to the log, with the
run that answered; the log's buffer takes it or drops it at once, never delaying the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping, Sequence

from autovision.serving.client import Prediction
from autovision.serving.gateway import GatewayConfig, GatewayError, Upstream, classify_image
from autovision.serving.prediction_log import PredictionLog
from autovision.serving.traffic import ModelStats, Routes, ShadowStats, TrafficStats, sticky_draw

# A shadow copy: the image, and the top-1 label the primary answered for it.
_Copy = tuple[bytes, str]


class Router:
    """Routes requests by the split and shadows them; start() and close() run in the gateway's event loop.

    The shadow gets ``max_concurrency`` calls at once and ``max_queue`` copies waiting
    (at least one): the gateway's own bounds, so a shadow costs at most what the primary may.
    """

    def __init__(self, config: GatewayConfig, routes: Routes, log: PredictionLog | None = None) -> None:
        self.routes = routes
        self.log = log or PredictionLog(None)
        self.stats = TrafficStats(models={backend.run: ModelStats() for backend in routes.backends})
        self._upstreams = {backend.run: Upstream(config, backend.triton_url) for backend in routes.backends}
        self._shadow: Upstream | None = None
        if routes.shadow is not None:
            self._shadow = Upstream(config, routes.shadow.triton_url)
            self.stats.shadow = ShadowStats(run=routes.shadow.run)
        self._copies: asyncio.Queue[_Copy] = asyncio.Queue(maxsize=max(1, config.max_queue))
        self._shadow_workers = config.max_concurrency
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the shadow's workers (none without a shadow)."""
        if self._shadow is not None:
            self._workers = [asyncio.create_task(self._shadow_worker()) for _ in range(self._shadow_workers)]

    async def close(self) -> None:
        """Stop the shadow's workers, dropping copies still queued, and close every client."""
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for upstream in self._upstreams.values():
            await upstream.client.close()
        if self._shadow is not None:
            await self._shadow.client.close()

    async def ready(self) -> bool:
        """Whether every primary model that gets requests (percent > 0) is ready; the shadow is not waited for."""
        serving = [self._upstreams[b.run] for b in self.routes.backends if b.percent > 0]
        return all(await asyncio.gather(*(upstream.ready() for upstream in serving)))

    def sticky_value(self, headers: Mapping[str, str]) -> str | None:
        """The sticky header's value in ``headers`` (case-insensitive or lower-case keys), if the routes name one."""
        header = self.routes.sticky_header
        return None if header is None else headers.get(header.lower())

    async def classify(self, images: Sequence[bytes], sticky: str | None = None) -> tuple[str, list[list[Prediction]]]:
        """The run that answered and every label's score per image, all from one model picked by the split.

        A failure the model is to blame for (a 5xx) counts as its error; a request Triton
        refuses as bad (a 4xx) counts as answered.
        """
        backend = self.routes.pick(random.random() if sticky is None else sticky_draw(sticky))
        upstream, stats = self._upstreams[backend.run], self.stats.models[backend.run]
        logged = self.log.sample()
        started = time.perf_counter()
        try:
            answers = await asyncio.gather(*(classify_image(upstream, image, embedding=logged) for image in images))
        except GatewayError as error:
            stats.observe((time.perf_counter() - started) * 1000, ok=error.status < 500)
            raise
        latency_ms = (time.perf_counter() - started) * 1000
        stats.observe(latency_ms, ok=True)
        scored = [answer.predictions for answer in answers]
        if logged:
            for image, answer in zip(images, answers, strict=True):
                self.log.record(image, backend.run, answer.predictions, latency_ms, answer.embedding)
        if self._shadow is not None:
            for image, predictions in zip(images, scored, strict=True):
                self._copy(image, predictions)
        return backend.run, scored

    def _copy(self, image: bytes, predictions: list[Prediction]) -> None:
        assert self.stats.shadow is not None
        if not predictions:
            return
        try:
            self._copies.put_nowait((image, predictions[0].label))
        except asyncio.QueueFull:
            self.stats.shadow.drop()

    async def _shadow_worker(self) -> None:
        assert self._shadow is not None
        assert self.stats.shadow is not None
        while True:
            image, primary_top1 = await self._copies.get()
            try:
                predictions = (await classify_image(self._shadow, image)).predictions
            except GatewayError:
                self.stats.shadow.observe(primary_top1, None)
            else:
                self.stats.shadow.observe(primary_top1, predictions[0].label if predictions else None)
