"""Shared fixtures (a real S3 endpoint, SeaweedFS; the bundled digits zip) and the markers set from them.

A test that starts SeaweedFS through ``embedded_s3``/``s3_storage`` (or the ``s3`` run of
``storage``) is marked ``seaweedfs`` here, and one against KMock ``kopf``: the fixtures say
it more reliably than a hand-written marker. ``PENDING_MARKERS`` marks the tests of files
that have not moved into the tree yet; they carry their markers themselves once they move.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from autovision.contract.files import ModelCard
from autovision.data.digits import write_digits_zip
from autovision.embedded_s3 import EmbeddedS3
from autovision.storage import Storage

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
TESTS = Path(__file__).resolve().parent
SEAWEEDFS_FIXTURES = {"embedded_s3", "s3_storage"}
_TRAINING, _TRITONSERVER = pytest.mark.training, pytest.mark.tritonserver
PENDING_MARKERS: dict[tuple[str, str], tuple[pytest.MarkDecorator, ...]] = {
    **{
        ("test_search_trainer.py", name): (_TRAINING,)
        for name in (
            "test_training_is_deterministic_for_a_seed_and_learns",
            "test_an_interrupted_trial_resumes_to_the_same_weights",
            "test_max_seconds_stops_after_the_epoch_that_spends_it",
            "test_without_validation_the_last_epoch_is_kept",
            "test_lite_fine_tunes_with_frozen_stages",
            "test_every_acceleration_trains_on_the_cpu_as_a_gpu_run_would",
        )
    },
    **{
        ("test_search_runner.py", name): (_TRAINING,)
        for name in (
            "test_budget_is_respected",
            "test_decoding_the_images_is_charged_to_the_trial_that_needed_them",
            "test_early_stopping_ends_a_search_that_stopped_improving",
            "test_kill_9_mid_trial_then_rerun_loses_no_finished_trial",
            "test_a_rerun_spends_only_what_is_left_of_the_budget",
            "test_two_worker_processes_share_one_study",
            "test_a_search_is_deterministic_for_a_seed",
            "test_multi_label_trains_and_evaluates",
            "test_records_of_a_finished_search",
        )
    },
    **{
        ("test_search_nodes.py", name): (_TRAINING,)
        for name in (
            "test_two_nodes_share_one_study_through_node_0",
            "test_node_0_starting_again_resumes_what_a_lost_member_left_running",
        )
    },
    **{
        ("test_pipeline.py", name): (_TRAINING,)
        for name in (
            "test_every_file_is_written_and_the_card_last",
            "test_model_card",
            "test_exports_passed_parity_and_batch_dynamically",
            "test_saved_predictions_are_the_exported_models_scores",
            "test_evaluation_json_recomputed_with_sklearn",
            "test_int8_accuracy_recomputed",
            "test_confusion_csv_and_report",
            "test_evaluate_cli_recomputes_at_another_threshold",
            "test_predict_batch_writes_what_the_model_predicts",
            "test_predict_batch_retry_keeps_finished_shards",
        )
    },
    ("test_pipeline.py", "test_local_layout_served_by_tritonserver_equals_eager_pytorch"): (_TRAINING, _TRITONSERVER),
    **{
        ("test_export.py", name): (_TRAINING,)
        for name in (
            "test_export_writes_three_formats_that_pass_parity",
            "test_onnx_batch_dimension_is_dynamic",
            "test_int8_model_is_quantised_and_close",
            "test_parity_fails_loudly_on_a_different_model",
            "test_export_model_raises_when_the_export_is_not_the_trained_model",
            "test_torchscript_runs_any_batch",
            "test_quantisation_needs_calibration_images",
        )
    },
    ("test_search_models.py", "test_lite_exports_to_onnx_at_any_resolution"): (_TRAINING,),
    ("test_user_backbones.py", "test_a_search_fine_tunes_the_users_resnet_and_exports_it"): (_TRAINING,),
    ("test_trainer_entrypoint.py", "test_import_then_train_within_budget"): (_TRAINING,),
    ("test_trainer_entrypoint.py", "test_two_pods_of_an_indexed_job_run_one_search_and_pod_0_exports"): (_TRAINING,),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that start a server from the fixtures they use, and the pending files' tests from the table."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if fixtures & SEAWEEDFS_FIXTURES or ("storage" in fixtures and params.get("storage") == "s3"):
            item.add_marker(pytest.mark.seaweedfs)
        if item.get_closest_marker("kmock") is not None:
            item.add_marker(pytest.mark.kopf)
        name = getattr(item, "originalname", item.name)
        for marker in PENDING_MARKERS.get((item.path.relative_to(TESTS).as_posix(), name), ()):
            item.add_marker(marker)


@pytest.fixture(scope="session", autouse=True)
def children_answer_ctrl_c() -> None:
    """Subprocesses that tests interrupt with SIGINT must react to it as from a terminal.

    A shell without job control (a CI script, ``cmd &``) starts background
    commands with SIGINT ignored, and an ignored signal stays ignored in every
    child: Python would then never raise KeyboardInterrupt there. A handler set
    here is reset to the default in children.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def embedded_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """One real SeaweedFS S3 endpoint on 127.0.0.1 for the whole test session."""
    with EmbeddedS3(tmp_path_factory.mktemp("seaweedfs")) as s3:
        yield s3


@pytest.fixture
def s3_storage(embedded_s3: EmbeddedS3, request: pytest.FixtureRequest) -> Storage:
    """Storage under a fresh prefix of the session's S3 bucket."""
    return Storage.from_settings(embedded_s3.settings(prefix=request.node.name.replace("[", "-").strip("]")))


@pytest.fixture
def file_storage(tmp_path: Path) -> Storage:
    return Storage(f"file://{tmp_path / 'storage'}")


@pytest.fixture(params=["file", "s3"])
def storage(request: pytest.FixtureRequest) -> Storage:
    """Each storage test runs on both backends."""
    return request.getfixturevalue(f"{request.param}_storage")  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def digits_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits_zip(tmp_path_factory.mktemp("data") / "digits.zip")


@pytest.fixture(scope="session")
def model_card() -> ModelCard:
    """A valid model card, for tests of what reads one (copy it with ``model_copy(update=...)``)."""
    return ModelCard.model_validate(
        {
            "task": "SingleLabel",
            "architecture": {"family": "residual_cnn"},
            "training": {"epochs": 3},
            "inputSize": 32,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "preprocessing": "decode, resize",
            "labels": ["a", "b"],
            "dataset": {"name": "d", "version": "sha256-ab"},
            "metrics": {
                "testAccuracy": 0.5,
                "testAveragePrecision": 0.6,
                "testLogLoss": 0.7,
                "int8TestAccuracy": 0.5,
                "scoreThreshold": 0.5,
                "validationMetric": "validationAccuracy",
                "validationValue": 0.6,
                "validationAccuracy": 0.6,
                "bestEpoch": 2,
                "epochsTrained": 3,
                "latencyMs": 1.5,
                "parameters": 1000,
            },
            "exports": {"onnx": {"file": "model.onnx"}},
            "parity": {},
            "search": {"chosenTrial": 0},
            "finalFit": {"trial": 0, "retrained": True, "seconds": 1.0},
            "milliNodeHoursUsed": 3,
            "budgetMilliNodeHours": 10,
            "trainingSeconds": 9.5,
            "artifacts": {"model": "file:///m"},
        }
    )
