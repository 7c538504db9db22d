"""Player node: publishes the lossless channels of recordings as the live topics.

Each message goes out on its recorded channel (``camera/frames``, ``status@camera``, ...) with
every field and buffer as recorded (``seq`` and ``mono_ns`` are the player's own), at its recorded
stamp on a clock running at ``rate`` times real time. Several files play one after another (the
parts of a split recording continue each other's clock; an unrelated file starts right after the
previous one). ``status`` channels are played only when asked for by name (the live nodes publish
their own).

Slow joiners: ZeroMQ drops what is published before a subscriber has connected, and a
subscriber that started first retries its connection at intervals growing to 1 s. So the player
waits ``wait_subscribers_s`` (1.5 s) after binding its sockets, and, when ``wait_nodes`` names
nodes, first waits until each of them has published a status (a node reports status from its
loop, after it subscribed to its inputs).

Lockstep (``lockstep: true``): no clock; after each message on ``lockstep_gate`` (camera frames)
the player waits until a message on ``lockstep_topic`` with that frame's ``stamp_ns`` arrives (or
``lockstep_timeout_s`` passes), so the stack downstream processes every frame, in order, whatever
the machine's speed. The lockstep topic itself is never played.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from perception.bus import BusConfig, Publisher, QueuePolicy, Subscriber
from perception.bus.topics import TOPICS
from perception.errors import UserError
from perception.node import Node, NodeConfig, exit_process, node_main
from perception.recording.capture import ChannelSelection
from perception.recording.mcap_io import (
    ChannelInfo,
    RecordDecodeError,
    RecordedMessage,
    RecordingReader,
    split_key,
)
from perception.recording.playback import Pacer, Timeline, in_play_order

MIN_RATE, MAX_RATE = 0.1, 10.0
LATCHED_TOPICS = ("camera/info",)  # the newest one before --start is published first


@dataclass
class PlayerConfig:
    node: NodeConfig = field(default_factory=NodeConfig)
    files: list[str] = field(
        default_factory=list, metadata={"help": "MCAP recordings, played one after another"}
    )
    rate: float = field(default=1.0, metadata={"help": "speed factor, 0.1 to 10"})
    loop: bool = field(default=False, metadata={"help": "start over at the end"})
    start_s: float = field(
        default=0.0, metadata={"help": "skip the first S seconds of the recording"}
    )
    topics: list[str] = field(
        default_factory=list,
        metadata={"help": "TOPIC or TOPIC@INSTANCE to play; empty: all but status"},
    )
    lockstep: bool = field(
        default=False, metadata={"help": "wait for the stack's answer to each frame"}
    )
    lockstep_topic: str = field(
        default="perception/tracks", metadata={"help": "the answer awaited (TOPIC[@INSTANCE])"}
    )
    lockstep_gate: str = field(
        default="camera/frames", metadata={"help": "topic whose messages await an answer"}
    )
    lockstep_timeout_s: float = field(
        default=5.0, metadata={"help": "give up waiting for an answer after S seconds"}
    )
    wait_subscribers_s: float = field(
        default=1.5, metadata={"help": "pause before the first message (slow joiners)"}
    )
    wait_nodes: list[str] = field(
        default_factory=list, metadata={"help": "wait until these nodes publish a status"}
    )
    wait_nodes_timeout_s: float = field(
        default=60.0, metadata={"help": "fail when a node of wait_nodes is not up by then"}
    )
    end_linger_s: float = field(
        default=0.5, metadata={"help": "keep sockets open this long after the last message"}
    )


class Player:
    """State of the player node: the recordings, one publisher per channel, the lockstep input."""

    def __init__(self, node: Node, config: PlayerConfig) -> None:
        if not config.files:
            raise UserError("no recording given to play")
        if not MIN_RATE <= config.rate <= MAX_RATE:
            raise UserError(f"rate must be in {MIN_RATE}..{MAX_RATE}, not {config.rate}")
        if config.start_s < 0 or config.lockstep_timeout_s <= 0:
            raise UserError("start must be >= 0 and the lockstep timeout > 0")
        self.node = node
        self.config = config
        self.readers = [RecordingReader(f) for f in config.files]
        self.channels = self._select(self._lossless_channels())
        self.publishers: dict[str, Publisher] = {}
        for key in sorted(self.channels):
            topic, instance = split_key(key)
            self.publishers[key] = node.advertise(topic, instance, track_sends=True)
        self.answers: Subscriber | None = None
        if config.lockstep:
            topic, instance = split_key(config.lockstep_topic)
            self.answers = Subscriber(
                topic,
                config.node.bus,
                instances=[instance],
                context=node.context,
                policy=QueuePolicy.QUEUE,
                log=node.log,
            )
        self.played = 0
        self.answered = 0
        self.timeouts = 0

    # -- set-up -----------------------------------------------------------------------------
    def _lossless_channels(self) -> dict[str, ChannelInfo]:
        found: dict[str, ChannelInfo] = {}
        for reader in self.readers:
            channels = reader.channels()
            lossless = [c for c in channels if c.lossless and c.bus_topic in TOPICS]
            if not lossless:
                held = ", ".join(sorted({c.topic for c in channels})) or "no channels"
                if reader.complete is False:
                    held += f"; {reader.stop_reason}"
                raise UserError(f"{reader.path} holds no perception bus channels ({held})")
            for c in lossless:
                found.setdefault(c.topic, c)
        return found

    def _select(self, channels: dict[str, ChannelInfo]) -> dict[str, ChannelInfo]:
        c = self.config
        if c.topics:
            chosen = ChannelSelection.parse(c.topics)
            selected = {k: v for k, v in channels.items() if chosen.matches(k)}
            if not selected:
                raise UserError(
                    f"none of {', '.join(c.topics)} is in the recording "
                    f"(it holds {', '.join(sorted(channels))})"
                )
        else:
            selected = {k: v for k, v in channels.items() if v.bus_topic != "status"}
        if c.lockstep:
            answer_topic = split_key(c.lockstep_topic)[0]
            if c.topics and any(v.bus_topic == answer_topic for v in selected.values()):
                raise UserError(
                    f"--topics includes {answer_topic}: in lockstep the live stack answers on it"
                )
            selected = {k: v for k, v in selected.items() if v.bus_topic != answer_topic}
            if not any(v.bus_topic == c.lockstep_gate for v in selected.values()):
                raise UserError(f"lockstep needs {c.lockstep_gate} messages to play; none selected")
        if not selected:
            raise UserError("nothing to play: the recording holds only status channels")
        return selected

    def wait_ready(self) -> None:
        """Wait for the named nodes, then the slow-joiner pause."""
        self.node.ready()  # set up: in a composed process, the nodes listed after it start now
        self._wait_nodes(self.config.wait_nodes)
        self.node.sleep_until(time.monotonic_ns() + int(self.config.wait_subscribers_s * 1e9))

    def _wait_nodes(self, names: list[str]) -> None:
        if not names:
            return
        bus: BusConfig = self.config.node.bus
        subs = {
            n: Subscriber("status", bus, instances=[n], context=self.node.context) for n in names
        }
        deadline = time.monotonic() + self.config.wait_nodes_timeout_s
        try:
            waiting = set(names)
            while waiting and self.node.running:
                for name in sorted(waiting):
                    if subs[name].receive(timeout_ms=20):
                        waiting.discard(name)
                        self.node.log.info("node %s is up", name)
                self.node.spin_once()
                if waiting and time.monotonic() > deadline:
                    raise UserError(
                        f"node(s) {', '.join(sorted(waiting))} published no status within "
                        f"{self.config.wait_nodes_timeout_s} s"
                    )
        finally:
            for sub in subs.values():
                sub.close()

    # -- playing ----------------------------------------------------------------------------
    def _timeline(self) -> Iterator[tuple[int, RecordedMessage]]:
        """(elapsed ns, message) over all files, in play order."""
        timeline = Timeline()
        topics = set(self.channels)
        for reader in self.readers:
            timeline.start_file()
            for t, rec in in_play_order(reader.messages(topics)):
                yield timeline.elapsed(t), rec
            if reader.complete is False:
                self.node.log.warning(
                    "%s: %s; played what was readable", reader.path, reader.stop_reason
                )

    def play_once(self) -> None:
        """One pass over the recordings, from ``start_s``."""
        pacer = Pacer(self.config.rate)
        start_ns = int(self.config.start_s * 1e9)
        latched: dict[str, RecordedMessage] = {}
        for elapsed, rec in self._timeline():
            if not self.node.running:
                return
            if elapsed < start_ns:
                if rec.channel.bus_topic in LATCHED_TOPICS:
                    latched[rec.channel.topic] = rec
                continue
            for held in latched.values():  # the calibration in force at the start point
                self._publish(held)
            latched.clear()
            if not self.config.lockstep:
                self.node.sleep_until(pacer.due_ns(elapsed, time.monotonic_ns()))
                if not self.node.running:
                    return
            self._publish(rec)
            self.node.spin_once()

    def _publish(self, rec: RecordedMessage) -> None:
        try:
            msg = rec.decode()
        except RecordDecodeError as exc:
            self.node.reject("bad_record", str(exc))
            return
        publisher = self.publishers[rec.channel.topic]
        with self.node.stage("publish"):
            publisher.publish(msg)
        self.played += 1
        if not self.config.lockstep:
            # Read the next record (chunk decompression) only once this one is out, as the
            # camera node does: working alongside a frame's delivery delays it.
            publisher.wait_sent()
        if self.answers is not None and rec.channel.bus_topic == self.config.lockstep_gate:
            self._await_answer(msg.stamp_ns)

    def _await_answer(self, stamp_ns: int) -> None:
        """Block until the lockstep topic answers ``stamp_ns`` (or the timeout)."""
        assert self.answers is not None
        deadline = time.monotonic() + self.config.lockstep_timeout_s
        while self.node.running:
            left_ms = int((deadline - time.monotonic()) * 1000)
            for msg in self.answers.receive(timeout_ms=max(1, min(left_ms, 100))):
                if msg.stamp_ns == stamp_ns:
                    self.answered += 1
                    return
                self.node.counters["lockstep.other_stamp"] += 1
            self.node.spin_once()
            if time.monotonic() >= deadline:
                self.timeouts += 1
                self.node.counters["lockstep.timeouts"] += 1
                self.node.log.warning(
                    "no %s for stamp %d within %.1f s; going on",
                    self.config.lockstep_topic,
                    stamp_ns,
                    self.config.lockstep_timeout_s,
                )
                return

    def close(self) -> None:
        if self.answers is not None:
            self.answers.close()


def run(config: PlayerConfig) -> int:
    with Node("player", config.node) as node:
        player = Player(node, config)
        node.on_close(player.close)
        node.log.info(
            "playing %s from %s at %.2fx%s",
            ", ".join(sorted(player.channels)),
            ", ".join(config.files),
            config.rate,
            f", lockstep on {config.lockstep_topic}" if config.lockstep else "",
        )
        player.wait_ready()
        while node.running:
            player.play_once()
            if not config.loop:
                break
        if node.running:
            node.sleep_until(time.monotonic_ns() + int(config.end_linger_s * 1e9))
        node.log.info(
            "played %d messages%s",
            player.played,
            f"; lockstep answers {player.answered}, timeouts {player.timeouts}"
            if config.lockstep
            else "",
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return node_main("player", PlayerConfig, run, argv, description=__doc__ or "")


if __name__ == "__main__":
    exit_process(main())
