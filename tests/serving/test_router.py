"""Several models behind one gateway, against real tritonservers: the split, stickiness, the shadow, health.

Two tritonservers serve two different tiny classifiers (runs ``old`` and ``new``) under the
same model name, as one Triton Deployment per model does in a cluster.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aiohttp
import grpc
import numpy as np
import pytest
from google.cloud import automl_v1

from autovision.embedded_s3 import free_port
from autovision.preprocess import PreprocessConfig
from autovision.serving import LocalTritonServer, predict, write_local_repository
from autovision.serving.gateway import GatewayConfig, GatewayServer
from autovision.serving.google_grpc import AUTOML_SERVICE
from autovision.serving.traffic import MODEL_HEADER, STATS_PATH, Backend, Routes, Shadow, TrafficStats
from tests.support.serving import encode_image, make_onnx_classifier, needs_tritonserver

LABELS = ["cat", "dog", "fox"]
IMAGES = [encode_image("PNG", seed=seed, size=(12, 10)) for seed in range(16)]
# The split the issue names, and how far the observed share may stray over 10,000 requests.
REQUESTS = 10_000
NEW_PERCENT = 10
TOLERANCE = 0.02
CLIENTS = 32


@dataclass(frozen=True)
class Models:
    """Two Tritons (runs ``old`` and ``new``) and each one's top-1 label per image of IMAGES."""

    old: LocalTritonServer
    new: LocalTritonServer
    top1: dict[str, list[str]]

    def routes(self, new_percent: int, shadow: bool = False, sticky_header: str | None = None) -> Routes:
        backends = (
            Backend(run="old", triton_url=self.old.http_url, percent=100 - new_percent),
            Backend(run="new", triton_url=self.new.http_url, percent=new_percent),
        )
        if shadow:
            shadowed = Shadow(run="new", triton_url=self.new.http_url)
            return Routes(backends=backends[:1], shadow=shadowed, sticky_header=sticky_header)
        return Routes(backends=backends, sticky_header=sticky_header)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Models]:
    workdir = tmp_path_factory.mktemp("router")
    for seed, run in enumerate(("old", "new")):
        onnx_path = make_onnx_classifier(workdir / f"{run}.onnx", num_labels=len(LABELS), seed=seed)
        write_local_repository(workdir / run, onnx_path, LABELS, PreprocessConfig(size=8))
    with (
        LocalTritonServer(workdir / "old", work_dir=workdir / "old-triton") as old,
        LocalTritonServer(workdir / "new", work_dir=workdir / "new-triton") as new,
    ):
        top1 = {
            run: [predict(image, server.http_url, top_k=1)[0].label for image in IMAGES]
            for run, server in (("old", old), ("new", new))
        }
        assert top1["old"] != top1["new"], "the two models must be told apart by their answers"
        yield Models(old, new, top1)
        with ThreadPoolExecutor(2) as pool:  # each waits seconds for its stubs to exit: both at once
            list(pool.map(LocalTritonServer.stop, (old, new)))


def _body(image: bytes) -> bytes:
    encoded = base64.b64encode(image).decode()
    return json.dumps({"payload": {"image": {"imageBytes": encoded}}, "params": {"score_threshold": 0}}).encode()


BODIES = [_body(image) for image in IMAGES]


@dataclass(frozen=True)
class Answer:
    image: int
    run: str
    top1: str
    seconds: float


async def _load(url: str, requests: int, clients: int, headers: dict[str, str] | None = None) -> list[Answer]:
    """``requests`` AutoML predictions from ``clients`` concurrent clients, cycling through IMAGES."""
    answers: list[Answer] = []
    numbers = iter(range(requests))
    predict_url = f"{url}/v1/models/autovision:predict"

    async def client(session: aiohttp.ClientSession) -> None:
        for number in numbers:
            image = number % len(IMAGES)
            started = time.perf_counter()
            async with session.post(predict_url, data=BODIES[image], headers=headers) as reply:
                assert reply.status == 200, await reply.text()
                top1 = (await reply.json())["payload"][0]["displayName"]
            answers.append(Answer(image, reply.headers[MODEL_HEADER], top1, time.perf_counter() - started))

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return answers


async def _stats(url: str) -> TrafficStats:
    async with aiohttp.ClientSession() as session, session.get(url + STATS_PATH) as reply:
        return TrafficStats.model_validate_json(await reply.read())


def _gateway(routes: Routes, **bounds: float) -> GatewayServer:
    config = GatewayConfig(routes.backends[0].triton_url, routes=routes, **bounds)  # type: ignore[arg-type]
    return GatewayServer(config, free_port())


@pytest.mark.e2e
@needs_tritonserver
def test_the_observed_split_of_10000_requests_follows_the_spec(models: Models) -> None:
    with _gateway(models.routes(NEW_PERCENT), max_concurrency=CLIENTS, max_queue=CLIENTS) as gateway:
        answers = asyncio.run(_load(gateway.url, REQUESTS, CLIENTS))
        stats = asyncio.run(_stats(gateway.url))
    runs = Counter(answer.run for answer in answers)
    assert abs(runs["new"] / REQUESTS - NEW_PERCENT / 100) <= TOLERANCE, runs
    assert runs["old"] + runs["new"] == REQUESTS
    wrong = [a for a in answers if a.top1 != models.top1[a.run][a.image]]
    assert not wrong, f"{len(wrong)} answers are not their named model's, e.g. {wrong[0]}"
    assert {run: s.requests for run, s in stats.models.items()} == dict(runs)
    assert all(s.errors == 0 for s in stats.models.values())
    assert stats.models["new"].latency_quantile_ms(0.99) is not None


