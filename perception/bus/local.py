"""Nodes that share one process: their context, and direct delivery between them.

A launch file may put several nodes in one process (``process: NAME``, see
``perception/container.py``), as ROS 2 composes nodes in one container. Each node still runs its
own loop, in its own thread; what they share is a :class:`LocalBus`: one ZeroMQ context, and a
record of the topics published in the process. A publisher there binds its usual endpoint (so
other processes and hosts subscribe as ever); a subscriber in the same process to a topic
already published there gets an :class:`Inbox` instead of a connection. The publisher checks
and encodes each message as for the wire, then hands each local subscriber its own copy of the
message, whose arrays are the sender's (read-only): no socket, no pixel copied, no decoding
(ROS 2's intra-process delivery does the same). A pipe wakes the
subscriber, so a node polls its local inputs along with its sockets. On the 2-core reference VM
an ipc hop inside the pipeline took 1.2-1.5 ms; through ZeroMQ's ``inproc`` transport 0.5-0.9
ms, of which ~0.5 ms per frame went on sending and decoding (docs/benchmarks.md).

Which link a subscriber gets depends on whether the publisher exists when it subscribes: the
container starts its nodes in launch-file order, each once the one before has set up.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

if TYPE_CHECKING:
    from perception.node import Node

NodeHook = Callable[["Node"], None]

_CURRENT: contextvars.ContextVar[LocalBus | None] = contextvars.ContextVar(
    "perception_local_bus", default=None
)


class Inbox:
    """One local subscriber's queue of delivered messages, with a pipe that wakes its poll.

    The publisher's thread puts, the subscriber's thread takes. Up to ``capacity`` messages
    wait; beyond that the oldest go (the subscriber sees the gap in ``seq``, as when a socket's
    high-water mark drops). Messages are put before the pipe is written and the pipe is
    emptied before they are taken, so no message is left without a wake-up (a wake-up may find
    nothing: its message was taken with the one before).
    """

    def __init__(self, capacity: int) -> None:
        self._queue: collections.deque[Any] = collections.deque(maxlen=max(1, capacity))
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._lock = threading.Lock()  # a put never writes to a descriptor closed under it
        self._closed = False

    def fileno(self) -> int:
        """Readable while messages may wait (for ``zmq.Poller`` / ``zmq_poll``)."""
        return self._read_fd

    def put(self, message: Any) -> None:
        with self._lock:
            if self._closed:
                return
            self._queue.append(message)
            # a full pipe is readable already: that wake-up is enough
            with contextlib.suppress(BlockingIOError):
                os.write(self._write_fd, b"\0")

    def take(self) -> list[Any]:
        """The waiting messages, oldest first."""
        with contextlib.suppress(BlockingIOError):
            os.read(self._read_fd, 1 << 16)
        out = []
        queue = self._queue
        while queue:
            out.append(queue.popleft())
        return out

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            os.close(self._read_fd)
            os.close(self._write_fd)


class LocalBus:
    """What the nodes of one process share: a ZeroMQ context and the endpoints published."""

    def __init__(self) -> None:
        self.context: zmq.Context[Any] = zmq.Context()
        # endpoint -> the inboxes of its local subscribers; each list is replaced, never
        # changed, so a publisher reads its current one without the lock
        self._inboxes: dict[str, list[Inbox]] = {}
        self._lock = threading.Lock()
        self._on_opened: NodeHook | None = None
        self._on_ready: NodeHook | None = None

    # -- links ------------------------------------------------------------------------------
    def advertise(self, address: str) -> None:
        """A publisher in this process is bound to ``address``."""
        with self._lock:
            self._inboxes.setdefault(address, [])

    def withdraw(self, address: str) -> None:
        """The publisher of ``address`` closed: later subscribers connect to the endpoint."""
        with self._lock:
            self._inboxes.pop(address, None)

    def inboxes(self, address: str) -> list[Inbox]:
        """The inboxes of the local subscribers of ``address`` (do not modify the list)."""
        return self._inboxes.get(address, [])

    def attach(self, address: str, inbox: Inbox) -> bool:
        """Deliver what is published on ``address`` to ``inbox``, if its publisher is in this
        process; False: it is not (connect to the endpoint instead)."""
        with self._lock:
            current = self._inboxes.get(address)
            if current is None:
                return False
            self._inboxes[address] = [*current, inbox]
            return True

    def detach(self, inbox: Inbox) -> None:
        """Stop delivering to ``inbox`` (its subscriber closes)."""
        with self._lock:
            for address, current in self._inboxes.items():
                if inbox in current:
                    self._inboxes[address] = [i for i in current if i is not inbox]

    # -- the nodes (perception.node.Node) call these from their own threads ------------------
    def watch(self, opened: NodeHook, ready: NodeHook) -> None:
        """The container's hooks: a node was opened; a node set up (its first loop step; the
        hook may hold it there)."""
        self._on_opened, self._on_ready = opened, ready

    def node_opened(self, node: Node) -> None:
        if self._on_opened is not None:
            self._on_opened(node)

    def node_ready(self, node: Node) -> None:
        if self._on_ready is not None:
            self._on_ready(node)

    def close(self, timeout_s: float = 5.0) -> bool:
        """End the shared context once the nodes have closed their sockets: this waits for
        queued messages to leave (each socket's linger). A socket some node left open would
        make it wait for ever, so it gives up after ``timeout_s``; False then."""
        ender = threading.Thread(target=self.context.term, daemon=True)
        ender.start()
        ender.join(timeout_s)
        return not ender.is_alive()


def current() -> LocalBus | None:
    """The local bus of the node being set up in this thread (None: a node on its own)."""
    return _CURRENT.get()


def use(local: LocalBus) -> None:
    """Make ``local`` the local bus of the nodes this thread opens (the container calls it)."""
    _CURRENT.set(local)
