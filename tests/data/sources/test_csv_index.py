"""CSV indexes in AutoML Vision's format: ``[SET,]URI[,LABEL...]``, streamed."""

from __future__ import annotations

import functools
import hashlib
import http.server
import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from autovision.contract.keys import logged_image_key, prediction_log_prefix
from autovision.data.importer import ImportLimits, Task, import_dataset
from autovision.data.manifest import SPLITS
from autovision.data.rules import DatasetImportError, Rejection, RejectReason
from autovision.data.sources.csv_index import CsvRow, CsvSource, parse_row
from autovision.data.sources.reader import READ_CHUNK
from autovision.data.split import allocate
from autovision.settings import Settings
from autovision.storage import Storage
from tests.support.datasets import assert_only_dataset_keys, image_bytes, labelled, stored_extensions, write_files

BASE = "file:///data/sets"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"TRAIN,cat/1.png,cat\n", CsvRow(f"{BASE}/cat/1.png", ("cat",), "train", 2)),
        (b"test , cat/1.png , cat \r\n", CsvRow(f"{BASE}/cat/1.png", ("cat",), "test", 2)),
        (b"unassigned,s3://b/k.jpg,cat\n", CsvRow("s3://b/k.jpg", ("cat",), None, 2)),
        (b"../other/x.png,dog\n", CsvRow("file:///data/other/x.png", ("dog",), None, 2)),
        (b"VALIDATION,https://h/x.png,\n", CsvRow("https://h/x.png", (), "validation", 2)),
        (b'"a,b.png","cat"\n', CsvRow(f"{BASE}/a,b.png", ("cat",), None, 2)),
        (b"x.png\n", CsvRow(f"{BASE}/x.png", (), None, 2)),
        (b"x.png,,cat,\n", CsvRow(f"{BASE}/x.png", ("cat",), None, 2)),
        (b"\n", None),
        (b" , ,\n", None),
    ],
)
def test_rows_are_parsed_like_automl(raw: bytes, expected: CsvRow | None) -> None:
    assert parse_row(raw, 2, BASE, multi_label=False) == expected


def test_multi_label_rows_keep_every_label_once() -> None:
    row = parse_row(b"x.png,dog,cat,dog\n", 1, BASE, multi_label=True)
    assert isinstance(row, CsvRow)
    assert row.labels == ("cat", "dog")


def test_a_byte_order_mark_is_only_allowed_at_the_start() -> None:
    assert isinstance(parse_row(b"\xef\xbb\xbfx.png,cat\n", 1, BASE, multi_label=False), CsvRow)
    later = parse_row(b"\xef\xbb\xbfx.png,cat\n", 2, BASE, multi_label=False)
    assert isinstance(later, CsvRow)
    assert later.uri.endswith("\ufeffx.png")


def test_an_index_with_sets_unlabelled_rows_and_every_uri_kind(storage: Storage) -> None:
    files = labelled(15)
    for name, data in files.items():
        storage.write_bytes(f"incoming/images/{name}", data)
    storage.write_bytes("incoming/images/unlabelled/a.png", image_bytes(7001))
    storage.write_bytes("incoming/images/unlabelled/b.png", image_bytes(7002))
    rows = ["\ufeffTRAIN,images/cat/0.png,cat", "train,images/dog/0.png,dog"]
    rows += [f"VALIDATION,images/{label}/1.png,{label}" for label in ("cat", "dog")]
    rows += [f"TEST,{storage.uri(f'incoming/images/{label}/2.png')},{label}" for label in ("cat", "dog")]
    rows += [f"UNASSIGNED,images/{name},{name.split('/')[0]}" for name in files if int(name[4:-4]) in range(3, 8)]
    rows += [f'"images/{name}","{name.split("/")[0]}"' for name in files if int(name[4:-4]) >= 8]
    rows += ["images/unlabelled/a.png,", "TRAIN,images/unlabelled/b.png"]
    storage.write_bytes("incoming/index.csv", "\r\n".join(rows).encode())

    result = import_dataset(storage.uri("incoming/index.csv"), "pets", storage)

    split_of = {record.source.rsplit("images/", 1)[1]: record.split for record in result.records}
    assert [split_of[f"{label}/{i}.png"] for i in range(3) for label in ("cat", "dog")] == [
        "train", "train", "validation", "validation", "test", "test"
    ]  # fmt: skip
    assert split_of["unlabelled/a.png"] == split_of["unlabelled/b.png"] == "unassigned"
    assert {record.split for record in result.records if record.labels} == set(SPLITS)
    assert (result.report["kept"], result.report["unlabelled"], result.report["rejected"]) == (32, 2, 0)
    assert "UnlabelledImages" in {warning["reason"] for warning in result.report["warnings"]}
    assert_only_dataset_keys(storage, "pets", others=storage.list_keys("incoming"))


