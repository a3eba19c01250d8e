"""The prediction client."""

from __future__ import annotations

import pytest

from autovision.serving import (
    PredictionError,
    predict,
)
from autovision.serving.client import Protocol
from autovision.serving.tritonserver import free_ports
from tests.support.serving import (
    PROTOCOLS,
    encode_image,
)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unreachable_server_is_a_prediction_error(protocol: Protocol) -> None:
    with pytest.raises(PredictionError, match=r"127\.0\.0\.1"):
        predict(encode_image("PNG", 0), f"127.0.0.1:{free_ports(1)[0]}", protocol=protocol, timeout_s=5)
