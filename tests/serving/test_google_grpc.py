"""What only the gRPC service does: GetEndpoint, gRPC's own size limit, the gateway started as a pod starts it.

Predictions and refusals over both transports are tested in ``test_google_service.py``.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import aiplatform_v1
from google.cloud.aiplatform_v1.services.endpoint_service.transports.grpc import EndpointServiceGrpcTransport

from autovision.contract import env
from autovision.serving.tritonserver import free_ports
from tests.support.google_clients import (
    ENDPOINT,
    IMAGE,
    anonymous,
    automl_predict,
    grpc_clients,
    rest_clients,
    vertex_predict,
)
from tests.support.served import GOOGLE_MAX_IMAGE_BYTES, Endpoints, Run
from tests.support.serving import needs_tritonserver


@pytest.mark.e2e
@needs_tritonserver
def test_endpoint_service_answers_get_endpoint(google_served: tuple[Run, Endpoints]) -> None:
    channel = grpc.insecure_channel(google_served[1].google_grpc)
    client = aiplatform_v1.EndpointServiceClient(transport=EndpointServiceGrpcTransport(channel=channel))
    endpoint = client.get_endpoint(name=ENDPOINT)
    assert (endpoint.name, [m.id for m in endpoint.deployed_models]) == (ENDPOINT, ["autovision"])
    assert dict(endpoint.traffic_split) == {"autovision": 100}


@pytest.mark.e2e
@needs_tritonserver
def test_a_message_over_the_size_limit_is_refused_by_grpc(google_served: tuple[Run, Endpoints]) -> None:
    """The limit is the REST body's: the base64 of the largest image and 64 KiB; gRPC refuses more itself."""
    clients = grpc_clients(google_served[1].google_grpc)
    with pytest.raises(exceptions.ResourceExhausted, match="larger than max"):
        automl_predict(clients, b"\xff" * (2 * GOOGLE_MAX_IMAGE_BYTES + 64 * 1024))


@pytest.fixture(scope="module")
def pod_gateway() -> Iterator[tuple[str, str]]:
    """The gateway as a ModelDeployment pod runs it (``python -m autovision.serving.gateway``), its Triton down."""
    port, grpc_port, triton_port = free_ports(3)
    command = [sys.executable, "-m", "autovision.serving.gateway", "--host=127.0.0.1", f"--port={port}"]
    command += [f"--grpc-port={grpc_port}", f"--triton-url=127.0.0.1:{triton_port}", "--public-name=flowers"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as gateway:
        try:
            wait_until_listening(gateway, port, grpc_port)
            yield f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}"
        finally:
            gateway.terminate()


def wait_until_listening(gateway: subprocess.Popen[bytes], *ports: int) -> None:
    """Until the gateway listens on every port (a minute at most, and never past its exit)."""
    deadline = time.monotonic() + 60
    while not all(listening(port) for port in ports):
        assert gateway.poll() is None, "the gateway exited"
        assert time.monotonic() < deadline, "the gateway did not start listening"
        time.sleep(0.1)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.e2e
def test_the_pods_gateway_serves_both_transports_and_says_when_triton_is_unavailable(
    pod_gateway: tuple[str, str],
) -> None:
    """Its endpoint is the ModelDeployment's name; a prediction with Triton down is UNAVAILABLE on both transports."""
    url, target = pod_gateway
    name = "projects/p/locations/europe-west4/endpoints/flowers"
    rest = aiplatform_v1.EndpointServiceClient(
        credentials=anonymous(), transport="rest", client_options={"api_endpoint": url}
    )
    assert [m.id for m in rest.get_endpoint(name=name).deployed_models] == ["flowers"]
    for clients in (rest_clients(url), grpc_clients(target)):
        with pytest.raises(exceptions.ServiceUnavailable, match="not ready in Triton"):
            vertex_predict(clients, [IMAGE], endpoint=name)
        with pytest.raises(exceptions.NotFound, match="'autovision' is not served here; this serves 'flowers'"):
            automl_predict(clients)


@pytest.mark.e2e
def test_a_grpc_call_beyond_the_queue_is_refused_before_it_is_read() -> None:
    """One call at work, none waiting: a second is RESOURCE_EXHAUSTED from gRPC itself, not the gateway's 503."""
    port, grpc_port = free_ports(2)
    with socket.socket() as silent_triton:  # accepts connections and never answers: the first call waits on it
        silent_triton.bind(("127.0.0.1", 0))
        silent_triton.listen()
        triton = f"127.0.0.1:{silent_triton.getsockname()[1]}"
        environment = os.environ | {env.GATEWAY_MAX_CONCURRENCY: "1", env.GATEWAY_MAX_QUEUE: "0"}
        environment[env.GATEWAY_UPSTREAM_TIMEOUT_SECONDS] = "20"
        command = [sys.executable, "-m", "autovision.serving.gateway", "--host=127.0.0.1", f"--port={port}"]
        command += [f"--grpc-port={grpc_port}", f"--triton-url={triton}"]
        with subprocess.Popen(
            command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ) as gateway:
            try:
                wait_until_listening(gateway, port, grpc_port)
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    waiting = pool.submit(automl_predict, grpc_clients(f"127.0.0.1:{grpc_port}"))
                    # The gateway reaches Triton only for a call at work: once it connects, the slot is held.
                    silent_triton.settimeout(60)
                    upstream, _ = silent_triton.accept()
                    with upstream, pytest.raises(exceptions.ResourceExhausted, match="Concurrent RPC limit"):
                        automl_predict(grpc_clients(f"127.0.0.1:{grpc_port}"))
                    silent_triton.close()  # Triton gone: the call at work fails now, not at the upstream timeout
                    with pytest.raises(exceptions.GoogleAPICallError):
                        waiting.result(timeout=60)
            finally:
                gateway.terminate()
