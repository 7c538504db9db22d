"""The node runtime's status timing: a status goes out at a quiet moment, never beside a
frame's way through the stack, and still comes at about its period when the node is idle or
never quiet."""

from __future__ import annotations

import time

import numpy as np
import pytest

from perception.bus import BusConfig, Subscriber
from perception.errors import UserError
from perception.msgs import CameraFrame, NodeStatus
from perception.node import QUIET_NS, Node, NodeConfig


def _frame() -> CameraFrame:
    return CameraFrame(frame_id="cam", width=4, height=2, image=np.zeros((2, 4, 3), np.uint8))


def _statuses(sub: Subscriber) -> list[NodeStatus]:
    return [m for m in sub.receive(timeout_ms=200) if isinstance(m, NodeStatus)]


@pytest.mark.parametrize("period_ms", [30, 2])
def test_status_goes_out_between_outputs(bus: BusConfig, period_ms: int) -> None:
    """A source publishing every 30 ms: each status starts at least QUIET_NS after a
    frame and before the next. One publishing every 2 ms is never quiet: its statuses come
    anyway, at most half a period late."""
    status = Subscriber("status", bus, instances=["src"])
    sent: list[int] = []
    with Node("camera", NodeConfig(name="src", bus=bus, status_period_s=0.1)) as node:
        frames = node.advertise("camera/frames")
        time.sleep(0.3)  # the subscription reaches the status publisher
        next_ns = time.monotonic_ns()
        end_ns = next_ns + 2_000_000_000
        while next_ns < end_ns:
            next_ns += period_ms * 1_000_000
            node.sleep_until(next_ns)
            frames.publish(_frame())
            sent.append(frames.last_publish_ns)
            node.spin_once()
        got = _statuses(status)
    stamps = [m.mono_ns for m in got if m.state != "stopped"]
    # 2 s at 10 Hz: late ones (at most half a period) do not stretch the period
    assert len(stamps) >= 16, len(stamps)
    assert max(np.diff(stamps)) <= 0.25e9
    if period_ms == 30:
        quiet = []
        for t in stamps[1:]:  # the first goes at once: it says that the node is up
            before = max(s for s in sent if s < t)
            after = min((s for s in sent if s > t), default=t + QUIET_NS)
            quiet.append(t - before >= QUIET_NS and after - t >= QUIET_NS)
        # all of them but for a stall of the VM (a step slept past the quiet window)
        assert sum(quiet) >= 0.8 * len(quiet), quiet


def test_an_idle_node_reports_at_its_period(bus: BusConfig) -> None:
    status = Subscriber("status", bus, instances=["idle"])
    with Node("monitor", NodeConfig(name="idle", bus=bus, status_period_s=0.1)) as node:
        node.subscribe("camera/frames")  # nothing is published: the waits time out
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            node.wait(0.05)
        got = _statuses(status)
    stamps = [m.mono_ns for m in got if m.state != "stopped"]
    assert len(stamps) >= 11, len(stamps)  # 1.5 s at 10 Hz, when due
    assert max(np.diff(stamps[1:])) <= 0.2e9


def test_periods_must_be_positive(bus: BusConfig) -> None:
    with pytest.raises(UserError, match="status_period_s"):
        Node("monitor", NodeConfig(name="n", bus=bus, status_period_s=0))
    with Node("monitor", NodeConfig(name="n", bus=bus)) as node, pytest.raises(ValueError):
        node.every(0.0, lambda now_ns: None)
