"""What a recording holds, like `ros2 bag info`: channels, types, counts, rates, time span.

Computed by reading the file through (every chunk is checked), so it also describes a file that
was cut short and says how far it could be read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from perception.recording.mcap_io import RecordingReader


@dataclass
class ChannelSummary:
    topic: str
    type: str
    message_encoding: str
    lossless: bool
    count: int = 0
    bytes: int = 0
    first_log_ns: int = 0
    last_log_ns: int = 0
    first_stamp_ns: int = 0
    last_stamp_ns: int = 0

    @property
    def rate_hz(self) -> float:
        """Mean rate over the channel's own span (receive times)."""
        span = self.last_log_ns - self.first_log_ns
        return (self.count - 1) * 1e9 / span if self.count > 1 and span > 0 else 0.0


@dataclass
class RecordingSummary:
    path: str
    size_bytes: int
    complete: bool
    stop_reason: str
    messages: int = 0
    start_ns: int = 0
    end_ns: int = 0
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    channels: list[ChannelSummary] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9 if self.messages else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration_s"] = round(self.duration_s, 6)
        for entry, ch in zip(out["channels"], self.channels, strict=True):
            entry["rate_hz"] = round(ch.rate_hz, 4)
        return out


def summarize(path: str | Path) -> RecordingSummary:
    reader = RecordingReader(path)
    per: dict[str, ChannelSummary] = {}
    total, start, end = 0, 0, 0
    for msg in reader.messages():
        ch = per.get(msg.channel.topic)
        if ch is None:
            ch = per[msg.channel.topic] = ChannelSummary(
                topic=msg.channel.topic,
                type=msg.channel.type_name,
                message_encoding=msg.channel.message_encoding,
                lossless=msg.channel.lossless,
                first_log_ns=msg.log_time_ns,
                first_stamp_ns=msg.publish_time_ns,
            )
        ch.count += 1
        ch.bytes += len(msg.data)
        ch.first_log_ns = min(ch.first_log_ns, msg.log_time_ns)
        ch.last_log_ns = max(ch.last_log_ns, msg.log_time_ns)
        ch.first_stamp_ns = min(ch.first_stamp_ns, msg.publish_time_ns)
        ch.last_stamp_ns = max(ch.last_stamp_ns, msg.publish_time_ns)
        start = msg.log_time_ns if total == 0 else min(start, msg.log_time_ns)
        end = max(end, msg.log_time_ns)
        total += 1
    return RecordingSummary(
        path=str(reader.path),
        size_bytes=reader.size,
        complete=bool(reader.complete),
        stop_reason=reader.stop_reason,
        messages=total,
        start_ns=start,
        end_ns=end,
        metadata=reader.metadata,
        channels=sorted(per.values(), key=lambda c: (not c.lossless, c.topic)),
    )


def _when(ns: int) -> str:
    t = dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc)
    return f"{t.strftime('%b %d %Y %H:%M:%S.%f')[:-3]} UTC ({ns // 10**9}.{ns % 10**9:09d})"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def format_summary(s: RecordingSummary) -> str:
    """The human-readable summary (`ros2 bag info` layout)."""
    state = "complete" if s.complete else f"INCOMPLETE: {s.stop_reason}"
    lines = [
        f"File:              {s.path}",
        f"Size:              {_size(s.size_bytes)}",
        f"Storage:           mcap, {state}",
        f"Duration:          {s.duration_s:.3f} s",
    ]
    if s.messages:
        lines += [
            f"Start:             {_when(s.start_ns)}",
            f"End:               {_when(s.end_ns)}",
        ]
    lines.append(f"Messages:          {s.messages}")
    for title, lossless in (("Bus channels", True), ("View channels", False)):
        chans = [c for c in s.channels if c.lossless == lossless]
        if not chans:
            continue
        width = max(len(c.topic) for c in chans)
        type_width = max(len(c.type) for c in chans)
        lines.append(f"{title + ':':19}")
        for c in chans:
            lines.append(
                f"  {c.topic:{width}} | {c.type:{type_width}} | {c.count:7d} msgs | "
                f"{c.rate_hz:7.2f} Hz | {_size(c.bytes):>10} | {c.message_encoding}"
            )
    return "\n".join(lines)
