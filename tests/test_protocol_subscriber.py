"""The wire protocol, from docs/PROTOCOL.md alone.

The subscriber side of this module (endpoints, schema tables, decoder and its checks) is written
from docs/PROTOCOL.md only, with nothing but ``zmq``, ``msgpack`` and ``numpy``: it proves that
the document is enough to read every message type without this project's code. The project is
used only on the publishing side, in a subprocess that publishes one message of every type (and
records what it sent, so the decoded values can be compared exactly).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20

# ------------------------------------------------------------------------------------------
# The document's tables, transcribed.
# ------------------------------------------------------------------------------------------

# "### Topics": topic -> (message type, tcp port offset, max frame bytes)
TOPICS: dict[str, tuple[str, int, int]] = {
    "camera/frames": ("CameraFrame", 0, 128 * MiB),
    "camera/info": ("CameraInfo", 1, 1 * MiB),
    "perception/detections": ("Detections", 2, 16 * MiB),
    "perception/depth": ("DepthMap", 3, 64 * MiB),
    "perception/tracks": ("TrackedObjects", 4, 16 * MiB),
    "status": ("NodeStatus", 5, 1 * MiB),
}

# "### Buffers": dtype name -> little-endian numpy dtype (itemsize is the table's)
DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("u1"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint32": np.dtype("<u4"),
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}
ITEMSIZE = {
    "uint8": 1,
    "int32": 4,
    "int64": 8,
    "uint32": 4,
    "float16": 2,
    "float32": 4,
    "float64": 8,
}

# "### Header": key -> accepted Python types after msgpack decoding
HEADER = {
    "type": "str",
    "version": "int",
    "seq": "int",
    "stamp_ns": "int",
    "mono_ns": "int",
    "frame_id": "str",
    "valid": "bool",
    "fields": "map",
    "buffers": "array",
}

# "## Message types": type -> (version, fields {key: type}, buffers [(name, dtype, shapes, finite)])
# In shapes "*" is any length, "N" a named length that agrees across the message's buffers.
Shape = tuple[Any, ...]
SCHEMAS: dict[str, tuple[int, dict[str, str], list[tuple[str, str, list[Shape], bool]]]] = {
    "CameraFrame": (
        1,
        {"camera": "str", "encoding": "str", "width": "int", "height": "int"},
        [("image", "uint8", [("*", "*", 3), ("*", "*"), ("*",)], False)],
    ),
    "CameraInfo": (
        1,
        {"camera": "str", "width": "int", "height": "int", "distortion_model": "str"},
        [
            ("K", "float64", [(3, 3)], True),
            ("D", "float64", [("*",)], True),
            ("R", "float64", [(3, 3)], True),
            ("P", "float64", [(3, 4)], True),
            ("T_vehicle_camera", "float64", [(4, 4)], True),
        ],
    ),
    "Detections": (
        1,
        {"camera": "str", "image_width": "int", "image_height": "int", "class_names": "list[str]"},
        [
            ("boxes_xyxy", "float32", [("N", 4)], True),
            ("scores", "float32", [("N",)], True),
            ("class_ids", "int32", [("N",)], False),
            ("depth_m", "float32", [("N",)], True),
        ],
    ),
    "DepthMap": (
        1,
        {
            "camera": "str",
            "image_width": "int",
            "image_height": "int",
            "scale_x": "float",
            "scale_y": "float",
            "offset_x": "float",
            "offset_y": "float",
        },
        [("depth_m", "float16", [("*", "*")], True)],
    ),
    "TrackedObjects": (
        1,
        {"camera": "str", "class_names": "list[str]", "state_names": "list[str]"},
        [
            ("ids", "int64", [("N",)], False),
            ("class_ids", "int32", [("N",)], False),
            ("scores", "float32", [("N",)], True),
            ("boxes_xyxy", "float32", [("N", 4)], True),
            ("position_m", "float32", [("N", 3)], True),
            ("velocity_mps", "float32", [("N", 3)], True),
            ("covariance", "float32", [("N", 6, 6)], True),
            ("size_m", "float32", [("N", 2)], True),
            ("age_s", "float32", [("N",)], True),
            ("states", "uint8", [("N",)], False),
        ],
    ),
    "NodeStatus": (
        1,
        {
            "node": "str",
            "pid": "int",
            "uptime_s": "float",
            "state": "str",
            "message": "str",
            "inputs": "dict",
            "outputs": "dict",
            "stages_ms": "dict",
            "counters": "dict",
        },
        [],
    ),
}

# Header limits ("## What a reader must check", 2.)
HEADER_MAX = 1 * MiB
MAX_ELEMENTS = 64 * 1024
MAX_MAP_ENTRIES = 1024


# ------------------------------------------------------------------------------------------
# Endpoints ("### Endpoints")
# ------------------------------------------------------------------------------------------


def channel_name(topic: str, instance: str | None) -> str:
    return topic if instance is None else f"{topic}@{instance}"


def ipc_endpoint(topic: str, instance: str | None, env: dict[str, str]) -> str:
    namespace = env.get("PERCEPTION_NAMESPACE", "default")
    # "$TMPDIR" in the template; "the folder from PERCEPTION_IPC_DIR (default the system temp dir)"
    folder = env.get("PERCEPTION_IPC_DIR") or env.get("TMPDIR") or tempfile.gettempdir()
    name = topic.replace("/", ".") + (f"@{instance}" if instance is not None else "")
    return f"ipc://{folder}/perception-{os.getuid()}/{namespace}/{name}"


def port_base(env: dict[str, str]) -> int:
    namespace = env.get("PERCEPTION_NAMESPACE", "default")
    if "PERCEPTION_PORT_BASE" in env:
        return int(env["PERCEPTION_PORT_BASE"])
    if namespace == "default":
        return 7400
    return 20000 + (zlib.crc32(namespace.encode()) % 40) * 1000


def tcp_endpoint(topic: str, instance: str | None, env: dict[str, str], host: str) -> str:
    base = port_base(env)
    if instance is None:
        port = base + TOPICS[topic][1]
    else:
        port = base + 100 + zlib.crc32(channel_name(topic, instance).encode()) % 900
    return f"tcp://{host}:{port}"


# ------------------------------------------------------------------------------------------
# The decoder ("## Message layout", "## What a reader must check")
# ------------------------------------------------------------------------------------------


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _is_type(x: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(x, str)
    if kind == "int":
        return isinstance(x, int) and not isinstance(x, bool)
    if kind == "float":
        return isinstance(x, float)
    if kind == "bool":
        return isinstance(x, bool)
    if kind in ("map", "dict"):
        return isinstance(x, dict) and all(isinstance(k, str) for k in x)
    if kind == "array":
        return isinstance(x, list)
    if kind == "list[str]":
        return isinstance(x, list) and all(isinstance(s, str) for s in x)
    raise AssertionError(kind)


def decode(topic: str, frames: list[bytes]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Decode one multipart message of `topic`; raises :class:`Rejected` (with the doc's reason)."""
    # 1. frame count and topic frame
    if len(frames) < 2:
        raise Rejected("malformed", f"{len(frames)} frame(s)")
    if frames[0] != topic.encode("utf-8"):
        raise Rejected("malformed", f"topic frame {frames[0]!r} != {topic!r}")
    # 2. header: a msgpack map within limits, with the keys above of the right types
    if len(frames[1]) > HEADER_MAX:
        raise Rejected("oversize", f"header of {len(frames[1])} bytes")
    try:
        h = msgpack.unpackb(
            frames[1],
            raw=False,
            max_str_len=MAX_ELEMENTS,
            max_bin_len=MAX_ELEMENTS,
            max_array_len=MAX_ELEMENTS,
            max_map_len=MAX_MAP_ENTRIES,
            max_ext_len=0,
        )
    except ValueError as e:  # includes msgpack's ExtraData / FormatError / limit errors
        raise Rejected("malformed", f"header: {e}") from None
    except Exception as e:  # truncated input etc.
        raise Rejected("malformed", f"header: {type(e).__name__}: {e}") from None
    if not isinstance(h, dict):
        raise Rejected("malformed", "header is not a map")
    for key, kind in HEADER.items():
        if key not in h or not _is_type(h[key], kind):
            raise Rejected("malformed", f"header key {key!r} missing or not {kind}")
    if h["seq"] < 0:
        raise Rejected("malformed", "negative seq")
    # 3. type / topic / version
    if h["type"] not in SCHEMAS:
        raise Rejected("unknown_type", h["type"])
    if h["type"] != TOPICS[topic][0]:
        raise Rejected("wrong_type", f"{h['type']} on {topic}")
    version, field_types, buffer_specs = SCHEMAS[h["type"]]
    if h["version"] != version:
        raise Rejected("unsupported_version", f"{h['type']} v{h['version']}")
    # 4. buffer counts
    triples, buffers = h["buffers"], frames[2:]
    if len(triples) != len(buffer_specs) or len(buffers) != len(buffer_specs):
        raise Rejected("buffer_count", f"{len(triples)} triples, {len(buffers)} frames")
    # 5. each triple: expected name, dtype, an allowed shape; named sizes agree; byte length
    named: dict[str, int] = {}
    shapes: list[tuple[int, ...]] = []
    for triple, buf, (name, dtype, allowed, _finite) in zip(
        triples, buffers, buffer_specs, strict=True
    ):
        if not (isinstance(triple, list) and len(triple) == 3):
            raise Rejected("buffer_mismatch", f"triple {triple!r}")
        t_name, t_dtype, t_shape = triple
        if t_name != name:
            raise Rejected("buffer_mismatch", f"buffer {t_name!r}, expected {name!r}")
        if t_dtype not in DTYPES:
            raise Rejected("buffer_mismatch", f"{name}: unknown dtype {t_dtype!r}")
        if t_dtype != dtype:
            raise Rejected("buffer_mismatch", f"{name}: dtype {t_dtype!r}, expected {dtype!r}")
        if not (isinstance(t_shape, list) and all(_is_type(d, "int") and d >= 0 for d in t_shape)):
            raise Rejected("buffer_mismatch", f"{name}: shape {t_shape!r}")
        shape = tuple(t_shape)
        pattern = next(
            (
                p
                for p in allowed
                if len(p) == len(shape)
                and all(d == s or d == "*" or d == "N" for d, s in zip(p, shape, strict=True))
            ),
            None,
        )
        if pattern is None:
            raise Rejected("buffer_mismatch", f"{name}: shape {shape} not in {allowed}")
        for d, s in zip(pattern, shape, strict=True):
            if isinstance(d, str) and d != "*" and named.setdefault(d, s) != s:
                raise Rejected("buffer_mismatch", f"{name}: {d}={s}, elsewhere {named[d]}")
        nbytes = math.prod(shape) * ITEMSIZE[t_dtype]
        if len(buf) != nbytes:
            raise Rejected("buffer_mismatch", f"{name}: {len(buf)} bytes, expected {nbytes}")
        if len(buf) > TOPICS[topic][2]:
            raise Rejected("oversize", f"{name}: {len(buf)} bytes")
        shapes.append(shape)
    # 6. fields, then buffer contents
    fields = h["fields"]
    for key, kind in field_types.items():
        if key not in fields or not _is_type(fields[key], kind):
            raise Rejected("invalid_field", f"field {key!r} missing or not {kind}")
        if kind == "float" and not math.isfinite(fields[key]):
            raise Rejected("non_finite", f"field {key!r} = {fields[key]}")
    arrays: dict[str, np.ndarray] = {}
    for buf, shape, (name, dtype, _allowed, finite) in zip(
        buffers, shapes, buffer_specs, strict=True
    ):
        a = np.frombuffer(buf, DTYPES[dtype], count=math.prod(shape)).reshape(shape, order="C")
        if finite and not np.all(np.isfinite(a)):
            raise Rejected("non_finite", name)
        arrays[name] = a
    for ids, names in (("class_ids", "class_names"), ("states", "state_names")):
        if ids in arrays and names in field_types:
            a = arrays[ids]
            if a.size and (int(a.min()) < 0 or int(a.max()) >= len(fields[names])):
                raise Rejected("invalid_field", f"{ids} out of range of {names}")
    return h, arrays


