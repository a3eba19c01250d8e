"""The finished run a new run continues from (``--base-model``, ``spec.baseModel``): found, checked, kept.

A base is a finished run: its model card exists (the card is written last, so an
unfinished run has none). Its final weights are the ones its exports came from:
the checkpoint the card's final fit names (the final fit's, or the chosen
trial's; both keep the evaluated weights under ``best_model``). A new run
copies them once into its own ``base/weights.pt``, so that every trial, every
node and a retried pod read them from the run itself, whatever becomes of the
base afterwards.

A base fits a dataset version only with the same labels in the same order (the
model's outputs) and the same task (softmax or sigmoid): ``ModelCard.mismatch``
says what differs, for the command line's error and the operator's condition alike.
"""

from __future__ import annotations

import io
import posixpath
from dataclasses import dataclass

import torch

from autovision.contract.files import BaseModelRecord, ModelCard
from autovision.contract.keys import base_weights_key, final_checkpoint_key, trial_checkpoint_key
from autovision.export.layout import ModelLocation, ModelNotFoundError, locate_model
from autovision.preprocess import PreprocessConfig
from autovision.resources import Task
from autovision.settings import Settings
from autovision.storage import Storage, StorageError, storage_unavailable
from autovision.train.trainer import TrainConfig
from autovision.train.warm_start import architecture_from


class BaseModelError(ValueError):
    """A base model that cannot be continued from: missing, unfinished, or not fitting the dataset."""


@dataclass(frozen=True)
class BaseModel:
    """A finished run, as a new run continues from it: its card, where it lives and its final checkpoint."""

    storage: Storage
    prefix: str
    card: ModelCard

    @property
    def uri(self) -> str:
        """The run's URI (what the new run's model card records)."""
        return self.storage.uri(self.prefix).rstrip("/")

    @property
    def checkpoint_key(self) -> str:
        """The checkpoint of the final model: named by the card, or where a run without that field kept it."""
        final = self.card.final_fit
        if final.checkpoint is not None:
            return posixpath.join(self.prefix, final.checkpoint)
        return final_checkpoint_key(self.prefix) if final.retrained else trial_checkpoint_key(self.prefix, final.trial)

    def training(self) -> TrainConfig:
        """The base's training configuration, its architecture rebuilt from the card."""
        training = {key: value for key, value in self.card.training.items() if key in TrainConfig.__dataclass_fields__}
        training["architecture"] = architecture_from(self.card.architecture)
        return TrainConfig(**training)

    def preprocess(self) -> PreprocessConfig:
        """The base's preprocessing: its input size and normalisation."""
        return PreprocessConfig(size=self.card.input_size, mean=self.card.mean, std=self.card.std)

    def record(self) -> BaseModelRecord:
        """What the new run's model card says of its base."""
        return BaseModelRecord(run=self.uri, dataset=self.card.dataset, test_accuracy=self.card.metrics.test_accuracy)


def find_base_model(target: str, settings: Settings | None = None) -> BaseModel:
    """The finished run ``target`` names (a run prefix under the storage root, a URI or path, or its model/
    directory); BaseModelError when there is none, or it kept no checkpoint of its final model."""
    try:
        location = locate_model(target, settings)
        card = location.card()
    except (ModelNotFoundError, StorageError, ValueError) as error:
        if storage_unavailable(error):  # not the base's fault: the caller retries
            raise
        raise BaseModelError(f"base model {target}: not a finished run ({error})") from None
    base = BaseModel(*_run_of(location), card)
    if not base.storage.exists(base.checkpoint_key):
        raise BaseModelError(
            f"base model {base.uri} keeps no checkpoint of its final model ({base.storage.uri(base.checkpoint_key)})"
        )
    try:
        base.training()
    except (TypeError, ValueError) as error:
        raise BaseModelError(f"base model {base.uri}: {error}") from None
    return base


def _run_of(location: ModelLocation) -> tuple[Storage, str]:
    """The run a model directory belongs to: its parent (a storage re-rooted there when the directory is the root)."""
    if location.prefix:
        return location.storage, posixpath.dirname(location.prefix)
    parent = posixpath.dirname(location.storage.uri("").rstrip("/"))
    return Storage(parent, location.storage.settings), ""


def check_fits(base: BaseModel, labels: list[str], multi_label: bool) -> None:
    """BaseModelError naming what differs, when the base model's labels or task are not the dataset's."""
    problem = base.card.mismatch(labels, Task.MULTI_LABEL if multi_label else Task.SINGLE_LABEL)
    if problem is not None:
        raise BaseModelError(f"base model {base.uri} does not fit the dataset: {problem}")


def keep_base_weights(base: BaseModel, storage: Storage, prefix: str) -> str:
    """Copy the base's final weights into the run at ``prefix`` (once); their URI, for ``initial_weights``."""
    key = base_weights_key(prefix)
    if not storage.exists(key):
        state = torch.load(io.BytesIO(base.storage.read_bytes(base.checkpoint_key)), weights_only=False)
        if state.get("best_model") is None:
            raise BaseModelError(f"base model {base.uri}: {base.checkpoint_key} holds no trained weights")
        buffer = io.BytesIO()
        torch.save(state["best_model"], buffer)
        storage.write_bytes(key, buffer.getvalue())
    return storage.uri(key)
