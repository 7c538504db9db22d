"""The wire codec: round trips of every type, and one specific rejection per kind of bad input."""

from __future__ import annotations

import contextlib

import msgpack
import numpy as np
import pytest

from perception.bus import codec
from perception.bus.codec import (
    BufferCountMismatch,
    BufferMismatch,
    InvalidField,
    Limits,
    MalformedMessage,
    NonFiniteValue,
    OversizeField,
    UnknownType,
    UnsupportedVersion,
    decode,
    encode,
)
from perception.msgs import (
    MESSAGE_TYPES,
    CameraFrame,
    CameraInfo,
    DepthMap,
    Detections,
    Message,
    NodeStatus,
    TrackedObjects,
)

rng = np.random.default_rng(0)


def sample_messages() -> list[Message]:
    n = 5
    return [
        CameraFrame(
            seq=3,
            stamp_ns=1_700_000_000_000_000_000,
            frame_id="front_optical",
            camera="front",
            width=64,
            height=48,
            image=rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
        ),
        CameraFrame(
            camera="mono",
            encoding="mono8",
            width=8,
            height=4,
            image=rng.integers(0, 255, (4, 8), dtype=np.uint8),
        ),
        CameraInfo(
            camera="front",
            width=640,
            height=384,
            K=np.diag([400.0, 400.0, 1.0]),
            D=np.zeros(5),
            R=np.eye(3),
            P=np.eye(3, 4),
            T_vehicle_camera=np.eye(4),
        ),
        Detections(
            camera="front",
            image_width=640,
            image_height=384,
            class_names=["car", "truck"],
            boxes_xyxy=rng.random((n, 4), dtype=np.float32) * 100,
            scores=rng.random(n, dtype=np.float32),
            class_ids=np.array([0, 1, 0, 1, 1], np.int32),
            depth_m=rng.random(n, dtype=np.float32) * 50,
        ),
        Detections(class_names=["car"]),  # zero detections
        DepthMap(
            camera="front",
            image_width=640,
            image_height=384,
            scale_x=4.0,
            scale_y=4.0,
            depth_m=(rng.random((96, 160)) * 80).astype(np.float16),
        ),
        TrackedObjects(
            class_names=["car"],
            ids=np.arange(3, dtype=np.int64),
            class_ids=np.zeros(3, np.int32),
            scores=np.ones(3, np.float32),
            boxes_xyxy=np.ones((3, 4), np.float32),
            position_m=np.ones((3, 3), np.float32),
            velocity_mps=np.zeros((3, 3), np.float32),
            covariance=np.tile(np.eye(6, dtype=np.float32), (3, 1, 1)),
            size_m=np.ones((3, 2), np.float32),
            age_s=np.ones(3, np.float32),
            states=np.array([0, 1, 2], np.uint8),
        ),
        NodeStatus(
            node="camera",
            pid=12,
            uptime_s=3.5,
            inputs={"camera/frames": {"rate_hz": 10.0, "alive": True}},
            stages_ms={"read": {"median": 1.0, "p99": 2.0}},
            counters={"x": 1},
        ),
    ]


def as_bytes(frames: list) -> list[bytes]:
    return [bytes(f) for f in frames]


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: m.TYPE)
def test_round_trip_is_exact(msg: Message) -> None:
    topic, out = decode(as_bytes(encode("any/topic", msg)))
    assert topic == "any/topic"
    assert type(out) is type(msg)
    for name in msg.__dataclass_fields__:
        a, b = getattr(msg, name), getattr(out, name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a, b)
        else:
            assert a == b, name


def test_every_message_type_is_covered() -> None:
    assert {m.TYPE for m in sample_messages()} == set(MESSAGE_TYPES)


def test_large_buffers_are_not_copied_on_encode() -> None:
    image = np.zeros((384, 640, 3), np.uint8)
    frames = encode("t", CameraFrame(width=640, height=384, image=image))
    assert np.shares_memory(np.frombuffer(frames[2], np.uint8), image)


def _frames(msg: Message | None = None) -> list[bytes]:
    return as_bytes(encode("t", msg or sample_messages()[3]))


def _with_header(frames: list[bytes], **changes: object) -> list[bytes]:
    header = msgpack.unpackb(frames[1])
    header.update(changes)
    return [frames[0], msgpack.packb(header), *frames[2:]]


def test_garbage_header_is_malformed() -> None:
    with pytest.raises(MalformedMessage):
        decode([b"t", b"\xc1\xff garbage", b""])
    with pytest.raises(MalformedMessage):
        decode([b"t", msgpack.packb([1, 2, 3])])
    with pytest.raises(MalformedMessage):
        decode([b"t"])


