"""The wire codec: a message <-> ZeroMQ multipart ``[topic, header, *buffers]``.

The header is a MessagePack map (docs/PROTOCOL.md has the full layout). Arrays travel as raw
little-endian C-order buffers after it, sent without copying. Decoding trusts nothing: it checks
the header's size and types, the message type and version, the buffer count, each buffer's dtype,
shape and byte length, required finiteness, and the message's own cross-field rules before it
builds the message. Every failure is a specific :class:`CodecError` subclass carrying a short
``reason`` that nodes count.

Two paths decode the same format. The fast one checks a header against a typed schema generated
per message type (msgspec, in C): frames of video arrive every few tens of milliseconds, and
between them the caches go cold, so Python-level checks cost ten times their warm time. The
plain-Python path is the reference: it runs whenever the fast one has any doubt and names the
exact fault. The fast path only ever accepts what the reference accepts.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import msgpack
import msgspec
import numpy as np

from perception.msgs import (
    MESSAGE_TYPES,
    WIRE_DTYPES,
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


# -- per-type plans ---------------------------------------------------------------------------
_SCALAR_TYPES = (str, int, float, bool, type(None))
_KINDS = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclass(frozen=True)
class _ArrayPlan:
    name: str
    dtype_name: str
    dtype: np.dtype
    patterns: tuple[tuple[int | str | None, ...], ...]
    finite: bool
    # per pattern: (ndim, the axes of fixed size with their sizes, the axes of named sizes
    # with their names), worked out once: matching runs for every array of every message
    compiled: tuple[tuple[int, tuple[tuple[int, int], ...], tuple[tuple[int, str], ...]], ...]


def _compile_patterns(
    patterns: tuple[tuple[int | str | None, ...], ...],
) -> tuple[tuple[int, tuple[tuple[int, int], ...], tuple[tuple[int, str], ...]], ...]:
    return tuple(
        (
            len(p),
            tuple((i, d) for i, d in enumerate(p) if isinstance(d, int)),
            tuple((i, d) for i, d in enumerate(p) if isinstance(d, str)),
        )
        for p in patterns
    )


@dataclass(frozen=True)
class _Plan:
    """What the codec needs to know about one message type, worked out once.

    Encoding and decoding run for every message on the hot path; walking dataclass fields and
    type hints each time cost more than the transfer of a frame over ipc.
    """

    cls: type[Message]
    # (name, in the envelope, kind, list item type, must be finite) per small field
    values: tuple[tuple[str, bool, str, Any, bool], ...]
    header_fields: tuple[str, ...]  # small fields outside the envelope, in declaration order
    float_fields: tuple[str, ...]
    arrays: tuple[_ArrayPlan, ...]
    named_sizes: bool  # some shape pattern names a size shared across fields
    finite_floats: tuple[str, ...]  # float fields outside the envelope that must be finite
    header_struct: Any  # the typed header schema of the fast path; None: reference path only


_PLANS: dict[type[Message], _Plan] = {}


def _plan(cls: type[Message]) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    hints = typing.get_type_hints(cls)
    values = []
    for f in value_fields(cls):
        hint = hints[f.name]
        origin = typing.get_origin(hint)
        item = typing.get_args(hint)[0] if origin is list else None
        kind = _KINDS.get(hint) or {list: "list", dict: "dict"}.get(origin)
        if kind is None:  # pragma: no cover - a schema author's mistake
            raise TypeError(f"{cls.TYPE}.{f.name}: unsupported field type {hint}")
        values.append((f.name, f.name in ENVELOPE, kind, item, f.metadata.get("finite", True)))
    arrays = tuple(
        _ArrayPlan(
            name,
            spec.dtype,
            WIRE_DTYPES[spec.dtype],
            spec.shapes,
            spec.finite,
            _compile_patterns(spec.shapes),
        )
        for name, spec in array_fields(cls)
    )
    plan = _Plan(
        cls=cls,
        values=tuple(values),
        header_fields=tuple(v[0] for v in values if not v[1]),
        float_fields=tuple(v[0] for v in values if not v[1] and v[2] == "float"),
        arrays=arrays,
        named_sizes=any(isinstance(d, str) for a in arrays for p in a.patterns for d in p),
        finite_floats=tuple(v[0] for v in values if not v[1] and v[2] == "float" and v[4]),
        header_struct=_header_struct(cls, values, arrays),
    )
    _PLANS[cls] = plan
    return plan


_FAST_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


# Types built at run time from the message declarations (Any: a static checker cannot follow).
_List: Any = list
_Tuple: Any = tuple
_Literal: Any = Literal
_SHAPE = Annotated[list[Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(max_length=MAX_NDIM)]


def _header_struct(
    cls: type[Message],
    values: list[tuple[str, bool, str, Any, bool]],
    arrays: tuple[_ArrayPlan, ...],
) -> Any:
    """The msgspec schema of ``cls``'s header, or None for types with free-form maps (their
    contents are checked by the reference path, which applies the size limits inside them).

    Buffer names, dtypes and their count are literals of the schema, so C checks them too."""
    fields: list[tuple[str, Any]] = []
    for name, in_envelope, kind, item, _ in values:
        if in_envelope:
            continue
        if kind == "dict":
            return None
        fields.append((name, _List[item] if kind == "list" else _FAST_TYPES[kind]))
    fields_struct = msgspec.defstruct(f"{cls.TYPE}Fields", fields)
    entries = tuple(_Tuple[_Literal[a.name], _Literal[a.dtype_name], _SHAPE] for a in arrays)
    return msgspec.defstruct(
        f"{cls.TYPE}Header",
        [
            ("version", Literal[cls.VERSION]),
            ("seq", Annotated[int, msgspec.Meta(ge=0)]),
            ("stamp_ns", int),
            ("mono_ns", int),
            ("frame_id", str),
            ("valid", bool),
            ("fields", fields_struct),
            ("buffers", _Tuple[entries] if entries else _Tuple[()]),
        ],
        tag_field="type",
        tag=cls.TYPE,
    )


_FAST: dict[str, Any] = {}  # the union decoder and each header struct's plan, built once


def _fast_decoder() -> tuple[msgspec.msgpack.Decoder[Any], dict[type, _Plan]]:
    if not _FAST:
        plans = [_plan(cls) for cls in MESSAGE_TYPES.values()]
        by_struct = {p.header_struct: p for p in plans if p.header_struct is not None}
        _FAST["decoder"] = msgspec.msgpack.Decoder(Union[tuple(by_struct)])  # noqa: UP007
        _FAST["plans"] = by_struct
    return _FAST["decoder"], _FAST["plans"]


def _fast_header_limit(limits: Limits) -> int:
    """Largest header the fast path takes. The typed decoder has no size limits of its own, but a
    header this short cannot hold a string or list longer than the limits, nor a map with more
    entries (each entry takes at least two bytes)."""
    return min(
        limits.max_header_bytes, limits.max_str_len, limits.max_array_len, 2 * limits.max_map_len
    )


# -- encoding ---------------------------------------------------------------------------------
_ENCODER = msgspec.msgpack.Encoder()  # same bytes as msgpack.packb for these types, faster


def _plain(value: Any) -> Any:
    """numpy scalars and tuples to the plain types msgpack packs."""
    if type(value) in _SCALAR_TYPES:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def encode(topic: str, msg: Message, validate: bool = True) -> list[Any]:
    """Frames for ``msg`` on ``topic``: ``[topic, header, *buffers]``; each buffer is the field's
    C-contiguous array itself (bytes-like, not copied; an empty array travels as ``b""``).

    With ``validate`` the message is checked exactly as a receiver would check it, so a sender
    bug fails loudly at the sender instead of being rejected downstream.
    """
    return encode_parts(topic, msg, validate).frames


@dataclass(frozen=True)
class Encoded:
    """A message encoded for the wire, and what went into it (for in-process delivery)."""

    frames: list[Any]
    cls: type[Message]
    header: dict[str, Any]  # the header before packing: plain values only
    arrays: list[np.ndarray]  # each array field, C-contiguous in its wire dtype
    validated: bool  # checked as a receiver checks it


def encode_parts(topic: str, msg: Message, validate: bool = True) -> Encoded:
    """:func:`encode`, keeping its parts: see :func:`delivered_copy`."""
    # Per message, so kept lean: code that runs 20+ ms apart runs cold (docs/benchmarks.md)
    # and costs about in proportion to the calls and objects it touches.
    cls = type(msg)
    plan = _plan(cls)
    header: dict[str, Any] = {"type": cls.TYPE, "version": cls.VERSION}
    for name in ENVELOPE:
        v = getattr(msg, name)
        header[name] = v if type(v) in _SCALAR_TYPES else _plain(v)
    fields: dict[str, Any] = {}
    for name in plan.header_fields:
        v = getattr(msg, name)
        fields[name] = v if type(v) in _SCALAR_TYPES else _plain(v)
    for name in plan.float_fields:  # an int given for a float field travels as float
        v = fields[name]
        if isinstance(v, int) and not isinstance(v, bool):
            fields[name] = float(v)
    header["fields"] = fields
    specs: list[list[Any]] = []
    arrays: list[np.ndarray] = []
    for a in plan.arrays:
        arr = np.ascontiguousarray(getattr(msg, a.name), dtype=a.dtype)
        specs.append([a.name, a.dtype_name, list(arr.shape)])
        arrays.append(arr)
    header["buffers"] = specs
    try:
        packed = _ENCODER.encode(header)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise InvalidField(f"{cls.TYPE}: a field cannot be packed: {exc}") from None
    if validate:
        _validate_outgoing(plan, msg, header, packed, arrays)
    # A C-contiguous array is itself the buffer (ZeroMQ sends its nbytes, uncopied).
    frames = [topic.encode(), packed, *[arr if arr.size else b"" for arr in arrays]]
    return Encoded(frames, cls, header, arrays, validate)


def within_limits(encoded: Encoded, limits: Limits) -> bool:
    """Whether a receiver with ``limits`` takes ``encoded`` on its fast path without a size
    check failing: every buffer within the buffer limit, and a header short enough that no
    string, list or map in it can exceed theirs (see :func:`_fast_header_limit`)."""
    if len(encoded.frames[1]) > _fast_header_limit(limits):
        return False
    return all(arr.nbytes <= limits.max_buffer_bytes for arr in encoded.arrays)


def delivered_copy(encoded: Encoded) -> Message:
    """The message a receiver gets by decoding ``encoded.frames``, built without decoding:
    the same types and values, fresh lists and maps, the same read-only array views of the
    sender's arrays. Only for a validated encoding (the receiver's checks already ran on it);
    each call gives a new message, so receivers cannot change each other's."""
    if not encoded.validated:
        raise ValueError("delivered_copy needs a validated encoding; decode the frames instead")
    header = encoded.header
    plan = _plan(encoded.cls)
    values = {name: header[name] for name in ENVELOPE}
    for name, v in header["fields"].items():
        values[name] = v if type(v) in _SCALAR_TYPES else _plain(v)
    for a, arr in zip(plan.arrays, encoded.arrays, strict=True):
        view = arr.view()
        view.flags.writeable = False
        values[a.name] = view
    return encoded.cls(**values)


