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
from typing import Any, cast

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
from perception.bus.local import LocalBus
from perception.bus.topics import QueuePolicy, Topic, get_topic
from perception.errors import UserError
from perception.logs import RateLimitedLog
from perception.msgs import Message

SAME_HOST_PREFIXES = ("ipc://", "tcp://127.", "tcp://localhost:", "inproc://")
SEND_WAIT_S = 0.02  # wait_sent's default: the longest a sender waits for one message to go out
MAX_BATCH = (
    1000  # messages taken off a socket per receive() call, so one input cannot starve others
)


def drain(sock: zmq.Socket[Any], limit: int) -> list[list[zmq.Frame]]:
    """The messages waiting on ``sock`` (up to ``limit``), taken without blocking.

    After each message it asks ZMQ_EVENTS whether another waits: cheaper than a receive that
    raises zmq.Again (~95 against ~150 us when the process has been idle, on the reference VM),
    and every delivery pays this question once.
    """
    try:
        taken = [sock.recv_multipart(zmq.NOBLOCK, copy=False)]
    except zmq.Again:
        return []
    while len(taken) < limit and cast(int, sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
        try:
            taken.append(sock.recv_multipart(zmq.NOBLOCK, copy=False))
        except zmq.Again:
            break
    return taken


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
        track_sends: bool = False,
        local: LocalBus | None = None,
    ) -> None:
        """``local``: the process's shared bus (nodes composed in one process); the publisher
        then uses its context and binds in-process too."""
        self.topic = get_topic(topic)
        self.key = channel_key(topic, instance)
        self.address = endpoint(bus, topic, instance)
        self._validate = validate
        self._track = track_sends  # keep a tracker of the last send, for wait_sent()
        self._last_send: zmq.MessageTracker | None = None
        self._topic_bytes = topic
        self._seq = 0
        self.published = 0
        self._last_publish_ns = 0
        self._gap_ns = 0  # between the last two publishes: the source's own period
        if local is not None:
            context = local.context
        self._sock = (context or zmq.Context.instance()).socket(zmq.PUB)
        _socket_options(self._sock, self.topic)
        try:
            self._sock.bind(self.address)
            if local is not None:
                local.bind(self._sock, self.address)
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
        if self._last_publish_ns:
            self._gap_ns = msg.mono_ns - self._last_publish_ns
        self._last_publish_ns = msg.mono_ns
        frames = encode(self._topic_bytes, msg, validate=self._validate)
        if self._track:
            self._last_send = self._sock.send_multipart(frames, copy=False, track=True)
        else:
            self._sock.send_multipart(frames, copy=False)
        self._seq += 1
        self.published += 1

    def wait_sent(self, timeout_s: float = SEND_WAIT_S) -> bool:
        """Wait up to ``timeout_s``, and at most half the time between the last two messages
        (a source never waits away more than half its own period), until ZeroMQ has let go of
        the last message (it went out to every subscriber, or was dropped); True when it has.
        Needs ``track_sends=True``.

        What is tracked is the message's last part, its last array: ZeroMQ writes a message's
        parts in order, and pyzmq copies parts under 64 kB at once, so this waits for the
        message whenever its last array is the large one (frames and depth maps have one).

        A source that starts on its next frame at once competes for the CPU with the delivery
        of the frame it just sent: on the 2-core reference VM a 640x384 frame then reached
        the detector 1.4 ms after the send instead of 0.75 ms.

        In a composed process, subscribers there receive the message itself, not a copy, so
        ZeroMQ lets go of it only once they have dropped it: the wait then runs to its limit,
        which keeps the source's next read off the consumer's first steps (frames reached the
        composed detector 0.1-0.17 ms sooner than with no wait, three alternating runs).
        """
        if not self._track:
            raise RuntimeError(f"{self.key}: wait_sent needs track_sends=True")
        if self._last_send is None or self._last_send.done:
            return True
        if self._gap_ns:
            timeout_s = min(timeout_s, self._gap_ns / 2e9)
        try:
            self._last_send.wait(timeout_s)
        except zmq.NotDone:
            return False
        return True

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
        local: LocalBus | None = None,
    ) -> None:
        """``local``: the process's shared bus; a publisher already in this process is then
        reached in-process (its ``addresses`` entry says ``inproc://``)."""
        self.topic = get_topic(topic)
        self.policy = policy or self.topic.policy
        self.addresses = [endpoint(bus, topic, inst) for inst in instances]
        if local is not None:
            context = local.context
            self.addresses = [local.connect_address(a) for a in self.addresses]
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
        # Senders' mono_ns share our clock only on this host: transit times are kept only then.
        self._same_host = all(a.startswith(SAME_HOST_PREFIXES) for a in self.addresses)
        self.socket.setsockopt(zmq.SUBSCRIBE, self._topic_bytes)
        for address in self.addresses:
            self.socket.connect(address)

    def links(self) -> list[str]:
        """How each publisher is reached: ``inproc`` (same process), ``ipc`` or ``tcp``."""
        return [a.partition("://")[0] for a in self.addresses]

    # -- receiving --------------------------------------------------------------------------
    def receive(self, timeout_ms: int = 0) -> list[Message]:
        """Messages now waiting (waiting up to ``timeout_ms`` for the first one).

        Keep-latest: only the newest message of each source (``frame_id``); the skipped ones are
        counted as stale. Queued: all waiting messages (up to a batch), in arrival order.
        """
        if timeout_ms and not self.socket.poll(timeout_ms, zmq.POLLIN):
            return []
        out: list[Message] = []
        for frames in drain(self.socket, MAX_BATCH):
            msg = self._decode(frames)
            if msg is not None:
                out.append(msg)
        if self.policy is QueuePolicy.KEEP_LATEST and len(out) > 1:
            newest: dict[str, Message] = {}
            for msg in out:
                if msg.frame_id in newest:
                    self.stats.stale_dropped += 1
                newest[msg.frame_id] = msg
            out = list(newest.values())
        for msg in out:
            self.stats.on_delivered(msg.valid)
        return out

    def _decode(self, frames: list[zmq.Frame]) -> Message | None:
        """Validate and decode one arrival and account it; None (counted) when it is bad.

        Decoding a frame that keep-latest then skips costs little: arrays are views of the
        received buffers, never copies."""
        now_ns = time.monotonic_ns()
        try:
            if len(frames) < 2:
                raise MalformedMessage(f"{len(frames)} frame(s); need at least [topic, header]")
            if frames[0].bytes != self._topic_bytes:
                raise MalformedMessage(
                    f"topic frame {frames[0].bytes[:64]!r} is not {self.topic.name}"
                )
            _, msg = decode([f.buffer for f in frames], self._limits)
            if not isinstance(msg, self.topic.type):
                raise WrongTopicType(
                    f"{self.topic.name} carries {self.topic.type.TYPE}, got {msg.TYPE}"
                )
        except CodecError as exc:
            self._reject(exc)
            self._account_rejected(frames, now_ns)
            return None
        self.stats.on_message(msg.frame_id, msg.seq, now_ns, msg.mono_ns if self._same_host else 0)
        return msg

    def _account_rejected(self, frames: list[zmq.Frame], now_ns: int) -> None:
        """A rejected message whose header is readable still counts as an arrival (its ``seq``
        keeps the drop count right)."""
        if len(frames) < 2:
            return
        try:
            header = decode_header(frames[1].buffer, self._limits)
        except CodecError:
            return
        self.stats.on_message(str(header.get("frame_id", "")), header["seq"], now_ns)

    def _reject(self, exc: CodecError) -> None:
        self.stats.rejected[exc.reason] += 1
        self._rejects.warning(exc.reason, f"rejected a message on {self.topic.name}: {exc}")

    def close(self) -> None:
        self.socket.close(0)
