"""What the edge export tests ship with the small digits model."""

from __future__ import annotations

from autovision.export.edge_files import EdgeInput
from autovision.preprocess import IMAGENET_MEAN, IMAGENET_STD

DIGIT_SPEC = EdgeInput(labels=tuple(str(digit) for digit in range(10)), size=16, mean=IMAGENET_MEAN, std=IMAGENET_STD)