def test_multi_label_data_is_stratified_per_label(tmp_path: Path, file_storage: Storage) -> None:
    label_sets = itertools.cycle([("cat",), ("cat", "indoor"), ("dog",), ("dog", "outdoor"), ("cat", "dog", "outdoor")])
    rows = [(f"img/{i}.png", next(label_sets)) for i in range(200)]
    rows += [(f"img/rare{i}.png", ("rare", "cat")) for i in range(12)]
    write_files(tmp_path, {name: image_bytes(i) for i, (name, _) in enumerate(rows)})
    (tmp_path / "index.csv").write_text("".join(f"{name},{','.join(labels)}\n" for name, labels in rows))

    result = import_dataset(str(tmp_path / "index.csv"), "tags", file_storage, task=Task.MULTI_LABEL)

    for label, counts in result.report["perLabel"].items():
        wanted = allocate(sum(counts.values()), (80, 10, 10))
        got = tuple(counts[split] for split in SPLITS)
        assert all(abs(g - w) <= 2 for g, w in zip(got, wanted, strict=True)), (label, got, wanted)
        assert min(got) >= 1, label
    assert result.report["perLabel"]["rare"] == {"train": 10, "validation": 1, "test": 1}


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server over a folder (127.0.0.1 only: no network leaves the machine)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


def test_http_uris(tmp_path: Path, file_storage: Storage, http_root: tuple[Path, str]) -> None:
    root, url = http_root
    files = labelled(10)
    write_files(root, files)
    index = tmp_path / "index.csv"
    index.write_text("".join(f"{url}/{name},{name.split('/')[0]}\n" for name in files) + f"{url}/gone.png,cat\n")
    result = import_dataset(str(index), "web", file_storage)
    assert result.report["kept"] == 20
    assert [(r["file"], r["reason"]) for r in result.report["rejects"]] == [(f"{url}/gone.png", "missing_file")]


def test_a_million_row_index_is_streamed(tmp_path: Path) -> None:
    """Rows are parsed and images fetched a chunk at a time: the first results arrive
    long before the index is read, and no more than a chunk is fetched ahead."""
    index = tmp_path / "index.csv"
    with index.open("w") as out:
        out.writelines(f"TRAIN,img/{i}.png,cat\n" for i in range(1_000_000))
    source = CsvSource(str(index), Settings(), ImportLimits(), multi_label=False)
    with source:
        scan = source.scan()
        first = list(itertools.islice(scan, 10))
        assert all(isinstance(item, Rejection) and item.reason is RejectReason.MISSING_FILE for item in first)
        assert source.total is not None
        assert source.position < source.total / 100
        assert sum(1 for _ in itertools.islice(scan, READ_CHUNK * 3)) == READ_CHUNK * 3


def test_memory_holds_a_chunk_of_images_not_the_dataset(tmp_path: Path, file_storage: Storage) -> None:
    """1,200 images of 97 KB (116 MB) import within a small fraction of that.

    The per-image cap is lowered to 1 MiB because a capped read asks for cap + 1
    bytes: tracemalloc counts that request in full, though untouched pages never
    become resident."""
    names = [f"{label}/{i}.bmp" for label in ("cat", "dog") for i in range(600)]
    write_files(tmp_path / "img", {name: image_bytes(i, "BMP", (180, 180)) for i, name in enumerate(names)})
    index = tmp_path / "index.csv"
    index.write_text("".join(f"img/{name},{name.split('/')[0]}\n" for name in names))
    # A fresh interpreter: tracemalloc counts every thread, and earlier tests may leave some running.
    code = (
        "import json, sys, tracemalloc\n"
        "from collections import Counter\n"
        "from autovision.data.importer import import_dataset\n"
        "from autovision.data.rules import ImportLimits\n"
        "from autovision.storage import Storage\n"
        "tracemalloc.start()\n"
        "limits = ImportLimits(max_image_bytes=2**20)\n"
        "result = import_dataset(sys.argv[1], 'big', Storage(sys.argv[2]), limits=limits)\n"
        "_, peak = tracemalloc.get_traced_memory()\n"
        "splits = Counter(r.split for r in result.records)\n"
        "print(json.dumps({'kept': result.report['kept'], 'peak': peak, 'splits': splits}))\n"
    )
    command = [sys.executable, "-c", code, str(index), file_storage.uri("")]
    measured = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout)
    assert measured["kept"] == 1200
    assert measured["peak"] < 28 * 1024 * 1024, f"peak {measured['peak'] / 2**20:.1f} MiB"
    assert measured["splits"] == {"train": 960, "validation": 120, "test": 120}


