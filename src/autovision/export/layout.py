"""The files of a finished model directory (``<run>/model/``) and how a command finds one.

The pipeline writes these names; ``autovision evaluate`` and ``autovision
predict-batch`` read them. ``model.json`` is written last: a directory without it
is an unfinished run and is never read.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from autovision.contract.files import ModelCard
from autovision.contract.keys import MODEL_CARD, MODEL_DIR, model_file_key
from autovision.settings import Settings
from autovision.storage import Storage


class ModelNotFoundError(LookupError):
    """The given location holds no finished model."""


@dataclass(frozen=True)
class ModelLocation:
    """A finished model directory: a storage and the key prefix of the directory in it."""

    storage: Storage
    prefix: str

    def key(self, filename: str) -> str:
        """The storage key of one file of the model directory."""
        return model_file_key(self.prefix, filename)

    def uri(self, filename: str = "") -> str:
        """The absolute URI of the directory, or of one file in it."""
        return self.storage.uri(self.key(filename)) if filename else self.storage.uri(self.prefix)

    def card(self) -> ModelCard:
        """The model card, validated."""
        return ModelCard.model_validate(self.storage.read_json(self.key(MODEL_CARD)))


def is_location_uri(target: str) -> bool:
    """Whether a command-line target names a place itself (URI or path) rather than a storage key."""
    return "://" in target or target.startswith(("/", "./", "../", "~"))


def candidate_prefixes(prefix: str) -> list[str]:
    """Where a model directory may be under a target: its ``model/`` child (a run), or itself."""
    prefix = prefix.strip("/")
    return [posixpath.join(prefix, MODEL_DIR) if prefix else MODEL_DIR, prefix]


def locate_model(target: str, settings: Settings | None = None) -> ModelLocation:
    """Resolve a run prefix or model directory, given as a URI or as a key under the storage root."""
    if is_location_uri(target):
        storage, prefix = Storage(posixpath.expanduser(target), settings), ""
    else:
        storage, prefix = Storage.from_settings(settings), target
    for candidate in candidate_prefixes(prefix):
        location = ModelLocation(storage, candidate)
        if storage.exists(location.key(MODEL_CARD)):
            return location
    raise ModelNotFoundError(
        f"{storage.uri(prefix)} holds no finished model: neither it nor its {MODEL_DIR}/ has {MODEL_CARD}"
    )
