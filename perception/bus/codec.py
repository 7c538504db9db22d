"""The wire codec: a message <-> ZeroMQ multipart ``[topic, header, *buffers]``.

The header is a MessagePack map (docs/PROTOCOL.md has the full layout). Arrays travel as raw
little-endian C-order buffers after it, sent without copying. Decoding trusts nothing: it checks
the header's size and types, the message type and version, the buffer count, each buffer's dtype,
shape and byte length, required finiteness, and the message's own cross-field rules before it
builds the message. Every failure is a specific :class:`CodecError` subclass carrying a short
``reason`` that nodes count.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from perception.msgs import (
    MESSAGE_TYPES,
    WIRE_DTYPES,
    ArraySpec,
    InvalidMessage,
    Message,
    array_fields,
    value_fields,
)

ENVELOPE = ("seq", "stamp_ns", "mono_ns", "frame_id", "valid")
MAX_NDIM = 4
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1


class CodecError(ValueError):
    """A message that cannot be decoded or encoded; ``reason`` names the kind for counting."""

    reason = "codec_error"


class MalformedMessage(CodecError):
    reason = "malformed"


class UnknownType(CodecError):
    reason = "unknown_type"


class WrongTopicType(CodecError):
    """A well-formed message of a type the topic does not carry."""

    reason = "wrong_type"


class UnsupportedVersion(CodecError):
    reason = "unsupported_version"


class BufferCountMismatch(CodecError):
    reason = "buffer_count"


class BufferMismatch(CodecError):
    """A buffer whose declared dtype or shape disagrees with the schema or its byte length."""

    reason = "buffer_mismatch"


class OversizeField(CodecError):
    reason = "oversize"


class NonFiniteValue(CodecError):
    reason = "non_finite"


class InvalidField(CodecError):
    reason = "invalid_field"


@dataclass(frozen=True)
class Limits:
    """Bounds applied while decoding (the socket applies ``max_message_bytes`` per frame too)."""

    max_header_bytes: int = 1 << 20
    max_buffer_bytes: int = 256 << 20
    max_str_len: int = 1 << 16
    max_array_len: int = 1 << 16
    max_map_len: int = 1 << 10


DEFAULT_LIMITS = Limits()


# -- encoding ---------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """numpy scalars and tuples to the plain types msgpack packs."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def encode(topic: str, msg: Message, validate: bool = True) -> list[Any]:
    """Frames for ``msg`` on ``topic``: ``[topic, header, *buffers]`` (buffers not copied).

    With ``validate`` the message is checked exactly as a receiver would check it, so a sender
    bug fails loudly at the sender instead of being rejected downstream.
    """
    cls = type(msg)
    header: dict[str, Any] = {"type": cls.TYPE, "version": cls.VERSION}
    for name in ENVELOPE:
        header[name] = _plain(getattr(msg, name))
    hints = _hints(cls)
    header["fields"] = {
        f.name: _plain(getattr(msg, f.name)) for f in value_fields(cls) if f.name not in ENVELOPE
    }
    for name, v in header["fields"].items():  # an int given for a float field travels as float
        if hints[name] is float and isinstance(v, int) and not isinstance(v, bool):
            header["fields"][name] = float(v)
    specs: list[list[Any]] = []
    buffers: list[Any] = []
    for name, spec in array_fields(cls):
        arr = np.ascontiguousarray(getattr(msg, name), dtype=WIRE_DTYPES[spec.dtype])
        specs.append([name, spec.dtype, list(arr.shape)])
        buffers.append(arr.reshape(-1).view(np.uint8).data if arr.size else b"")
    header["buffers"] = specs
    try:
        packed = msgpack.packb(header, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidField(f"{cls.TYPE}: a field cannot be packed: {exc}") from None
    if validate:
        _check_values(cls, header)
        for name, spec in array_fields(cls):
            if spec.finite:
                _check_finite(cls, name, getattr(msg, name))
        _check_shapes(cls, [(s[0], s[2]) for s in specs])
        try:
            msg.check()
        except InvalidMessage as exc:
            raise InvalidField(str(exc)) from None
    return [topic.encode(), packed, *buffers]


# -- decoding ---------------------------------------------------------------------------------
def decode_header(frame: Any, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Unpack and shape-check the header frame alone (cheap: used to peek at seq and source)."""
    data = memoryview(frame)
    if data.nbytes > limits.max_header_bytes:
        raise OversizeField(f"header of {data.nbytes} bytes exceeds {limits.max_header_bytes}")
    try:
        header = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_str_len,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,
        )
    except ValueError as exc:
        if "exceeds" in str(exc):
            raise OversizeField(f"header field too large: {exc}") from None
        raise MalformedMessage(f"header is not valid MessagePack: {exc}") from None
    except Exception as exc:  # msgpack raises several types on hostile input
        raise MalformedMessage(f"header is not valid MessagePack: {type(exc).__name__}") from None
    if not isinstance(header, dict):
        raise MalformedMessage(f"header is a {type(header).__name__}, not a map")
    for key, kind in (("type", str), ("version", int), ("fields", dict), ("buffers", list)):
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
            raise MalformedMessage(f"header field {key!r} missing or not a {kind.__name__}")
    if not _int_ok(header.get("seq")) or header["seq"] < 0:
        raise MalformedMessage("header field 'seq' missing or not a non-negative integer")
    return header


def decode(
    frames: Sequence[Any],
    limits: Limits = DEFAULT_LIMITS,
    header: dict[str, Any] | None = None,
) -> tuple[str, Message]:
    """Validate and decode ``[topic, header, *buffers]``; arrays are read-only views.

    ``header`` may pass an already unpacked header frame (from :func:`decode_header`).
    """
    if len(frames) < 2:
        raise MalformedMessage(f"{len(frames)} frame(s); need at least [topic, header]")
    try:
        topic = bytes(memoryview(frames[0])).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage("topic frame is not UTF-8") from None
    if header is None:
        header = decode_header(frames[1], limits)
    cls = MESSAGE_TYPES.get(header["type"])
    if cls is None:
        raise UnknownType(f"unknown message type {header['type'][:64]!r}")
    if header["version"] != cls.VERSION:
        raise UnsupportedVersion(
            f"{cls.TYPE} version {header['version']} (this build reads {cls.VERSION})"
        )
    fields = array_fields(cls)
    specs = header["buffers"]
    buffers = frames[2:]
    for buf in buffers:
        if memoryview(buf).nbytes > limits.max_buffer_bytes:
            raise OversizeField(
                f"{cls.TYPE}: a buffer of {memoryview(buf).nbytes} bytes exceeds "
                f"{limits.max_buffer_bytes}"
            )
    if len(specs) != len(fields) or len(buffers) != len(fields):
        raise BufferCountMismatch(
            f"{cls.TYPE} has {len(fields)} buffers; header lists {len(specs)}, "
            f"message carries {len(buffers)}"
        )
    values = _check_values(cls, header)
    shapes: list[tuple[str, list[int]]] = []
    for (name, spec), entry, buf in zip(fields, specs, buffers, strict=True):
        arr = _buffer_array(cls, name, spec, entry, buf, limits)
        shapes.append((name, list(arr.shape)))
        values[name] = arr
    _check_shapes(cls, shapes)
    for name, spec in fields:
        if spec.finite:
            _check_finite(cls, name, values[name])
    try:
        msg = cls(**values)
        msg.check()
    except InvalidMessage as exc:
        raise InvalidField(str(exc)) from None
    return topic, msg


def _buffer_array(
    cls: type[Message], name: str, spec: ArraySpec, entry: Any, buf: Any, limits: Limits
) -> np.ndarray:
    if not (isinstance(entry, list) and len(entry) == 3 and entry[0] == name):
        raise MalformedMessage(
            f"{cls.TYPE}: buffer entry for {name!r} must be [name, dtype, shape]"
        )
    _, dtype, shape = entry
    if dtype != spec.dtype:
        raise BufferMismatch(f"{cls.TYPE}.{name}: dtype {str(dtype)[:32]!r}, expected {spec.dtype}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(_int_ok(d) and d >= 0 for d in shape)
    ):
        raise BufferMismatch(f"{cls.TYPE}.{name}: shape must be up to {MAX_NDIM} sizes >= 0")
    itemsize = WIRE_DTYPES[spec.dtype].itemsize
    expected = math.prod(shape) * itemsize
    if expected > limits.max_buffer_bytes:
        raise OversizeField(
            f"{cls.TYPE}.{name}: {expected} bytes exceeds {limits.max_buffer_bytes}"
        )
    data = memoryview(buf)
    if data.nbytes != expected:
        raise BufferMismatch(
            f"{cls.TYPE}.{name}: {data.nbytes} bytes but {dtype}{shape} needs {expected}"
        )
    return np.frombuffer(data, dtype=WIRE_DTYPES[spec.dtype]).reshape(shape)


def _check_shapes(cls: type[Message], shapes: list[tuple[str, list[int]]]) -> None:
    """Each array matches one of its allowed shape patterns; named sizes agree across fields."""
    named: dict[str, tuple[int, str]] = {}
    specs = dict(array_fields(cls))
    for name, shape in shapes:
        for pattern in specs[name].shapes:
            if len(pattern) == len(shape) and all(
                not isinstance(p, int) or p == d for p, d in zip(pattern, shape, strict=True)
            ):
                break
        else:
            raise BufferMismatch(f"{cls.TYPE}.{name}: shape {shape} not in {specs[name].shapes}")
        for p, d in zip(pattern, shape, strict=True):
            if isinstance(p, str):
                if p in named and named[p][0] != d:
                    raise BufferMismatch(
                        f"{cls.TYPE}: {name} has {p}={d} but {named[p][1]} has {p}={named[p][0]}"
                    )
                named.setdefault(p, (d, name))


def _check_finite(cls: type[Message], name: str, arr: np.ndarray) -> None:
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        raise NonFiniteValue(f"{cls.TYPE}.{name} holds NaN or infinity")


def _int_ok(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and INT64_MIN <= x <= UINT64_MAX


_HINTS: dict[str, dict[str, Any]] = {}


def _hints(cls: type[Message]) -> dict[str, Any]:
    if cls.TYPE not in _HINTS:
        _HINTS[cls.TYPE] = typing.get_type_hints(cls)
    return _HINTS[cls.TYPE]


_VALUE_SCHEMAS: dict[type[Message], list[tuple[str, bool, str, Any, bool]]] = {}


def _value_schema(cls: type[Message]) -> list[tuple[str, bool, str, Any, bool]]:
    """Per small field: (name, in the envelope, kind, list item type, must be finite).

    Worked out once per type: validation runs for every message on the hot path.
    """
    if cls not in _VALUE_SCHEMAS:
        hints = _hints(cls)
        schema = []
        for f in value_fields(cls):
            hint = hints[f.name]
            origin = typing.get_origin(hint)
            item = typing.get_args(hint)[0] if origin is list else None
            kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(hint) or {
                list: "list",
                dict: "dict",
            }.get(origin)
            if kind is None:  # pragma: no cover - a schema author's mistake
                raise TypeError(f"{cls.TYPE}.{f.name}: unsupported field type {hint}")
            schema.append((f.name, f.name in ENVELOPE, kind, item, f.metadata.get("finite", True)))
        _VALUE_SCHEMAS[cls] = schema
    return _VALUE_SCHEMAS[cls]


def _check_values(cls: type[Message], header: dict[str, Any]) -> dict[str, Any]:
    """Type-check the envelope and the small fields; returns constructor arguments."""
    out: dict[str, Any] = {}
    fields = header["fields"]
    for name, in_envelope, kind, item, finite in _value_schema(cls):
        source = header if in_envelope else fields
        if name not in source:
            raise InvalidField(f"{cls.TYPE}: missing field {name!r}")
        v = source[name]
        if kind == "str":
            ok = isinstance(v, str)
        elif kind == "int":
            ok = _int_ok(v)
        elif kind == "bool":
            ok = isinstance(v, bool)
        elif kind == "float":
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            if ok:
                v = float(v)
                if finite and not math.isfinite(v):
                    raise NonFiniteValue(f"{cls.TYPE}.{name} must be finite")
        elif kind == "list":
            ok = isinstance(v, list) and all(isinstance(x, item) for x in v)
        else:
            ok = isinstance(v, dict)
        if not ok:
            expected = f"a list of {item.__name__}" if item else f"a {kind}"
            raise InvalidField(f"{cls.TYPE}.{name} must be {expected}")
        out[name] = v
    return out
