"""Publisher and Subscriber: one ZeroMQ PUB/SUB socket per topic, the table's policies applied.

A publisher binds its topic's endpoint and numbers its messages; a subscriber connects to one or
more publishers of a topic (e.g. several cameras) and receives either keep-latest (drain the
socket, deliver only the newest message of each source) or queued (every message, in order).
Bad messages are rejected, counted by reason and logged at a bounded rate; they never raise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import zmq

from perception.bus.codec import (
    CodecError,
    Limits,
    MalformedMessage,
    WrongTopicType,
    decode,
    decode_header,
    encode,
)
from perception.bus.endpoints import BusConfig, channel_key, endpoint
from perception.bus.health import InputStats
from perception.bus.topics import QueuePolicy, Topic, get_topic
from perception.errors import UserError
from perception.logs import RateLimitedLog
from perception.msgs import Message

MAX_BATCH = (
    1000  # messages taken off a socket per receive() call, so one input cannot starve others
)


def _socket_options(sock: zmq.Socket[Any], topic: Topic) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, topic.hwm)
    sock.setsockopt(zmq.RCVHWM, topic.hwm)


class Publisher:
    """Publishes one topic (one instance of it) on its configured endpoint."""

    def __init__(
        self,
        topic: str,
        bus: BusConfig,
        instance: str | None = None,
        context: zmq.Context[Any] | None = None,
        validate: bool = True,
    ) -> None:
        self.topic = get_topic(topic)
        self.key = channel_key(topic, instance)
        self.address = endpoint(bus, topic, instance)
        self._validate = validate
        self._topic_bytes = topic
        self._seq = 0
        self.published = 0
        self._sock = (context or zmq.Context.instance()).socket(zmq.PUB)
        _socket_options(self._sock, self.topic)
        try:
            self._sock.bind(self.address)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            raise UserError(f"cannot publish {self.key} on {self.address}: {exc}") from None

    def publish(self, msg: Message) -> None:
        """Number, stamp and send ``msg``. Its arrays are sent without copying: do not modify
        them afterwards (give each message fresh arrays)."""
        if not isinstance(msg, self.topic.type):
            raise TypeError(f"{self.key} carries {self.topic.type.TYPE}, not {type(msg).__name__}")
        msg.seq = self._seq
        msg.mono_ns = time.monotonic_ns()
        frames = encode(self._topic_bytes, msg, validate=self._validate)
        self._sock.send_multipart(frames, copy=False)
        self._seq += 1
        self.published += 1

    def close(self, linger_ms: int = 500) -> None:
        """Close, giving queued messages up to ``linger_ms`` to leave (a clean stop delivers
        the last frame; a dead peer cannot make shutdown hang)."""
        self._sock.close(linger_ms)


class Subscriber:
    """Receives one topic from one or more publishers, with the table's queue policy."""

    def __init__(
        self,
        topic: str,
        bus: BusConfig,
        instances: Iterable[str | None] = (None,),
        context: zmq.Context[Any] | None = None,
        expected_rate_hz: float | None = None,
        policy: QueuePolicy | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.topic = get_topic(topic)
        self.policy = policy or self.topic.policy
        self.addresses = [endpoint(bus, topic, inst) for inst in instances]
        self.stats = InputStats(
            expected_rate_hz=self.topic.rate_hz if expected_rate_hz is None else expected_rate_hz
        )
        self._limits = Limits(max_buffer_bytes=self.topic.max_bytes)
        self._rejects = RateLimitedLog(log or logging.getLogger(f"sub.{topic}"))
        self.socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        _socket_options(self.socket, self.topic)
        # The codec counts and rejects frames over max_bytes; the socket drops the connection of a
        # peer that sends frames over twice that, so hostile sizes never reach memory.
        self.socket.setsockopt(zmq.MAXMSGSIZE, 2 * self.topic.max_bytes)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 100)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, 200)  # join a late publisher quickly
        self._topic_bytes = topic.encode()
        self.socket.setsockopt(zmq.SUBSCRIBE, self._topic_bytes)
        for address in self.addresses:
            self.socket.connect(address)

    # -- receiving --------------------------------------------------------------------------
    def receive(self, timeout_ms: int = 0) -> list[Message]:
        """Messages now waiting (waiting up to ``timeout_ms`` for the first one).

        Keep-latest: only the newest message of each source (``frame_id``); the skipped ones are
        counted as stale. Queued: all waiting messages (up to a batch), in arrival order.
        """
        if timeout_ms and not self.socket.poll(timeout_ms, zmq.POLLIN):
            return []
        raw: list[tuple[list[zmq.Frame], dict[str, Any]]] = []
        while len(raw) < MAX_BATCH:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            header = self._accept_header(frames)
            if header is not None:
                raw.append((frames, header))
        if self.policy is QueuePolicy.KEEP_LATEST:
            newest: dict[str, tuple[list[zmq.Frame], dict[str, Any]]] = {}
            for item in raw:
                source = str(item[1].get("frame_id", ""))
                if source in newest:
                    self.stats.stale_dropped += 1
                newest[source] = item
            raw = list(newest.values())
        out = []
        for frames, header in raw:
            msg = self._decode(frames, header)
            if msg is not None:
                out.append(msg)
        return out

    def _accept_header(self, frames: list[zmq.Frame]) -> dict[str, Any] | None:
        """Unpack the header and account the arrival; None (counted) when it is bad."""
        try:
            if len(frames) < 2:
                raise MalformedMessage(f"{len(frames)} frame(s); need at least [topic, header]")
            if frames[0].bytes != self._topic_bytes:
                raise MalformedMessage(
                    f"topic frame {frames[0].bytes[:64]!r} is not {self.topic.name}"
                )
            header = decode_header(frames[1].buffer, self._limits)
        except CodecError as exc:
            self._reject(exc)
            return None
        self.stats.on_message(str(header.get("frame_id", "")), header["seq"], time.monotonic_ns())
        return header

    def _decode(self, frames: list[zmq.Frame], header: dict[str, Any]) -> Message | None:
        try:
            _, msg = decode([f.buffer for f in frames], self._limits, header=header)
            if not isinstance(msg, self.topic.type):
                raise WrongTopicType(
                    f"{self.topic.name} carries {self.topic.type.TYPE}, got {msg.TYPE}"
                )
        except CodecError as exc:
            self._reject(exc)
            return None
        self.stats.on_delivered(msg.valid)
        return msg

    def _reject(self, exc: CodecError) -> None:
        self.stats.rejected[exc.reason] += 1
        self._rejects.warning(exc.reason, f"rejected a message on {self.topic.name}: {exc}")

    def close(self) -> None:
        self.socket.close(0)