def _validate_outgoing(
    plan: _Plan, msg: Message, header: dict[str, Any], packed: bytes, arrays: list[np.ndarray]
) -> None:
    """The receiver's checks on a message being sent, short of rebuilding it."""
    if plan.header_struct is None:
        _check_values(plan, header)
    else:
        decoder, _ = _fast_decoder()
        try:
            decoder.decode(packed)
        except msgspec.ValidationError as exc:
            _check_values(plan, header)  # names the field where it can
            raise InvalidField(f"{plan.cls.TYPE}: {exc}") from None
        for name in plan.finite_floats:
            if not math.isfinite(header["fields"][name]):
                raise NonFiniteValue(f"{plan.cls.TYPE}.{name} must be finite")
    _check_arrays(plan, arrays)
    try:
        msg.check()
    except InvalidMessage as exc:
        raise InvalidField(str(exc)) from None


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
        msg = _decode_fast(frames, limits)
        if msg is not None:
            return topic, msg
        header = decode_header(frames[1], limits)
    cls = MESSAGE_TYPES.get(header["type"])
    if cls is None:
        raise UnknownType(f"unknown message type {header['type'][:64]!r}")
    if header["version"] != cls.VERSION:
        raise UnsupportedVersion(
            f"{cls.TYPE} version {header['version']} (this build reads {cls.VERSION})"
        )
    plan = _plan(cls)
    specs = header["buffers"]
    # read-only: the arrays are views of buffers the receiver does not own (in a composed
    # process, an unchecked sender's own arrays)
    buffers = [memoryview(buf).toreadonly() for buf in frames[2:]]
    for data in buffers:
        if data.nbytes > limits.max_buffer_bytes:
            raise OversizeField(
                f"{cls.TYPE}: a buffer of {data.nbytes} bytes exceeds {limits.max_buffer_bytes}"
            )
    n = len(plan.arrays)
    if len(specs) != n or len(buffers) != n:
        raise BufferCountMismatch(
            f"{cls.TYPE} has {n} buffers; header lists {len(specs)}, message carries {len(buffers)}"
        )
    values = _check_values(plan, header)
    arrays = [
        _buffer_array(cls, a, entry, data, limits)
        for a, entry, data in zip(plan.arrays, specs, buffers, strict=True)
    ]
    return topic, _assemble(plan, values, arrays)


