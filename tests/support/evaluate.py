"""Predictions whose right metrics are worked out by hand in the comments."""

from __future__ import annotations

import numpy as np

from autovision.evaluate import (
    SplitPredictions,
)

# Single-label, labels a b c, four images:
#   image 0: true a, scores a .7 b .2 c .1 -> top-1 a, right
#   image 1: true b, scores a .1 b .6 c .3 -> top-1 b, right
#   image 2: true c, scores a .5 b .1 c .4 -> top-1 a, wrong (score .5)
#   image 3: true a, scores a .3 b .4 c .3 -> top-1 b, wrong (score .4)
SINGLE = SplitPredictions.single_label(
    ["a", "b", "c"],
    ["s3://b/0.png", "s3://b/1.png", "s3://b/2.png", "s3://b/3.png"],
    np.array([0, 1, 2, 0]),
    np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.1, 0.4], [0.3, 0.4, 0.3]], dtype=np.float32),
)

# Multi-label, labels x y, three images, sigmoid scores:
#   image 0: true {x, y}, scores x .9 y .6
#   image 1: true {y},    scores x .2 y .4
#   image 2: true {},     scores x .6 y .1
MULTI = SplitPredictions(
    labels=["x", "y"],
    uris=["u0", "u1", "u2"],
    truth=np.array([[True, True], [False, True], [False, False]]),
    scores=np.array([[0.9, 0.6], [0.2, 0.4], [0.6, 0.1]], dtype=np.float32),
    multi_label=True,
)
