"""A finished run's model rebuilt for the edge converters, and what edge files ship with."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from autovision.contract.files import ModelCard
from autovision.export.edge import EdgeUnavailableError, check_edge_formats, edge_input, run_model, training_images
from autovision.preprocess import PreprocessConfig, preprocess_batch
from autovision.resources import EdgeFormat
from autovision.storage import Storage, read_uris
from autovision.train.families.efficientnet_lite import EfficientNetLite, EfficientNetLiteConfig
from tests.support.export import small_model
from tests.support.runs import import_digits, write_digits_run, write_finished_run


def test_a_run_gives_back_its_final_model(tmp_path: Path, model_card: ModelCard, images: torch.Tensor) -> None:
    run = write_digits_run(tmp_path / "run", model_card)
    with torch.no_grad():
        assert torch.allclose(run_model(str(run))(images[:5]), small_model(0)(images[:5]), atol=1e-6)


def test_an_efficientnet_lite_run_gives_an_exportable_model(tmp_path: Path, model_card: ModelCard) -> None:
    # Its TorchScript archive does not convert back (the traced "same" padding is a data-dependent guard), so
    # the edge formats start from the architecture and weights the run keeps.
    architecture = EfficientNetLiteConfig()
    trained = EfficientNetLite(dataclasses.replace(architecture, pretrained=False), num_classes=3)
    card = model_card.model_copy(update={"labels": ["a", "b", "c"]})
    write_finished_run(Storage(str(tmp_path)), "run", card, trained.state_dict(), architecture=architecture, size=32)
    image = torch.rand(1, 3, 32, 32)
    program = torch.export.export(run_model(str(tmp_path / "run")), (image,))
    with torch.no_grad():
        assert torch.allclose(program.module()(image), trained.eval()(image), atol=1e-5)


def test_int8_calibration_reads_the_runs_training_images_only(tmp_path: Path, model_card: ModelCard) -> None:
    storage = Storage(f"file://{tmp_path / 'storage'}")
    imported, card = import_digits(storage, tmp_path, model_card.model_copy(update={"input_size": 16}))
    by_split = {split: [r.uri for r in imported.records if r.split == split] for split in ("train", "test")}
    assert all(by_split.values())  # test images exist, and are left out
    train = preprocess_batch(read_uris(by_split["train"]), PreprocessConfig(size=16, mean=card.mean, std=card.std))
    assert torch.equal(training_images(card, storage), torch.from_numpy(train))


def test_edge_files_ship_the_cards_labels_and_normalisation(model_card: ModelCard) -> None:
    spec = edge_input(model_card)
    assert spec.labels == ("a", "b")
    assert (spec.size, spec.mean, spec.std) == (32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_a_format_without_its_runtime_is_named_with_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(EdgeUnavailableError, match=r"cannot export executorch: .*absent/bin/python.*setup-executorch"):
        check_edge_formats([EdgeFormat.EXECUTORCH], tmp_path / "absent")


def test_formats_whose_converters_are_installed_pass_the_check(tmp_path: Path) -> None:
    pytest.importorskip("litert_torch", reason="the edge extra is not installed (docs/edge.md)")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()
    check_edge_formats(list(EdgeFormat), tmp_path)
    check_edge_formats([], tmp_path / "absent")