def test_truncated_header_is_malformed() -> None:
    f = _frames()
    with pytest.raises(MalformedMessage):
        decode([f[0], f[1][: len(f[1]) // 2], *f[2:]])


def test_unknown_type_and_version() -> None:
    with pytest.raises(UnknownType):
        decode(_with_header(_frames(), type="Nope"))
    with pytest.raises(UnsupportedVersion):
        decode(_with_header(_frames(), version=99))


def test_wrong_buffer_count() -> None:
    f = _frames()
    with pytest.raises(BufferCountMismatch):
        decode(f[:-1])
    with pytest.raises(BufferCountMismatch):
        decode([*f, b"extra"])


def test_buffer_bytes_must_match_dtype_and_shape() -> None:
    f = _frames()
    with pytest.raises(BufferMismatch):  # truncated buffer
        decode([*f[:2], f[2][:-4], *f[3:]])
    header = msgpack.unpackb(f[1])
    header["buffers"][0][1] = "float64"  # wrong dtype for boxes_xyxy
    with pytest.raises(BufferMismatch):
        decode([f[0], msgpack.packb(header), *f[2:]])
    header = msgpack.unpackb(f[1])
    header["buffers"][0][2] = [4, 5]  # same byte count, wrong shape
    with pytest.raises(BufferMismatch):
        decode([f[0], msgpack.packb(header), *f[2:]])


def test_object_counts_must_agree_across_buffers() -> None:
    msg = sample_messages()[3]
    assert isinstance(msg, Detections)
    msg.scores = msg.scores[:3]
    with pytest.raises(BufferMismatch):
        encode("t", msg)


def test_oversize_is_rejected_before_allocation() -> None:
    f = _frames(sample_messages()[0])
    header = msgpack.unpackb(f[1])
    header["buffers"][0][2] = [100000, 100000, 3]
    with pytest.raises(OversizeField):
        decode([f[0], msgpack.packb(header), *f[2:]], Limits(max_buffer_bytes=1 << 20))
    with pytest.raises(OversizeField):
        decode(_with_header(f, frame_id="x" * 100), Limits(max_str_len=10))
    with pytest.raises(OversizeField):
        decode(f, Limits(max_header_bytes=16))


def test_nan_where_finite_required() -> None:
    msg = sample_messages()[3]
    assert isinstance(msg, Detections)
    msg.depth_m = msg.depth_m.copy()
    msg.depth_m[1] = np.nan
    frames = as_bytes(encode("t", msg, validate=False))
    with pytest.raises(NonFiniteValue):
        decode(frames)
    with pytest.raises(NonFiniteValue):
        encode("t", msg)
    status = NodeStatus(uptime_s=float("nan"))
    with pytest.raises(NonFiniteValue):
        decode(as_bytes(encode("t", status, validate=False)))


def test_field_types_and_cross_field_rules() -> None:
    f = _frames()
    header = msgpack.unpackb(f[1])
    header["fields"]["image_width"] = "wide"
    with pytest.raises(InvalidField):
        decode([f[0], msgpack.packb(header), *f[2:]])
    del header["fields"]["image_width"]
    with pytest.raises(InvalidField):
        decode([f[0], msgpack.packb(header), *f[2:]])
    with pytest.raises(MalformedMessage):
        decode(_with_header(f, seq=-1))
    bad = sample_messages()[3]
    assert isinstance(bad, Detections)
    bad.class_ids = np.full(5, 7, np.int32)  # out of range of class_names
    with pytest.raises(InvalidField):
        decode(as_bytes(encode("t", bad, validate=False)))
    frame = CameraFrame(width=10, height=10, image=np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(InvalidField):
        encode("t", frame)


@pytest.mark.parametrize(
    ("index", "field", "value", "ok"),
    [
        (3, "class_ids", [0, 1, 1, 1, 1], True),  # the last class
        (3, "class_ids", [0, 1, 2, 1, 1], False),  # one past it
        (3, "class_ids", [0, -1, 1, 1, 1], False),
        (3, "scores", [0.0, 1.0, 0.5, 0.5, 0.5], True),  # both ends are in
        (3, "scores", [0.0, 1.01, 0.5, 0.5, 0.5], False),
        (3, "scores", [-0.01, 0.5, 0.5, 0.5, 0.5], False),
        (3, "depth_m", [0.0, 80.0, 1.0, 1.0, 1.0], True),
        (3, "depth_m", [1.0, -0.5, 1.0, 1.0, 1.0], False),
        (6, "states", [0, 1, 2], True),
        (6, "states", [0, 3, 2], False),
        (6, "class_ids", [0, 1, 0], False),  # one class name
    ],
)
def test_range_rules_at_their_bounds(index: int, field: str, value: list[float], ok: bool) -> None:
    msg = sample_messages()[index]
    setattr(msg, field, np.array(value, getattr(msg, field).dtype))
    if ok:
        assert isinstance(decode(as_bytes(encode("t", msg)))[1], type(msg))
        return
    with pytest.raises(InvalidField):
        encode("t", msg)  # the sender's check
    with pytest.raises(InvalidField):
        decode(as_bytes(encode("t", msg, validate=False)))  # and the receiver's


def _mutated(
    base: list[bytes], fuzz: np.random.Generator, max_flips: int, truncate_p: float = 1.0
) -> list[bytes]:
    """``base`` with one frame after the topic damaged: 1..``max_flips`` random bytes
    overwritten, then cut short with probability ``truncate_p`` (1: always, drawing no coin)."""
    frames = list(base)
    i = int(fuzz.integers(1, len(frames)))
    data = bytearray(frames[i])
    if data:
        for _ in range(int(fuzz.integers(1, max_flips + 1))):
            data[int(fuzz.integers(0, len(data)))] = int(fuzz.integers(0, 256))
    if truncate_p >= 1.0 or fuzz.random() < truncate_p:
        data = data[: int(fuzz.integers(0, len(data) + 1))]
    frames[i] = bytes(data)
    return frames


def test_fuzzed_frames_never_raise_anything_but_codec_errors() -> None:
    base = _frames()
    fuzz = np.random.default_rng(1)
    for _ in range(2000):
        frames = _mutated(base, fuzz, max_flips=3)
        with contextlib.suppress(codec.CodecError):
            decode(frames)


def _reference(frames: list[bytes]) -> tuple[str, Message]:
    """The plain-Python decode path, which the fast path must agree with."""
    return decode(frames, header=codec.decode_header(frames[1]))


def _outcome(fn, frames: list[bytes]) -> object:
    try:
        _, msg = fn(frames)
    except codec.CodecError as exc:
        return type(exc)
    return {
        k: (v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else v
        for k, v in vars(msg).items()
    }


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: m.TYPE)
def test_fast_path_agrees_with_the_reference_on_fuzzed_frames(msg: Message) -> None:
    base = as_bytes(encode("t", msg))
    fuzz = np.random.default_rng(7)
    accepted = 0
    for _ in range(600):
        frames = _mutated(base, fuzz, max_flips=2, truncate_p=0.3)
        if len(frames[1]) == 0:
            continue
        fast = _outcome(decode, frames)
        assert fast == _outcome(_reference, frames)
        accepted += isinstance(fast, dict)
    assert accepted > 0  # some mutations (e.g. pixel bytes) leave a valid message


def test_fast_path_refuses_what_the_limits_refuse() -> None:
    long_name = CameraFrame(width=2, height=1, image=np.zeros((1, 2, 3), np.uint8))
    long_name.camera = "c" * 300
    frames = as_bytes(encode("t", long_name))
    tight = codec.Limits(max_str_len=100)
    with pytest.raises(codec.OversizeField):
        decode(frames, tight)
    assert decode(frames)[1].camera == long_name.camera


def test_sender_rejects_bad_values_before_sending() -> None:
    frame = CameraFrame(width=2, height=1, image=np.zeros((1, 2, 3), np.uint8))
    frame.seq = -1
    with pytest.raises(InvalidField):
        encode("t", frame)
    depth = DepthMap(depth_m=np.full((4, 4), np.inf, np.float16))
    with pytest.raises(NonFiniteValue):
        encode("t", depth)
    depth = DepthMap(depth_m=np.ones((4, 4), np.float16), scale_x=float("nan"))
    with pytest.raises(NonFiniteValue):
        encode("t", depth)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_all_finite_on_large_arrays(dtype) -> None:
    arr = np.ones((384, 640), dtype)
    assert codec.all_finite(arr)
    for bad in (np.nan, np.inf, -np.inf):
        arr[200, 300] = bad
        assert not codec.all_finite(arr)
        arr[200, 300] = 1
    arr[0, 0] = np.finfo(dtype).max  # large but finite
    assert codec.all_finite(arr)
    arr[1, 1] = -np.finfo(dtype).max  # negative values take the second pass
    assert codec.all_finite(arr)
    for bad in (np.nan, -np.nan, np.inf, -np.inf):
        arr[300, 100] = bad
        assert not codec.all_finite(arr)
        arr[300, 100] = -1


@pytest.mark.parametrize("size", [15, 5000])  # the sum path and the exponent-bits path
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_all_finite_agrees_with_numpy_on_random_bit_patterns(dtype, size) -> None:
    rng = np.random.default_rng(5)
    uint = np.dtype(dtype).str.replace("f", "u")
    for _ in range(300):
        arr = rng.normal(0, 100, size).astype(dtype)
        if rng.random() < 0.5:
            arr = np.abs(arr)
        for _ in range(int(rng.integers(0, 3))):  # a few arbitrary bit patterns
            arr.view(uint)[rng.integers(0, arr.size)] = rng.integers(0, np.iinfo(uint).max)
        assert codec.all_finite(arr) == bool(np.isfinite(arr).all())


def test_range_rules_take_plain_lists_from_a_sender() -> None:
    empty = Detections(class_names=[], scores=[], class_ids=[], depth_m=[])  # type: ignore[arg-type]
    assert isinstance(decode(as_bytes(encode("t", empty)))[1], Detections)
    bad = Detections(
        class_names=["car"], boxes_xyxy=[[0, 0, 1, 1]], scores=[2.0], class_ids=[0], depth_m=[1.0]
    )  # type: ignore[arg-type]
    with pytest.raises(InvalidField):
        encode("t", bad)
