"""Receiving bus channels for recording: which channels, and their wire frames as received.

A recorder keeps the frames of each message byte for byte, so it cannot use the decoding
:class:`~perception.bus.Subscriber`; :class:`RawChannel` is a SUB socket on one channel (one
instance of a topic) with the table's frame-size bound and a deep receive queue (nothing is
skipped, whatever the topic's policy), and validates each message with the codec before it is
written, counting rejects like a subscriber.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zmq

from perception.bus import TOPICS, BusConfig, endpoint, get_topic
from perception.bus.codec import Limits, MalformedMessage, decode
from perception.bus.health import InputStats
from perception.bus.pubsub import drain
from perception.bus.topics import Topic
from perception.errors import UserError
from perception.msgs import Message
from perception.recording.mcap_io import split_key

RECORD_HWM = 10_000  # messages queued per channel while the recorder writes


@dataclass(frozen=True)
class ChannelSelection:
    """Channels to record: whole topics (every instance) and exact ``topic@instance`` keys."""

    whole_topics: frozenset[str]
    exact: frozenset[str]

    @classmethod
    def parse(cls, items: Sequence[str]) -> ChannelSelection:
        """``TOPIC`` or ``TOPIC@INSTANCE`` items; none: every topic of the table."""
        whole, exact = set(), set()
        for item in items or list(TOPICS):
            topic, instance = split_key(item.strip())
            get_topic(topic)  # a clear error for an unknown topic
            if instance is None:
                if "@" in item:
                    raise UserError(f"{item!r}: the instance after '@' is empty")
                whole.add(topic)
            elif "/" in instance or "@" in instance:
                raise UserError(f"{item!r}: an instance name has no '/' or '@'")
            else:
                exact.add(f"{topic}@{instance}")
        return cls(frozenset(whole), frozenset(exact))

    def initial_keys(self) -> list[str]:
        """Channels known without discovery: each whole topic's default instance, the exact
        keys."""
        return sorted(self.whole_topics | self.exact)

    def matches(self, key: str) -> bool:
        return key in self.exact or split_key(key)[0] in self.whole_topics


class RawChannel:
    """A SUB socket on one bus channel that hands over the wire frames of valid messages."""

    def __init__(self, key: str, bus: BusConfig, context: zmq.Context[Any]) -> None:
        topic_name, instance = split_key(key)
        self.key = key
        self.topic: Topic = get_topic(topic_name)
        self.address = endpoint(bus, topic_name, instance)
        self.stats = InputStats(expected_rate_hz=0.0)
        self._limits = Limits(max_buffer_bytes=self.topic.max_bytes)
        self._topic_bytes = topic_name.encode()
        sock = context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, RECORD_HWM)
        sock.setsockopt(zmq.MAXMSGSIZE, self.topic.max_bytes)
        # retry every 20 ms without back-off: a publisher that starts late (a player, a node
        # composed after another that loads a network) must not find the recorder still
        # waiting out a long reconnect interval. At 100 ms the demo once lost its first tracks:
        # the composed tracker bound, and sent them ~70 ms later, before the recorder joined.
        sock.setsockopt(zmq.RECONNECT_IVL, 20)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 0)
        sock.setsockopt(zmq.SUBSCRIBE, self._topic_bytes)
        sock.connect(self.address)
        self.socket = sock

    def receive(self, max_messages: int) -> list[tuple[list[zmq.Frame], int]]:
        """Waiting messages (up to ``max_messages``) with their wall-clock receive time, ns."""
        return [(frames, time.time_ns()) for frames in drain(self.socket, max_messages)]

    def validate(self, frames: list[zmq.Frame]) -> Message:
        """The decoded message (checked as a subscriber checks it); raises CodecError."""
        if len(frames) < 2 or frames[0].bytes != self._topic_bytes:
            raise MalformedMessage(f"not a {self.topic.name} message")
        _, msg = decode([f.buffer for f in frames], self._limits)
        if not isinstance(msg, self.topic.type):
            raise MalformedMessage(f"{self.topic.name} carries {self.topic.type.TYPE}")
        self.stats.on_message(msg.frame_id, msg.seq, time.monotonic_ns())
        self.stats.on_delivered(msg.valid)
        return msg

    def close(self) -> None:
        self.socket.close(0)
