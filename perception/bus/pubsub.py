"""Publisher and Subscriber: one ZeroMQ socket per topic, the table's policies applied.

A publisher binds its topic's endpoint and numbers its messages; a subscriber connects to one or
more publishers of a topic (e.g. several cameras) and receives either keep-latest (drain the
socket, deliver only the newest message of each source) or queued (every message, in order).
Bad messages are rejected, counted by reason and logged at a bounded rate; they never raise.

In a composed process, subscribers in the process get messages handed over directly
(``perception/bus/local.py``), and the publisher's socket is an XPUB (a PUB to subscribers, and
it hears their subscriptions), so a message that nobody outside the process listens to is not
sent. A publisher on its own has a PUB socket and sends every message (asking the socket costs
a little on every message: the bus benchmark's budget is 0.1 ms).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, cast

import zmq

from perception import tracing
from perception.bus.codec import (
    CodecError,
    Limits,
    MalformedMessage,
    WrongTopicType,
    decode,
    decode_header,
    delivered_copy,
    encode_parts,
    within_limits,
)
from perception.bus.endpoints import BusConfig, channel_key, endpoint
from perception.bus.health import InputStats
from perception.bus.local import Inbox, LocalBus
from perception.bus.topics import QueuePolicy, Topic, get_topic
from perception.errors import UserError
from perception.logs import RateLimitedLog
from perception.msgs import Message

SAME_HOST_PREFIXES = ("ipc://", "tcp://127.", "tcp://localhost:", "inproc://")
SEND_WAIT_S = 0.02  # wait_sent's default: the longest a sender waits for one message to go out
MAX_BATCH = (
    1000  # messages taken off a socket per receive() call, so one input cannot starve others
)


# zmq's flags are IntFlag members: each `|` or `&` with one builds a new member in Python's
# enum code (~1.6 us warm, far more cold). Plain ints for the per-message paths.
_POLLIN = int(zmq.POLLIN)
_SNDMORE = int(zmq.SNDMORE)


def send_parts(sock: zmq.Socket[Any], parts: list[Any], track: bool = False) -> Any:
    """``sock.send_multipart(parts, copy=False, track=track)`` without its per-part flag
    arithmetic; returns the last part's MessageTracker. Unlike ``send_multipart`` it does not
    check every part is a buffer before sending the first: the codec's frames always are
    (bytes, or C-contiguous arrays)."""
    for part in parts[:-1]:
        sock.send(part, _SNDMORE, copy=False, track=track)
    return sock.send(parts[-1], 0, copy=False, track=track)


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
    while len(taken) < limit and cast(int, sock.getsockopt(zmq.EVENTS)) & _POLLIN:
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
        owner: str = "",
    ) -> None:
        """``local``: the process's shared bus (nodes composed in one process); the publisher
        then uses its context and hands messages to subscribers there directly. ``owner``
        names the sending node in traces (perception/tracing.py)."""
        self.topic = get_topic(topic)
        self.owner = owner
        self.key = channel_key(topic, instance)
        self.address = endpoint(bus, topic, instance)
        self._validate = validate
        self._track = track_sends  # keep a tracker of the last send, for wait_sent()
        self._last_send: zmq.MessageTracker | None = None
        self._topic_bytes = topic
        self._topic_prefix = topic.encode()
        self._seq = 0
        self.published = 0
        self._last_publish_ns = 0
        self._gap_ns = 0  # between the last two publishes: the source's own period
        self._local = local
        self._limits = Limits(max_buffer_bytes=self.topic.max_bytes)  # as its subscribers
        # prefixes subscribed from outside the process (XPUB reports each one's first
        # subscriber and its last one leaving)
        self._remote_prefixes: set[bytes] = set()
        self._remote_interest = False
        if local is not None:
            context = local.context
        kind = zmq.XPUB if local is not None else zmq.PUB
        self._sock = (context or zmq.Context.instance()).socket(kind)
        _socket_options(self._sock, self.topic)
        try:
            self._sock.bind(self.address)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            raise UserError(f"cannot publish {self.key} on {self.address}: {exc}") from None
        if local is not None:
            local.advertise(self.address)

    @property
    def last_publish_ns(self) -> int:
        """Monotonic time of the latest publish (0: none yet)."""
        return self._last_publish_ns

    def _heard_subscriptions(self) -> bool:
        """Take the subscription changes waiting on the socket; whether anyone outside the
        process now subscribes to this topic."""
        sock = self._sock
        changed = False
        while cast(int, sock.getsockopt(zmq.EVENTS)) & _POLLIN:
            try:
                event = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if event[:1] == b"\x01":
                self._remote_prefixes.add(event[1:])
            elif event[:1] == b"\x00":
                self._remote_prefixes.discard(event[1:])
            changed = True
        if changed:
            topic = self._topic_prefix
            self._remote_interest = any(topic.startswith(p) for p in self._remote_prefixes)
        return self._remote_interest

    @property
    def has_remote_subscribers(self) -> bool:
        """Whether a subscriber outside this process listens now (composed publishers only:
        one on its own sends every message and does not ask)."""
        if self._local is None:
            raise RuntimeError(f"{self.key}: only a publisher in a composed process asks")
        return self._heard_subscriptions()

    def publish(self, msg: Message) -> None:
        """Number, stamp and send ``msg``. Its arrays are sent without copying: do not modify
        them afterwards (give each message fresh arrays).

        The message is checked and encoded whoever listens (a bad message fails here, at its
        sender, in every configuration). In a composed process the socket sends it only while
        a subscriber outside the process listens, and subscribers in the process get it
        directly, after that send: a subscriber woken first would compete with the send for
        the interpreter (the detector's publish stage doubled when it did)."""
        if not isinstance(msg, self.topic.type):
            raise TypeError(f"{self.key} carries {self.topic.type.TYPE}, not {type(msg).__name__}")
        msg.seq = self._seq
        msg.mono_ns = time.monotonic_ns()
        if self._last_publish_ns:
            self._gap_ns = msg.mono_ns - self._last_publish_ns
        self._last_publish_ns = msg.mono_ns
        if tracing.enabled:
            tracing.sent(self.owner, self.topic.name, msg.stamp_ns, msg.mono_ns)
        encoded = encode_parts(self._topic_bytes, msg, validate=self._validate)
        self._last_send = None
        if self._local is None or self._heard_subscriptions():
            if self._track:
                self._last_send = send_parts(self._sock, encoded.frames, track=True)
            else:
                send_parts(self._sock, encoded.frames)
        if self._local is not None:
            inboxes = self._local.inboxes(self.address)
            if inboxes:
                # Unchecked messages, and any beyond the sizes a receiver's fast path takes, go
                # as frames: the subscriber decodes and checks them, with its limits, as off
                # the wire (the sender's checks do not cover the receiver's size limits).
                trusted = encoded.validated and within_limits(encoded, self._limits)
                for inbox in inboxes:
                    inbox.put(delivered_copy(encoded) if trusted else encoded.frames)
        self._seq += 1
        self.published += 1

    def wait_sent(self, timeout_s: float = SEND_WAIT_S) -> bool:
        """Wait up to ``timeout_s``, and at most half the time between the last two messages
        (a source never waits away more than half its own period), until ZeroMQ has let go of
        the last message (it went out to every subscriber, or was dropped); True when it has.
        Needs ``track_sends=True``. A message that only went to subscribers in this process is
        never waited for.

        What is tracked is the message's last part, its last array: ZeroMQ writes a message's
        parts in order, and pyzmq copies parts under 64 kB at once, so this waits for the
        message whenever its last array is the large one (frames and depth maps have one).

        A source that starts on its next frame at once competes for the CPU with the delivery
        of the frame it just sent: on the 2-core reference VM a 640x384 frame then reached
        the detector 1.4 ms after the send instead of 0.75 ms.
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
        if self._local is not None:
            self._local.withdraw(self.address)
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
        owner: str = "",
    ) -> None:
        """``local``: the process's shared bus; a publisher already in this process then hands
        its messages over directly (its ``addresses`` entry says ``inproc://``). ``owner``
        names the receiving node in traces (perception/tracing.py)."""
        self.topic = get_topic(topic)
        self.owner = owner
        self.policy = policy or self.topic.policy
        self.addresses = [endpoint(bus, topic, inst) for inst in instances]
        self._local = local
        self._inbox: Inbox | None = None
        remote = self.addresses
        if local is not None:
            context = local.context
            # a high-water mark per publisher, as a socket has per connection
            inbox = Inbox(self.topic.hwm * len(self.addresses))
            attached = [a for a in self.addresses if local.attach(a, inbox)]
            if attached:
                self._inbox = inbox
                remote = [a for a in self.addresses if a not in attached]
                self.addresses = [f"inproc://{a}" if a in attached else a for a in self.addresses]
            else:
                inbox.close()
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
        # With every publisher in this process the socket has no peer: it is neither polled
        # nor read (asking an empty socket costs ~0.1 ms when the process has been idle).
        self._connected = bool(remote)
        # Senders' mono_ns share our clock only on this host: transit times are kept only then.
        self._same_host = all(a.startswith(SAME_HOST_PREFIXES) for a in self.addresses)
        self.socket.setsockopt(zmq.SUBSCRIBE, self._topic_bytes)
        for address in remote:
            self.socket.connect(address)

    def links(self) -> list[str]:
        """How each publisher is reached: ``inproc`` (same process), ``ipc`` or ``tcp``."""
        return [a.partition("://")[0] for a in self.addresses]

    def pollables(self) -> list[Any]:
        """What to poll for arrivals: the socket, and the local inbox's descriptor if any."""
        if self._inbox is None:
            return [self.socket]
        if not self._connected:
            return [self._inbox.fileno()]
        return [self.socket, self._inbox.fileno()]

    # -- receiving --------------------------------------------------------------------------
    def receive(self, timeout_ms: int = 0) -> list[Message]:
        """Messages now waiting (waiting up to ``timeout_ms`` for the first one).

        Keep-latest: only the newest message of each source (``frame_id``); the skipped ones are
        counted as stale. Queued: all waiting messages (up to a batch), in arrival order.
        """
        if timeout_ms:
            if self._inbox is None:
                if not self.socket.poll(timeout_ms, zmq.POLLIN):
                    return []
            elif not zmq.zmq_poll([(p, zmq.POLLIN) for p in self.pollables()], timeout_ms):
                return []
        out: list[Message] = []
        if self._inbox is not None:
            for item in self._inbox.take():
                msg = self._accept_local(item)
                if msg is not None:
                    out.append(msg)
        for frames in drain(self.socket, MAX_BATCH) if self._connected else ():
            msg = self._decode([f.buffer for f in frames])
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
        if tracing.enabled and out:
            now_ns = time.monotonic_ns()
            for msg in out:
                tracing.received(self.owner, self.topic.name, msg.stamp_ns, now_ns)
        return out

    def _accept_local(self, item: Message | list[Any]) -> Message | None:
        """A delivery from a publisher in this process: a checked message, or the frames of
        one its publisher did not check (decoded and checked here)."""
        if not isinstance(item, Message):
            return self._decode(item)
        self.stats.on_message(item.frame_id, item.seq, time.monotonic_ns(), item.mono_ns)
        return item

    def _decode(self, buffers: list[Any]) -> Message | None:
        """Validate and decode one arrival (``[topic, header, *buffers]``) and account it;
        None (counted) when it is bad.

        Decoding a frame that keep-latest then skips costs little: arrays are views of the
        received buffers, never copies."""
        now_ns = time.monotonic_ns()
        try:
            if len(buffers) < 2:
                raise MalformedMessage(f"{len(buffers)} frame(s); need at least [topic, header]")
            if bytes(buffers[0]) != self._topic_bytes:
                raise MalformedMessage(
                    f"topic frame {bytes(buffers[0])[:64]!r} is not {self.topic.name}"
                )
            _, msg = decode(buffers, self._limits)
            if not isinstance(msg, self.topic.type):
                raise WrongTopicType(
                    f"{self.topic.name} carries {self.topic.type.TYPE}, got {msg.TYPE}"
                )
        except CodecError as exc:
            self._reject(exc)
            self._account_rejected(buffers, now_ns)
            return None
        self.stats.on_message(msg.frame_id, msg.seq, now_ns, msg.mono_ns if self._same_host else 0)
        return msg

    def _account_rejected(self, buffers: list[Any], now_ns: int) -> None:
        """A rejected message whose header is readable still counts as an arrival (its ``seq``
        keeps the drop count right)."""
        if len(buffers) < 2:
            return
        try:
            header = decode_header(buffers[1], self._limits)
        except CodecError:
            return
        self.stats.on_message(str(header.get("frame_id", "")), header["seq"], now_ns)

    def _reject(self, exc: CodecError) -> None:
        self.stats.rejected[exc.reason] += 1
        self._rejects.warning(exc.reason, f"rejected a message on {self.topic.name}: {exc}")

    def close(self) -> None:
        if self._inbox is not None:
            if self._local is not None:
                self._local.detach(self._inbox)
            self._inbox.close()
        self.socket.close(0)
