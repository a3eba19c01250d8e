"""Where images come from: a zip, a CSV index, or a storage prefix of label folders."""

from __future__ import annotations

from autovision.data.rules import DatasetImportError, ImportLimits
from autovision.data.sources.base import Offer, Scanned, Source
from autovision.data.sources.csv_index import CsvSource
from autovision.data.sources.prefix import PrefixSource
from autovision.data.sources.zip import ZipSource
from autovision.settings import Settings, uri_prefixes
from autovision.storage import filesystem, split_uri

__all__ = ["Offer", "Scanned", "Source", "open_source"]


def open_source(uri: str, settings: Settings, limits: ImportLimits, multi_label: bool) -> Source:
    """The source a URI names: ``*.csv`` is an index, a folder or prefix holds label folders,
    anything else must be a zip."""
    protocol, path = split_uri(uri)
    if protocol not in settings.import_uri_schemes:
        allowed = uri_prefixes(settings.import_uri_schemes)
        raise DatasetImportError(f"cannot import from {uri}: this installation imports only from {allowed}")
    if path.lower().endswith(".csv"):
        return CsvSource(uri, settings, limits, multi_label)
    if filesystem(protocol, settings).isdir(path):
        return PrefixSource(uri, settings, limits)
    return ZipSource(uri, settings, limits)
