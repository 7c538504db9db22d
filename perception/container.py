"""Several nodes in one process: a launch file's ``process: NAME`` group.

Each node runs its usual ``main`` in a thread of its own; they share one ZeroMQ context, and a
publisher hands its messages to subscribers of the same process directly: no socket, no copy,
no decoding (:mod:`perception.bus.local`). Everything else is as for separate
processes: the same topics on the same endpoints for everyone outside, one status per node,
the same parameters. What is given up is isolation: a node that crashes the interpreter takes
the others with it, and the launcher restarts the group together.

Start-up runs in launch-file order, each node once the one before has set up (reached its
loop), so in-process links go from earlier nodes to later ones: list sources first. All nodes
then start their loops together: a camera does not play into a detector still loading its
network. A stop request stops the nodes in launch-file order, each once the ones before it have
finished (a draining node first processes what its upstream sent), as the launcher does for
processes; a second request stops all at once. The process exits non-zero when a node failed
(the others are stopped first), 0 when all finished or an ``exit_on_finish`` node did.

Run by the launcher as ``python -m perception.container --params YAML``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import yaml

from perception.bus import local as local_bus
from perception.commands.run import NODES
from perception.config import from_dict
from perception.errors import UserError
from perception.logs import setup_logging
from perception.node import Node, StopSignal, exit_process, repeated_signal

HURRY_JOIN_S = 3.0  # after a second stop request, how long the nodes get to return


@dataclass
class MemberSpec:
    """One node of the process: as in a launch file, parameters already complete."""

    name: str
    node: str
    params: dict[str, Any] = field(default_factory=dict)
    exit_on_finish: bool = False
    required: bool = True  # when it fails, the process stops; else the others go on


@dataclass
class ContainerSpec:
    name: str
    members: list[MemberSpec]
    sigint_timeout_s: float = 5.0


class Member:
    """A node's thread, its Node once opened, and how it ended."""

    def __init__(self, spec: MemberSpec, local: local_bus.LocalBus) -> None:
        self.spec = spec
        self.local = local
        self.node: Node | None = None
        self.ready = threading.Event()
        self.stop_signal: int | None = None  # asked to stop before its Node was open
        self.exit_code: int | None = None
        self._lock = threading.Lock()  # the stop request against the Node being opened
        self.thread = threading.Thread(target=self._run, name=spec.name, daemon=True)

    def _run(self) -> None:
        local_bus.use(self.local)  # the nodes this thread opens join the process's bus
        try:
            module = importlib.import_module(NODES[self.spec.node])
            code = int(module.main(["--params", yaml.safe_dump(self.spec.params)]) or 0)
        except SystemExit as exc:  # argparse and friends
            code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # one node's crash must end the process: the launcher restarts it
            logging.getLogger(self.spec.name).exception("crashed")
            code = 1
        self.exit_code = code
        self.ready.set()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def request_stop(self, signum: int) -> None:
        with self._lock:
            if self.node is None:
                self.stop_signal = signum
                return
            node = self.node
        node.request_stop(signum)

    def opened(self, node: Node) -> None:
        """Its Node exists now (called from its thread): a stop asked meanwhile applies."""
        with self._lock:
            self.node = node
            signum = self.stop_signal
        if signum is not None:
            node.request_stop(signum)


