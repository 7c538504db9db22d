"""The lossless MCAP channel of a bus topic: the wire frames of each message, framed to split again.

A bus message is ``[topic, header, *buffers]`` (docs/PROTOCOL.md). Its MCAP record keeps every
frame after the topic byte for byte, so a replay can publish exactly what was received:

```
u32 LE          n: number of frames (the header and one per buffer), 1 <= n <= MAX_FRAMES
n x u64 LE      the byte length of each frame, in order
frame bytes     the n frames concatenated, no padding
```

The length table comes first so that a reader finds every frame without scanning. The channel's
schema is a JSON description of the message type (name, version, header fields, buffers), enough
for a reader in another language to know what it holds; docs/recording.md has the full layout.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import typing
from collections.abc import Sequence
from typing import Any

from perception.bus.codec import ENVELOPE
from perception.msgs import Message, array_fields, value_fields

MESSAGE_ENCODING = "perception-msgpack"  # MCAP message encoding of lossless channels
SCHEMA_ENCODING = "perception-type-json"  # MCAP schema encoding: the JSON below
SCHEMA_PREFIX = "perception."  # schema name = prefix + message type name
FORMAT_VERSION = 1  # of this payload layout; in the schema and the file's metadata
MAX_FRAMES = 64  # no message type has more buffers than this; bounds a hostile count

_COUNT = struct.Struct("<I")


class PayloadError(ValueError):
    """A lossless record whose framing is inconsistent (a corrupt or foreign file)."""


def pack_frames(frames: Sequence[Any]) -> bytes:
    """The record payload of ``frames`` (header first, then the buffers; bytes-like each)."""
    views = [memoryview(f).cast("B") for f in frames]
    if not 1 <= len(views) <= MAX_FRAMES:
        raise PayloadError(f"{len(views)} frames; a message has 1 to {MAX_FRAMES}")
    lengths = struct.pack(f"<{len(views)}Q", *(v.nbytes for v in views))
    return b"".join([_COUNT.pack(len(views)), lengths, *views])


def unpack_frames(data: bytes | memoryview) -> list[memoryview]:
    """Split a record payload back into its frames (views into ``data``, not copies)."""
    view = memoryview(data).cast("B")
    if view.nbytes < _COUNT.size:
        raise PayloadError(f"record of {view.nbytes} bytes is too short for a frame count")
    (n,) = _COUNT.unpack_from(view, 0)
    if not 1 <= n <= MAX_FRAMES:
        raise PayloadError(f"frame count {n} is not in 1..{MAX_FRAMES}")
    table_end = _COUNT.size + 8 * n
    if view.nbytes < table_end:
        raise PayloadError(f"record of {view.nbytes} bytes is too short for {n} frame lengths")
    lengths = struct.unpack_from(f"<{n}Q", view, _COUNT.size)
    if table_end + sum(lengths) != view.nbytes:
        raise PayloadError(
            f"frame lengths add up to {sum(lengths)} bytes but the record holds "
            f"{view.nbytes - table_end}"
        )
    out, offset = [], table_end
    for length in lengths:
        out.append(view[offset : offset + length])
        offset += length
    return out


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def schema_name(cls: type[Message]) -> str:
    return SCHEMA_PREFIX + cls.TYPE


def schema_json(cls: type[Message], topic: str) -> bytes:
    """The schema record data of a lossless channel: the type's layout as JSON (UTF-8)."""
    hints = typing.get_type_hints(cls)
    fields = [
        {"name": f.name, "type": _type_name(hints[f.name]), "doc": f.metadata.get("doc", "")}
        for f in value_fields(cls)
        if f.name not in ENVELOPE
    ]
    docs = {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}
    buffers = []
    for name, spec in array_fields(cls):
        doc = docs.get(name, "")
        buffers.append(
            {
                "name": name,
                "dtype": spec.dtype,
                "shapes": [list(s) for s in spec.shapes],
                "finite": spec.finite,
                "doc": doc,
            }
        )
    doc = {
        "type": cls.TYPE,
        "version": cls.VERSION,
        "topic": topic,
        "payload": {
            "format_version": FORMAT_VERSION,
            "layout": "u32 LE frame count n, n x u64 LE frame lengths, then the frames: "
            "the MessagePack header and one raw buffer per entry of 'buffers'",
            "reference": "docs/recording.md, docs/PROTOCOL.md",
        },
        "envelope": list(ENVELOPE),
        "fields": fields,
        "buffers": buffers,
    }
    return json.dumps(doc, indent=1).encode()
