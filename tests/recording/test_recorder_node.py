"""The recorder node as a real process on a private bus: lossless channels, discovery of
instances, clean stop, and files that survive SIGKILL and a full disk."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from rec_helpers import node_command, status_message, wait_status

from perception.bus import BusConfig, Publisher
from perception.bus.codec import encode
from perception.errors import UserError
from perception.msgs import CameraFrame, Detections, Message
from perception.recording.capture import ChannelSelection
from perception.recording.mcap_io import RecordingReader


def _env(bus: BusConfig) -> dict[str, str]:
    return {**os.environ, "PERCEPTION_NAMESPACE": bus.namespace, "PYTHONUNBUFFERED": "1"}


def _frame(i: int, camera: str = "front", size: tuple[int, int] = (48, 64)) -> CameraFrame:
    image = np.random.default_rng(i).integers(0, 255, (*size, 3), dtype=np.uint8)
    return CameraFrame(
        stamp_ns=time.time_ns(),
        frame_id=f"{camera}_optical",
        camera=camera,
        width=size[1],
        height=size[0],
        image=image,
    )


def _sent_frames(topic: str, msg: Message) -> list[bytes]:
    """The wire frames (after the topic) of a message just published (seq, mono_ns set)."""
    return [bytes(memoryview(f).cast("B")) for f in encode(topic, msg)[1:]]


def test_channel_selection() -> None:
    sel = ChannelSelection.parse(["camera/frames", "status@camera"])
    assert sel.matches("camera/frames") and sel.matches("camera/frames@left")
    assert sel.matches("status@camera") and not sel.matches("status@detector")
    assert not sel.matches("perception/tracks")
    assert ChannelSelection.parse([]).initial_keys()[0] == "camera/frames"
    for bad in ("nope/topic", "status@", "status@a/b"):
        with pytest.raises(UserError):
            ChannelSelection.parse([bad])


def test_records_live_channels_byte_for_byte(bus: BusConfig, tmp_path: Path) -> None:
    frames = Publisher("camera/frames", bus)
    left = Publisher("camera/frames", bus, instance="left")  # found by ipc discovery
    dets = Publisher("perception/detections", bus)
    status = Publisher("status", bus, instance="fake")
    out = tmp_path / "live.mcap"
    proc = subprocess.Popen(
        node_command("recorder", {"output": str(out), "flush_period_s": 0.2}, bus),
        env=_env(bus),
        stderr=subprocess.PIPE,
    )
    try:
        wait_status(bus, "recorder")
        time.sleep(0.3)  # subscriptions reach the publishers
        sent: dict[str, list[tuple[int, list[bytes]]]] = {}
        for i in range(15):
            for key, pub, msg in (
                ("camera/frames", frames, _frame(i)),
                ("camera/frames@left", left, _frame(100 + i, "left")),
                (
                    "perception/detections",
                    dets,
                    Detections(stamp_ns=time.time_ns(), camera="front"),
                ),
                ("status@fake", status, status_message(time.time_ns())),
            ):
                pub.publish(msg)
                sent.setdefault(key, []).append(
                    (msg.stamp_ns, _sent_frames(key.split("@")[0], msg))
                )
            time.sleep(0.02)
        time.sleep(0.4)
    finally:
        proc.send_signal(signal.SIGTERM)  # like SIGINT: finish the file
        _, err = proc.communicate(timeout=20)
        for p in (frames, left, dets, status):
            p.close()
    assert proc.returncode == 0, err.decode()
    reader = RecordingReader(out)
    recorded: dict[str, list] = {}
    for rec in reader.messages():
        recorded.setdefault(rec.channel.topic, []).append(rec)
    assert reader.complete  # SIGTERM finished the file with its summary
    for key, messages in sent.items():
        got = recorded[key]
        assert [r.publish_time_ns for r in got] == [stamp for stamp, _ in messages]
        assert [[bytes(f) for f in r.frames()] for r in got] == [f for _, f in messages]
        assert all(r.log_time_ns >= r.publish_time_ns for r in got)  # received after stamped
    assert "status@recorder" in recorded  # its own status, found like any instance
    assert len(recorded["/view/front/image"]) == len(recorded["/view/left/image"]) == 15


def test_sigkill_leaves_a_file_readable_to_its_last_chunk(bus: BusConfig, tmp_path: Path) -> None:
    pub = Publisher("camera/frames", bus)
    out = tmp_path / "killed.mcap"
    params = {"output": str(out), "flush_period_s": 0.2, "chunk_size_mb": 0.05, "views": False}
    proc = subprocess.Popen(
        node_command("recorder", params, bus), env=_env(bus), stderr=subprocess.DEVNULL
    )
    sent: dict[int, list[bytes]] = {}
    try:
        wait_status(bus, "recorder")
        time.sleep(0.3)
        for i in range(60):
            msg = _frame(i)
            pub.publish(msg)
            sent[msg.seq] = _sent_frames("camera/frames", msg)
            time.sleep(0.02)
            if i == 45:
                proc.send_signal(signal.SIGKILL)  # mid-recording: frames still coming
        proc.wait(10)
    finally:
        pub.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    reader = RecordingReader(out)
    got = [r for r in reader.messages() if r.channel.topic == "camera/frames"]
    assert reader.complete is False and "cut short" in reader.stop_reason
    assert 20 <= len(got) <= 46  # the chunks closed before the kill (0.2 s flush period)
    for rec in got:
        assert [bytes(f) for f in rec.frames()] == sent[rec.sequence]


def test_full_disk_stops_the_recorder_with_a_readable_file(bus: BusConfig, tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes writes fail like a full disk (EFBIG; Python ignores SIGXFSZ)."""
    limit = 150_000

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    pub = Publisher("camera/frames", bus)
    out = tmp_path / "full.mcap"
    params = {"output": str(out), "flush_period_s": 0.1, "chunk_size_mb": 0.02, "views": False}
    proc = subprocess.Popen(
        node_command("recorder", params, bus),
        env=_env(bus),
        stderr=subprocess.PIPE,
        preexec_fn=small_disk,
    )
    try:
        wait_status(bus, "recorder")
        time.sleep(0.3)
        for i in range(80):  # ~740 kB of incompressible frames
            pub.publish(_frame(i))
            time.sleep(0.01)
            if proc.poll() is not None:
                break
        _, err = proc.communicate(timeout=20)
    finally:
        pub.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert "cannot write" in err.decode() and "readable up to its last complete chunk" in (
        err.decode()
    )
    assert out.stat().st_size <= limit
    reader = RecordingReader(out)
    got = [r for r in reader.messages() if r.channel.topic == "camera/frames"]
    assert not reader.complete and len(got) >= 5
    assert all(r.decode().width == 64 for r in got)