def _decode_fast(frames: Sequence[Any], limits: Limits) -> Message | None:
    """The message, or None when the reference path must look (a bad header, or one the typed
    schema does not cover). Faults found after the header checks are the reference's own."""
    data = memoryview(frames[1])
    if data.nbytes > _fast_header_limit(limits):
        return None
    decoder, plans = _fast_decoder()
    try:
        header = decoder.decode(data)
    except Exception:  # hostile bytes raise several kinds; the reference path names the fault
        return None
    plan = plans[type(header)]
    values = msgspec.structs.asdict(header.fields)
    for name in plan.finite_floats:
        if not math.isfinite(values[name]):
            return None
    if len(frames) - 2 != len(plan.arrays):
        return None
    arrays = []
    for a, (_, _, shape), frame in zip(plan.arrays, header.buffers, frames[2:], strict=True):
        buf = memoryview(frame).toreadonly()
        expected = math.prod(shape) * a.dtype.itemsize
        if buf.nbytes != expected or expected > limits.max_buffer_bytes:
            return None
        arrays.append(np.ndarray(shape, a.dtype, buf))  # one call: a read-only view
    values.update(
        seq=header.seq,
        stamp_ns=header.stamp_ns,
        mono_ns=header.mono_ns,
        frame_id=header.frame_id,
        valid=header.valid,
    )
    return _assemble(plan, values, arrays)


