"""benchmarks/synthetic_dataset.py: N distinct real images that the importer keeps, as a zip and as a prefix."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from autovision.data.importer import import_dataset
from autovision.storage import Storage

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def synthetic() -> Iterator[ModuleType]:
    """The generator script as a module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        yield importlib.import_module("synthetic_dataset")


def test_every_generated_image_is_kept_from_a_zip_and_a_prefix(
    synthetic: ModuleType, tmp_path: Path, file_storage: Storage
) -> None:
    source = synthetic.write_zip(100, tmp_path / "synthetic.zip")
    from_zip = import_dataset(str(source), "zipped", file_storage)
    index = synthetic.write_prefix(100, f"file://{tmp_path / 'incoming'}")
    from_prefix = import_dataset(index, "listed", file_storage)
    for result in (from_zip, from_prefix):
        assert (result.report["kept"], result.report["duplicates"], result.report["rejected"]) == (100, 0, 0)
        assert len(result.report["perLabel"]) == len(synthetic.LABELS)
    assert from_zip.version == from_prefix.version, "the same images and labels make the same version"
