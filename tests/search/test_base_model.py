"""A base model: found as a finished run in any of the forms commands take, checked against a dataset, kept."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from autovision.contract.files import FinalFit, ModelCard
from autovision.contract.keys import base_weights_key, model_card_key, trial_checkpoint_key
from autovision.search.base_model import BaseModelError, check_fits, find_base_model, keep_base_weights
from autovision.storage import Storage
from autovision.train.families.residual_cnn import ResidualCNNConfig
from tests.support.runs import tiny_cnn_weights, write_finished_run

RUN = "runs/ns/base/u1"


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage(f"file://{tmp_path / 'storage'}")


def test_a_finished_run_is_found_by_its_uri_or_its_model_directory(storage: Storage, model_card: ModelCard) -> None:
    card = write_finished_run(storage, RUN, model_card, tiny_cnn_weights(2))
    for target in (storage.uri(RUN), storage.uri(f"{RUN}/model"), str(Path(storage.path(RUN)))):
        base = find_base_model(target)
        assert base.uri == storage.uri(RUN)
        assert base.card == card
        assert base.training().architecture == ResidualCNNConfig(width=4, stages=1)
        assert base.preprocess().size == 8
        assert base.record().run == storage.uri(RUN)


@pytest.mark.parametrize("kept", ["nothing", "a checkpoint without a model card"])
def test_a_run_that_does_not_exist_or_is_not_finished_is_refused(storage: Storage, kept: str) -> None:
    if kept != "nothing":
        storage.write_bytes(trial_checkpoint_key(RUN, 0), b"weights")
    with pytest.raises(BaseModelError, match="not a finished run"):
        find_base_model(storage.uri(RUN))


def test_a_run_without_the_checkpoint_of_its_final_model_is_refused(storage: Storage, model_card: ModelCard) -> None:
    write_finished_run(storage, RUN, model_card, tiny_cnn_weights(2))
    storage.delete_prefix(f"{RUN}/trials")
    with pytest.raises(BaseModelError, match="keeps no checkpoint of its final model"):
        find_base_model(storage.uri(RUN))


@pytest.mark.parametrize(
    ("final_fit", "checkpoint"),
    [
        (FinalFit(trial=4, retrained=True, seconds=1.0), f"{RUN}/final/checkpoint.pt"),
        (FinalFit(trial=4, retrained=False, seconds=1.0), f"{RUN}/trials/4/checkpoint.pt"),
        (
            FinalFit(trial=4, retrained=False, seconds=1.0, checkpoint="trials/2/checkpoint.pt"),
            f"{RUN}/trials/2/checkpoint.pt",
        ),
    ],
)
def test_the_final_checkpoint_is_the_one_the_card_names_or_where_older_runs_kept_it(
    storage: Storage, model_card: ModelCard, final_fit: FinalFit, checkpoint: str
) -> None:
    card = write_finished_run(storage, RUN, model_card, tiny_cnn_weights(2))
    storage.write_bytes(checkpoint, b"weights")
    storage.write_json(model_card_key(RUN), card.model_copy(update={"final_fit": final_fit}).to_json())
    base = find_base_model(storage.uri(RUN))
    assert base.storage.uri(base.checkpoint_key) == storage.uri(checkpoint)


def test_a_base_with_other_labels_or_task_does_not_fit(storage: Storage, model_card: ModelCard) -> None:
    base = (
        find_base_model(storage.uri(RUN)) if write_finished_run(storage, RUN, model_card, tiny_cnn_weights(2)) else None
    )
    assert base is not None
    check_fits(base, ["a", "b"], multi_label=False)
    with pytest.raises(BaseModelError, match="does not fit the dataset: the labels differ"):
        check_fits(base, ["a", "b", "c"], multi_label=False)
    with pytest.raises(BaseModelError, match="does not fit the dataset: the base model is SingleLabel"):
        check_fits(base, ["a", "b"], multi_label=True)


def test_the_base_weights_are_kept_in_the_new_run_once(storage: Storage, model_card: ModelCard) -> None:
    weights = tiny_cnn_weights(2)
    write_finished_run(storage, RUN, model_card, weights)
    base = find_base_model(storage.uri(RUN))
    uri = keep_base_weights(base, storage, "runs/ns/next/u2")
    assert uri == storage.uri(base_weights_key("runs/ns/next/u2"))
    kept = torch.load(io.BytesIO(storage.read_bytes(base_weights_key("runs/ns/next/u2"))), weights_only=True)
    assert kept.keys() == weights.keys()
    assert all(torch.equal(kept[name], weights[name]) for name in weights)
    storage.delete_prefix(RUN)  # kept: a rerun of the new run no longer needs the base
    assert keep_base_weights(base, storage, "runs/ns/next/u2") == uri
