"""The player node as a real process: record -> play -> record is lossless, pacing follows the
recorded stamps at any rate, --start latches the calibration, lockstep answers every frame, and
bad files are one clear error."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
from rec_helpers import (
    collect,
    drive_messages,
    node_command,
    status_message,
    stop,
    wait_status,
    write_recording,
)

from perception.bus import BusConfig, Publisher, QueuePolicy, Subscriber
from perception.msgs import TrackedObjects
from perception.recording.mcap_io import RecordingWriter, read_all


def _env(bus: BusConfig) -> dict[str, str]:
    return {**os.environ, "PERCEPTION_NAMESPACE": bus.namespace, "PYTHONUNBUFFERED": "1"}


def _player(bus: BusConfig, params: dict, stderr: int | None = subprocess.PIPE):
    return subprocess.Popen(node_command("player", params, bus), env=_env(bus), stderr=stderr)


def _recorder(bus: BusConfig, out: Path, name: str) -> subprocess.Popen[bytes]:
    params = {"output": str(out), "node": {"name": name}, "flush_period_s": 0.2}
    proc = subprocess.Popen(
        node_command("recorder", params, bus), env=_env(bus), stderr=subprocess.DEVNULL
    )
    wait_status(bus, name)
    time.sleep(0.3)
    return proc


def _channels(path: Path) -> dict[str, list[list[bytes]]]:
    out: dict[str, list[list[bytes]]] = {}
    for rec in read_all(path):
        if rec.channel.lossless and not rec.channel.topic.startswith("status"):
            out.setdefault(rec.channel.topic, []).append([bytes(f) for f in rec.frames()])
    return out


@pytest.mark.slow
def test_record_play_record_is_lossless(bus: BusConfig, tmp_path: Path) -> None:
    keys = [
        "camera/info",
        "camera/frames",
        "perception/detections",
        "perception/depth",
        "perception/tracks",
    ]
    pubs = {k: Publisher(k, bus) for k in keys}
    status = Publisher("status", bus, instance="fake")
    first, second = tmp_path / "first.mcap", tmp_path / "second.mcap"
    rec = _recorder(bus, first, "rec1")
    try:
        msgs = drive_messages(12)
        stamp = time.time_ns()
        for key, msg in msgs:
            if key == "camera/frames":  # a live-like drive: 20 Hz, results right after frames
                time.sleep(0.05)
                stamp = time.time_ns()
            msg.stamp_ns = stamp
            pubs[key].publish(msg)
        status.publish(status_message(stamp))
        time.sleep(0.4)
    finally:
        assert stop(rec) == 0
        for p in [*pubs.values(), status]:
            p.close()
    rec = _recorder(bus, second, "rec2")
    try:
        player = _player(bus, {"files": [str(first)]})
        _, err = player.communicate(timeout=30)
        assert player.returncode == 0, err.decode()
        time.sleep(0.3)
    finally:
        assert stop(rec) == 0
    a, b = _channels(first), _channels(second)
    assert set(a) == set(keys) and set(b) == set(keys)  # status is not played by default
    for key in keys:
        assert len(a[key]) == len(b[key]) == (2 if key == "camera/info" else 12), key
        for fa, fb in zip(a[key], b[key], strict=True):
            assert fa[1:] == fb[1:]  # every buffer, bit for bit
            ha, hb = msgpack.unpackb(fa[0]), msgpack.unpackb(fb[0])
            assert ha != hb  # the player numbers and times its own sends...
            ha.update(seq=hb["seq"], mono_ns=hb["mono_ns"])
            assert msgpack.packb(ha) == fb[0]  # ...and every other header byte is as recorded


def _pacing_recording(path: Path, period_ns: int, n: int) -> list:
    msgs = [(k, m) for k, m in drive_messages(n, period_ns) if k.startswith("camera/")]
    shift = time.time_ns() - msgs[0][1].stamp_ns
    for _, m in msgs:  # stamps near now, as a live recording has them
        m.stamp_ns += shift
    write_recording(path, msgs, views=False)
    return msgs


@pytest.mark.parametrize(("rate", "n"), [(1.0, 40), (2.5, 80)])
def test_pacing_follows_the_stamps_at_the_rate(
    bus: BusConfig, tmp_path: Path, rate: float, n: int
) -> None:
    period_ns = 50_000_000
    path = tmp_path / "paced.mcap"
    msgs = _pacing_recording(path, period_ns, n)
    frames = Subscriber("camera/frames", bus, policy=QueuePolicy.QUEUE)
    infos = Subscriber("camera/info", bus, policy=QueuePolicy.QUEUE)
    start_s = 0.6 if rate > 1 else 0.0  # the faster run also starts late
    player = _player(bus, {"files": [str(path)], "rate": rate, "start_s": start_s})
    got: list[tuple[float, int]] = []
    deadline = time.monotonic() + 30
    while (player.poll() is None or frames.socket.poll(300)) and time.monotonic() < deadline:
        for msg in frames.receive(timeout_ms=5):
            got.append((time.monotonic(), msg.stamp_ns))
    info_stamps = [m.stamp_ns for m in infos.receive()]  # queued meanwhile
    frames.close()
    infos.close()
    _, err = player.communicate(timeout=10)
    assert player.returncode == 0, err.decode()
    recorded = [m.stamp_ns for k, m in msgs if k == "camera/frames"]
    skip = round(start_s * 1e9 / period_ns)
    assert [stamp for _, stamp in got] == recorded[skip:]  # all, in order, from --start
    # the mean period: the slope of arrival time over frame index (least squares, so one
    # late wake-up of this test process does not decide it)
    arrivals = np.array([t for t, _ in got])
    mean_period = np.polyfit(np.arange(len(arrivals)), arrivals, 1)[0]
    assert mean_period == pytest.approx(period_ns / 1e9 / rate, rel=0.03)
    span = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)  # end to end, looser
    assert span == pytest.approx(period_ns / 1e9 / rate, rel=0.08)
    if start_s:  # the calibration in force at the start point comes first (frame 10's)
        assert info_stamps[0] == msgs[0][1].stamp_ns + 10 * period_ns


def _responder(bus: BusConfig, seen: list[int], stop_event: threading.Event, skip: int) -> None:
    """A stand-in for detector + tracker: answers each frame with tracks of its stamp after a
    random delay, except frame ``skip``."""
    frames = Subscriber("camera/frames", bus)  # keep-latest, like a detector
    tracks = Publisher("perception/tracks", bus)
    rng = np.random.default_rng(0)
    try:
        while not stop_event.is_set():
            for msg in frames.receive(timeout_ms=50):
                seen.append(msg.stamp_ns)
                time.sleep(float(rng.uniform(0.0, 0.08)))  # slower than the 20 Hz recording
                if len(seen) - 1 != skip:
                    tracks.publish(TrackedObjects(stamp_ns=msg.stamp_ns, camera="front"))
    finally:
        frames.close()
        tracks.close()


def test_lockstep_waits_for_each_answer(bus: BusConfig, tmp_path: Path) -> None:
    path = tmp_path / "drive.mcap"
    msgs = drive_messages(15, 50_000_000)  # with recorded tracks: never played in lockstep
    write_recording(path, msgs)
    seen: list[int] = []
    stop_event = threading.Event()
    thread = threading.Thread(target=_responder, args=(bus, seen, stop_event, 5), daemon=True)
    thread.start()
    try:
        player = _player(
            bus,
            {
                "files": [str(path)],
                "lockstep": True,
                "lockstep_timeout_s": 0.5,
            },
        )
        _, err = player.communicate(timeout=60)
    finally:
        stop_event.set()
        thread.join(5)
    log = err.decode()
    assert player.returncode == 0, log
    assert seen == [m.stamp_ns for k, m in msgs if k == "camera/frames"]  # none skipped
    assert "lockstep answers 14, timeouts 1" in log


def test_bad_recordings_and_arguments_are_one_clear_error(bus: BusConfig, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.mcap"
    foreign.write_bytes(os.urandom(1000))
    json_only = tmp_path / "json.mcap"
    from perception.recording.mcap_io import ChannelSpec

    with RecordingWriter(json_only) as w:
        w.write(ChannelSpec("/other", "json", "x", "jsonschema", b"{}"), b"{}", 1, 1)
    good = tmp_path / "good.mcap"
    write_recording(good, drive_messages(10, 20_000_000), views=False, chunk_size=20_000)
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    cases = {
        "foreign": ({"files": [str(foreign)]}, 2, "not an MCAP file"),
        "json": ({"files": [str(json_only)]}, 2, "holds no perception bus channels (/other)"),
        "rate": ({"files": [str(good)], "rate": 20}, 2, "rate must be in 0.1..10"),
        "missing": ({"files": [str(tmp_path / "nope.mcap")]}, 2, "does not exist"),
        "cut": ({"files": [str(cut)], "wait_subscribers_s": 0, "end_linger_s": 0}, 0, "cut short"),
    }
    procs = {}
    for name, (params, _, _) in cases.items():
        params = {**params, "node": {"name": f"player_{name}"}}
        procs[name] = _player(bus, params)
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=30)
        _, code, text = cases[name]
        log = err.decode()
        assert proc.returncode == code and text in log, (name, log)
        assert "Traceback" not in log


def test_sigint_stops_a_looping_player(bus: BusConfig, tmp_path: Path) -> None:
    path = tmp_path / "loop.mcap"
    _pacing_recording(path, 50_000_000, 10)
    player = _player(bus, {"files": [str(path)], "loop": True})
    sub = Subscriber("camera/frames", bus, policy=QueuePolicy.QUEUE)
    got = list(collect(sub, time.monotonic() + 3.5))
    sub.close()
    player.send_signal(signal.SIGINT)
    _, err = player.communicate(timeout=10)
    assert player.returncode == 0, err.decode()
    stamps = [m.stamp_ns for _, m in got]
    assert len(stamps) > 12 and len(set(stamps)) == 10  # went round more than once