def _assemble(plan: _Plan, values: dict[str, Any], arrays: list[np.ndarray]) -> Message:
    """Both decode paths end here: check the arrays, then build the message from its checked
    small fields (``values``, envelope included) and arrays, and apply its own rules."""
    _check_arrays(plan, arrays)
    for a, arr in zip(plan.arrays, arrays, strict=True):
        values[a.name] = arr
    try:
        msg = plan.cls(**values)
        msg.check()
    except InvalidMessage as exc:
        raise InvalidField(str(exc)) from None
    return msg


def _buffer_array(
    cls: type[Message], a: _ArrayPlan, entry: Any, data: memoryview, limits: Limits
) -> np.ndarray:
    if not (isinstance(entry, list) and len(entry) == 3 and entry[0] == a.name):
        raise MalformedMessage(
            f"{cls.TYPE}: buffer entry for {a.name!r} must be [name, dtype, shape]"
        )
    _, dtype, shape = entry
    if dtype != a.dtype_name:
        raise BufferMismatch(
            f"{cls.TYPE}.{a.name}: dtype {str(dtype)[:32]!r}, expected {a.dtype_name}"
        )
    if (
        type(shape) is not list
        or len(shape) > MAX_NDIM
        or not all(_int_ok(d) and d >= 0 for d in shape)
    ):
        raise BufferMismatch(f"{cls.TYPE}.{a.name}: shape must be up to {MAX_NDIM} sizes >= 0")
    expected = math.prod(shape) * a.dtype.itemsize
    if expected > limits.max_buffer_bytes:
        raise OversizeField(
            f"{cls.TYPE}.{a.name}: {expected} bytes exceeds {limits.max_buffer_bytes}"
        )
    if data.nbytes != expected:
        raise BufferMismatch(
            f"{cls.TYPE}.{a.name}: {data.nbytes} bytes but {dtype}{shape} needs {expected}"
        )
    return np.ndarray(shape, a.dtype, data)


