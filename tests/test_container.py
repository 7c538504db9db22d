"""Nodes composed in one process (a launch file's ``process:``): in-process links, the same
topics for everyone outside, start-up and stop in launch-file order, restarts as one."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from perception.bus import BusConfig, Publisher, Subscriber
from perception.bus.local import LocalBus
from perception.errors import UserError
from perception.launcher import LaunchFile
from perception.msgs import CameraFrame, DepthMap, Detections, Message, NodeStatus, TrackedObjects
from tests.conftest import wait_for
from tests.test_launcher import (
    camera_node,
    start_launcher,
    status_of,
    stop_cleanly,
    write_launch,
)


def frame(i: int) -> CameraFrame:
    image = np.full((4, 6, 3), i, np.uint8)
    return CameraFrame(frame_id="cam", stamp_ns=i, width=6, height=4, image=image)


def test_local_link_is_in_process_and_others_still_reach_the_publisher(bus: BusConfig) -> None:
    local = LocalBus()
    early_sub = Subscriber("camera/frames", bus, local=local)  # before the publisher: ipc
    pub = Publisher("camera/frames", bus, local=local)
    sub = Subscriber("camera/frames", bus, local=local)
    outside = Subscriber("camera/frames", bus)  # another process's view: the usual endpoint
    assert sub.links() == ["inproc"]
    assert early_sub.links() == outside.links() == ["ipc"]
    got: dict[str, list[int]] = {"sub": [], "early": [], "outside": []}
    i = 0

    def all_have_some() -> bool:
        nonlocal i
        pub.publish(frame(i % 200))
        i += 1
        for name, s in (("sub", sub), ("early", early_sub), ("outside", outside)):
            got[name] += [int(m.image[0, 0, 0]) for m in s.receive(timeout_ms=20)]
        return all(len(v) >= 3 for v in got.values())

    wait_for(all_have_some, 10, "frames on all three links")
    # in-process delivery is in order and skips nothing (keep-latest drains, at most)
    assert got["sub"] == sorted(got["sub"])
    # what arrives in-process is the sender's own array: read-only, so no one can change it
    held: list[CameraFrame] = []

    def one_more() -> bool:
        pub.publish(frame(7))
        held.extend(m for m in sub.receive(timeout_ms=20) if isinstance(m, CameraFrame))
        return bool(held)

    wait_for(one_more, 10, "one more frame")
    with pytest.raises(ValueError, match="read-only"):
        held[-1].image[0, 0, 0] = 1
    for s in (early_sub, sub, outside):
        s.close()
    pub.close()
    assert local.close()


def test_a_subscriber_reads_its_socket_only_for_publishers_outside_the_process(
    bus: BusConfig,
) -> None:
    local = LocalBus()
    inside_pub = Publisher("camera/frames", bus, instance="a", local=local)
    outside_pub = Publisher("camera/frames", bus, instance="b")  # as in another process
    only_local = Subscriber("camera/frames", bus, instances=["a"], local=local)
    mixed = Subscriber("camera/frames", bus, instances=["a", "b"], local=local)
    assert only_local.links() == ["inproc"] and mixed.links() == ["inproc", "ipc"]
    # nothing can arrive on a socket with no peer: it is not polled
    assert only_local.pollables() == [only_local._inbox.fileno()]  # type: ignore[union-attr]
    assert len(mixed.pollables()) == 2
    got: dict[str, set[str]] = {"only_local": set(), "mixed": set()}

    def both_sources_arrive() -> bool:
        for pub, frame_id in ((inside_pub, "a"), (outside_pub, "b")):
            msg = frame(1)
            msg.frame_id = frame_id
            pub.publish(msg)
        for name, s in (("only_local", only_local), ("mixed", mixed)):
            got[name] |= {m.frame_id for m in s.receive(timeout_ms=20)}
        return got["mixed"] == {"a", "b"} and got["only_local"] == {"a"}

    wait_for(both_sources_arrive, 10, "frames from the local and the outside publisher")
    for s in (only_local, mixed):
        s.close()
    inside_pub.close()
    outside_pub.close()
    assert local.close()


def test_each_local_subscriber_gets_its_own_checked_message(bus: BusConfig) -> None:
    local = LocalBus()
    pub = Publisher("perception/detections", bus, local=local)
    first = Subscriber("perception/detections", bus, local=local)
    second = Subscriber("perception/detections", bus, local=local)
    assert first.links() == second.links() == ["inproc"]
    boxes = np.array([[1.0, 2.0, 30.0, 40.0]])  # float64: the wire type is float32
    pub.publish(
        Detections(
            camera="front",
            class_names=["car"],
            boxes_xyxy=boxes,
            scores=np.array([0.9], np.float32),
            class_ids=np.array([0], np.int32),
            depth_m=np.array([12.5], np.float32),
        )
    )
    a, b = first.receive(timeout_ms=1000), second.receive(timeout_ms=1000)
    assert len(a) == len(b) == 1
    da, db = a[0], b[0]
    assert isinstance(da, Detections) and isinstance(db, Detections)
    # as decoded from the wire: wire dtypes, plain values, read-only arrays
    assert da.boxes_xyxy.dtype == np.float32 and da.boxes_xyxy.tolist() == boxes.tolist()
    assert not da.scores.flags.writeable
    assert da is not db
    da.class_names.append("mutated")
    assert db.class_names == ["car"]
    assert first.stats.report(time.monotonic_ns())["received"] == 1
    # a bad message is refused at its sender, whoever listens
    with pytest.raises(ValueError):
        pub.publish(Detections(camera="front", boxes_xyxy=np.zeros((1, 3), np.float32)))
    # an unchecked publisher's messages are checked by the local subscriber, as off the wire
    unchecked = Publisher("perception/depth", bus, local=local, validate=False)
    depth_sub = Subscriber("perception/depth", bus, local=local)
    bad = DepthMap(camera="front", depth_m=np.full((2, 2), np.nan, np.float16))
    unchecked.publish(bad)
    assert depth_sub.receive(timeout_ms=1000) == []
    assert depth_sub.stats.rejected["non_finite"] == 1
    for s in (first, second, depth_sub):
        s.close()
    pub.close()
    unchecked.close()
    assert local.close()


def test_in_process_and_outside_subscribers_reach_the_same_verdict_on_size_limits(
    bus: BusConfig,
) -> None:
    # The sender's checks do not cover the receivers' size limits: a message beyond them must
    # be rejected in the process too, as it is over ipc, not trusted because it was checked.
    local = LocalBus()
    pub = Publisher("status", bus, instance="n", local=local)
    inside = Subscriber("status", bus, instances=["n"], local=local)
    outside = Subscriber("status", bus, instances=["n"])
    assert inside.links() == ["inproc"] and outside.links() == ["ipc"]
    big = NodeStatus(node="n", counters={f"c{i}": i for i in range(2000)})  # map limit: 1024

    def both_judged() -> bool:
        pub.publish(big)
        inside.receive(timeout_ms=20)
        outside.receive(timeout_ms=20)
        return bool(sum(inside.stats.rejected.values()) and sum(outside.stats.rejected.values()))

    wait_for(both_judged, 10, "both subscribers to judge the oversized status")
    assert set(inside.stats.rejected) == set(outside.stats.rejected)
    pub.publish(NodeStatus(node="n", counters={"ok": 1}))
    assert [m.counters for m in inside.receive(timeout_ms=1000)] == [{"ok": 1}]
    for s in (inside, outside):
        s.close()
    pub.close()
    assert local.close()


def test_local_only_messages_skip_the_socket_until_someone_outside_subscribes(
    bus: BusConfig,
) -> None:
    local = LocalBus()
    pub = Publisher("camera/frames", bus, local=local, track_sends=True)
    sub = Subscriber("camera/frames", bus, local=local)
    held: list[CameraFrame] = []
    big = np.zeros((384, 640, 3), np.uint8)  # pyzmq copies parts under 64 kB at once

    def publish() -> None:
        pub.publish(CameraFrame(frame_id="cam", width=640, height=384, image=big.copy()))

    def local_has(n: int) -> bool:
        publish()
        held.extend(m for m in sub.receive(timeout_ms=20) if isinstance(m, CameraFrame))
        return len(held) >= n

    wait_for(lambda: local_has(2), 10, "in-process frames")
    # Nobody outside listens: the frame went to the local subscriber only, with nothing for
    # ZeroMQ to send, so a source never waits for it (even while the subscriber holds it).
    assert not pub.has_remote_subscribers
    t0 = time.monotonic()
    assert pub.wait_sent(timeout_s=1.0)
    assert time.monotonic() - t0 < 0.05

    outside = Subscriber("camera/frames", bus)
    got: list[Message] = []

    def outside_has_one() -> bool:
        publish()
        got.extend(outside.receive(timeout_ms=20))
        held.extend(m for m in sub.receive() if isinstance(m, CameraFrame))
        return bool(got)

    wait_for(outside_has_one, 10, "a frame outside the process")
    assert pub.has_remote_subscribers
    seqs = [m.seq for m in held]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # locally: every frame, in order
    outside.close()

    def nobody_outside() -> bool:
        publish()
        sub.receive()
        return not pub.has_remote_subscribers

    wait_for(nobody_outside, 10, "the outside subscriber to be gone")
    held.clear()
    sub.close()
    pub.close()
    assert local.close()


def test_launch_file_groups_and_their_checks(tmp_path: Path) -> None:
    nodes = [
        {**camera_node("cam"), "process": "vision"},
        {"name": "det", "node": "detector", "process": "vision", "required": False},
        {"name": "mon", "node": "monitor", "params": {}},
    ]
    launch = LaunchFile.load(write_launch(tmp_path, nodes))
    groups = launch.groups()
    assert [(name, [m.name for m in members]) for name, members in groups] == [
        ("vision", ["cam", "det"]),
        ("mon", ["mon"]),
    ]
    clash = [{**camera_node("cam"), "process": "mon"}, {"name": "mon", "node": "monitor"}]
    with pytest.raises(UserError, match="process 'mon' has the name of another node"):
        LaunchFile.load(write_launch(tmp_path, clash))
    apart = [
        {**camera_node("cam"), "process": "p"},
        {"name": "mon", "node": "monitor"},
        {"name": "mon2", "node": "monitor", "process": "p"},
    ]
    with pytest.raises(UserError, match="nodes of process 'p' must be listed one after another"):
        LaunchFile.load(write_launch(tmp_path, apart))
    envs = [
        {**camera_node("a"), "process": "p", "env": {"OMP_NUM_THREADS": "1"}},
        {**camera_node("b"), "process": "p", "env": {"OMP_NUM_THREADS": "2"}},
    ]
    with pytest.raises(UserError, match="set OMP_NUM_THREADS differently"):
        LaunchFile.load(write_launch(tmp_path, envs))


def _stack(folder: Path) -> list[dict[str, Any]]:
    """Camera (a folder of frames, once), detector and tracker composed in one process."""
    return [
        {
            "name": "cam",
            "node": "camera",
            "process": "perception",
            "exit_on_finish": True,
            "params": {
                "source": str(folder),
                "fps": 10,
                "calibration": "calibration/synthetic_front.yaml",
                "node": {"status_period_s": 0.3},
            },
        },
        {
            "name": "det",
            "node": "detector",
            "process": "perception",
            "params": {"random_model": "nano", "node": {"status_period_s": 0.3}},
        },
        {
            "name": "trk",
            "node": "tracker",
            "process": "perception",
            "params": {"node": {"status_period_s": 0.3}},
        },
    ]


def _frames_folder(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:04d}.png"), rng.integers(0, 255, (96, 160, 3), np.uint8))
    return folder


@pytest.mark.slow
def test_composed_stack_tracks_every_frame_and_stops_in_order(
    bus: BusConfig, tmp_path: Path
) -> None:
    count = 12
    launch = write_launch(tmp_path, _stack(_frames_folder(tmp_path, count)))
    tracks = Subscriber("perception/tracks", bus)  # connected before anything is sent
    status = Subscriber("status", bus, instances=["cam", "det", "trk"])
    proc = start_launcher(launch, bus)
    stamps: list[int] = []
    statuses: dict[str, NodeStatus] = {}
    while proc.poll() is None or len(stamps) < count:
        stamps += [
            t.stamp_ns for t in tracks.receive(timeout_ms=50) if isinstance(t, TrackedObjects)
        ]
        statuses.update({m.node: m for m in status.receive() if isinstance(m, NodeStatus)})
        if proc.poll() is not None and not tracks.socket.poll(500):
            break
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    # the camera waited for the network to load, and the stop let the tracker finish: all
    # frames come out tracked, in order
    assert len(stamps) == count and stamps == sorted(stamps), (len(stamps), out[-3000:])
    assert {statuses[n].pid for n in ("cam", "det", "trk")} == {statuses["det"].pid}
    assert statuses["det"].inputs["camera/frames"]["links"] == ["inproc"]
    assert statuses["trk"].inputs["perception/detections"]["links"] == ["inproc"]
    assert statuses["trk"].inputs["perception/depth"]["links"] == ["inproc"]
    assert "perception finished" in out and "stopping the launch" in out
    # stop order: the detector drained before the tracker was asked
    assert out.index("[det] stopped") < out.index("[trk] received SIGINT")


@pytest.mark.slow
def test_composed_process_restarts_as_one_and_a_failing_node_fails_it(
    bus: BusConfig, tmp_path: Path
) -> None:
    nodes = [
        {**camera_node("cam"), "process": "pair", "respawn_delay_s": 0.2},
        {
            "name": "mon",
            "node": "monitor",
            "process": "pair",
            "params": {"topics": ["camera/frames"], "node": {"status_period_s": 0.3}},
        },
    ]
    proc = start_launcher(write_launch(tmp_path, nodes), bus, "--duration", "40")
    status = Subscriber("status", bus, instances=["mon"])
    first = wait_for(lambda: status_of(status), 30, "monitor status")
    assert first.inputs["camera/frames"]["links"] == ["inproc"]
    os.kill(first.pid, signal.SIGKILL)
    second = wait_for(
        lambda: (s := status_of(status)) and s.pid != first.pid and s, 30, "restarted process"
    )
    assert second.inputs["camera/frames"]["links"] == ["inproc"]
    out = stop_cleanly(proc)
    assert "pair died (signal SIGKILL); restarting" in out

    # A node that is not required may fail alone: the process goes on with the others.
    optional = [
        {**camera_node("cam"), "process": "pair", "respawn": False},
        {
            **camera_node("extra", encoding="webp"),
            "process": "pair",
            "respawn": False,
            "required": False,
        },
        {
            "name": "mon",
            "node": "monitor",
            "process": "pair",
            "params": {"topics": ["camera/frames"]},
        },
    ]
    proc = start_launcher(write_launch(tmp_path, optional), bus, "--duration", "40")
    wait_for(lambda: (s := status_of(status)) and s.inputs["camera/frames"]["received"] > 3, 30)
    assert proc.poll() is None
    out = stop_cleanly(proc)
    assert "extra failed (exit 2); not required" in out

    # A required node that fails to start (a bad parameter) ends its process non-zero, once
    # the others are stopped; without respawn the launch fails.
    broken = [
        {**camera_node("cam"), "process": "pair", "respawn": False},
        {**camera_node("bad", encoding="webp"), "process": "pair", "respawn": False},
    ]
    proc = start_launcher(write_launch(tmp_path, broken), bus, "--duration", "40")
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1, out
    assert "pair died (exit code 2) and respawn is off" in out
    assert "required node pair failed" in out


def test_a_node_that_ends_while_its_process_goes_on_is_shown_stopped(
    bus: BusConfig, tmp_path: Path
) -> None:
    nodes = [
        {**camera_node("once", loop=False, frames=5, fps=20), "process": "pair", "respawn": False},
        {"name": "mon", "node": "monitor", "process": "pair", "params": {"topics": []}},
    ]
    status = Subscriber("status", bus, instances=["once"])
    proc = start_launcher(write_launch(tmp_path, nodes), bus, "--duration", "40")
    last = wait_for(
        lambda: (s := status_of(status)) and s.state == "stopped" and s, 30, "last camera status"
    )
    assert last.outputs["camera/frames"]["published"] == 5
    time.sleep(1.5)  # the launcher prints its table every second
    out = stop_cleanly(proc)
    # the process still runs (the monitor goes on), but the camera's row says it stopped and
    # shows no rate, where it used to keep its last one
    rows = [line.split() for line in out.splitlines() if line.startswith("once ")]
    assert ["running", "0", "-", "stopped"] in [row[2:6] for row in rows], out[-2000:]
