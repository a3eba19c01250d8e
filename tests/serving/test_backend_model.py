"""The backend model.py, run with a stand-in for triton_python_backend_utils."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from autovision.preprocess import preprocess_batch
from autovision.serving import (
    write_local_repository,
)
from tests.support.serving import (
    LABELS,
    PREPROCESS,
    encode_image,
    fake_request,
    load_backend,
    load_backend_module,
    softmax,
)


class CountingSession:
    """An ONNX Runtime session that records the batch size of every run."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.batch_sizes: list[int] = []

    def run(self, outputs: list[str], feed: dict[str, npt.NDArray[np.float32]]) -> Any:
        self.batch_sizes.append(len(feed["input"]))
        return self.session.run(outputs, feed)


@pytest.mark.usefixtures("clean_backend_imports")
@pytest.mark.parametrize("multi_label", [False, True])
def test_backend_batches_requests_and_isolates_bad_images(
    tmp_path: Path, onnx_path: Path, monkeypatch: pytest.MonkeyPatch, multi_label: bool
) -> None:
    model_dir = write_local_repository(tmp_path, onnx_path, LABELS, PREPROCESS, multi_label=multi_label)
    model = load_backend(model_dir, monkeypatch)
    model._session = counting = CountingSession(model._session)
    images = [encode_image("PNG", 1), encode_image("JPEG", 2), encode_image("PNG", 3)]

    responses = model.execute(
        [fake_request(images[0], images[1]), fake_request(b"not an image"), fake_request(images[2])]
    )

    assert counting.batch_sizes == [3], "all good images of all requests go through one session.run"
    assert responses[1].error.code == "INVALID_ARG"
    assert "IMAGE[0] is not a decodable image" in responses[1].error.message
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": preprocess_batch(images, PREPROCESS)})[0]
    expected = 1 / (1 + np.exp(-logits)) if multi_label else softmax(logits)
    served = np.concatenate([r.output_tensors[0].array for r in (responses[0], responses[2])])
    assert responses[0].error is None
    assert responses[2].error is None
    np.testing.assert_allclose(served, expected, atol=1e-6)


@pytest.mark.usefixtures("clean_backend_imports")
def test_local_backend_uses_cpu_unless_a_gpu_instance_has_cuda(
    tmp_path: Path, onnx_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_backend_module(write_local_repository(tmp_path, onnx_path, LABELS, PREPROCESS), monkeypatch)

    assert module.execution_providers({"model_instance_kind": "CPU"}) == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    gpu = module.execution_providers({"model_instance_kind": "GPU", "model_instance_device_id": "1"})
    assert gpu == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