@pytest.mark.e2e
@needs_tritonserver
def test_a_sticky_header_keeps_each_client_on_one_model(models: Models) -> None:
    with _gateway(models.routes(50, sticky_header="X-User")) as gateway:
        seen = {
            user: {a.run for a in asyncio.run(_load(gateway.url, 8, 4, headers={"x-user": user}))}
            for user in (f"user-{i}" for i in range(12))
        }
    assert all(len(runs) == 1 for runs in seen.values()), seen
    assert {run for runs in seen.values() for run in runs} == {"old", "new"}


@pytest.mark.e2e
@needs_tritonserver
def test_a_shadow_changes_no_answer_and_its_agreement_is_counted(models: Models) -> None:
    requests, clients = 1_000, 8
    # Queues long enough that no copy is dropped, so the agreement is exact.
    bounds = {"max_concurrency": clients, "max_queue": requests}
    with _gateway(models.routes(0), **bounds) as alone:
        baseline = asyncio.run(_load(alone.url, requests, clients))
    with _gateway(models.routes(0, shadow=True), **bounds) as shadowed:
        answers = asyncio.run(_load(shadowed.url, requests, clients))
        deadline = time.monotonic() + 30
        while (stats := asyncio.run(_stats(shadowed.url))).shadow and stats.shadow.compared < requests:
            assert time.monotonic() < deadline, stats.shadow
            time.sleep(0.1)
    assert {a.run for a in answers} == {"old"}
    assert sorted((a.image, a.top1) for a in answers) == sorted((a.image, a.top1) for a in baseline)
    assert stats.shadow is not None
    assert (stats.shadow.compared, stats.shadow.errors, stats.shadow.dropped) == (requests, 0, 0)
    agreeing = sum(models.top1["old"][a.image] == models.top1["new"][a.image] for a in answers)
    assert stats.shadow.agreed == agreeing
    # The bound is 10 %; here the shadow's Triton shares the 2 cores with everything
    # else, so CI checks a generous bound and benchmarks/gateway_traffic.py measures the figure.
    p99 = {
        name: float(np.percentile([a.seconds for a in run], 99))
        for name, run in (("alone", baseline), ("shadowed", answers))
    }
    assert p99["shadowed"] <= 4 * p99["alone"] + 0.1, p99


@pytest.mark.e2e
@needs_tritonserver
def test_a_stalled_shadow_neither_delays_answers_nor_health(models: Models) -> None:
    with socket.socket() as stalled:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(64)  # accepts connections, never answers
        routes = Routes(
            backends=models.routes(0).backends[:1],
            shadow=Shadow(run="new", triton_url=f"127.0.0.1:{stalled.getsockname()[1]}"),
        )
        with _gateway(routes, max_concurrency=1, max_queue=1, upstream_timeout_s=30) as gateway:
            answers = asyncio.run(_load(gateway.url, 40, 1))
            stats = asyncio.run(_stats(gateway.url))
            health = asyncio.run(_status(gateway.url + "/healthz"))
    assert max(a.seconds for a in answers) < 5, "no answer waited for the shadow"
    assert [a.top1 for a in answers] == [models.top1["old"][a.image] for a in answers]
    assert stats.shadow is not None
    assert stats.shadow.dropped >= 40 - 2, "one copy in the stalled call, one queued, the rest dropped"
    assert health == 200


async def _status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as reply:
        return reply.status


@pytest.mark.e2e
@needs_tritonserver
def test_health_waits_only_for_models_that_get_requests(models: Models) -> None:
    gone = f"127.0.0.1:{free_port()}"
    serving = Backend(run="old", triton_url=models.old.http_url, percent=90)
    for percent, expected in ((0, 200), (10, 503)):
        absent = Backend(run="gone", triton_url=gone, percent=percent)
        routes = Routes(backends=(serving.model_copy(update={"percent": 100 - percent}), absent))
        with _gateway(routes) as gateway:
            assert asyncio.run(_status(gateway.url + "/healthz")) == expected, percent


@pytest.mark.e2e
@needs_tritonserver
def test_googles_dialects_name_the_model_that_answered(models: Models) -> None:
    grpc_address = f"127.0.0.1:{free_port()}"
    config = GatewayConfig(models.old.http_url, routes=models.routes(100), grpc_address=grpc_address)
    name = "projects/p/locations/l/models/autovision"
    with GatewayServer(config, free_port()) as gateway:
        body = {"payload": {"image": {"imageBytes": base64.b64encode(IMAGES[0]).decode()}}}
        rest = asyncio.run(_post_json(f"{gateway.url}/v1/{name}:predict", body))
        request = automl_v1.PredictRequest(name=name, payload={"image": {"image_bytes": IMAGES[0]}})
        with grpc.insecure_channel(grpc_address) as channel:
            stub = channel.unary_unary(
                f"/{AUTOML_SERVICE}/Predict",
                request_serializer=automl_v1.PredictRequest.serialize,
                response_deserializer=automl_v1.PredictResponse.deserialize,
            )
            _, call = stub.with_call(request)
    assert rest == "new"
    assert (MODEL_HEADER.lower(), "new") in tuple(call.trailing_metadata())


async def _post_json(url: str, body: object) -> str:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as reply:
        assert reply.status == 200, await reply.text()
        return reply.headers[MODEL_HEADER]