def test_an_installation_can_refuse_uri_schemes_in_rows(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    """A cluster that imports only from its own storage never fetches the URLs an index names."""
    root, url = http_root
    requests: list[object] = []
    write_files(root, labelled(1))
    local = labelled(10)
    write_files(tmp_path / "data", local)
    index = tmp_path / "data" / "index.csv"
    rows = [f"{name},{name.split('/')[0]}\n" for name in local] + [f"{url}/cat/0.png,cat\n"]
    index.write_text("".join(rows))
    storage = Storage(f"file://{tmp_path / 'storage'}", Settings(import_uri_schemes=("file",)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(http.server.SimpleHTTPRequestHandler, "log_message", lambda *args: requests.append(args))
        result = import_dataset(str(index), "local-only", storage)

    assert result.report["kept"] == len(local)
    [reject] = result.report["rejects"]
    assert (reject["reason"], reject["line"]) == ("unsupported_uri", len(rows))
    assert "use file:// or a path relative to the CSV" in reject["message"]
    assert requests == [], "the URL was never requested"


def test_an_installation_can_refuse_the_source_itself(tmp_path: Path, digits_zip: Path) -> None:
    storage = Storage(f"file://{tmp_path / 'storage'}", Settings(import_uri_schemes=("s3",)))
    with pytest.raises(
        DatasetImportError, match=r"cannot import from .*digits\.zip: this installation imports only from s3://$"
    ):
        import_dataset(str(digits_zip), "digits", storage)
    assert storage.list_keys("") == []


def test_import_uri_schemes_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().import_uri_schemes == ("s3", "file", "http", "https")
    monkeypatch.setenv("AUTOVISION_IMPORT_URI_SCHEMES", " s3, HTTPS ,")
    assert Settings().import_uri_schemes == ("s3", "https")
    monkeypatch.setenv("AUTOVISION_IMPORT_URI_SCHEMES", "s3,ftp")
    with pytest.raises(ValueError, match="unknown URI scheme"):
        Settings()


def test_a_review_csv_of_logged_images_without_file_extensions_imports(storage: Storage) -> None:
    """The review set lists logged images by storage URI: raw bytes under their sha256, no extension; the
    format is sniffed from the bytes, and the same checks as any image reject what is not one."""
    logged = prediction_log_prefix("local", "digits")
    rows: list[str] = []
    for label, image_format in (("cat", "PNG"), ("dog", "JPEG")):
        for i in range(12):
            data = image_bytes(100 * len(rows) + i, image_format)
            key = logged_image_key(logged, hashlib.sha256(data).hexdigest())
            storage.write_bytes(key, data)
            rows.append(f"{storage.uri(key)},{label}")
    not_an_image = logged_image_key(logged, hashlib.sha256(b"not an image").hexdigest())
    storage.write_bytes(not_an_image, b"not an image")
    rows.append(f"{storage.uri(not_an_image)},cat")
    storage.write_bytes("review/labelled.csv", "\n".join(rows).encode())

    result = import_dataset(storage.uri("review/labelled.csv"), "pets", storage)

    assert (result.report["kept"], result.report["rejected"]) == (24, 1)
    assert set(stored_extensions(storage, "pets", result.version).values()) == {"png", "jpg"}
    assert result.report["rejects"][0]["reason"] == RejectReason.NOT_AN_IMAGE.value
    assert_only_dataset_keys(storage, "pets", others=[*storage.list_keys("review"), *storage.list_keys(logged)])
