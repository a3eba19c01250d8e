"""Every reason a file is rejected, and every reason a whole import is refused, each with a
real malformed file built here. A refused import writes nothing."""

from __future__ import annotations

import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from autovision.data.importer import DatasetImportError, ImportLimits, ImportResult, SplitSettings, import_dataset
from autovision.data.rules import RejectReason
from autovision.storage import Storage, StorageError
from tests.support.datasets import image_bytes, labelled, write_files, write_zip

MIB = 1024 * 1024


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header that claims a huge size over a few bytes of data (a pixel bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def oversized_bmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 3300x3300 BMP: 31 MiB, over AutoML's 30 MB per image."""
    path = tmp_path_factory.mktemp("big") / "big.bmp"
    Image.new("RGB", (3300, 3300), (10, 200, 30)).save(path, format="BMP")
    assert path.stat().st_size > 30 * MIB
    return path


def _rejects(result: ImportResult) -> list[tuple[str, str]]:
    return [(reject["file"], reject["reason"]) for reject in result.report["rejects"]]


def _refused(storage: Storage, source: str, message: str, **options: object) -> None:
    with pytest.raises(DatasetImportError, match=message) as raised:
        import_dataset(source, "bad", storage, **options)  # type: ignore[arg-type]
    assert "\n" not in str(raised.value)
    assert storage.list_keys("") == []


# --- one file rejected, the import goes on ------------------------------------------------


def _truncated_jpeg() -> bytes:
    data = image_bytes(3, "JPEG", size=(64, 64))
    return data[: len(data) // 2]


ZIP_ENTRY_REJECTIONS: list[tuple[str, Callable[[], bytes], RejectReason]] = [
    ("cat/page.jpg", lambda: b"<html><body>403 Forbidden</body></html>", RejectReason.NOT_AN_IMAGE),
    ("cat/empty.png", lambda: b"", RejectReason.NOT_AN_IMAGE),
    ("cat/truncated.jpg", _truncated_jpeg, RejectReason.CORRUPT_IMAGE),
    ("cat/truncated.png", lambda: image_bytes(4, size=(64, 64))[:300], RejectReason.CORRUPT_IMAGE),
    ("cat/scan.tif", lambda: image_bytes(5, "TIFF"), RejectReason.UNSUPPORTED_FORMAT),
    ("cat/bomb.png", lambda: png_claiming(100_000, 100_000), RejectReason.TOO_MANY_PIXELS),
    ("cat/almost_bomb.png", lambda: png_claiming(10_000, 10_000), RejectReason.TOO_MANY_PIXELS),
    ("Bad Label!/0.png", lambda: image_bytes(6), RejectReason.INVALID_LABEL),
    (f"{'x' * 33}/0.png", lambda: image_bytes(7), RejectReason.INVALID_LABEL),
    ("loose.png", lambda: image_bytes(8), RejectReason.BAD_PATH),
    ("cat/deeper/0.png", lambda: image_bytes(9), RejectReason.BAD_PATH),
]


@pytest.mark.parametrize(
    ("entry", "build", "reason"), ZIP_ENTRY_REJECTIONS, ids=[r.value for *_, r in ZIP_ENTRY_REJECTIONS]
)
def test_a_bad_zip_entry_is_rejected_with_its_reason(
    tmp_path: Path, file_storage: Storage, entry: str, build: Callable[[], bytes], reason: RejectReason
) -> None:
    source = write_zip(tmp_path / "d.zip", labelled(10) | {entry: build()})
    result = import_dataset(str(source), "pets", file_storage)
    assert _rejects(result) == [(entry, reason.value)]
    assert result.report["rejectReasons"] == {reason.value: 1}
    assert result.report["kept"] == 20


def test_an_image_over_30_mb_is_rejected_unread(tmp_path: Path, file_storage: Storage, oversized_bmp: Path) -> None:
    source = write_zip(tmp_path / "d.zip", labelled(10) | {"cat/huge.bmp": oversized_bmp.read_bytes()})
    result = import_dataset(str(source), "pets", file_storage)
    assert _rejects(result) == [("cat/huge.bmp", "image_too_large")]


def test_an_entry_whose_header_understates_its_size_is_cut_and_rejected(tmp_path: Path, file_storage: Storage) -> None:
    """The header declares 1,000 bytes of a 2 MB entry: reading stops there, and the CRC says so."""
    path = write_zip(tmp_path / "d.zip", labelled(10) | {"cat/liar.png": b"\0" * 2_000_000}, zipfile.ZIP_DEFLATED)
    data = path.read_bytes()
    assert data.count(struct.pack("<I", 2_000_000)) == 2  # local header and central directory
    path.write_bytes(data.replace(struct.pack("<I", 2_000_000), struct.pack("<I", 1000)))
    result = import_dataset(str(path), "pets", file_storage)
    assert _rejects(result) == [("cat/liar.png", "unreadable")]


def test_an_entry_with_corrupt_compressed_data_is_rejected(tmp_path: Path, file_storage: Storage) -> None:
    path = write_zip(
        tmp_path / "d.zip", {"cat/broken.bmp": image_bytes(1, "BMP", (64, 64))} | labelled(10), zipfile.ZIP_DEFLATED
    )
    data = bytearray(path.read_bytes())
    start = 30 + len("cat/broken.bmp")  # the first entry's data follows its local header
    data[start + 100 : start + 140] = b"\xff" * 40
    path.write_bytes(bytes(data))
    result = import_dataset(str(path), "pets", file_storage)
    assert _rejects(result) == [("cat/broken.bmp", "unreadable")]


CSV_ROW_REJECTIONS: list[tuple[bytes, RejectReason]] = [
    (b"caf\xe9.png,cat\n", RejectReason.BAD_ENCODING),
    (b"cat/0.png\x00,cat\n", RejectReason.BAD_ENCODING),
    (b"TRAIN\n", RejectReason.WRONG_COLUMN_COUNT),
    (b"TRAIN,,cat\n", RejectReason.WRONG_COLUMN_COUNT),
    (b"extra/both.png,cat,dog\n", RejectReason.WRONG_COLUMN_COUNT),
    (b"TRAINING,extra/a.png,cat\n", RejectReason.UNKNOWN_SET),
    (b"gs://bucket/a.png,cat\n", RejectReason.UNSUPPORTED_URI),
    (b"ftp://host/a.png,cat\n", RejectReason.UNSUPPORTED_URI),
    (b"extra/missing.png,cat\n", RejectReason.MISSING_FILE),
    (b"cat/0.png,cat\n", RejectReason.DUPLICATE_ROW),
    (b"extra/a.png,bad label\n", RejectReason.INVALID_LABEL),
    (b"extra/notes.png,cat\n", RejectReason.NOT_AN_IMAGE),
    (b"extra/folder,cat\n", RejectReason.UNREADABLE),
    (b"x" * 300 + b".png,cat\n", RejectReason.LINE_TOO_LONG),
]


@pytest.mark.parametrize(
    ("row", "reason"), CSV_ROW_REJECTIONS, ids=[f"{r.value}-{i}" for i, (_, r) in enumerate(CSV_ROW_REJECTIONS)]
)
def test_a_bad_csv_row_is_rejected_with_its_reason(
    tmp_path: Path, file_storage: Storage, row: bytes, reason: RejectReason
) -> None:
    files = labelled(10)
    write_files(tmp_path, files | {"extra/notes.png": b"shopping list", "extra/folder/x.png": image_bytes(1)})
    index = tmp_path / "index.csv"
    index.write_bytes(b"".join(f"{name},{name.split('/')[0]}\n".encode() for name in files) + row)
    result = import_dataset(str(index), "pets", file_storage, limits=ImportLimits(max_csv_line_bytes=200))
    assert [(reject["reason"], reject["line"]) for reject in result.report["rejects"]] == [(reason.value, 21)]
    assert result.report["kept"] == 20


def test_an_image_over_30_mb_in_a_csv_is_read_no_further(
    tmp_path: Path, file_storage: Storage, oversized_bmp: Path
) -> None:
    files = labelled(10)
    write_files(tmp_path, files)
    index = tmp_path / "index.csv"
    index.write_text("".join(f"{name},{name.split('/')[0]}\n" for name in files) + f"file://{oversized_bmp},cat\n")
    result = import_dataset(str(index), "pets", file_storage)
    assert _rejects(result) == [(f"file://{oversized_bmp}", "image_too_large")]


# --- the whole import refused -------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../evil.png", "/etc/evil.png", "cat/../../evil.png", "C:/evil.png", "cat\\..\\evil.png"],
)
def test_zip_slip_paths_are_refused(tmp_path: Path, file_storage: Storage, name: str) -> None:
    info = zipfile.ZipInfo("placeholder")
    path = tmp_path / "slip.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for key, data in labelled(10).items():
            archive.writestr(key, data)
        info.filename = name  # ZipInfo() would sanitise it; an attacker's tool does not
        archive.writestr(info, image_bytes(1))
    _refused(file_storage, str(path), "unsafe path")


def test_a_symbolic_link_is_refused(tmp_path: Path, file_storage: Storage) -> None:
    path = write_zip(tmp_path / "link.zip", labelled(10))
    info = zipfile.ZipInfo("cat/link.png")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(info, "../../../../etc/passwd")
    _refused(file_storage, str(path), "symbolic link")


def test_a_zip_bomb_is_refused_by_its_compression_ratio(tmp_path: Path, file_storage: Storage) -> None:
    path = write_zip(tmp_path / "bomb.zip", labelled(10) | {"cat/bomb.png": b"\0" * (8 * MIB)}, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 200_000
    _refused(file_storage, str(path), "zip bomb suspected")


def test_an_archive_over_the_total_size_is_refused(tmp_path: Path, file_storage: Storage) -> None:
    path = write_zip(tmp_path / "big.zip", labelled(10))
    _refused(file_storage, str(path), "over the 10000 limit", limits=ImportLimits(max_total_bytes=10_000))


def test_an_archive_with_too_many_entries_is_refused(tmp_path: Path, file_storage: Storage) -> None:
    path = write_zip(tmp_path / "many.zip", labelled(10))
    _refused(file_storage, str(path), "20 entries, over the 19 limit", limits=ImportLimits(max_entries=19))


def test_an_archive_naming_one_entry_twice_is_refused(tmp_path: Path, file_storage: Storage) -> None:
    path = write_zip(tmp_path / "twice.zip", labelled(10))
    with warnings.catch_warnings(), zipfile.ZipFile(path, "a") as archive:
        warnings.simplefilter("ignore")
        archive.writestr("cat/0.png", image_bytes(77))
    _refused(file_storage, str(path), "twice")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"plain text, not a zip", "not a zip archive"),
        (b"", "not a zip archive"),
        (b"PK\x03\x04" + b"\0" * 100, "not a zip archive"),
    ],
)
def test_a_file_that_is_not_a_zip_is_refused(
    tmp_path: Path, file_storage: Storage, content: bytes, message: str
) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(content)
    _refused(file_storage, str(path), message)


