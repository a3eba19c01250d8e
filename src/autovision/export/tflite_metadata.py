"""TFLite model metadata, written without tflite-support, and read back.

Android's Image Classifier task (and Android Studio's ML binding) read a
``TFLITE_METADATA`` buffer (a ``ModelMetadata`` flatbuffer, schema
``metadata_schema.fbs``, identifier ``M001``) and the label file from a zip archive
appended to the ``.tflite`` file. tflite-support's writer needs a protobuf older
than onnx accepts, so this module builds the same flatbuffer with the ``flatbuffers``
package (fields in the schema's slot order) and edits the model through the
``schema_py_generated`` classes that ``ai-edge-litert`` ships.

Normalisation in the metadata is on the 0..255 pixel scale, as the task applies it:
``(pixel - 255 * mean) / (255 * std)`` equals the training transform.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import flatbuffers
from ai_edge_litert import schema_py_generated as tfl
from flatbuffers import number_types
from flatbuffers.table import Table

from autovision.export.edge_files import EdgeInput

METADATA_BUFFER = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MODEL_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"
# The oldest metadata parser that knows every field written here.
MIN_PARSER_VERSION = "1.0.0"
# Enum and union values from metadata_schema.fbs.
_IMAGE_PROPERTIES = 2
_COLOR_SPACE_RGB = 1
_NORMALIZATION_OPTIONS = 1
_TENSOR_AXIS_LABELS = 2
PIXEL_SCALE = 255.0


def _table(builder: Any, fields: list[tuple[int, str, Any]]) -> int:
    """One flatbuffer table from ``(slot, kind, value)`` triples; kinds: offset, uint8, uint32."""
    builder.StartObject(max(slot for slot, _, _ in fields) + 1)
    for slot, kind, value in fields:
        if kind == "offset":
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "uint8":
            builder.PrependUint8Slot(slot, value, 0)
        else:
            builder.PrependUint32Slot(slot, value, 0)
    return int(builder.EndObject())


def _offsets(builder: Any, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return int(builder.EndVector())


def _floats(builder: Any, values: tuple[float, ...]) -> int:
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(value)
    return int(builder.EndVector())


def metadata_flatbuffer(spec: EdgeInput, name: str) -> bytes:
    """The ``ModelMetadata`` of an image classifier: RGB input, its size and normalisation, labelled output."""
    b = flatbuffers.Builder(1024)
    image_size = _table(b, [(0, "uint32", spec.size), (1, "uint32", spec.size)])
    image_properties = _table(b, [(0, "uint8", _COLOR_SPACE_RGB), (1, "offset", image_size)])
    content = _table(b, [(0, "uint8", _IMAGE_PROPERTIES), (1, "offset", image_properties)])
    normalization = _table(
        b,
        [
            (0, "offset", _floats(b, tuple(PIXEL_SCALE * m for m in spec.mean))),
            (1, "offset", _floats(b, tuple(PIXEL_SCALE * s for s in spec.std))),
        ],
    )
    process_unit = _table(b, [(0, "uint8", _NORMALIZATION_OPTIONS), (1, "offset", normalization)])
    input_name = b.CreateString("image")
    image = _table(b, [(0, "offset", input_name), (3, "offset", content), (4, "offset", _offsets(b, [process_unit]))])
    labels_name, labels_description = b.CreateString(LABELS_FILE), b.CreateString("Class labels, one a line")
    labels = _table(
        b, [(0, "offset", labels_name), (1, "offset", labels_description), (2, "uint8", _TENSOR_AXIS_LABELS)]
    )
    output_name = b.CreateString("probability")
    output = _table(b, [(0, "offset", output_name), (6, "offset", _offsets(b, [labels]))])
    subgraph = _table(b, [(2, "offset", _offsets(b, [image])), (3, "offset", _offsets(b, [output]))])
    model_name, parser = b.CreateString(name), b.CreateString(MIN_PARSER_VERSION)
    root = _table(b, [(0, "offset", model_name), (3, "offset", _offsets(b, [subgraph])), (7, "offset", parser)])
    b.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(b.Output())


def attach_metadata(model: bytes, spec: EdgeInput, name: str) -> bytes:
    """The model with its metadata buffer added and ``labels.txt`` appended as a zip archive."""
    graph = tfl.ModelT.InitFromPackedBuf(bytearray(model), 0)
    buffer = tfl.BufferT()
    buffer.data = list(metadata_flatbuffer(spec, name))
    graph.buffers.append(buffer)
    entry = tfl.MetadataT()
    entry.name = METADATA_BUFFER
    entry.buffer = len(graph.buffers) - 1
    graph.metadata = [*(graph.metadata or []), entry]
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(graph.Pack(builder), file_identifier=MODEL_IDENTIFIER)
    out = io.BytesIO(bytes(builder.Output()))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_FILE, "\n".join(spec.labels) + "\n")
    return out.getvalue()


class _Reader:
    """Reads fields of one flatbuffer table by schema slot."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self._table = Table(bytearray(buf), pos)

    def _offset(self, slot: int) -> int:
        return int(self._table.Offset(4 + 2 * slot))

    def string(self, slot: int) -> str:
        offset = self._offset(slot)
        return self._table.String(offset + self._table.Pos).decode() if offset else ""

    def uint(self, slot: int, flags: Any) -> int:
        offset = self._offset(slot)
        return int(self._table.Get(flags, offset + self._table.Pos)) if offset else 0

    def table(self, slot: int) -> _Reader:
        offset = self._offset(slot)
        if not offset:
            raise ValueError(f"TFLite metadata lacks field {slot}")
        return _Reader(bytes(self._table.Bytes), self._table.Indirect(offset + self._table.Pos))

    def tables(self, slot: int) -> list[_Reader]:
        offset = self._offset(slot)
        if not offset:
            return []
        start = self._table.Vector(offset)
        return [
            _Reader(bytes(self._table.Bytes), self._table.Indirect(start + 4 * i))
            for i in range(self._table.VectorLen(offset))
        ]

    def floats(self, slot: int) -> tuple[float, ...]:
        offset = self._offset(slot)
        start = self._table.Vector(offset)
        return tuple(
            float(self._table.Get(number_types.Float32Flags, start + 4 * i))
            for i in range(self._table.VectorLen(offset))
        )


