"""Process supervisor: starts the nodes of a launch file, restarts crashed ones, stops them all.

A launch file (YAML, see launch/*.yaml) lists nodes with their parameters, respawn policy and
environment. The launcher restarts a node that crashed (non-zero exit or signal) after a delay that
doubles with each consecutive crash, gives up on a node that crash-loops (more than
``max_restarts`` restarts inside ``restart_window_s``) and says so, escalates shutdown
SIGINT -> SIGTERM -> SIGKILL, shows a live status table, and exits non-zero when a required node
failed. Nodes stop in launch-file order (list sources first), so none loses what its upstream
sent last. Each node runs as ``python -m nodes.<kind> --params YAML`` in the launch's namespace;
nodes given the same ``process`` name share one process instead (``perception/container.py``:
in-process links between them), supervised as one.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from perception.bus import BusConfig, Subscriber
from perception.commands.run import NODES
from perception.config import from_dict
from perception.container import MemberSpec, container_params
from perception.errors import UserError
from perception.msgs import NodeStatus
from perception.node import StopSignal, repeated_signal

log = logging.getLogger("launch")

STABLE_AFTER_S = 10.0  # a node that ran this long has its back-off reset


@dataclass
class NodeSpec:
    """One node of a launch file."""

    name: str
    node: str  # kind: a key of perception.commands.run.NODES
    params: dict[str, Any] = field(default_factory=dict)
    respawn: bool = True
    respawn_delay_s: float = 1.0
    max_restarts: int = 5
    restart_window_s: float = 60.0
    required: bool = True
    exit_on_finish: bool = False  # when it exits 0, stop the whole launch (players, demos)
    env: dict[str, str] = field(default_factory=dict)
    # Nodes with the same non-empty name run in one process, talking in-process; list them one
    # after another, sources first. The group restarts as one: respawn only if all members do,
    # with the most patient delay and window and the fewest restarts; required if any member
    # is (a member that is not required may fail alone; the others go on).
    process: str = ""


@dataclass
class LaunchFile:
    nodes: list[NodeSpec]
    namespace: str = ""
    bus: dict[str, Any] = field(default_factory=dict)
    sigint_timeout_s: float = 5.0
    sigterm_timeout_s: float = 3.0

    @classmethod
    def load(cls, path: Path) -> LaunchFile:
        try:
            doc = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise UserError(f"launch file {path} does not exist") from None
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"launch file {path} cannot be read: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
            raise UserError(f"{path}: a launch file is a map with a 'nodes' list")
        launch = from_dict(cls, doc, where=path.name)
        names = [n.name for n in launch.nodes]
        for spec in launch.nodes:
            if spec.node not in NODES:
                raise UserError(
                    f"{path}: node {spec.name!r} has unknown kind {spec.node!r}; "
                    f"kinds: {', '.join(NODES)}"
                )
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise UserError(f"{path}: node names must be unique: {', '.join(sorted(dupes))}")
        for group, members in launch.groups():
            if group in names and [m.name for m in members] != [group]:
                raise UserError(f"{path}: process {group!r} has the name of another node")
            first = launch.nodes.index(members[0])
            if launch.nodes[first : first + len(members)] != members:
                # the launch stops processes in launch-file order, sources first: a process
                # whose nodes are apart would stop some of them before their upstream
                raise UserError(
                    f"{path}: the nodes of process {group!r} must be listed one after another"
                )
            envs: dict[str, str] = {}
            for m in members:
                clash = [k for k, v in m.env.items() if envs.setdefault(k, v) != v]
                if clash:
                    raise UserError(
                        f"{path}: process {group!r}: its nodes set {clash[0]} differently "
                        "(one process has one environment)"
                    )
        return launch

    def groups(self) -> list[tuple[str, list[NodeSpec]]]:
        """The launch's processes in launch-file order (each at its first node): a name and
        its nodes. A node without ``process`` is a process of its own, named after it."""
        out: dict[str, list[NodeSpec]] = {}
        for spec in self.nodes:
            out.setdefault(spec.process or spec.name, []).append(spec)
        return list(out.items())


def apply_overrides(launch: LaunchFile, overrides: list[str]) -> None:
    """Apply ``NODE.PARAM=VALUE`` (VALUE in YAML; PARAM may be dotted, e.g. node.log_level)."""
    specs = {s.name: s for s in launch.nodes}
    for item in overrides:
        target, sep, raw = item.partition("=")
        name, dot, key = target.partition(".")
        if not sep or not dot or not key:
            raise UserError(f"--set {item!r}: expected NODE.PARAM=VALUE")
        if name not in specs:
            raise UserError(f"--set {item!r}: no node {name!r}; nodes: {', '.join(specs)}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise UserError(f"--set {item!r}: {exc}") from None
        params = specs[name].params
        *parents, leaf = key.split(".")
        for p in parents:
            params = params.setdefault(p, {})
        params[leaf] = value


def group_spec(name: str, members: list[NodeSpec]) -> NodeSpec:
    """The supervision policy of a process of several nodes (see ``NodeSpec.process``)."""
    if len(members) == 1 and not members[0].process:
        return members[0]
    return NodeSpec(
        name=name,
        node=members[0].node,
        respawn=all(m.respawn for m in members),
        respawn_delay_s=max(m.respawn_delay_s for m in members),
        max_restarts=min(m.max_restarts for m in members),
        restart_window_s=max(m.restart_window_s for m in members),
        required=any(m.required for m in members),
        exit_on_finish=any(m.exit_on_finish for m in members),
        env={k: v for m in members for k, v in m.env.items()},
        process=name,
    )


@dataclass
class Process:
    """A supervised process (one node, or a ``process`` group of them) and its restart
    bookkeeping."""

    spec: NodeSpec  # its supervision policy
    members: list[NodeSpec]
    popen: subprocess.Popen[bytes] | None = None
    state: str = "starting"  # starting running restarting finished failed stopped
    restarts: int = 0
    crash_times: list[float] = field(default_factory=list)
    consecutive_crashes: int = 0
    started_at: float = 0.0
    restart_at: float = 0.0
    exit_code: int | None = None
    statuses: dict[str, NodeStatus] = field(default_factory=dict)  # by node name


def _die_with_parent() -> None:
    """Child side: get SIGTERM if the launcher dies, so no node outlives it."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Launcher:
    def __init__(
        self,
        launch: LaunchFile,
        namespace: str | None = None,
        out: TextIO = sys.stdout,
        table_period_s: float = 2.0,
    ) -> None:
        self.launch = launch
        self.namespace = (
            namespace or launch.namespace or os.environ.get("PERCEPTION_NAMESPACE", "default")
        )
        self.bus = from_dict(BusConfig, {**launch.bus, "namespace": self.namespace})
        self.procs = [Process(group_spec(n, m), m) for n, m in launch.groups()]
        self.out = out
        self.table_period_s = table_period_s
        self.stopping = False
        self.failed: list[str] = []
        self._status_subs: dict[str, Subscriber] = {}
        # stop signals received, (signal, when): a second one hurries the stop
        self._signals: list[StopSignal] = []

    # -- processes --------------------------------------------------------------------------
    def node_params(self, spec: NodeSpec) -> dict[str, Any]:
        params = dict(spec.params)
        node_params = dict(params.get("node", {}))
        node_params.setdefault("name", spec.name)
        node_params.setdefault("drain_on_stop", True)  # stop() signals upstream nodes first
        node_params["bus"] = {**dataclasses.asdict(self.bus), **node_params.get("bus", {})}
        params["node"] = node_params
        return params

    def command(self, proc: Process) -> list[str]:
        if not proc.spec.process:
            params = yaml.safe_dump(self.node_params(proc.spec))
            return [sys.executable, "-m", NODES[proc.spec.node], "--params", params]
        members = [
            MemberSpec(m.name, m.node, self.node_params(m), m.exit_on_finish, m.required)
            for m in proc.members
        ]
        params = container_params(proc.spec.name, members, self.launch.sigint_timeout_s)
        return [sys.executable, "-m", "perception.container", "--params", params]

    def _start(self, proc: Process) -> None:
        env = {**os.environ, **proc.spec.env}
        env["PERCEPTION_NAMESPACE"] = self.namespace
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Its own session: a Ctrl-C in the terminal reaches only the launcher, which then
        # stops the nodes in order (they would otherwise all get it at once).
        proc.popen = subprocess.Popen(
            self.command(proc),
            env=env,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        proc.state = "running"
        proc.started_at = time.monotonic()
        proc.exit_code = None
        log.info("started %s (pid %d)", proc.spec.name, proc.popen.pid)

    def _on_exit(self, proc: Process, code: int, now: float) -> None:
        spec = proc.spec
        proc.exit_code = code
        if code == 0:
            proc.state = "finished"
            log.info("%s finished", spec.name)
            if spec.exit_on_finish:
                log.info("%s is exit_on_finish: stopping the launch", spec.name)
                self.stopping = True
            return
        why = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if now - proc.started_at >= STABLE_AFTER_S:
            proc.consecutive_crashes = 0
        proc.crash_times = [t for t in proc.crash_times if now - t <= spec.restart_window_s]
        proc.crash_times.append(now)
        proc.consecutive_crashes += 1
        if spec.respawn and len(proc.crash_times) <= spec.max_restarts:
            delay = spec.respawn_delay_s * 2 ** (proc.consecutive_crashes - 1)
            proc.state = "restarting"
            proc.restart_at = now + min(delay, 30.0)
            log.warning("%s died (%s); restarting in %.1f s", spec.name, why, delay)
            return
        proc.state = "failed"
        if spec.respawn:
            log.error(
                "%s is crash-looping (%d crashes in %.0f s, last %s): gave up",
                spec.name,
                len(proc.crash_times),
                spec.restart_window_s,
                why,
            )
        else:
            log.error("%s died (%s) and respawn is off", spec.name, why)
        if spec.required:
            self.failed.append(spec.name)
            log.error("required node %s failed: stopping the launch", spec.name)
            self.stopping = True

    def poll(self) -> None:
        """One supervision step: reap exits, restart due nodes, read status messages."""
        now = time.monotonic()
        for proc in self.procs:
            if proc.state == "running" and proc.popen is not None:
                code = proc.popen.poll()
                if code is not None:
                    self._on_exit(proc, code, now)
            elif proc.state == "restarting" and now >= proc.restart_at and not self.stopping:
                proc.restarts += 1
                self._start(proc)
        for name, sub in self._status_subs.items():
            for msg in sub.receive():
                proc = next(p for p in self.procs if any(m.name == name for m in p.members))
                if isinstance(msg, NodeStatus):
                    proc.statuses[name] = msg

    def stop(self) -> None:
        """Stop every node: SIGINT, then SIGTERM, then SIGKILL, each after its timeout.

        SIGINT goes in launch-file order, each node once the ones listed before it have exited
        (or had their ``sigint_timeout_s``): sources are listed first, so a node that drains on
        stop finishes the last messages its upstream sent, and nothing in flight is lost.
        Each further Ctrl-C skips the wait in progress.
        """
        hurried_at = len(self._signals)

        def alive(procs: list[Process]) -> list[Process]:
            return [p for p in procs if p.popen is not None and p.popen.poll() is None]

        def wait_for(procs: list[Process], timeout_s: float) -> None:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and alive(procs) and len(self._signals) == hurried_at:
                time.sleep(0.02)

        for proc in alive(self.procs):
            assert proc.popen is not None
            proc.popen.send_signal(signal.SIGINT)
            # a process of several nodes stops them one after another, each with this timeout
            wait_for([proc], self.launch.sigint_timeout_s * len(proc.members))
            hurried_at = len(self._signals)  # a further Ctrl-C skips only the wait it cut short
        escalation = ((signal.SIGTERM, self.launch.sigterm_timeout_s), (signal.SIGKILL, 5.0))
        for sig, timeout in escalation:
            left = alive(self.procs)
            if not left:
                break
            log.warning(
                "%s did not stop: sending %s", ", ".join(p.spec.name for p in left), sig.name
            )
            for p in left:
                assert p.popen is not None
                p.popen.send_signal(sig)
            hurried_at = len(self._signals)
            wait_for(left, timeout)
        for p in self.procs:
            if p.state in ("running", "restarting", "starting"):
                p.state = "stopped"
        for sub in self._status_subs.values():
            sub.close()

    # -- status table -----------------------------------------------------------------------
    def table(self) -> str:
        rows = [f"{'node':16} {'pid':>7} {'state':11} {'restarts':>8} {'rate Hz':>8}  health"]
        for p in self.procs:
            pid = p.popen.pid if p.popen is not None else 0
            for member in p.members:  # one row per node; a process's nodes share its pid
                rate = "-"
                health = ""
                status = p.statuses.get(member.name)
                if status is not None and p.state == "running":
                    rates = [o.get("rate_hz", 0.0) for o in status.outputs.values()]
                    if rates and status.state != "stopped":  # a node of a process that goes on
                        rate = f"{max(rates):.1f}"
                    health = status.state + (f": {status.message}" if status.message else "")
                rows.append(
                    f"{member.name:16} {pid:>7} {p.state:11} {p.restarts:>8} {rate:>8}  {health}"
                )
        return "\n".join(rows)

    # -- main loop --------------------------------------------------------------------------
    def run(self, duration_s: float = 0.0) -> int:
        def on_signal(signum: int, _frame: object) -> None:
            now = time.monotonic()
            if not repeated_signal(self._signals[-1] if self._signals else None, signum, now):
                self._signals.append((signum, now))
            self.stopping = True

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for proc in self.procs:
                for member in proc.members:
                    self._status_subs[member.name] = Subscriber(
                        "status", self.bus, instances=[member.name], owner="launcher"
                    )
                self._start(proc)
            started = time.monotonic()
            next_table = started + self.table_period_s
            while not self.stopping:
                self.poll()
                now = time.monotonic()
                if duration_s and now - started >= duration_s:
                    log.info("duration of %.1f s reached: stopping", duration_s)
                    break
                if all(p.state in ("finished", "failed") for p in self.procs):
                    break
                if self.table_period_s and now >= next_table:
                    next_table = now + self.table_period_s
                    print(self.table(), file=self.out, flush=True)
                time.sleep(0.05)
            self.stop()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        print(self.table(), file=self.out, flush=True)
        if self.failed:
            log.error("failed: %s", ", ".join(self.failed))
            return 1
        return 0
