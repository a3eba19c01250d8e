"""How many pods a Dataset's import fans out over: ``spec.importPods``, else a default from the source's size.

Pure: the handler learns the source's size in bytes (one HEAD request, see
``dataset_handlers``) and hands it here. A slice per pod pays off only when a
pod's share of the work is well above what starting a pod costs (scheduling,
pulling the multi-gigabyte trainer image: a minute or two). The work is decoding
every image to validate it: Pillow decodes about 10 MB of JPEG a second on one
core (0.08 to 0.1 ms per KB for 30 and 77 KB photos, 1.5 ms for flowers' 9 KB
ones; the shared 2-core development machine under load, 2026-12-04), so a pod's
``IMAGES_PER_POD`` images of a typical ``ZIP_IMAGE_BYTES`` are about 4 GB and
seven minutes of decoding on the one CPU it requests. The number of images is
estimated from the source's bytes, because the operator reads no more than its
size: a CSV index by the length of its rows, a zip by the size of a typical
photo. A zip of many tiny images is under-estimated and a prefix of label folders
(a listing of a million keys is a thousand requests) is not sized at all;
``spec.importPods`` covers both.
"""

from __future__ import annotations

import math
from typing import Final

IMAGES_PER_POD: Final = 100_000
"""The images each pod of a default fan-out validates and packs."""
MAX_DEFAULT_PODS: Final = 32
"""The most pods a default asks for: it bounds what one Dataset takes from a cluster
and the slices pod 0 merges; ``spec.importPods`` may ask for more."""
CSV_ROW_BYTES: Final = 100
"""A CSV index row, ``s3://bucket/some/path/image-000123.jpg,label`` and its line end, in bytes."""
ZIP_IMAGE_BYTES: Final = 40_000
"""A photo in a zip, in bytes: JPEGs of a few hundred pixels a side (flowers' are 9 KB, ImageNet's 110 KB)."""
CSV_SUFFIX: Final = ".csv"
"""What names a CSV index; anything else with a size is a zip (the trainer's own rule)."""


def estimated_images(source: str, size_bytes: int) -> int:
    """The images a source of ``size_bytes`` holds or names, by its kind (CSV index or zip)."""
    per_image = CSV_ROW_BYTES if source.lower().endswith(CSV_SUFFIX) else ZIP_IMAGE_BYTES
    return size_bytes // per_image


def default_import_pods(source: str, size_bytes: int | None) -> int:
    """The pods an import of a source of this size fans out over when the Dataset does not say: 1 when unknown."""
    if size_bytes is None:
        return 1
    return max(1, min(MAX_DEFAULT_PODS, math.ceil(estimated_images(source, size_bytes) / IMAGES_PER_POD)))
