"""Where a topic lives: ``ipc://`` paths on one host, ``tcp://`` ports across hosts.

The choice is configuration (:class:`BusConfig`), never code. A namespace (environment variable
``PERCEPTION_NAMESPACE``) gives every run its own ipc folder and, unless a base port is set, its
own block of tcp ports, so parallel runs such as tests never collide.

A topic may have several instances (one per camera, one status per node): the instance name is
appended as ``topic@instance``. Publishers bind, subscribers connect.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from perception.bus.topics import get_topic
from perception.errors import UserError

NAMESPACE_ENV = "PERCEPTION_NAMESPACE"
PORT_BASE_ENV = "PERCEPTION_PORT_BASE"
IPC_DIR_ENV = "PERCEPTION_IPC_DIR"
DEFAULT_PORT_BASE = 7400
PORT_BLOCK = 1000  # ports per namespace: topics at +0..99, instances at +100..999


def _default_namespace() -> str:
    return os.environ.get(NAMESPACE_ENV, "default")


def _default_port_base() -> int:
    value = os.environ.get(PORT_BASE_ENV, "")
    return int(value) if value.isdigit() else 0


@dataclass
class BusConfig:
    """How nodes reach each other."""

    transport: str = "ipc"  # ipc (one host) | tcp (across hosts)
    namespace: str = field(default_factory=_default_namespace)
    ipc_dir: str = field(default_factory=lambda: os.environ.get(IPC_DIR_ENV, ""))
    host: str = "127.0.0.1"  # tcp: address publishers bind and subscribers connect to
    port_base: int = field(default_factory=_default_port_base)  # 0: derived from namespace
    endpoints: dict[str, str] = field(default_factory=dict)  # "topic[@instance]" -> address

    def __post_init__(self) -> None:
        if self.transport not in ("ipc", "tcp"):
            raise UserError(f"bus transport must be 'ipc' or 'tcp', not {self.transport!r}")
        if not self.namespace or "/" in self.namespace or self.namespace.startswith("."):
            raise UserError(f"bus namespace {self.namespace!r} must be a plain name")

    def ipc_root(self) -> Path:
        """The folder holding this namespace's ipc sockets (created on demand)."""
        base = Path(self.ipc_dir or tempfile.gettempdir()) / f"perception-{os.getuid()}"
        return base / self.namespace

    def tcp_port_base(self) -> int:
        if self.port_base:
            return self.port_base
        if self.namespace == "default":
            return DEFAULT_PORT_BASE
        return 20000 + (zlib.crc32(self.namespace.encode()) % 40) * PORT_BLOCK


def channel_key(topic: str, instance: str | None) -> str:
    return f"{topic}@{instance}" if instance else topic


def split_key(key: str) -> tuple[str, str | None]:
    """``"status@camera"`` -> ``("status", "camera")``; ``"camera/frames"`` -> (.., None)."""
    topic, _, instance = key.partition("@")
    return topic, instance or None


def instances_by_topic(keys: Iterable[str]) -> dict[str, list[str | None]]:
    """Channel keys grouped by topic, each topic's instances once, in order: one subscriber per
    topic takes all its instances (a node has one input per topic)."""
    grouped: dict[str, list[str | None]] = {}
    for key in keys:
        topic, instance = split_key(key)
        instances = grouped.setdefault(topic, [])
        if instance not in instances:
            instances.append(instance)
    return grouped


def endpoint(bus: BusConfig, topic: str, instance: str | None = None) -> str:
    """The address of ``topic`` (instance ``instance``) under ``bus``."""
    entry = get_topic(topic)
    key = channel_key(topic, instance)
    if key in bus.endpoints:
        return bus.endpoints[key]
    if instance is not None and (not instance or "/" in instance or "@" in instance):
        raise UserError(f"instance name {instance!r} must be non-empty, without '/' or '@'")
    if bus.transport == "ipc":
        root = bus.ipc_root()
        root.mkdir(parents=True, exist_ok=True)
        path = root / key.replace("/", ".")
        if len(str(path)) > 100:  # the kernel's limit for unix socket paths is 107 bytes
            raise UserError(f"ipc path {path} is too long; set bus.ipc_dir to a shorter folder")
        return f"ipc://{path}"
    base = bus.tcp_port_base()
    if instance is None:
        port = base + entry.port
    else:
        port = base + 100 + zlib.crc32(key.encode()) % (PORT_BLOCK - 100)
    return f"tcp://{bus.host}:{port}"


def list_ipc_channels(bus: BusConfig) -> list[str]:
    """Channel keys ("topic@instance") that have an ipc socket file in this namespace."""
    root = bus.ipc_root()
    if not root.is_dir():
        return []
    keys = []
    for p in sorted(root.iterdir()):
        if p.is_socket():
            name, _, instance = p.name.partition("@")
            topic = name.replace(".", "/")
            keys.append(channel_key(topic, instance or None))
    return keys
