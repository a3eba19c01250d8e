"""A finished run's TorchScript model back as an exportable module, and what edge files ship with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autovision.contract.files import ModelCard
from autovision.contract.keys import TORCHSCRIPT_FILE
from autovision.export.edge import EdgeUnavailableError, check_edge_formats, edge_input, module_from_torchscript
from autovision.export.torchscript import export_torchscript
from autovision.resources import EdgeFormat
from tests.support.export import small_model


def test_the_torchscript_model_converts_back_to_the_same_function(tmp_path: Path, images: torch.Tensor) -> None:
    path = export_torchscript(small_model(0), images[:2], tmp_path / TORCHSCRIPT_FILE)
    module = module_from_torchscript(path.read_bytes(), 16)
    with torch.no_grad():
        for image in images[:5]:
            assert torch.allclose(module(image[None]), small_model(0)(image[None]), atol=1e-5)


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
