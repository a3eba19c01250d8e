"""The storage key layout, and that nobody outside the contract spells a key by hand."""

from __future__ import annotations

from autovision.contract import keys
from tests.support.source_scan import source_strings

# Fragments of the storage layout: finding one in a string outside the contract means a key spelled by hand.
KEY_FRAGMENTS = (
    "progress.json",
    "model.json",
    "report.json",
    "latest.json",
    "manifest.jsonl",
    "checkpoint.pt",
    "plan.json",
    "journal.log",
    "runs/",
    "datasets/",
    "triton-cluster",
    "model.onnx",
    "model.int8.onnx",
    "evaluation.json",
)


def test_a_run_and_a_dataset_have_one_layout() -> None:
    run = keys.RunLocation("ns", "flowers-run", "u1")
    assert run.prefix == keys.run_prefix("ns", "flowers-run", "u1") == "runs/ns/flowers-run/u1"
    assert keys.progress_key(run.prefix) == "runs/ns/flowers-run/u1/progress.json"
    assert keys.model_card_key(run.prefix) == "runs/ns/flowers-run/u1/model/model.json"
    assert keys.trial_checkpoint_key(run.prefix, 3) == "runs/ns/flowers-run/u1/trials/3/checkpoint.pt"
    assert keys.triton_key(run.prefix, keys.TRITON_CLUSTER) == "runs/ns/flowers-run/u1/triton-cluster"
    stored = keys.dataset_storage_name("ml", "flowers")
    assert keys.manifest_key(stored, "sha256-ab") == "datasets/ml/flowers/sha256-ab/manifest.jsonl"
    assert keys.latest_key(stored) == "datasets/ml/flowers/latest.json"
    assert keys.import_progress_key(stored) == "datasets/ml/flowers/import-progress.json"
    assert keys.model_file_key("", keys.ONNX_FILE) == "model.onnx", "a model directory at the storage root"


def triton_backend(place: str) -> bool:
    """The Python backend's modules run inside tritonserver, copied there without the autovision package."""
    return place.startswith("src/autovision/serving/backend_")


def test_no_storage_key_is_spelled_outside_the_contract() -> None:
    """A literal holding a key's part and no space is a key (messages and descriptions may name files)."""
    spelled = [
        f"{place}: {text!r}"
        for place, text in source_strings()
        if " " not in text and any(fragment in text for fragment in KEY_FRAGMENTS) and not triton_backend(place)
    ]
    assert spelled == [], "use autovision.contract.keys"