def test_a_truncated_zip_is_refused(tmp_path: Path, file_storage: Storage) -> None:
    path = write_zip(tmp_path / "cut.zip", labelled(10))
    path.write_bytes(path.read_bytes()[:-40])
    _refused(file_storage, str(path), "not a zip archive")


@pytest.mark.parametrize("entries", [{}, {"__MACOSX/._cat.png": b"x", ".DS_Store": b"x"}], ids=["empty", "only-junk"])
def test_an_empty_zip_is_refused(tmp_path: Path, file_storage: Storage, entries: dict[str, bytes]) -> None:
    _refused(file_storage, str(write_zip(tmp_path / "empty.zip", entries)), "holds no files")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (labelled(10) | labelled(9, labels=["bird"], offset=500), r"fewer than 10 images: bird \(9\)"),
        (labelled(10, labels=["cat"]), "at least 2 labels, found only 'cat'"),
        (
            {"cat/a.png": b"nope", "dog/b.png": b"nope"},
            r"no labelled images .* 2 of 2 files rejected \(2 not_an_image\)",
        ),
    ],
    ids=["small-label", "one-label", "nothing-valid"],
)
def test_untrainable_data_is_refused(
    tmp_path: Path, file_storage: Storage, entries: dict[str, bytes], message: str
) -> None:
    _refused(file_storage, str(write_zip(tmp_path / "d.zip", entries)), message)


