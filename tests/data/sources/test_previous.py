"""A new version as the previous one plus new rows (``--add-to-previous``): splits kept, rules as for any import."""

from __future__ import annotations

from pathlib import Path

import pytest

from autovision.contract.files import LatestVersion
from autovision.contract.keys import latest_key
from autovision.data.importer import DatasetImportError, Task, import_dataset
from autovision.storage import Storage
from tests.support.datasets import image_bytes, labelled, tree, write_zip


def _review_csv(storage: Storage, rows: dict[str, tuple[bytes, str]]) -> str:
    """A labelled review CSV: each image stored without an extension, listed by its URI."""
    for name, (data, _) in rows.items():
        storage.write_bytes(f"review/images/{name}", data)
    lines = [f"{storage.uri(f'review/images/{name}')},{label}" for name, (_, label) in rows.items()]
    storage.write_bytes("review/labelled.csv", "\n".join(lines).encode())
    return storage.uri("review/labelled.csv")


def test_the_new_version_is_the_previous_one_plus_the_new_rows(tmp_path: Path, file_storage: Storage) -> None:
    first = import_dataset(str(write_zip(tmp_path / "pets.zip", labelled(12))), "pets", file_storage)
    new = {f"n{i}": (image_bytes(9000 + i), ("cat", "dog")[i % 2]) for i in range(6)}
    new["unlabelled"] = (image_bytes(9100), "")  # kept, unassigned; offered again unassigned below
    review = _review_csv(file_storage, new)

    second = import_dataset(review, "pets", file_storage, add_to_previous=True)

    assert second.version != first.version
    assert len(second.records) == len(first.records) + 7
    before = {record.sha256: (record.split, record.labels) for record in first.records}
    after = {record.sha256: (record.split, record.labels) for record in second.records}
    assert {sha: after[sha] for sha in before} == before  # every old image, with its split and labels
    assert second.report["source"] == f"pets {first.version} + {review}"
    latest = LatestVersion.model_validate(file_storage.read_json(latest_key("pets")))
    assert latest.version == second.version

    again = import_dataset(review, "pets", file_storage, add_to_previous=True)
    assert (again.version, again.reused) == (second.version, True)  # the union of the union is itself


def test_an_image_the_new_rows_repeat_with_another_label_is_a_conflict(tmp_path: Path, file_storage: Storage) -> None:
    files = labelled(12)
    import_dataset(str(write_zip(tmp_path / "pets.zip", files)), "pets", file_storage)
    review = _review_csv(file_storage, {"relabelled": (files["cat/0.png"], "dog"), "same": (files["dog/0.png"], "dog")})

    result = import_dataset(review, "pets", file_storage, add_to_previous=True)

    assert (result.report["conflicts"], result.report["duplicates"]) == (1, 1)


@pytest.mark.parametrize("problem", ["no previous version", "another task"])
def test_adding_to_what_is_not_there_is_refused_writing_nothing(
    tmp_path: Path, file_storage: Storage, problem: str
) -> None:
    if problem == "another task":
        import_dataset(str(write_zip(tmp_path / "pets.zip", labelled(12))), "pets", file_storage)
    review = _review_csv(file_storage, {"n0": (image_bytes(9000), "cat")})
    before = tree(Path(file_storage.root_path))

    with pytest.raises(DatasetImportError, match=r"has no version to add|is SingleLabel, not MultiLabel"):
        import_dataset(review, "pets", file_storage, task=Task.MULTI_LABEL, add_to_previous=True)

    assert tree(Path(file_storage.root_path)) == before