def _check_arrays(plan: _Plan, arrays: list[np.ndarray]) -> None:
    """Each array matches one of its allowed shape patterns, named sizes agree across fields,
    and arrays declared finite hold no NaN or infinity."""
    named: dict[str, tuple[int, str]] = {}
    for a, arr in zip(plan.arrays, arrays, strict=True):
        shape = arr.shape
        ndim = len(shape)
        for pattern in a.compiled:
            if pattern[0] == ndim and all(shape[i] == d for i, d in pattern[1]):
                names = pattern[2]
                break
        else:
            raise BufferMismatch(
                f"{plan.cls.TYPE}.{a.name}: shape {list(shape)} not in {a.patterns}"
            )
        for i, name in names:
            seen = named.setdefault(name, (shape[i], a.name))
            if seen[0] != shape[i]:
                raise BufferMismatch(
                    f"{plan.cls.TYPE}: {a.name} has {name}={shape[i]} but {seen[1]} has "
                    f"{name}={seen[0]}"
                )
        if a.finite and arr.size and not all_finite(arr):
            raise NonFiniteValue(f"{plan.cls.TYPE}.{a.name} holds NaN or infinity")


_SMALL_ARRAY = 4096  # elements; from this size all_finite reads half and single floats' bits

# Exponent bits of IEEE floats: all ones means NaN or infinity.
_EXPONENT_MASKS: dict[np.dtype, tuple[np.dtype, int]] = {
    np.dtype("<f2"): (np.dtype("<u2"), 0x7C00),
    np.dtype("<f4"): (np.dtype("<u4"), 0x7F800000),
}


def all_finite(arr: np.ndarray) -> bool:
    """Whether a float array holds no NaN or infinity.

    Half floats are checked on their exponent bits: ``np.isfinite`` has no fast path for them
    and took 0.6 ms on a 384x640 depth map, more than sending it. Small arrays (most messages'
    fields): ``np.isfinite`` reduced directly, without ``ndarray.all``'s Python wrapper.
    """
    if arr.dtype.kind != "f" or arr.size == 0:
        return True
    mask = _EXPONENT_MASKS.get(arr.dtype)
    if mask is None or arr.size < _SMALL_ARRAY:
        return bool(np.logical_and.reduce(np.isfinite(arr), axis=None))
    bits = arr.view(mask[0])
    if int(bits.max()) < mask[1]:
        # Sign bits clear and no exponent all ones: finite (and >= 0, as depth is), found in
        # one pass with no temporary array.
        return True
    return int(np.bitwise_and(bits, mask[0].type(mask[1])).max()) != mask[1]


def _int_ok(x: Any) -> bool:
    return (type(x) is int or (isinstance(x, int) and not isinstance(x, bool))) and (
        INT64_MIN <= x <= UINT64_MAX
    )


def _check_values(plan: _Plan, header: dict[str, Any]) -> dict[str, Any]:
    """Type-check the envelope and the small fields; returns constructor arguments."""
    out: dict[str, Any] = {}
    fields = header["fields"]
    cls = plan.cls
    for name, in_envelope, kind, item, finite in plan.values:
        source = header if in_envelope else fields
        try:
            v = source[name]
        except KeyError:
            raise InvalidField(f"{cls.TYPE}: missing field {name!r}") from None
        t = type(v)
        if kind == "str":
            ok = t is str or isinstance(v, str)
        elif kind == "int":
            ok = _int_ok(v)
        elif kind == "float":
            ok = t is float or (isinstance(v, (int, float)) and not isinstance(v, bool))
            if ok:
                v = float(v)
                if finite and not math.isfinite(v):
                    raise NonFiniteValue(f"{cls.TYPE}.{name} must be finite")
        elif kind == "bool":
            ok = t is bool
        elif kind == "list":
            ok = t is list and all(isinstance(x, item) for x in v)
        else:
            ok = t is dict
        if not ok:
            expected = f"a list of {item.__name__}" if item else f"a {kind}"
            raise InvalidField(f"{cls.TYPE}.{name} must be {expected}")
        out[name] = v
    return out
