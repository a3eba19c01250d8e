"""The console's JSON API and its security rules, against a real local source over file:// storage."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiohttp import FormData, web

from autovision.console.app import CSP, CSRF_COOKIE, ConsoleConfig
from autovision.console.local import LocalSource
from autovision.contract.files import ModelCard
from autovision.contract.keys import dataset_root
from tests.support.console import DATASET, RUN, Answer, World, call, write_world
from tests.support.datasets import image_bytes, labelled, write_zip

VERSIONS = f"/api/datasets/local/{DATASET}/versions"
RUN_PATH = f"/api/runs/local/{RUN.job}/{RUN.uid}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, model_card: ModelCard) -> World:
    return write_world(tmp_path_factory.mktemp("console"), model_card)


@pytest.fixture
def source(world: World, tmp_path: Path) -> LocalSource:
    return LocalSource(world.storage, tmp_path / "work", {"down": "http://127.0.0.1:9"})


@pytest.fixture
def config(tmp_path: Path) -> ConsoleConfig:
    return ConsoleConfig(max_upload_bytes=64 * 1024, max_image_bytes=4096, upload_dir=tmp_path / "uploads")


def assert_secured(answer: Answer) -> None:
    assert answer.headers["Content-Security-Policy"] == CSP
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_sets_the_csrf_cookie_and_every_response_carries_the_csp(source: LocalSource) -> None:
    page = call(source, "GET", "/")
    assert page.status == 200
    assert b'<script type="module" src="/static/console.js">' in page.body
    assert f"{CSRF_COOKIE}=" in page.headers["Set-Cookie"]
    assert "SameSite=Strict" in page.headers["Set-Cookie"]
    for answer in (page, call(source, "GET", "/static/console.js"), call(source, "GET", "/api/nothing")):
        assert_secured(answer)
    assert "'unsafe-inline'" not in CSP
    assert "script-src 'self'" in CSP


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e/app.py", "/static/vendor/uPlot.LICENSE"])
def test_only_the_pages_own_assets_are_served(source: LocalSource, path: str) -> None:
    answer = call(source, "GET", path)
    assert answer.status == 404
    assert_secured(answer)


def test_lists_datasets_with_their_latest_version(source: LocalSource, world: World) -> None:
    [dataset] = call(source, "GET", "/api/datasets").json()
    assert dataset["ref"] == {"namespace": "local", "name": DATASET}
    assert (dataset["phase"], dataset["version"], dataset["labels"]) == ("Ready", world.version, 2)


def test_report_has_counts_per_label_and_split_and_the_warnings(source: LocalSource, world: World) -> None:
    report = call(source, "GET", f"{VERSIONS}/{world.version}/report").json()
    assert set(report["perLabel"]) == {"cat", "dog"}
    assert {warning["reason"] for warning in report["warnings"]} >= {"RejectedFiles", "ConflictingLabels"}


def test_pages_of_one_label_come_from_the_index(source: LocalSource, world: World) -> None:
    first = call(source, "GET", f"{VERSIONS}/{world.version}/images?label=cat&limit=5").json()
    rest = call(source, "GET", f"{VERSIONS}/{world.version}/images?label=cat&offset=5&limit=50").json()
    cats = [record.sha256 for record in world.records if "cat" in record.labels]
    assert first["total"] == rest["total"] == len(cats)
    assert [tile["sha256"] for tile in first["tiles"] + rest["tiles"]] == cats


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [("rejected", "not_an_image"), ("conflicting", "labelled cat, dog"), ("near-duplicates", "distance")],
)
def test_filters_show_what_the_import_found(source: LocalSource, world: World, chosen: str, expected: str) -> None:
    page = call(source, "GET", f"{VERSIONS}/{world.version}/images?filter={chosen}").json()
    assert page["total"] >= 1
    assert any(expected.lower() in tile["note"].lower() for tile in page["tiles"]), page["tiles"]


def test_unassigned_filter_shows_held_out_images(source: LocalSource, world: World) -> None:
    page = call(source, "GET", f"{VERSIONS}/{world.version}/images?filter=unassigned").json()
    held_out = {record.sha256 for record in world.records if record.split == "unassigned"}
    assert page["total"] == len(held_out) >= 1
    assert {tile["split"] for tile in page["tiles"]} == {"unassigned"}


@pytest.mark.parametrize("query", ["filter=everything", "limit=100000", "offset=-1"])
def test_bad_page_queries_are_refused(source: LocalSource, world: World, query: str) -> None:
    answer = call(source, "GET", f"{VERSIONS}/{world.version}/images?{query}")
    assert answer.status == 400
    assert answer.json()["error"]["message"]


def test_images_are_served_by_sha256_with_their_own_type(source: LocalSource, world: World) -> None:
    record = world.records[0]
    answer = call(source, "GET", f"{VERSIONS}/{world.version}/images/{record.sha256}")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.body.startswith(b"\x89PNG")
    assert_secured(answer)


@pytest.mark.parametrize(
    "path",
    [
        "{versions}/{version}/images/" + "0" * 64,
        "{versions}/{version}/images/..%2F..%2Freport.json",
        "{versions}/..%2F..%2Fetc/images/{sha}",
        "/api/datasets/local/..%2Fruns/versions/{version}/images/{sha}",
        "{versions}/{version}/images/{sha}%2F..",
    ],
)
def test_path_tricks_find_no_file(source: LocalSource, world: World, path: str) -> None:
    url = path.format(versions=VERSIONS, version=world.version, sha=world.records[0].sha256)
    answer = call(source, "GET", url)
    assert answer.status in (400, 404), answer
    assert not answer.body.startswith(b"\x89PNG")


def test_state_changing_requests_need_this_origin_and_the_token(source: LocalSource) -> None:
    body = {"dataset": {"namespace": "local", "name": DATASET}, "budgetMilliNodeHours": 1}
    without = call(source, "POST", "/api/runs", json=body, csrf=False)
    foreign = call(source, "POST", "/api/runs", json=body, headers={"Origin": "http://evil.example"})
    wrong = call(source, "POST", "/api/runs", json=body, headers={"X-CSRF-Token": "guess"})
    for answer in (without, foreign, wrong):
        assert answer.status == 403
        assert_secured(answer)
    assert source.trainings == {}


def test_an_oversized_upload_is_cut_off_and_nothing_is_kept(source: LocalSource, config: ConsoleConfig) -> None:
    form = FormData({"namespace": "local", "name": "big"})
    form.add_field("file", b"PK\x03\x04" + bytes(128 * 1024), filename="big.zip")
    answer = call(source, "POST", "/api/datasets", data=form, config=config)
    assert answer.status == 413
    assert "limit" in answer.json()["error"]["message"]
    assert list(config.upload_dir.iterdir()) == []
    assert source.imports == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "x", "file": b"not a zip at all"}, "not a zip"),
        ({"name": "Bad/Name", "source": "/tmp/x.zip"}, "not a valid name"),
        ({"name": "x"}, "either a zip"),
        ({"name": "x", "task": "Neither", "source": "/tmp/x.zip"}, "Neither"),
    ],
)
def test_malformed_import_forms_get_one_message_and_write_nothing(
    source: LocalSource, config: ConsoleConfig, fields: dict[str, object], message: str
) -> None:
    form = FormData({"namespace": "local"})
    for key, value in fields.items():
        form.add_field(key, value, **({"filename": "x.zip"} if isinstance(value, bytes) else {}))
    answer = call(source, "POST", "/api/datasets", data=form, config=config)
    assert answer.status == 400
    assert message in answer.json()["error"]["message"]
    assert not config.upload_dir.exists() or list(config.upload_dir.iterdir()) == []
    assert source.imports == {}


def wait_for_import(source: LocalSource, name: str, timeout_s: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state: dict[str, object] = call(source, "GET", f"/api/datasets/local/{name}/import").json()
        if state["phase"] in ("Ready", "Failed"):
            return state
        time.sleep(0.3)
    raise AssertionError(f"the import of {name} did not end in {timeout_s} s")


def test_an_uploaded_zip_is_imported_in_the_background(
    source: LocalSource, config: ConsoleConfig, tmp_path: Path, world: World
) -> None:
    form = FormData({"namespace": "local", "name": "uploaded", "task": "SingleLabel"})
    form.add_field("file", write_zip(tmp_path / "u.zip", labelled(10)).read_bytes(), filename="u.zip")
    answer = call(source, "POST", "/api/datasets", data=form, config=config)
    assert answer.status == 202
    state = wait_for_import(source, "uploaded")
    assert state["phase"] == "Ready"
    assert str(state["version"]).startswith("sha256-")
    assert list(config.upload_dir.iterdir()) == []  # the upload is removed once imported


def test_a_zip_the_importer_refuses_fails_with_its_message_and_writes_nothing(
    source: LocalSource, config: ConsoleConfig, tmp_path: Path, world: World
) -> None:
    form = FormData({"namespace": "local", "name": "onelabel"})
    form.add_field("file", write_zip(tmp_path / "o.zip", labelled(10, ["cat"])).read_bytes(), filename="o.zip")
    assert call(source, "POST", "/api/datasets", data=form, config=config).status == 202
    state = wait_for_import(source, "onelabel")
    assert state["phase"] == "Failed"
    assert "at least 2 labels" in str(state["message"])
    assert world.storage.list_keys(dataset_root("onelabel")) == []


def test_runs_list_and_detail(source: LocalSource) -> None:
    [run] = call(source, "GET", "/api/runs").json()
    assert run["ref"] == {"namespace": "local", "job": RUN.job, "uid": RUN.uid}
    assert run["phase"] == "Succeeded"
    detail = call(source, "GET", RUN_PATH).json()
    assert [trial["trial"] for trial in detail["trials"]] == [0, 1]
    assert detail["chosenTrial"] == 0
    assert call(source, "GET", "/api/runs/local/pets/nothere").status == 404


def test_evaluation_carries_scores_truth_and_image_hashes(source: LocalSource, world: World) -> None:
    view = call(source, "GET", f"{RUN_PATH}/evaluation").json()
    test = [record for record in world.records if record.split == "test"]
    assert view["images"] == [record.sha256 for record in test]
    assert len(view["scores"]) == len(view["truth"]) == len(test)
    assert view["labels"] == ["cat", "dog"]
    assert view["evaluation"]["confusionMatrix"]["labels"] == ["cat", "dog"]
    assert view["explained"] == [test[0].sha256], "each explained image found in the version by its URI"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"dataset": {"namespace": "local", "name": "nothing"}, "budgetMilliNodeHours": 5}, 409),
        ({"dataset": {"namespace": "local", "name": DATASET}, "budgetMilliNodeHours": 0}, 400),
        ({"dataset": {"namespace": "local", "name": DATASET}, "budgetMilliNodeHours": 5, "optimizeFor": "X"}, 400),
        (
            {"dataset": {"namespace": "local", "name": DATASET}, "budgetMilliNodeHours": 5, "baseModel": "runs/x/y/z"},
            409,
        ),
        (
            {"dataset": {"namespace": "local", "name": DATASET}, "budgetMilliNodeHours": 5, "exportFormats": ["tfjs"]},
            400,
        ),
    ],
)
def test_bad_training_requests_start_nothing(source: LocalSource, body: dict[str, object], status: int) -> None:
    answer = call(source, "POST", "/api/runs", json=body)
    assert answer.status == status
    assert answer.json()["error"]["message"]
    assert source.trainings == {}


def test_a_deployment_that_does_not_answer_is_listed_not_ready_and_says_so(source: LocalSource) -> None:
    [deployment] = call(source, "GET", "/api/deployments").json()
    assert deployment["ready"] is False
    assert deployment["predictUrl"].endswith("/v1/models/autovision:predict")
    form = FormData()
    form.add_field("image", image_bytes(1), filename="a.png")
    answer = call(source, "POST", "/api/deployments/local/down/predict", data=form)
    assert answer.status == 409
    assert "did not answer" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "status"),
    [({"image": bytes(8192)}, 413), ({"topK": "0", "image": b"x"}, 400), ({"topK": "3"}, 400)],
)
def test_bad_predict_forms_are_refused(
    source: LocalSource, config: ConsoleConfig, fields: dict[str, object], status: int
) -> None:
    form = FormData()
    for key, value in fields.items():
        form.add_field(key, value, **({"filename": "a.png"} if isinstance(value, bytes) else {}))
    assert call(source, "POST", "/api/deployments/local/down/predict", data=form, config=config).status == status
    assert call(source, "POST", "/api/deployments/local/unknown/predict", data=FormData({"x": "1"})).status in (
        400,
        404,
    )


class TokenGuard:
    """A guard like the cluster's: a bearer token is required, and only ``reader`` may read datasets."""

    async def check(self, request: web.Request, verb: str, resource: str) -> None:
        token = request.headers.get("Authorization", "")
        if token not in ("Bearer reader", "Bearer nobody"):
            raise web.HTTPUnauthorized(text="log in with a Kubernetes token")
        if token != "Bearer reader" or (verb, resource) != ("list", "datasets"):
            raise web.HTTPForbidden(text=f"may not {verb} {resource}")


def test_a_guard_refuses_anonymous_and_unauthorised_callers_before_the_source(source: LocalSource) -> None:
    guard = TokenGuard()
    assert call(source, "GET", "/api/datasets", guard=guard).status == 401
    assert call(source, "GET", "/api/datasets", guard=guard, headers={"Authorization": "Bearer wrong"}).status == 401
    assert call(source, "GET", "/api/datasets", guard=guard, headers={"Authorization": "Bearer nobody"}).status == 403
    assert call(source, "GET", "/api/datasets", guard=guard, headers={"Authorization": "Bearer reader"}).status == 200
    runs = call(source, "GET", "/api/runs", guard=guard, headers={"Authorization": "Bearer reader"})
    assert runs.status == 403
    assert "trainingjobs" in runs.json()["error"]["message"]
