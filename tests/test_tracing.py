"""The per-frame trace: events from a node's real sockets, written by its process, read back."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from perception import tracing


def test_traced_process_writes_send_receive_and_stage_events(tmp_path: Path) -> None:
    # A separate interpreter, traced by the environment as a launched node is: a publisher and
    # a subscriber on a real socket, a stage time, and an exit through exit_process (which
    # skips atexit handlers, so the node runtime must flush the trace itself).
    script = textwrap.dedent(
        """
        import os

        import numpy as np
        from perception import tracing
        from perception.bus import BusConfig, Publisher, Subscriber
        from perception.msgs import CameraFrame
        from perception.node import exit_process

        bus = BusConfig(namespace="tracetest%d" % os.getpid())
        pub = Publisher("camera/frames", bus, owner="cam")
        sub = Subscriber("camera/frames", bus, owner="det")
        got = []
        for i in range(1, 500):
            img = np.zeros((2, 2, 3), np.uint8)
            pub.publish(CameraFrame(stamp_ns=i, width=2, height=2, image=img))
            got += sub.receive(timeout_ms=10)
            if got:
                break
        tracing.stage("det", "forward", got[0].stamp_ns, 12.5)
        sub.close()
        pub.close()
        exit_process(0)
        """
    )
    env = {"PERCEPTION_TRACE": str(tmp_path / "trace"), "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    events = tracing.read(tmp_path / "trace")
    received = [e for e in events if e["event"] == "received"]
    assert len(received) == 1 and received[0]["node"] == "det"
    stamp = received[0]["stamp_ns"]
    (sent,) = [e for e in events if e["event"] == "sent" and e["stamp_ns"] == stamp]
    assert sent["node"] == "cam" and sent["topic"] == received[0]["topic"] == "camera/frames"
    assert 0 < received[0]["t_ns"] - sent["t_ns"] < 5e9  # one monotonic clock
    (stage,) = [e for e in events if e["event"] == "stage"]
    assert stage == {
        "event": "stage",
        "node": "det",
        "stage": "forward",
        "stamp_ns": stamp,
        "ms": 12.5,
    }


def test_untraced_process_records_nothing_and_bad_lines_are_skipped(tmp_path: Path) -> None:
    assert not tracing.enabled  # the test run is not traced: event sites cost a flag check
    folder = tmp_path / "trace"
    folder.mkdir()
    (folder / "1.jsonl").write_text('{"event": "sent"}\n{"truncated\n[1, 2]\n')
    assert tracing.read(folder) == [{"event": "sent"}]


def test_a_traced_node_writes_its_events_while_it_runs(tmp_path: Path) -> None:
    # Events go out at a quiet moment about once a second, not when a frame fills the buffer:
    # the child reads its own trace back before it ends, without any final flush.
    script = textwrap.dedent(
        """
        import os
        import time

        from perception import tracing
        from perception.bus import BusConfig
        from perception.node import Node, NodeConfig

        bus = BusConfig(namespace="tracetest%d" % os.getpid())
        with Node("monitor", NodeConfig(name="n", bus=bus)) as node:
            tracing.stage("n", "work", 7, 1.5)
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and not tracing.read(os.environ["PERCEPTION_TRACE"]):
                node.wait(0.05)
            print(len(tracing.read(os.environ["PERCEPTION_TRACE"])), flush=True)
            os._exit(0)
        """
    )
    env = {"PERCEPTION_TRACE": str(tmp_path / "trace"), "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) >= 1


def test_threads_flushing_together_write_each_event_once_and_no_blank_lines(
    tmp_path: Path,
) -> None:
    # The nodes of a composed process share the buffer and each flushes it periodically.
    script = textwrap.dedent(
        """
        import threading

        from perception import tracing

        def work(name):
            for i in range(300):
                tracing.stage(name, "s", i, 1.0)
                tracing.flush()

        threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b", "c")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        tracing.flush()
        """
    )
    env = {"PERCEPTION_TRACE": str(tmp_path / "trace"), "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = (tmp_path / "trace").glob("*.jsonl")
    lines = path.read_text().split("\n")
    assert lines[-1] == "" and all(lines[:-1])  # ends with a newline, no empty line
    events = tracing.read(tmp_path / "trace")
    assert sorted((e["node"], e["stamp_ns"]) for e in events) == sorted(
        (n, i) for n in "abc" for i in range(300)
    )
