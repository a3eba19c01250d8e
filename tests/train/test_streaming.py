"""Streaming training images from the shards: the cache's inputs, a seeded order, exact resumes, failures named."""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autovision.contract.keys import shard_key
from autovision.data.importer import import_dataset
from autovision.data.manifest import SplitName
from autovision.data.record_table import RecordTable
from autovision.data.shards import ShardError
from autovision.preprocess import PreprocessConfig, preprocess_bytes
from autovision.settings import Settings
from autovision.storage import Storage, read_uris, split_member_uri
from autovision.train import streaming
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.images import decode_pixels, load_images, normalise
from autovision.train.streaming import Crop, StreamedImages, StreamError, cropped_pixels
from autovision.train.trainer import TrainConfig, TrialCheckpoint, epoch_order, train_trial
from tests.support.datasets import write_zip
from tests.support.search import digits_subset_zip

CPU = torch.device("cpu")
PREPROCESS = PreprocessConfig(size=8)
# Augmentation (crops on the stream), flips, both mixes and dropout: every draw a resume must repeat.
BUSY = TrainConfig(
    epochs=2,
    batch_size=16,
    augment=0.5,
    flip=True,
    mixup=0.2,
    cutmix=1.0,
    architecture=ResidualCNNConfig(width=4, stages=2, dropout=0.3),
)


@dataclasses.dataclass(frozen=True)
class Version:
    storage: Storage
    name: str
    version: str
    records: RecordTable

    def split(self, split: SplitName) -> RecordTable:
        return self.records.where_split(split)

    def stream(self, split: SplitName, size: int = PREPROCESS.size, workers: int = 2) -> StreamedImages:
        records = self.split(split)
        return StreamedImages(records, tuple(self.records.label_set()), size, self.storage.settings, workers, CPU)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Version:
    """200 digits (8x8 PNG) in shards of a few KB, so a version has several."""
    folder = tmp_path_factory.mktemp("streaming")
    storage = Storage(f"file://{folder / 'storage'}")
    source = digits_subset_zip(folder / "digits.zip", per_class=20)
    result = import_dataset(str(source), "digits", storage, shard_bytes=16384)
    return Version(storage, "digits", result.version, result.records)


