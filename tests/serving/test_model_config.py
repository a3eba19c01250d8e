"""config.pbtxt as Triton parses it: inputs, outputs, batching, instance kind."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2

from autovision.serving import (
    RepositoryError,
    build_config_pbtxt,
)
from autovision.serving.model_config import QUEUED_BATCHES, InstanceKind, dynamic_batching
from tests.support.serving import (
    parse_config,
)


def test_config_declares_bytes_in_and_labelled_scores_out() -> None:
    config = parse_config(build_config_pbtxt("flowers", 5, 16, multi_label=False))

    assert config.name == "flowers"
    assert config.backend == "python"
    assert config.max_batch_size == 16
    (image,) = config.input
    assert (image.name, image.data_type, list(image.dims)) == (
        "IMAGE",
        model_config_pb2.TYPE_STRING,
        [1],
    )
    (scores,) = config.output
    assert (scores.name, scores.data_type, list(scores.dims)) == (
        "SCORES",
        model_config_pb2.TYPE_FP32,
        [5],
    )
    assert scores.label_filename == "labels.txt"
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    (group,) = config.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert config.parameters["multi_label"].string_value == "false"


def test_config_marks_multi_label_and_odd_batch_sizes() -> None:
    config = parse_config(build_config_pbtxt("m", 2, 12, multi_label=True))

    assert config.parameters["multi_label"].string_value == "true"
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8, 12]
    assert list(parse_config(build_config_pbtxt("m", 2, 1, False)).dynamic_batching.preferred_batch_size) == [1]


@pytest.mark.parametrize(
    ("name", "num_labels", "max_batch_size", "message"),
    [
        ("bad name", 3, 8, "model name"),
        ("../escape", 3, 8, "model name"),
        ("ok", 0, 8, "at least one label"),
        ("ok", 3, 0, "max_batch_size"),
    ],
)
def test_config_rejects_invalid_input(name: str, num_labels: int, max_batch_size: int, message: str) -> None:
    with pytest.raises(RepositoryError, match=message):
        build_config_pbtxt(name, num_labels, max_batch_size, multi_label=False)


def test_config_instance_kind_is_a_parameter() -> None:
    gpu = parse_config(build_config_pbtxt("m", 2, 4, False, instance_kind=InstanceKind.GPU))

    assert [group.kind for group in gpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]


def test_every_dynamic_batcher_holds_at_most_two_batches_queued() -> None:
    config = parse_config('name: "m"\nmax_batch_size: 16\n' + dynamic_batching(16))
    assert config.dynamic_batching.default_queue_policy.max_queue_size == QUEUED_BATCHES * 16 == 32
