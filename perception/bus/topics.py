"""The one table of topics: name -> message type, expected rate, queue policy, port, size bound.

Sockets, health checks, recording and tests all read this table (cf. openpilot's services.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from perception.errors import UserError
from perception.msgs import (
    CameraFrame,
    CameraInfo,
    DepthMap,
    Detections,
    Message,
    NodeStatus,
    TrackedObjects,
)


class QueuePolicy(enum.Enum):
    KEEP_LATEST = "keep_latest"  # only the newest message matters: drain, never work on stale
    QUEUE = "queue"  # every message matters: deliver all, in order


@dataclass(frozen=True)
class Topic:
    name: str
    type: type[Message]
    rate_hz: float  # expected rate; health calls an input slow below half of it
    policy: QueuePolicy
    port: int  # offset from the bus's tcp base port
    max_bytes: int  # largest frame accepted (socket MAXMSGSIZE and codec limit)
    # ZeroMQ high-water mark, messages, both ends. For keep-latest topics it is deliberately not
    # tiny: ZeroMQ's I/O thread keeps draining the connection into the receive queue while the
    # node computes, so when the node drains the queue the newest message is there. (A full
    # queue makes PUB drop the *newest* messages instead; CONFLATE cannot do multipart.)
    hwm: int


MiB = 1 << 20
_TABLE = (
    Topic("camera/frames", CameraFrame, 10.0, QueuePolicy.KEEP_LATEST, 0, 128 * MiB, 16),
    Topic("camera/info", CameraInfo, 1.0, QueuePolicy.QUEUE, 1, 1 * MiB, 100),
    Topic("perception/detections", Detections, 10.0, QueuePolicy.QUEUE, 2, 16 * MiB, 1000),
    Topic("perception/depth", DepthMap, 10.0, QueuePolicy.KEEP_LATEST, 3, 64 * MiB, 16),
    Topic("perception/tracks", TrackedObjects, 10.0, QueuePolicy.QUEUE, 4, 16 * MiB, 1000),
    Topic("status", NodeStatus, 1.0, QueuePolicy.QUEUE, 5, 1 * MiB, 100),
)
TOPICS: dict[str, Topic] = {t.name: t for t in _TABLE}


def get_topic(name: str) -> Topic:
    """The table entry for ``name``; a clear error naming the known topics otherwise."""
    try:
        return TOPICS[name]
    except KeyError:
        raise UserError(f"unknown topic {name!r}; known topics: {', '.join(TOPICS)}") from None
