"""The default number of import pods, from the source's size alone."""

from __future__ import annotations

import pytest

from autovision.resources import MAX_IMPORT_PODS, DatasetSpec
from autovision_operator.import_plan import (
    CSV_ROW_BYTES,
    IMAGES_PER_POD,
    MAX_DEFAULT_PODS,
    ZIP_IMAGE_BYTES,
    default_import_pods,
)

MILLION = 1_000_000


@pytest.mark.parametrize(
    ("source", "size_bytes", "pods"),
    [
        ("s3://bucket/flowers.zip", 36_931_362, 1),  # the 3,865 flowers of ../shared/datasets: one pod, as before
        ("s3://bucket/photos.zip", MILLION * ZIP_IMAGE_BYTES, 10),  # a million photos
        ("s3://bucket/photos.zip", (IMAGES_PER_POD + 1) * ZIP_IMAGE_BYTES, 2),  # one image over a pod's share
        ("s3://bucket/index.CSV", MILLION * CSV_ROW_BYTES, 10),  # a million rows, whatever the case of its name
        ("s3://bucket/index.csv", 5_000, 1),
        ("s3://bucket/photos.zip", 0, 1),  # an empty object (or a folder): still one pod, which says what is wrong
        ("s3://bucket/photos.zip", None, 1),  # the size is unknown
        ("s3://bucket/huge.zip", 10**15, MAX_DEFAULT_PODS),  # capped
    ],
)
def test_default_import_pods_grow_with_the_source_up_to_a_cap(source: str, size_bytes: int | None, pods: int) -> None:
    assert default_import_pods(source, size_bytes) == pods


def test_the_spec_describes_the_default_and_allows_more_than_it() -> None:
    description = str(DatasetSpec.model_fields["import_pods"].description)
    assert f"{IMAGES_PER_POD:,} images" in description
    assert f"at most {MAX_DEFAULT_PODS}" in description
    assert MAX_DEFAULT_PODS < MAX_IMPORT_PODS