def test_duplicates_do_not_count_towards_the_minimum(tmp_path: Path, file_storage: Storage) -> None:
    entries = labelled(10) | {f"bird/{i}.png": image_bytes(i % 5 + 4242) for i in range(10)}
    _refused(file_storage, str(write_zip(tmp_path / "d.zip", entries)), r"bird \(5\)")


@pytest.mark.parametrize("name", ["../escape", "a/b/c", "/b", "a/", "a/..", "", ".", "x" * 64, "-lead"])
def test_a_bad_dataset_name_is_refused(tmp_path: Path, file_storage: Storage, name: str) -> None:
    path = write_zip(tmp_path / "d.zip", labelled(10))
    with pytest.raises(DatasetImportError, match="dataset name"):
        import_dataset(str(path), name, file_storage)
    assert file_storage.list_keys("") == []


def test_a_dataset_name_may_have_a_scope(tmp_path: Path, file_storage: Storage) -> None:
    result = import_dataset(str(write_zip(tmp_path / "d.zip", labelled(10))), "team-a/flowers", file_storage)
    assert file_storage.read_json("datasets/team-a/flowers/latest.json")["version"] == result.version


@pytest.mark.parametrize("percentages", [(80, 10, 5), (0, 50, 50), (110, -5, -5)])
def test_bad_split_percentages_are_refused(percentages: tuple[int, int, int]) -> None:
    with pytest.raises(DatasetImportError, match="summing to 100"):
        SplitSettings(*percentages)


def test_a_missing_source_is_a_storage_error(tmp_path: Path, file_storage: Storage) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        import_dataset(str(tmp_path / "nowhere.zip"), "bad", file_storage)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "no labelled images could be imported$"), (image_bytes(1), r"rejected \(\d+ bad_encoding")],
    ids=["empty", "binary"],
)
def test_a_csv_without_usable_rows_is_refused(
    tmp_path: Path, file_storage: Storage, content: bytes, message: str
) -> None:
    path = tmp_path / "index.csv"
    path.write_bytes(content)
    _refused(file_storage, str(path), message)


def test_an_empty_folder_is_refused(tmp_path: Path, file_storage: Storage) -> None:
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    (tmp_path / "empty" / ".hidden" / "x.png").write_bytes(image_bytes(1))
    _refused(file_storage, str(tmp_path / "empty"), "holds no files")
