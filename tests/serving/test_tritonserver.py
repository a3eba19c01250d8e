"""A real tritonserver: the one shipped in nvidia-pytriton, started once per module.

What it serves equals ONNX Runtime run directly on ``preprocess_bytes`` output:
serving uses the project's one preprocessing definition.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.preprocess import preprocess_batch
from autovision.serving import (
    LocalTritonServer,
    PredictionError,
    TritonServerError,
    predict,
    write_local_repository,
)
from autovision.serving.client import Protocol
from autovision.serving.repository import INPUT_NAME, OUTPUT_NAME
from autovision.serving.tritonserver import summarize_log
from tests.support.serving import (
    LABELS,
    PREPROCESS,
    PROTOCOLS,
    TOP_K,
    encode_image,
    needs_tritonserver,
    reference_top_k,
)


def test_log_summary_puts_the_cause_before_the_tables() -> None:
    log = "\n".join(
        [
            'E1123 15:23:56.124264 5126 server.cc:241] "CudaDriverHelper has not been initialized."',
            "E1123 15:23:57.809592 5126 model_lifecycle.cc:642] \"failed to load 'm': ValueError: boom\"",
            *(["+------+", "| Model | Status |", ""] * 20),
            "error: creating server: Internal - failed to load all models",
        ]
    )

    assert summarize_log(log).splitlines() == [
        "E1123 15:23:57.809592 5126 model_lifecycle.cc:642] \"failed to load 'm': ValueError: boom\"",
        "error: creating server: Internal - failed to load all models",
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, onnx_path: Path) -> Iterator[LocalTritonServer]:
    repo = tmp_path_factory.mktemp("triton") / "repository"
    write_local_repository(repo, onnx_path, LABELS, PREPROCESS, max_batch_size=8)
    with LocalTritonServer(repo, work_dir=repo.parent / "work") as running:
        yield running


def url_for(server: LocalTritonServer, protocol: Protocol) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.mark.e2e
@needs_tritonserver
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("fmt", "seed"), [("PNG", 10), ("JPEG", 11)])
def test_served_predictions_equal_onnxruntime_on_shared_preprocessing(
    server: LocalTritonServer, onnx_path: Path, protocol: Protocol, fmt: str, seed: int
) -> None:
    image = encode_image(fmt, seed)

    predictions = predict(image, url_for(server, protocol), protocol=protocol, top_k=TOP_K)

    expected = reference_top_k(onnx_path, image)
    assert [p.label for p in predictions] == [label for label, _ in expected]
    assert [p.index for p in predictions] == [LABELS.index(label) for label, _ in expected]
    np.testing.assert_allclose([p.score for p in predictions], [s for _, s in expected], atol=1e-5)


@pytest.mark.e2e
@needs_tritonserver
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_non_image_is_a_readable_error_and_server_stays_healthy(
    server: LocalTritonServer, onnx_path: Path, protocol: Protocol
) -> None:
    url = url_for(server, protocol)

    with pytest.raises(PredictionError) as failure:
        predict(b"not an image", url, protocol=protocol)

    message = str(failure.value)
    assert "IMAGE[0] is not a decodable image (12 bytes): not in an image format Pillow can read" in message
    assert "BytesIO" not in message

    image = encode_image("PNG", 12)
    assert predict(image, url, protocol=protocol)[0].label == reference_top_k(onnx_path, image)[0][0]


@pytest.mark.e2e
@needs_tritonserver
def test_concurrent_good_and_bad_requests_get_their_own_answers(server: LocalTritonServer, onnx_path: Path) -> None:
    payloads = [encode_image("PNG", seed) if seed % 3 else b"\x89PNG broken" for seed in range(12)]

    def attempt(payload: bytes) -> str:
        try:
            return predict(payload, server.http_url, top_k=1)[0].label
        except PredictionError:
            return "error"

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(attempt, payloads))

    expected = [
        reference_top_k(onnx_path, payload)[0][0] if seed % 3 else "error" for seed, payload in enumerate(payloads)
    ]
    assert answers == expected


@pytest.mark.e2e
@needs_tritonserver
def test_model_that_fails_to_load_stops_the_server_with_its_log(tmp_path: Path, onnx_path: Path) -> None:
    # The ONNX model has 5 classes; 2 labels make the backend refuse to initialize.
    repo = tmp_path / "repository"
    write_local_repository(repo, onnx_path, ["a", "b"], PREPROCESS)
    server = LocalTritonServer(repo, work_dir=tmp_path / "work", startup_timeout_s=60)

    with pytest.raises(TritonServerError, match=r"outputs 5 classes but labels\.txt lists 2") as failure:
        server.start()

    assert "failed to load all models" in str(failure.value)
    assert "CudaDriverHelper" not in str(failure.value)
    assert "+-----" not in str(failure.value)
    with pytest.raises(TritonServerError, match="not started"):
        server.wait()


@pytest.mark.e2e
@needs_tritonserver
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_embedding_is_served_when_asked_and_only_then(
    server: LocalTritonServer, onnx_path: Path, protocol: Protocol
) -> None:
    """A client asking for scores gets scores alone; one asking for the embedding too gets ONNX Runtime's."""
    module = httpclient if protocol == "http" else grpcclient
    images = [encode_image("PNG", 30), encode_image("JPEG", 31)]
    image_input = module.InferInput(INPUT_NAME, [2, 1], "BYTES")
    image_input.set_data_from_numpy(np.array([[image] for image in images], dtype=np.object_))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run([EMBEDDING_OUTPUT], {"input": preprocess_batch(images, PREPROCESS)})[0]

    with module.InferenceServerClient(url_for(server, protocol)) as client:
        scores_only = client.infer("autovision", [image_input], outputs=[module.InferRequestedOutput(OUTPUT_NAME)])
        both = client.infer(
            "autovision",
            [image_input],
            outputs=[module.InferRequestedOutput(OUTPUT_NAME), module.InferRequestedOutput(EMBEDDING_OUTPUT)],
        )

    assert scores_only.as_numpy(EMBEDDING_OUTPUT) is None
    assert scores_only.as_numpy(OUTPUT_NAME).shape == (2, len(LABELS))
    np.testing.assert_allclose(both.as_numpy(EMBEDDING_OUTPUT), expected, atol=1e-5)
    np.testing.assert_allclose(both.as_numpy(OUTPUT_NAME), scores_only.as_numpy(OUTPUT_NAME), atol=1e-6)
