"""User backbones: torchvision-layout ResNets with the user's own weights, read through storage.

torchvision itself cannot be imported here, so the state_dicts torchvision's
``resnetNN().state_dict()`` returns are written out below from its source
(torchvision 0.28.0, ``torchvision/models/resnet.py``), with their key counts
and a few key shapes pinned as read there.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from autovision.cli import app as cli
from autovision.contract import exit_codes
from autovision.contract.keys import RunLocation
from autovision.data.importer import ImportResult, import_dataset
from autovision.pipeline import train_evaluate_export
from autovision.progress import LogReporter
from autovision.resources import ResNetArchitecture
from autovision.search.job import SearchSettings
from autovision.search.space import SearchSpace
from autovision.storage import Storage
from autovision.train.families.user_backbone import (
    BackboneWeightsError,
    UserBackboneConfig,
    backbone_weights,
    build_user_backbone,
)
from autovision.train.models import build_model
from autovision.train.resnet import ResNet
from autovision.train.trainer import TrainConfig, TrialCheckpoint, restore_model
from autovision_trainer.__main__ import run as run_trainer
from tests.support.search import digits_subset_zip

runner = CliRunner()

LAYOUTS: dict[ResNetArchitecture, tuple[bool, tuple[int, int, int, int]]] = {
    "resnet18": (False, (2, 2, 2, 2)),
    "resnet34": (False, (3, 4, 6, 3)),
    "resnet50": (True, (3, 4, 6, 3)),
    "resnet101": (True, (3, 4, 23, 3)),
}


def _batch_norm(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")
    }
    return shapes | {f"{prefix}.num_batches_tracked": ()}


def torchvision_shapes(architecture: ResNetArchitecture) -> dict[str, tuple[int, ...]]:
    """torchvision's ``resnetNN().state_dict()`` names and shapes, in its order (ResNet.__init__, _make_layer)."""
    bottleneck, depths = LAYOUTS[architecture]
    expansion = 4 if bottleneck else 1
    shapes = {"conv1.weight": (64, 3, 7, 7), **_batch_norm("bn1", 64)}
    inplanes = 64
    for layer, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True), start=1):
        for index in range(depth):
            prefix = f"layer{layer}.{index}"
            convs = (
                [(planes, inplanes, 1, 1), (planes, planes, 3, 3), (planes * 4, planes, 1, 1)]
                if bottleneck
                else [(planes, inplanes, 3, 3), (planes, planes, 3, 3)]
            )
            for number, shape in enumerate(convs, start=1):
                shapes[f"{prefix}.conv{number}.weight"] = shape
                shapes |= _batch_norm(f"{prefix}.bn{number}", shape[0])
            if index == 0 and (layer > 1 or inplanes != planes * expansion):
                shapes[f"{prefix}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                shapes |= _batch_norm(f"{prefix}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    return shapes | {"fc.weight": (1000, 512 * expansion), "fc.bias": (1000,)}


def known_weights(architecture: ResNetArchitecture, seed: int = 1) -> dict[str, torch.Tensor]:
    """A state_dict of torchvision's layout with recognisable values: He-scaled convolutions, non-trivial BN."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in torchvision_shapes(architecture).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var") or (key.endswith(".weight") and len(shape) == 1):
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif len(shape) == 4:
            state[key] = torch.randn(shape, generator=generator) * (2 / (shape[1] * shape[2] * shape[3])) ** 0.5
        else:
            state[key] = 0.1 * torch.randn(shape, generator=generator)
    return state


def saved(state: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def write_weights(path: Path, architecture: ResNetArchitecture = "resnet18") -> str:
    path.write_bytes(saved(known_weights(architecture)))
    return f"file://{path}"


# --- layout --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("architecture", "count", "pinned"),
    [
        (
            "resnet18",
            122,
            {
                "layer1.0.conv1.weight": (64, 64, 3, 3),
                "layer2.0.downsample.0.weight": (128, 64, 1, 1),
                "layer4.1.bn2.running_var": (512,),
                "fc.weight": (1000, 512),
            },
        ),
        ("resnet34", 218, {"layer3.5.conv2.weight": (256, 256, 3, 3), "fc.weight": (1000, 512)}),
        (
            "resnet50",
            320,
            {
                "layer1.0.conv1.weight": (64, 64, 1, 1),
                "layer1.0.downsample.0.weight": (256, 64, 1, 1),
                "layer2.0.conv2.weight": (128, 128, 3, 3),
                "layer4.2.conv3.weight": (2048, 512, 1, 1),
                "fc.weight": (1000, 2048),
            },
        ),
        ("resnet101", 626, {"layer3.22.conv3.weight": (1024, 256, 1, 1), "fc.weight": (1000, 2048)}),
    ],
)
def test_the_layout_is_torchvisions(
    architecture: ResNetArchitecture, count: int, pinned: dict[str, tuple[int, ...]]
) -> None:
    expected = torchvision_shapes(architecture)
    assert len(expected) == count
    assert {key: expected[key] for key in pinned} == pinned
    with torch.device("meta"):
        model = ResNet(architecture)
    assert [(key, tuple(tensor.shape)) for key, tensor in model.state_dict().items()] == list(expected.items())


@pytest.mark.parametrize("architecture", ["resnet18", "resnet50"])
def test_a_torchvision_state_dict_loads_strictly_and_bottlenecks_stride_on_the_3x3(
    architecture: ResNetArchitecture,
) -> None:
    model = ResNet(architecture)
    model.load_state_dict(known_weights(architecture), strict=True)
    first = model.layer2[0]
    strided = first.conv2 if architecture == "resnet50" else first.conv1
    assert strided.stride == (2, 2)
    assert first.conv1.stride == ((1, 1) if architecture == "resnet50" else (2, 2))
    assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


# --- loading the user's weights ------------------------------------------------------------------


def test_the_weights_are_loaded_under_a_new_head_and_frozen_stages_keep_them(tmp_path: Path) -> None:
    uri = write_weights(tmp_path / "r18.pth")
    model = build_user_backbone(UserBackboneConfig("mine", "resnet18", uri, frozen_stages=2, head="mlp"), 3)
    known = known_weights("resnet18")
    state = model.state_dict()
    assert all(torch.equal(state[key], known[key]) for key in known if not key.startswith("fc."))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    frozen, trainable = [model.conv1, model.bn1, model.layer1], [model.layer2, model.layer4, model.fc]
    assert not any(parameter.requires_grad for module in frozen for parameter in module.parameters())
    assert all(parameter.requires_grad for module in trainable for parameter in module.parameters())
    model.train()
    assert not any(module.training for stage in frozen for module in stage.modules())
    assert all(module.training for stage in trainable for module in stage.modules())


def test_a_file_without_classifier_or_batch_counters_is_accepted(tmp_path: Path) -> None:
    """The head is replaced and batch counters are bookkeeping: older or trimmed files still load."""
    trimmed = {key: tensor for key, tensor in known_weights("resnet18").items() if "fc." not in key}
    trimmed = {key: tensor for key, tensor in trimmed.items() if not key.endswith("num_batches_tracked")}
    (tmp_path / "trimmed.pth").write_bytes(saved(trimmed))
    model = build_user_backbone(UserBackboneConfig("mine", "resnet18", f"file://{tmp_path / 'trimmed.pth'}"), 4)
    assert torch.equal(model.conv1.weight, trimmed["conv1.weight"])


def test_a_file_of_another_architecture_is_one_clear_error(tmp_path: Path) -> None:
    uri = write_weights(tmp_path / "r18.pth")
    with pytest.raises(BackboneWeightsError) as raised:
        backbone_weights(UserBackboneConfig("mine", "resnet50", uri))
    message = str(raised.value)
    assert message.startswith(f"backbone 'mine': {uri} is not a torchvision resnet50 state_dict: ")
    assert "missing layer1.0.conv3.weight, layer1.0.bn3.weight, layer1.0.bn3.bias and " in message
    assert "wrong shape layer1.0.conv1.weight (64, 64, 3, 3) instead of (64, 64, 1, 1)" in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "does not exist"),
        (b"not a checkpoint", "is not a state_dict saved with torch.save"),
        (saved([torch.zeros(2)]), "is not a state_dict saved with torch.save"),
        (saved({"conv1.weight": torch.zeros(64, 3, 7, 7), "extra.weight": torch.zeros(1)}), "unexpected extra.weight"),
    ],
)
def test_unusable_files_name_the_uri(tmp_path: Path, content: bytes | None, problem: str) -> None:
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BackboneWeightsError, match=f"backbone 'mine': .*{path}.*{problem}"):
        build_model(UserBackboneConfig("mine", "resnet18", f"file://{path}"), 10)


# --- a search that picks the user's backbone -----------------------------------------------------


def three_digits(folder: Path) -> str:
    """Ten images each of three digits: the smallest dataset an import accepts, plus some."""
    return str(digits_subset_zip(folder / "digits.zip", per_class=10, classes=3))


@pytest.fixture
def digits(s3_storage: Storage, tmp_path: Path) -> ImportResult:
    return import_dataset(three_digits(tmp_path), "digits", s3_storage)


def backbone_space(backbone: UserBackboneConfig) -> SearchSpace:
    """Only the user's ResNet-18, at 32 px with stem and layer1 frozen, for an epoch or two."""
    return SearchSpace(
        families=(backbone.name,),
        cnn_resolutions=(),
        lite_resolutions={},
        backbones=(backbone,),
        backbone_resolutions=(32,),
        backbone_frozen_stages=(2,),
        epochs=(1, 2),
        batch_size=16,
    )


@pytest.mark.training
def test_a_search_fine_tunes_the_users_resnet_and_exports_it(s3_storage: Storage, digits: ImportResult) -> None:
    """From S3: trained, evaluated, exported with parity; the frozen stages still hold the file's. (Weights from
    file:// load in the tests above: the run reads either through the same storage settings.)"""
    known = known_weights("resnet18")
    s3_storage.write_bytes("backbones/resnet18.pth", saved(known))
    backbone = UserBackboneConfig("mine", "resnet18", s3_storage.uri("backbones/resnet18.pth"))
    run = RunLocation("ns", "user-backbone", "u1")
    settings = SearchSettings(space=backbone_space(backbone), max_trials=2, early_stopping=False)

    card = train_evaluate_export(s3_storage, "digits", digits.version, run, LogReporter(), search=settings)

    described = {key: card.architecture[key] for key in ("family", "architecture", "weights_uri", "frozen_stages")}
    assert described == {
        "family": "mine",
        "architecture": "resnet18",
        "weights_uri": backbone.weights_uri,
        "frozen_stages": 2,
    }
    assert [trial["architecture"] for trial in card.search["trials"]] == ["mine", "mine"]
    assert (card.input_size, card.mean, card.std) == (32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert card.parity["onnx"]["top1Identical"]
    assert card.parity["onnx"]["maxAbsDiff"] <= card.parity["onnx"]["tolerance"]
    assert 0 <= card.metrics.test_accuracy <= 1
    torchscript = io.BytesIO(s3_storage.read_bytes(f"{run.prefix}/model/model.pt"))
    # The export serves (logits, embedding), so its modules are named anew: find each tensor by its value.
    exported = list(torch.jit.load(torchscript).state_dict().values())  # type: ignore[no-untyped-call]

    def kept(key: str) -> bool:
        return any(t.shape == known[key].shape and torch.equal(t, known[key]) for t in exported)

    for key in ("conv1.weight", "bn1.running_mean", "layer1.1.conv2.weight", "layer1.1.bn2.running_var"):
        assert kept(key), f"{key}: a frozen stage's weights are not in the export unchanged"
    assert not kept("layer4.1.conv2.weight"), "not fine-tuned"

    warm_start = dataclasses.replace(backbone, frozen_stages=2)  # trial 0: the warm start's linear head
    checkpoint = TrialCheckpoint(s3_storage, f"{run.prefix}/trials/0/checkpoint.pt")
    restored = restore_model(TrainConfig(architecture=warm_start), len(card.labels), checkpoint)
    torch.testing.assert_close(restored.state_dict()["conv1.weight"], known["conv1.weight"])


def test_a_bad_backbone_fails_the_run_before_the_search_starts(file_storage: Storage, tmp_path: Path) -> None:
    dataset = import_dataset(three_digits(tmp_path), "digits", file_storage)
    declared = UserBackboneConfig("mine", "resnet50", write_weights(tmp_path / "r18.pth"))
    run = RunLocation("ns", "bad-backbone", "u1")
    settings = SearchSettings(space=backbone_space(declared))
    with pytest.raises(BackboneWeightsError, match="is not a torchvision resnet50 state_dict"):
        train_evaluate_export(file_storage, "digits", dataset.version, run, LogReporter(), search=settings)
    assert file_storage.list_keys(run.prefix) == [], "nothing of the run may exist: no trial ran"


# --- command lines -------------------------------------------------------------------------------


@pytest.fixture
def imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Storage, ImportResult]:
    """The digits subset imported into the storage the command lines use (AUTOVISION_STORAGE_ROOT)."""
    storage = Storage(f"file://{tmp_path / 'storage'}")
    monkeypatch.setenv("AUTOVISION_STORAGE_ROOT", storage.uri(""))
    return storage, import_dataset(three_digits(tmp_path), "digits", storage)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("mine", "'mine' is not NAME=ARCHITECTURE@URI"),
        ("mine=resnet18", "is not NAME=ARCHITECTURE@URI"),
        ("mine=resnet152@s3://b/w.pth", "architecture: Input should be 'resnet18', 'resnet34', 'resnet50' or"),
        ("My_Net=resnet18@s3://b/w.pth", "name: String should match pattern"),
        ("mine=resnet18@weights.pth", "weightsUri: String should match pattern"),
    ],
)
def test_bad_backbone_options_are_one_clear_error(option: str, message: str) -> None:
    local = runner.invoke(cli, ["train", "--dataset", "d", "--budget-milli-node-hours", "10", "--backbone", option])
    assert local.exit_code == 1
    assert local.stderr.startswith("error: ")
    assert message in " ".join(local.stderr.split()), local.stderr
    args = ["train", "--namespace", "ns", "--job", "tj", "--uid", "u", "--dataset", "d", "--dataset-version", "v"]
    assert run_trainer([*args, "--budget-milli-node-hours", "10", "--backbone", option]) == exit_codes.BAD_INPUT


def test_the_command_lines_check_the_weights_before_searching(
    imported: tuple[Storage, ImportResult], tmp_path: Path
) -> None:
    storage, dataset = imported
    uri = write_weights(tmp_path / "r18.pth")
    good, declared_wrong = f"ok=resnet18@{uri}", f"mine=resnet50@{uri}"
    local = ["train", "--dataset", "digits", "--budget-milli-node-hours", "10", "--backbone", good]
    result = runner.invoke(cli, [*local, "--backbone", declared_wrong])
    assert result.exit_code == 1
    assert f"error: backbone 'mine': {uri} is not a torchvision resnet50 state_dict" in " ".join(result.stderr.split())
    args = ["train", "--namespace", "ns", "--job", "tj", "--uid", "u", "--dataset", "digits"]
    args += ["--dataset-version", dataset.version, "--budget-milli-node-hours", "10"]
    assert run_trainer([*args, "--backbone", declared_wrong]) == exit_codes.BAD_INPUT
    assert storage.list_keys("runs") == [], "no search started"