def photo(seed: int, size: tuple[int, int]) -> bytes:
    """A JPEG with smooth content and some noise, larger than the model's input."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([x * 255 / size[0], y * 255 / size[1], (x + y) * 127 / sum(size)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Version:
    folder = tmp_path_factory.mktemp("photos")
    storage = Storage(f"file://{folder / 'storage'}")
    entries = {f"{label}/{i}.jpg": photo(10 * n + i, (160, 120)) for n, label in enumerate("ab") for i in range(10)}
    result = import_dataset(str(write_zip(folder / "photos.zip", entries)), "photos", storage)
    return Version(storage, "photos", result.version, result.records)


def test_an_epoch_order_is_the_seed_s_and_each_epoch_differs() -> None:
    first = epoch_order(seed=3, epoch=0, count=100)
    assert torch.equal(first, epoch_order(seed=3, epoch=0, count=100))
    assert sorted(first.tolist()) == list(range(100))
    assert not torch.equal(first, epoch_order(seed=3, epoch=1, count=100))
    assert not torch.equal(first, epoch_order(seed=4, epoch=0, count=100))


def test_without_augmentation_the_stream_gives_the_cache_s_and_serving_s_inputs(photos: Version) -> None:
    records = photos.records
    size = 24  # the photos are 160x120: their JPEG decodes at a reduced scale on both paths
    cache = load_images(records, records.label_set(), size, photos.storage, workers=1)
    stream = dataclasses.replace(photos.stream("train", size), records=records)
    order = epoch_order(seed=0, epoch=0, count=len(records))
    selections = [order[:5], order[5:11], order[11:]]
    delivered = list(stream.training_batches(selections, magnitude=0.0, seed=0))

    for selection, (pixels, targets) in zip(selections, delivered, strict=True):
        assert pixels.dtype == torch.uint8
        assert torch.equal(pixels, cache.pixels[selection])
        assert torch.equal(targets, cache.targets[selection])
    preprocess = PreprocessConfig(size=size)
    served = np.stack([preprocess_bytes(data, preprocess) for data in read_uris([r.uri for r in records])])
    streamed = torch.cat([normalise(pixels, preprocess) for pixels, _ in delivered])
    np.testing.assert_array_equal(streamed.numpy(), served[order.numpy()])


def test_decoding_processes_stream_from_s3(s3_storage: Storage, tmp_path: Path) -> None:
    source = digits_subset_zip(tmp_path / "digits.zip", per_class=10)
    result = import_dataset(str(source), "digits", s3_storage)
    version = Version(s3_storage, "digits", result.version, result.records)
    records = version.split("train")
    cache = load_images(records, version.records.label_set(), 8, s3_storage, workers=1)
    order = epoch_order(seed=0, epoch=0, count=len(records))
    selections = [order[start : start + 16] for start in range(0, len(order), 16)]
    delivered = version.stream("train").training_batches(selections, magnitude=0.0, seed=0)
    for selection, (pixels, _) in zip(selections, delivered, strict=True):
        assert torch.equal(pixels, cache.pixels[selection])


def test_a_crop_is_the_seed_s_stays_inside_the_image_and_uncropped_is_the_cache_s(photos: Version) -> None:
    crops = [Crop.draw(1.0, seed=7, image=i) for i in range(200)]
    assert crops == [Crop.draw(1.0, seed=7, image=i) for i in range(200)]
    assert crops != [Crop.draw(1.0, seed=8, image=i) for i in range(200)]
    assert {crop.side == 1.0 for crop in crops} == {True, False}, "zoom-outs keep the whole image, zoom-ins crop"
    for crop in crops:
        left, top, right, bottom = crop.box(160, 120)
        assert 0 <= left < right <= 160
        assert 0 <= top < bottom <= 120
        assert (right - left) / 160 == pytest.approx(crop.side, abs=0.01)

    data = read_uris([photos.records[0].uri])[0]
    whole = cropped_pixels(data, 24, Crop(zoom=1.0, shift_x=0.0, shift_y=0.0))
    np.testing.assert_array_equal(whole, decode_pixels(data, 24))
    zoomed = cropped_pixels(data, 24, Crop(zoom=1.25, shift_x=0.0, shift_y=0.0))
    assert zoomed.shape == whole.shape
    assert not np.array_equal(zoomed, whole)


@pytest.mark.training
def test_a_stopped_streamed_epoch_resumes_to_the_same_weights(digits: Version) -> None:
    stream = digits.stream("train")
    whole = train_trial(stream, None, BUSY, PREPROCESS, checkpoint=TrialCheckpoint(digits.storage, "unbroken.pt"))
    steps = iter(range(1_000))
    checkpoint = TrialCheckpoint(digits.storage, "parts.pt")
    stopped = train_trial(
        stream,
        None,
        BUSY,
        PREPROCESS,
        checkpoint=checkpoint,
        step_guard=lambda used, pace, left: next(steps) < 13,  # inside the second epoch (9 steps each)
    )
    assert stopped.stopped_inside_epoch
    resumed = train_trial(stream, None, BUSY, PREPROCESS, checkpoint=checkpoint)
    assert not resumed.stopped_inside_epoch
    assert [entry["epoch"] for entry in resumed.history] == [1, 2]
    assert resumed.history[-1]["trainLoss"] == pytest.approx(whole.history[-1]["trainLoss"], rel=1e-6)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.fixture
def damaged(digits: Version, tmp_path: Path) -> Version:
    """A copy of the digits version, to damage."""
    shutil.copytree(digits.storage.root_path, tmp_path / "storage")
    storage = Storage(f"file://{tmp_path / 'storage'}")
    root = digits.storage.uri("")
    uris = {number: storage.uri(uri[len(root) :]) for number, uri in digits.records.shard_uris.items()}
    records = dataclasses.replace(digits.records, shard_uris=uris)
    return Version(storage, digits.name, digits.version, records)


def _an_image_in_shard(version: Version, number: int) -> tuple[str, int]:
    key = shard_key(version.name, version.version, number)
    prefix = f"{version.storage.uri(key)}#"
    record = next(r for r in version.split("train") if r.uri.startswith(prefix))
    _, offset, _ = split_member_uri(record.uri)
    assert offset is not None
    return key, offset


@pytest.mark.training
@pytest.mark.parametrize("damage", ["corrupt", "truncated", "missing"])
def test_a_damaged_shard_fails_the_trial_naming_it(damaged: Version, damage: str) -> None:
    key, offset = _an_image_in_shard(damaged, 1)
    data = bytearray(damaged.storage.read_bytes(key))
    if damage == "corrupt":
        data[offset] ^= 0xFF
        damaged.storage.write_bytes(key, bytes(data))
    elif damage == "truncated":
        damaged.storage.write_bytes(key, bytes(data[: offset + 10]))
    else:
        Path(damaged.storage.path(key)).unlink()
    config = TrainConfig(epochs=1, batch_size=16, architecture=ResidualCNNConfig(width=4, stages=2))
    with pytest.raises(ShardError, match=r"shard-00001\.tar"):
        train_trial(
            damaged.stream("train"), None, config, PREPROCESS, checkpoint=TrialCheckpoint(damaged.storage, "t.pt")
        )


def _die(task: object, settings: Settings) -> None:
    os._exit(3)


@pytest.mark.training
def test_a_dead_decoding_process_fails_the_trial(digits: Version, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "decode_batch", _die)  # what the forked decoding processes run
    config = TrainConfig(epochs=1, batch_size=16, architecture=ResidualCNNConfig(width=4, stages=2))
    with pytest.raises(StreamError, match="died"):
        train_trial(
            digits.stream("train"), None, config, PREPROCESS, checkpoint=TrialCheckpoint(digits.storage, "dead.pt")
        )
