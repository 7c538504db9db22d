"""Recorder node: writes bus channels to MCAP, losslessly, with Foxglove view channels beside them.

Every message of the chosen channels (all topics of the table by default; on ipc every instance
that appears in the namespace, e.g. ``status@camera``) is kept byte for byte in its lossless
channel, with log time = receive time and publish time = the message's ``stamp_ns``. Chunks are
zstd-compressed and closed at least once a second, so a killed recorder leaves a readable file;
SIGINT/SIGTERM finish the file with its summary and index. ``split_size_mb`` or
``split_duration_s`` write a series ``NAME_0.mcap``, ``NAME_1.mcap``, ...
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import zmq

from perception.bus.codec import CodecError
from perception.bus.endpoints import list_ipc_channels
from perception.errors import UserError
from perception.node import Node, NodeConfig, exit_process, node_main
from perception.recording.capture import ChannelSelection, RawChannel
from perception.recording.mcap_io import RecordingWriteError, RecordingWriter, WriterOptions
from perception.recording.views import ViewBuilder, ViewOptions, write_view

MAX_BATCH = 100  # messages taken from one channel per turn, so no channel starves the others
UINT64_MAX = 2**64 - 1


@dataclass
class RecorderConfig:
    node: NodeConfig = field(default_factory=NodeConfig)
    output: str = field(
        default="recording.mcap",
        metadata={"help": "MCAP file ('.mcap' added when missing); split: NAME_0.mcap, ..."},
    )
    topics: list[str] = field(
        default_factory=list,
        metadata={"help": "TOPIC (every instance) or TOPIC@INSTANCE; empty: every topic"},
    )
    overwrite: bool = field(default=False, metadata={"help": "replace an existing file"})
    duration_s: float = field(default=0.0, metadata={"help": "stop after S seconds; 0: never"})
    split_size_mb: float = field(
        default=0.0, metadata={"help": "start a new file after this many MB; 0: never"}
    )
    split_duration_s: float = field(
        default=0.0, metadata={"help": "start a new file after this many seconds; 0: never"}
    )
    chunk_size_mb: float = field(default=4.0, metadata={"help": "MCAP chunk size, MB"})
    compression: str = field(default="zstd", metadata={"help": "zstd | lz4 | none"})
    flush_period_s: float = field(
        default=1.0, metadata={"help": "close a chunk at least this often (bounds a crash's loss)"}
    )
    views: bool = field(default=True, metadata={"help": "write Foxglove view channels too"})
    jpeg_quality: int = field(default=85, metadata={"help": "JPEG quality of the image view"})
    depth_encoding: str = field(
        default="16UC1", metadata={"help": "depth view: 16UC1 (mm) or 32FC1 (m)"}
    )
    point_cloud_max_points: int = field(
        default=5000, metadata={"help": "points of the depth point cloud view; 0: none"}
    )
    discover_period_s: float = field(
        default=1.0, metadata={"help": "ipc: look for new topic instances this often"}
    )


class Recorder:
    """State of the recorder node: its channels, the writer and the view builder."""

    def __init__(self, node: Node, config: RecorderConfig) -> None:
        self.node = node
        self.config = config
        self.selection = ChannelSelection.parse(config.topics)
        if config.split_size_mb < 0 or config.split_duration_s < 0 or config.duration_s < 0:
            raise UserError("duration and split limits must be >= 0")
        self.views = (
            ViewBuilder(
                ViewOptions(
                    jpeg_quality=config.jpeg_quality,
                    depth_encoding=config.depth_encoding,
                    point_cloud_max_points=config.point_cloud_max_points,
                )
            )
            if config.views
            else None
        )
        self.writer = RecordingWriter(
            config.output,
            WriterOptions(
                chunk_size_bytes=max(1, int(config.chunk_size_mb * 1e6)),
                compression=config.compression,
                flush_period_s=config.flush_period_s,
                split_size_bytes=int(config.split_size_mb * 1e6),
                split_duration_s=config.split_duration_s,
                overwrite=config.overwrite,
            ),
            metadata={
                "recorder": node.name,
                "namespace": config.node.bus.namespace,
                "hostname": os.uname().nodename,
            },
        )
        self.channels: dict[str, RawChannel] = {}
        self.poller = zmq.Poller()
        self.recorded = 0
        self._next_discovery = 0.0
        for key in self.selection.initial_keys():
            self._add(key)
        self.discover()

    def _add(self, key: str) -> None:
        channel = RawChannel(key, self.config.node.bus, self.node.context)
        self.channels[key] = channel
        self.poller.register(channel.socket, zmq.POLLIN)
        self.node.log.debug("recording %s from %s", key, channel.address)

    def discover(self) -> None:
        """On ipc, add every selected channel that has appeared in the namespace."""
        now = time.monotonic()
        if self.config.node.bus.transport != "ipc" or now < self._next_discovery:
            return
        self._next_discovery = now + self.config.discover_period_s
        for key in list_ipc_channels(self.config.node.bus):
            if key not in self.channels and self.selection.matches(key):
                self._add(key)
                self.node.log.info("found %s, recording it", key)

    def step(self, timeout_ms: int) -> int:
        """Record what arrives within ``timeout_ms``; how many messages came. Raises
        RecordingWriteError."""
        ready = dict(self.poller.poll(timeout_ms))
        arrived = 0
        for channel in self.channels.values():
            if channel.socket in ready:
                for frames, log_time_ns in channel.receive(MAX_BATCH):
                    self._record(channel, frames, log_time_ns)
                    arrived += 1
        self.writer.tick()
        self.discover()
        return arrived

    def _record(self, channel: RawChannel, frames: list[zmq.Frame], log_time_ns: int) -> None:
        try:
            msg = channel.validate(frames)
        except CodecError as exc:
            self.node.reject(exc.reason, f"{channel.key}: {exc}")
            return
        stamp = min(max(msg.stamp_ns, 0), UINT64_MAX)
        with self.node.stage("write"):
            self.writer.write_frames(
                channel.key, [f.buffer for f in frames[1:]], log_time_ns, stamp, msg.seq
            )
        self.recorded += 1
        self.node.counters[f"recorded.{channel.key}"] += 1
        if channel.stats.dropped:
            self.node.counters[f"dropped.{channel.key}"] = channel.stats.dropped
        if self.views is None:
            return
        with self.node.stage("views"):
            try:
                views = self.views.build(msg)
            except Exception as exc:  # a view is a convenience: never lose the recording for it
                self.node.reject("view", f"{channel.key}: no view ({type(exc).__name__}: {exc})")
                return
            for view in views:
                write_view(self.writer, view, log_time_ns)

    def close(self) -> None:
        files = self.writer.close()
        for channel in self.channels.values():
            channel.close()
        self.node.log.info(
            "wrote %d bus messages to %s", self.recorded, ", ".join(str(f) for f in files)
        )


def run(config: RecorderConfig) -> int:
    with Node("recorder", config.node, can_drain=True) as node:
        recorder = Recorder(node, config)
        node.on_close(recorder.close)
        node.log.info(
            "recording %s to %s",
            ", ".join(sorted(recorder.channels)),
            recorder.writer.path,
        )
        deadline = time.monotonic() + config.duration_s if config.duration_s else None
        while node.running:
            try:
                arrived = recorder.step(timeout_ms=100)
            except RecordingWriteError as exc:
                node.set_state("error", str(exc))  # logged, and in the final status
                return 1
            node.note_input(arrived > 0)  # first: periodic work waits while input arrives
            node.spin_once()
            if deadline is not None and time.monotonic() >= deadline:
                node.log.info("recorded for %.1f s, stopping", config.duration_s)
                break
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return node_main("recorder", RecorderConfig, run, argv, description=__doc__ or "")


if __name__ == "__main__":
    exit_process(main())
