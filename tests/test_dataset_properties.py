"""Property-based tests: whatever zip or CSV arrives, the import either succeeds (with
rejects) or is refused with one readable line, and never writes outside its own area."""

from __future__ import annotations

import tempfile
import warnings
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from autovision.contract.keys import dataset_prefix
from autovision.data.importer import DatasetImportError, ImportLimits, ImportResult, Task, import_dataset
from autovision.data.manifest import SPLITS, UNASSIGNED, decode_manifest
from autovision.storage import Storage
from tests.test_dataset_support import assert_only_dataset_keys, image_bytes, labelled, tree, write_files

NAME = "prop"
# Small caps, so that the size, ratio and line-length guards are reachable by small examples.
LIMITS = ImportLimits(
    max_image_bytes=4096,
    max_total_bytes=200_000,
    max_compression_ratio=20,
    ratio_floor_bytes=2048,
    max_entries=60,
    max_csv_line_bytes=120,
)
PROPERTY_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@cache
def _image(seed: int) -> bytes:
    return image_bytes(seed)


@cache
def _valid_base() -> dict[str, bytes]:
    return labelled(10)


# Ordinary entries: label folders (good and bad), split folders, junk, odd depths.
folders = st.sampled_from(
    ["cat", "dog", "bird", "train/cat", "val/dog", "TEST/cat", "validation", "Bad Label", ".hidden", "__MACOSX",
     "x" * 40, "ünï", "cat/deeper", ""]
)  # fmt: skip
files = st.one_of(st.integers(0, 60).map(lambda n: f"e{n}.png"), st.sampled_from(["x", ".DS_Store"]))
ordinary_names = st.builds(lambda folder, file: f"{folder}/{file}".lstrip("/"), folders, files)
# At most one hostile entry per archive, so that most archives get past the safety checks.
hostile_names = st.sampled_from(["../x.png", "/abs/x.png", "cat/../../x.png", "C:/x.png", "cat\\x.png", ""])
valid_images = st.integers(0, 30).map(_image)
contents = st.one_of(
    valid_images,
    valid_images,
    st.integers(0, 30).map(lambda seed: _image(seed)[: len(_image(seed)) // 2]),
    st.binary(max_size=80),
    st.builds(lambda size: b"\0" * size, st.integers(0, 10_000)),
)
compressions = st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
Entry = tuple[str, bytes, int, bool]
entries = st.lists(
    st.tuples(ordinary_names, contents, compressions, st.just(False)), max_size=12, unique_by=lambda entry: entry[0]
)
hostile_kinds = st.sampled_from([None] * 6 + ["unsafe path", "symbolic link", "listed twice"])
hostile_entries = st.builds(
    lambda kind, name, data: None if kind is None else (
        ("cat/0.png" if kind == "listed twice" else name), data, zipfile.ZIP_STORED, kind == "symbolic link"
    ),
    hostile_kinds,
    hostile_names,
    contents,
)  # fmt: skip
bases = st.sampled_from([True, True, True, False])


def _zip_bytes(base: bool, extra: list[Entry], path: Path) -> None:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
        warnings.simplefilter("ignore")  # duplicate names are part of the game
        for name, data in (_valid_base() if base else {}).items():
            archive.writestr(name, data)
        for name, data, compression, symlink in extra:
            info = zipfile.ZipInfo("placeholder")
            info.filename = name  # as a hostile tool would write it, unsanitised
            if symlink:
                info.create_system, info.external_attr = 3, 0o120777 << 16
            archive.writestr(info, data, compress_type=compression)


def _check_import(build: Callable[[Path], str], task: Task = Task.SINGLE_LABEL) -> None:
    """Build a source in a fresh folder, import it, and check the outcome and every write."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        source = build(root)
        before = tree(root)
        storage = Storage(f"file://{root / 'storage'}")
        try:
            result = import_dataset(source, NAME, storage, task=task, limits=LIMITS)
        except DatasetImportError as error:
            event("refused")
            _check_refusal(str(error), storage)
        else:
            event("imported with rejects" if result.report["rejected"] else "imported")
            _check_result(result, storage)
        written = tree(root) - before
        assert all(path.startswith(f"storage/datasets/{NAME}/") for path in written), written
        assert_only_dataset_keys(storage, NAME)


def _check_refusal(message: str, storage: Storage) -> None:
    assert message
    assert "\n" not in message
    assert storage.list_keys("") == []


def _check_result(result: ImportResult, storage: Storage) -> None:
    report = result.report
    merged = sum(len(conflict["files"]) - 1 for conflict in report["conflictingLabels"])
    assert report["total"] == report["rejected"] + report["kept"] + report["duplicates"] + merged
    manifest = decode_manifest(storage.read_bytes(f"{dataset_prefix(NAME, result.version)}/manifest.jsonl"))
    assert manifest == result.records
    for record in manifest:
        assert record.split in (*SPLITS, UNASSIGNED)
        assert (record.split == UNASSIGNED) == (
            not record.labels or (len(record.labels) > 1 and report["task"] == "SingleLabel")
        )


@PROPERTY_SETTINGS
@given(base=bases, extra=entries, hostile=hostile_entries, position=st.integers(0, 12))
def test_any_zip_structure(base: bool, extra: list[Entry], hostile: Entry | None, position: int) -> None:
    def build(root: Path) -> str:
        _zip_bytes(base, extra if hostile is None else [*extra[:position], hostile, *extra[position:]], root / "in.zip")
        return str(root / "in.zip")

    _check_import(build)


@PROPERTY_SETTINGS
@given(
    cut=st.integers(0, 2**20),
    patches=st.lists(st.tuples(st.integers(0, 2**20), st.binary(min_size=1, max_size=4)), max_size=6),
    compression=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]),
)
def test_any_corruption_of_a_valid_zip(cut: int, patches: list[tuple[int, bytes]], compression: int) -> None:
    def build(root: Path) -> str:
        path = root / "in.zip"
        _zip_bytes(True, [("cat/extra.png", _image(99), compression, False)], path)
        data = bytearray(path.read_bytes())
        for offset, patch in patches:
            position = offset % len(data)
            data[position : position + len(patch)] = patch
        path.write_bytes(bytes(data[: max(cut, len(data) // 2)]))
        return str(path)

    _check_import(build)


set_fields = st.sampled_from(["", "TRAIN", "VALIDATION", "TEST", "UNASSIGNED", "train", "BOGUS", '"TEST"'])
uri_fields = st.one_of(
    st.integers(0, 25).map(lambda i: f"img/{i}.png"),
    st.sampled_from(
        ["img/broken.png", "missing/1.png", "gs://b/x.png", "http://127.0.0.1:9/x.png", "", "img", "../../x.png",
         "file:///nonexistent/x.png", '"img/1.png"', "img/big.png"]
    ),
)  # fmt: skip
label_fields = st.lists(st.sampled_from(["cat", "dog", "bird", "", "bad label", "x" * 33, '"cat"']), max_size=3)
structured_rows = st.builds(
    lambda split, uri, labels: ",".join([*([split] if split else []), uri, *labels]).encode(),
    set_fields,
    uri_fields,
    label_fields,
)
rows = st.lists(st.one_of(structured_rows, st.binary(max_size=60)), max_size=25)


@PROPERTY_SETTINGS
@given(
    base=st.booleans(),
    extra=rows,
    newline=st.sampled_from([b"\n", b"\r\n"]),
    bom=st.booleans(),
    multi=st.booleans(),
)
def test_any_csv_structure(base: bool, extra: list[bytes], newline: bytes, bom: bool, multi: bool) -> None:
    def build(root: Path) -> str:
        images = {f"img/{i}.png": _image(i) for i in range(20)}
        write_files(root, images | {"img/broken.png": b"<html>", "img/big.png": image_bytes(5, "BMP", (64, 64))})
        base_rows = [f"{name},{'cat' if i < 10 else 'dog'}".encode() for i, name in enumerate(images)] if base else []
        (root / "index.csv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + newline.join([*base_rows, *extra]))
        return str(root / "index.csv")

    _check_import(build, Task.MULTI_LABEL if multi else Task.SINGLE_LABEL)