# ------------------------------------------------------------------------------------------
# The publisher: this project's code, in a subprocess
# ------------------------------------------------------------------------------------------

PUBLISHER = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    from perception.bus import BusConfig, Publisher
    from perception import msgs

    bus = BusConfig(**json.loads(sys.argv[1]))
    out = sys.argv[2]
    rng = np.random.default_rng(1234)
    STAMP0 = 1_700_000_000_123_456_789
    classes = ["car", "truck", "pedestrian", "cyclist"]
    u = lambda *s: rng.uniform(0, 1, s)
    n, m = 5, 3
    boxes = np.sort(rng.uniform(0, 640, (n, 4)), axis=1).astype(np.float32)
    sent = {
        "CameraFrame": dict(frame_id="front_optical", camera="front", encoding="bgr8",
            width=64, height=48, image=rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)),
        "CameraInfo": dict(frame_id="front_optical", camera="front", width=640, height=384,
            distortion_model="plumb_bob",
            K=np.array([[500.25, 0, 320.5], [0, 501.5, 192.25], [0, 0, 1]]),
            D=rng.normal(0, 0.1, 5), R=np.eye(3) + rng.normal(0, 1e-3, (3, 3)),
            P=rng.normal(0, 100, (3, 4)), T_vehicle_camera=rng.normal(0, 1, (4, 4))),
        "Detections": dict(frame_id="front_optical", camera="front", image_width=640,
            image_height=384, class_names=classes, boxes_xyxy=boxes,
            scores=u(n).astype(np.float32),
            class_ids=rng.integers(0, 4, n).astype(np.int32),
            depth_m=(u(n) * 80).astype(np.float32)),
        "DepthMap": dict(frame_id="front_optical", camera="front", image_width=640,
            image_height=384, scale_x=4.0, scale_y=4.0, offset_x=1.5, offset_y=1.5,
            depth_m=(u(96, 160) * 90).astype(np.float16), valid=False),
        "TrackedObjects": dict(frame_id="vehicle", camera="front", class_names=classes,
            state_names=["tentative", "confirmed", "lost"],
            ids=rng.integers(-2**62, 2**62, m, dtype=np.int64),
            class_ids=rng.integers(0, 4, m).astype(np.int32),
            scores=u(m).astype(np.float32), boxes_xyxy=boxes[:m] + 0.25,
            position_m=rng.normal(0, 20, (m, 3)).astype(np.float32),
            velocity_mps=rng.normal(0, 5, (m, 3)).astype(np.float32),
            covariance=rng.normal(0, 1, (m, 6, 6)).astype(np.float32),
            size_m=(u(m, 2) * 3).astype(np.float32), age_s=(u(m) * 10).astype(np.float32),
            states=rng.integers(0, 3, m).astype(np.uint8)),
        "NodeStatus": dict(frame_id="n1", node="n1", pid=os.getpid(), uptime_s=12.5,
            state="degraded", message="input camera/frames is slow",
            inputs={"camera/frames": {"rate_hz": 9.5, "alive": True, "rate_ok": False,
                    "upstream_valid": True, "received": 120, "dropped": 2,
                    "stale_dropped": 0, "rejected": 1}},
            outputs={"perception/detections": {"rate_hz": 9.5, "published": 118}},
            stages_ms={"infer": {"median": 7.25, "p99": 11.5}},
            counters={"rejected.buffer_mismatch": 1}),
    }
    np.savez(os.path.join(out, "sent.npz"), **{f"{t}.{k}": v for t, d in sent.items()
             for k, v in d.items() if isinstance(v, np.ndarray)})
    with open(os.path.join(out, "sent.json"), "w") as f:
        json.dump({"stamp0": STAMP0, "values": {t: {k: v for k, v in d.items()
                   if not isinstance(v, np.ndarray)} for t, d in sent.items()}}, f)
    topics = {"CameraFrame": "camera/frames", "CameraInfo": "camera/info",
              "Detections": "perception/detections", "DepthMap": "perception/depth",
              "TrackedObjects": "perception/tracks", "NodeStatus": "status"}
    pubs = {t: Publisher(topic, bus, instance="n1" if topic == "status" else None)
            for t, topic in topics.items()}
    print("bound", flush=True)
    time.sleep(0.5)  # slow joiner
    t_end = time.monotonic() + 3.0
    i = 0
    while time.monotonic() < t_end:
        for t, pub in pubs.items():
            pub.publish(getattr(msgs, t)(stamp_ns=STAMP0 + i, **sent[t]))
        i += 1
        time.sleep(0.05)
    print("done", i, flush=True)
    """
)

# mode -> (transport, BusConfig keyword arguments, which PERCEPTION_* variables to set)
#   NS: PERCEPTION_NAMESPACE, DIR: PERCEPTION_IPC_DIR, TMPDIR: TMPDIR, PORT: PERCEPTION_PORT_BASE
MODES: dict[str, tuple[str, dict[str, Any], set[str]]] = {
    # the brief's configurations: namespace / port base given to BusConfig (and in the env)
    "ipc": ("ipc", {"namespace": "{ns}"}, {"NS", "DIR"}),
    "tcp": (
        "tcp",
        {"transport": "tcp", "namespace": "{ns}", "port_base": "{port}"},
        {"NS", "PORT"},
    ),
    # the document's rules for the environment alone
    "ipc-env": ("ipc", {}, {"NS", "DIR"}),
    "ipc-tmpdir": ("ipc", {}, {"NS", "TMPDIR"}),  # no PERCEPTION_IPC_DIR: the system temp dir
    "tcp-env": ("tcp", {"transport": "tcp"}, {"NS", "PORT"}),
    "tcp-derived": ("tcp", {"transport": "tcp"}, {"NS"}),  # 20000 + crc32(ns) % 40 * 1000
    "tcp-default-ns": ("tcp", {"transport": "tcp"}, {"PORT"}),  # PORT_BASE beats 7400
}
WANT_PER_TYPE = 3  # consecutive messages per type (to check seq)


def _run_publisher_and_receive(mode: str, tmp: Path) -> dict[str, Any]:
    transport, bus_kwargs, variables = MODES[mode]
    ns = f"proto{os.getpid()}{mode.replace('-', '')}"
    # a port base per mode (so a slow-closing earlier run cannot interfere); BASE + 999, the
    # highest instance port, must stay below 65536
    port = 30000 + ((os.getpid() + list(MODES).index(mode) * 3) % 30) * 1000
    ipc_dir = tmp / "ipc"
    ipc_dir.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PERCEPTION_NAMESPACE", "PERCEPTION_IPC_DIR", "PERCEPTION_PORT_BASE")
    }
    if "NS" in variables:
        env["PERCEPTION_NAMESPACE"] = ns
    else:
        ns = "default"
    if "DIR" in variables:
        env["PERCEPTION_IPC_DIR"] = str(ipc_dir)
    if "TMPDIR" in variables:
        env["TMPDIR"] = str(ipc_dir)
    if "PORT" in variables:
        env["PERCEPTION_PORT_BASE"] = str(port)
    kwargs = {k: {"{ns}": ns, "{port}": port}.get(v, v) for k, v in bus_kwargs.items()}
    assert port_base(env) + 999 < 65536

    ctx = zmq.Context()
    socks: dict[zmq.Socket[bytes], str] = {}
    poller = zmq.Poller()
    endpoints = {}
    for topic, (_type, _offset, max_bytes) in TOPICS.items():
        instance = "n1" if topic == "status" else None
        if transport == "ipc":
            ep = ipc_endpoint(topic, instance, env)
            assert len(ep) - len("ipc://") < 108, f"ipc path too long for the OS: {ep}"
        else:
            ep = tcp_endpoint(topic, instance, env, host="127.0.0.1")
        endpoints[topic] = ep
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SUBSCRIBE, topic.encode())
        s.connect(ep)
        socks[s] = topic
        poller.register(s, zmq.POLLIN)

    proc = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, json.dumps(kwargs), str(tmp)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    received: dict[str, list[tuple[int, list[bytes]]]] = {t: [] for t in TOPICS}
    try:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if all(len(v) >= WANT_PER_TYPE for v in received.values()):
                break
            if proc.poll() is not None and not poller.poll(0):
                break
            for s, _ in poller.poll(100):
                received[socks[s]].append((time.monotonic_ns(), s.recv_multipart()))
    finally:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        for s in socks:
            s.close(linger=0)
        ctx.term()
    missing = [t for t, v in received.items() if len(v) < WANT_PER_TYPE]
    assert not missing, (
        f"no/too few messages on {missing} at {[endpoints[t] for t in missing]}\n"
        f"publisher rc={proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    )
    sent = json.loads((tmp / "sent.json").read_text())
    with np.load(tmp / "sent.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return {"received": received, "sent": sent, "sent_arrays": arrays, "mode": mode}


_CAPTURES: dict[str, dict[str, Any]] = {}


def _capture(mode: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if mode not in _CAPTURES:  # one publisher run per mode for the whole module
        tmp = tmp_path_factory.mktemp(mode.replace("-", ""))  # short: ipc paths max ~107 chars
        _CAPTURES[mode] = _run_publisher_and_receive(mode, tmp)
    return _CAPTURES[mode]


@pytest.fixture(params=list(MODES))
def capture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _capture(request.param, tmp_path_factory)


@pytest.fixture
def ipc_capture(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _capture("ipc", tmp_path_factory)


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------


def test_every_type_decodes_from_the_document_alone(capture: dict[str, Any]) -> None:
    sent, sent_arrays = capture["sent"], capture["sent_arrays"]
    stamp0 = sent["stamp0"]
    for topic, messages in capture["received"].items():
        type_name = TOPICS[topic][0]
        want = sent["values"][type_name]
        seqs = []
        for recv_mono_ns, frames in messages:
            h, arrays = decode(topic, frames)
            assert h["type"] == type_name
            assert h["frame_id"] == want["frame_id"]
            assert h["valid"] is want.get("valid", True), (type_name, h["valid"])
            assert 0 <= h["stamp_ns"] - stamp0 < 1000, "stamp_ns must travel unchanged"
            # mono_ns is the sender's CLOCK_MONOTONIC at send: same clock as ours on this host
            assert 0 <= recv_mono_ns - h["mono_ns"] < 5_000_000_000
            seqs.append(h["seq"])
            for key, value in want.items():
                if key in ("frame_id", "valid"):
                    continue
                assert h["fields"][key] == value, (type_name, key, h["fields"][key], value)
                assert type(h["fields"][key]) is type(value), (type_name, key)
            _, _, specs = SCHEMAS[type_name]
            assert list(arrays) == [s[0] for s in specs]
            for name, dtype, _shapes, _finite in specs:
                expected = sent_arrays[f"{type_name}.{name}"]
                got = arrays[name]
                assert got.dtype == DTYPES[dtype] == expected.dtype, (type_name, name, got.dtype)
                assert got.shape == expected.shape, (type_name, name, got.shape, expected.shape)
                assert np.array_equal(got, expected), (type_name, name)
                assert got.tobytes() == expected.astype(DTYPES[dtype]).tobytes(order="C")
        # +1 per message on this channel (a local subscriber that keeps up loses none)
        assert all(b - a == 1 for a, b in itertools.pairwise(seqs)), (topic, seqs)
        assert seqs[0] >= 0
    # N agreement, sizes as sent
    _, det = decode("perception/detections", capture["received"]["perception/detections"][0][1])
    assert det["boxes_xyxy"].shape == (5, 4) and det["scores"].shape == (5,)
    _, trk = decode("perception/tracks", capture["received"]["perception/tracks"][0][1])
    assert trk["covariance"].shape == (3, 6, 6)
    _, dep = decode("perception/depth", capture["received"]["perception/depth"][0][1])
    assert dep["depth_m"].shape == (96, 160) and dep["depth_m"].dtype == np.dtype("<f2")
    _, img = decode("camera/frames", capture["received"]["camera/frames"][0][1])
    assert img["image"].shape == (48, 64, 3)


# --- tampering: the decoder above must reject what the document says a reader rejects --------


def _header(frames: list[bytes]) -> dict[str, Any]:
    return msgpack.unpackb(frames[1], raw=False)


def _with_header(frames: list[bytes], h: dict[str, Any]) -> list[bytes]:
    return [frames[0], msgpack.packb(h, use_bin_type=True), *frames[2:]]


def _tamper_dtype(frames: list[bytes], dtype: str, i: int = 0) -> list[bytes]:
    h = _header(frames)
    h["buffers"][i][1] = dtype
    return _with_header(frames, h)


def _tamper_shape(frames: list[bytes], i: int, shape: list[int]) -> list[bytes]:
    h = _header(frames)
    h["buffers"][i][2] = shape
    return _with_header(frames, h)


def _tamper_key(frames: list[bytes], key: str, value: Any, in_fields: bool = False) -> list[bytes]:
    h = _header(frames)
    target = h["fields"] if in_fields else h
    if value is _DELETE:
        del target[key]
    else:
        target[key] = value
    return _with_header(frames, h)


def _nan_in(frames: list[bytes], i: int, dtype: str) -> list[bytes]:
    a = np.frombuffer(frames[2 + i], DTYPES[dtype]).copy()
    a[0] = np.nan
    return [*frames[: 2 + i], a.tobytes(), *frames[3 + i :]]


_DELETE = object()
DET = "perception/detections"
TAMPERS: dict[str, tuple[str, str, Any]] = {
    # name: (topic, reason, f(frames) -> frames)
    "byte_length_short": (DET, "buffer_mismatch", lambda f: [*f[:2], f[2][:-1], *f[3:]]),
    "byte_length_long": (DET, "buffer_mismatch", lambda f: [*f[:2], f[2] + b"\0", *f[3:]]),
    "depth_byte_length": ("perception/depth", "buffer_mismatch", lambda f: [*f[:2], f[2][:-2]]),
    "unknown_dtype": (DET, "buffer_mismatch", lambda f: _tamper_dtype(f, "float128")),
    "unknown_dtype_bfloat16": (DET, "buffer_mismatch", lambda f: _tamper_dtype(f, "bfloat16")),
    "big_endian_dtype_name": (DET, "buffer_mismatch", lambda f: _tamper_dtype(f, ">f4")),
    "other_known_dtype_same_size": (DET, "buffer_mismatch", lambda f: _tamper_dtype(f, "int32")),
    # scores says N=4 (and its frame has 4 floats) while boxes_xyxy says N=5
    "N_disagrees": (
        DET,
        "buffer_mismatch",
        lambda f: _tamper_shape([*f[:3], f[3][:-4], *f[4:]], 1, [4]),
    ),
    "shape_not_allowed": (DET, "buffer_mismatch", lambda f: _tamper_shape(f, 0, [10, 2])),
    "non_finite_buffer": (DET, "non_finite", lambda f: _nan_in(f, 1, "float32")),
    "non_finite_depth": ("perception/depth", "non_finite", lambda f: _nan_in(f, 0, "float16")),
    "non_finite_field": (
        "perception/depth",
        "non_finite",
        lambda f: _tamper_key(f, "scale_x", float("inf"), in_fields=True),
    ),
    "missing_field": (
        DET,
        "invalid_field",
        lambda f: _tamper_key(f, "class_names", _DELETE, in_fields=True),
    ),
    "class_id_out_of_range": (
        DET,
        "invalid_field",
        lambda f: _tamper_key(f, "class_names", ["car"], in_fields=True),
    ),
    "missing_buffer_frame": (DET, "buffer_count", lambda f: f[:-1]),
    "extra_buffer_frame": (DET, "buffer_count", lambda f: [*f, b""]),
    "one_frame": (DET, "malformed", lambda f: f[:1]),
    "wrong_topic_frame": (DET, "malformed", lambda f: [b"perception/detectionsX", *f[1:]]),
    "header_not_map": (DET, "malformed", lambda f: [f[0], msgpack.packb([1, 2]), *f[2:]]),
    "header_garbage": (DET, "malformed", lambda f: [f[0], b"\xc1\xc1", *f[2:]]),
    "seq_negative": (DET, "malformed", lambda f: _tamper_key(f, "seq", -1)),
    "valid_not_bool": (DET, "malformed", lambda f: _tamper_key(f, "valid", 1)),
    "missing_mono_ns": (DET, "malformed", lambda f: _tamper_key(f, "mono_ns", _DELETE)),
    "unknown_type": (DET, "unknown_type", lambda f: _tamper_key(f, "type", "Detections2")),
    "wrong_type": (DET, "wrong_type", lambda f: _tamper_key(f, "type", "DepthMap")),
    "unsupported_version": (DET, "unsupported_version", lambda f: _tamper_key(f, "version", 2)),
    "state_out_of_range": (
        "perception/tracks",
        "invalid_field",
        lambda f: _tamper_key(f, "state_names", ["a"], in_fields=True),
    ),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_decoder_rejects_tampered_messages(ipc_capture: dict[str, Any], tamper: str) -> None:
    capture = ipc_capture
    topic, reason, f = TAMPERS[tamper]
    frames = capture["received"][topic][0][1]
    decode(topic, frames)  # the original is accepted
    with pytest.raises(Rejected) as e:
        decode(topic, f(list(frames)))
    assert e.value.reason == reason, str(e.value)


def test_decoder_ignores_unknown_keys(ipc_capture: dict[str, Any]) -> None:
    frames = ipc_capture["received"][DET][0][1]
    h = _header(frames)
    h["fields"]["future_field"] = [1, 2, 3]
    h["future_key"] = {"x": 1}
    _, arrays = decode(DET, _with_header(frames, h))
    assert arrays["scores"].shape == (5,)


def test_empty_arrays_are_empty_frames(ipc_capture: dict[str, Any]) -> None:
    """'an empty array is an empty frame': N = 0 detections decode to (0, 4), (0,), ..."""
    frames = ipc_capture["received"][DET][0][1]
    h = _header(frames)
    for triple in h["buffers"]:
        triple[2] = [0, *triple[2][1:]]
    _, arrays = decode(DET, [frames[0], msgpack.packb(h), b"", b"", b"", b""])
    assert arrays["boxes_xyxy"].shape == (0, 4) and arrays["depth_m"].shape == (0,)