def _metadata_bytes(model: bytes) -> bytes:
    graph = tfl.Model.GetRootAs(model, 0)
    for i in range(graph.MetadataLength()):
        entry = graph.Metadata(i)
        if entry.Name().decode() == METADATA_BUFFER:
            return bytes(graph.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    raise ValueError(f"the model has no {METADATA_BUFFER} buffer")


def read_metadata(path: Path) -> EdgeInput:
    """Read a ``.tflite`` file's metadata and label file back, as an app would find them."""
    data = path.read_bytes()
    metadata = _metadata_bytes(data)
    if metadata[4:8] != METADATA_IDENTIFIER:
        raise ValueError(f"the {METADATA_BUFFER} buffer is not a ModelMetadata flatbuffer")
    root = _Reader(metadata, int(flatbuffers.encode.Get(flatbuffers.packer.uoffset, metadata, 0)))
    subgraph = root.tables(3)[0]
    image = subgraph.tables(2)[0]
    size = image.table(3).table(1).table(1)
    normalization = image.tables(4)[0].table(1)
    label_file = subgraph.tables(3)[0].tables(6)[0]
    if label_file.uint(2, number_types.Uint8Flags) != _TENSOR_AXIS_LABELS:
        raise ValueError("the output's associated file is not a TENSOR_AXIS_LABELS file")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        labels = tuple(archive.read(label_file.string(0)).decode().splitlines())
    mean = tuple(m / PIXEL_SCALE for m in normalization.floats(0))
    std = tuple(s / PIXEL_SCALE for s in normalization.floats(1))
    return EdgeInput(
        labels=labels,
        size=size.uint(1, number_types.Uint32Flags),
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
    )
