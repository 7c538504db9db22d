"""Nodes that share one process: their sockets, and the in-process links between them.

A launch file may put several nodes in one process (``process: NAME``, see
``perception/container.py``), as ROS 2 composes nodes in one container. Each node still runs its
own loop, in its own thread; what they share is a :class:`LocalBus`: one ZeroMQ context, and a
record of the topics published in the process. A publisher there binds its usual endpoint (so
other processes and hosts subscribe as ever) and also an ``inproc://`` one; a subscriber in the
same process to a topic already published there connects to that one. The message then passes
from thread to thread without a copy and without ZeroMQ's I/O threads: on the 2-core reference
VM an ipc hop inside the pipeline took 1.2-1.5 ms.

Which link a subscriber gets depends on whether the publisher exists when it subscribes: the
container starts its nodes in launch-file order, each once the one before has set up.
"""

from __future__ import annotations

import contextvars
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


def inproc_address(address: str) -> str:
    """The in-process twin of a publisher's endpoint (unique as the endpoint is)."""
    return f"inproc://{address}"


class LocalBus:
    """What the nodes of one process share: a ZeroMQ context and the endpoints published."""

    def __init__(self) -> None:
        self.context: zmq.Context[Any] = zmq.Context()
        self._published: set[str] = set()
        self._lock = threading.Lock()
        self._on_opened: NodeHook | None = None
        self._on_ready: NodeHook | None = None

    # -- links ------------------------------------------------------------------------------
    def bind(self, sock: zmq.Socket[Any], address: str) -> None:
        """Bind ``sock`` (a publisher already bound to ``address``) in-process too."""
        sock.bind(inproc_address(address))
        with self._lock:
            self._published.add(address)

    def connect_address(self, address: str) -> str:
        """Where a subscriber in this process connects to reach ``address``."""
        with self._lock:
            local = address in self._published
        return inproc_address(address) if local else address

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
