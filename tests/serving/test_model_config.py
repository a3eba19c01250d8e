"""config.pbtxt sections that bound what Triton holds."""

from __future__ import annotations

from autovision.serving.model_config import QUEUED_BATCHES, dynamic_batching
from tests.test_serving import parse_config


def test_every_dynamic_batcher_holds_at_most_two_batches_queued() -> None:
    config = parse_config('name: "m"\nmax_batch_size: 16\n' + dynamic_batching(16))
    assert config.dynamic_batching.default_queue_policy.max_queue_size == QUEUED_BATCHES * 16 == 32