class Container:
    def __init__(self, spec: ContainerSpec) -> None:
        if not spec.members:
            raise UserError(f"process {spec.name}: no nodes")
        for m in spec.members:
            if m.node not in NODES:
                raise UserError(f"process {spec.name}: unknown node kind {m.node!r}")
        self.spec = spec
        self.log = setup_logging(f"process.{spec.name}")
        self.local = local_bus.LocalBus()
        self.members = [Member(m, self.local) for m in spec.members]
        self._by_thread = {m.thread: m for m in self.members}
        self._released = threading.Event()
        self._signals: list[StopSignal] = []
        self.local.watch(opened=self._node_opened, ready=self._node_ready)

    # -- called from the node threads -------------------------------------------------------
    def _member(self) -> Member | None:
        return self._by_thread.get(threading.current_thread())

    def _node_opened(self, node: Node) -> None:
        member = self._member()
        if member is not None:
            member.opened(node)

    def _node_ready(self, node: Node) -> None:
        member = self._member()
        if member is None:
            return
        member.ready.set()
        self._released.wait()  # all nodes start their loops together

    # -- main thread ------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        now = time.monotonic()
        if not repeated_signal(self._signals[-1] if self._signals else None, signum, now):
            self._signals.append((signum, now))

    def _start(self) -> bool:
        """Start the nodes one by one, each once the one before has set up; False when a stop
        request or a failing required node cut this short."""
        for member in self.members:
            member.thread.start()
            while not member.ready.wait(0.05):
                if self._signals:
                    return False
            if member.exit_code not in (None, 0) and member.spec.required:
                return False  # failed while setting up
        return True

    def _finished(self) -> bool:
        """Whether the process is done: all nodes returned, one failed, or an exit_on_finish
        node finished."""
        if all(not m.alive() for m in self.members if m.thread.ident is not None):
            return True
        for m in self.members:
            if m.alive() or m.exit_code is None:
                continue
            if (m.exit_code != 0 and m.spec.required) or (
                m.exit_code == 0 and m.spec.exit_on_finish
            ):
                return True
        return False

    def _stop_in_order(self, signum: int) -> None:
        """Ask each node in turn to stop, once the ones before it are done; a further stop
        request (or a node that does not stop in time) hurries the rest."""
        self._released.set()
        handled = len(self._signals)
        for member in self.members:
            if not member.alive():
                continue
            member.request_stop(signum)
            deadline = time.monotonic() + self.spec.sigint_timeout_s
            while member.alive() and time.monotonic() < deadline and len(self._signals) == handled:
                member.thread.join(0.02)
            if member.alive():
                break
        left = [m for m in self.members if m.alive()]
        if left:
            self.log.warning("hurrying %s", ", ".join(m.spec.name for m in left))
            for member in left:
                member.request_stop(signum)  # a second request: stop at once
                if member.node is not None:
                    member.node.running = False
            deadline = time.monotonic() + HURRY_JOIN_S
            for member in left:
                member.thread.join(max(0.0, deadline - time.monotonic()))

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        if not self._start():
            # Nodes held at the start must not begin their loops: they are told to stop first.
            signum = self._signals[0][0] if self._signals else signal.SIGINT
            for member in self.members:
                member.request_stop(signum)
        self._released.set()
        reported: set[str] = set()
        while not self._signals and not self._finished():
            for m in self.members:  # a node that is not required may fail alone
                if m.exit_code not in (None, 0) and m.spec.name not in reported:
                    reported.add(m.spec.name)
                    self.log.error("%s failed (exit %s); not required", m.spec.name, m.exit_code)
            time.sleep(0.05)
        signum = self._signals[0][0] if self._signals else signal.SIGINT
        self._stop_in_order(signum)
        failed = [m for m in self.members if m.exit_code not in (None, 0) and m.spec.required]
        hung = [m.spec.name for m in self.members if m.alive()]
        if hung:
            self.log.error("%s did not stop", ", ".join(hung))
            return 1  # the shared context cannot end while their sockets are open
        if not self.local.close():
            self.log.warning("a socket was left open: queued messages may be lost")
        if failed:
            self.log.error("failed: %s", ", ".join(m.spec.name for m in failed))
            return failed[0].exit_code or 1
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perception.container",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--params", required=True, help="the process's nodes, as YAML")
    args = parser.parse_args(argv)
    try:
        doc = yaml.safe_load(args.params)
        if not isinstance(doc, dict):
            raise UserError("--params: a map with 'name' and 'members'")
        spec = from_dict(ContainerSpec, doc, where="--params")
        return Container(spec).run()
    except (UserError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def container_params(name: str, members: list[MemberSpec], sigint_timeout_s: float) -> str:
    """The ``--params`` YAML for a process of ``members`` (the launcher builds it)."""
    spec = ContainerSpec(name, members, sigint_timeout_s)
    return yaml.safe_dump(dataclasses.asdict(spec))


if __name__ == "__main__":
    exit_process(main())
