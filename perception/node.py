"""The skeleton every node process shares.

A node module defines a config dataclass (with a ``node: NodeConfig`` field) and a ``main()``
that parses it, opens a :class:`Node`, subscribes and advertises, and loops while
``node.running``. The runtime gives it: clean shutdown on SIGINT/SIGTERM (sockets closed,
``on_close`` callbacks run; under the launcher, a node made with ``can_drain`` first finishes
the input already queued for it), a 1 Hz ``NodeStatus`` (input health, output rates, per-stage
latency, counted rejects), per-stage timing, input-health gating of ``valid``, and one
rate-limited log line per kind of bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NoReturn, TypeVar

import zmq

from perception import tracing
from perception.bus import BusConfig, Publisher, QueuePolicy, Subscriber
from perception.bus import local as local_bus
from perception.config import add_config_arguments, config_from_args
from perception.errors import UserError
from perception.logs import RateLimitedLog, setup_logging
from perception.msgs import NodeStatus
from perception.stats import median_p99

C = TypeVar("C")

REPEAT_SIGNAL_S = 0.5  # a stop signal this soon after the first is the same request
DRAIN_LIMIT_S = 3.0  # a draining node stops after this long even if its input never goes quiet
# A due periodic task (the status, a camera's calibration) waits until the node has had this
# long without input or output, so that it runs between frames, not beside a frame's way
# through the stack...
QUIET_NS = 10_000_000
MAX_DELAY_NS = 250_000_000  # ...for at most this long (or half its period)

StopSignal = tuple[int, float]  # (signal number, time.monotonic() when it came)


def repeated_signal(previous: StopSignal | None, signum: int, now_s: float) -> bool:
    """Whether ``signum`` at ``now_s`` is ``previous`` delivered again (one request reaching a
    process twice: a wrapper such as `timeout` forwarding it, a signal to the process group),
    not a new request. The launcher and every node count stop requests by this one rule."""
    return previous is not None and signum == previous[0] and now_s - previous[1] < REPEAT_SIGNAL_S


@dataclass
class NodeConfig:
    """Parameters every node has."""

    name: str = field(default="", metadata={"help": "node name (default: the node kind)"})
    bus: BusConfig = field(default_factory=BusConfig)
    status_period_s: float = field(default=1.0, metadata={"help": "NodeStatus period"})
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING, ERROR"})
    expected_rates: dict[str, float] = field(
        default_factory=dict,
        metadata={"help": "expected input rate per topic, Hz (default: the topics table)"},
    )
    drain_on_stop: bool = field(
        default=False,
        metadata={
            "help": "on SIGINT/SIGTERM first finish the input already queued (the launcher "
            "sets it: it stops upstream nodes first, so the input goes quiet)"
        },
    )


class StageTimer:
    """Durations of one processing stage since the last status report."""

    def __init__(self) -> None:
        self.samples_ms: list[float] = []

    def add(self, ms: float) -> None:
        self.samples_ms.append(ms)

    def report(self) -> dict[str, float]:
        summary = median_p99(self.samples_ms, digits=3) or {"median": 0.0, "p99": 0.0}
        count = len(self.samples_ms)
        self.samples_ms.clear()
        return {**summary, "count": count}


@dataclass
class _Periodic:
    """A task a node runs about every ``period_ns``, at a quiet moment (see ``Node.every``)."""

    period_ns: int
    run: Callable[[int], None]  # given the monotonic time, ns
    last_ns: int = 0  # its latest run (0: not yet)

    @property
    def due_ns(self) -> int:
        return self.last_ns + self.period_ns

    def send_ns(self, active_ns: int) -> int:
        """When it may run next, given the node's latest input or output at ``active_ns``:
        ``QUIET_NS`` after that, if that is once it is due; else after the next one (the node
        is between two steps of a steady flow), or at :meth:`latest_ns`. For an idle node,
        quiet for longer than that delay, when due; the first run at once."""
        if not self.last_ns:
            return 0
        due_ns = self.due_ns
        if active_ns + QUIET_NS >= due_ns:
            return min(active_ns + QUIET_NS, self.latest_ns())
        return due_ns if due_ns - active_ns >= MAX_DELAY_NS else self.latest_ns()

    def latest_ns(self) -> int:
        """A node that is never quiet still runs it: at most ``MAX_DELAY_NS`` (and half a
        period) after it fell due."""
        return self.due_ns + min(MAX_DELAY_NS, self.period_ns // 2)

    def ran(self, now_ns: int) -> None:
        """Count the period from when the task fell due (not when it ran), so that it keeps
        its period on average; from now after a stall of a period or more, or the first time."""
        due_ns = self.due_ns
        self.last_ns = due_ns if self.last_ns and now_ns - due_ns < self.period_ns else now_ns


class Node:
    """Runtime of one node process. Use as a context manager."""

    def __init__(self, kind: str, config: NodeConfig, can_drain: bool = False) -> None:
        """``can_drain``: the node transforms or records its input, so with
        ``config.drain_on_stop`` a stop signal keeps ``running`` until an input wait finds
        nothing (what upstream sent before it stopped is processed, not lost). Sources, and
        any node run on its own, stop at once."""
        if not config.status_period_s > 0:
            raise UserError(f"status_period_s must be > 0, not {config.status_period_s}")
        self.kind = kind
        self.drain_on_stop = can_drain and config.drain_on_stop
        self.name = config.name or kind
        self.config = config
        self.log = setup_logging(self.name, config.log_level)
        # In a composed process (perception/container.py) the nodes share one context and reach
        # each other in-process; the container takes the signals and stops its nodes in order.
        self.local = local_bus.current()
        self.context: zmq.Context[Any] = self.local.context if self.local else zmq.Context()
        self.inputs: dict[str, Subscriber] = {}
        self.outputs: dict[str, Publisher] = {}
        self.stages: dict[str, StageTimer] = {}
        self.counters: Counter[str] = Counter()
        self.state = "ok"
        self.state_message = ""
        self.running = True
        self._stop_signal: StopSignal | None = None  # the first stop signal
        self._closing = False
        self._on_close: list[Callable[[], None]] = []
        self._started_ns = time.monotonic_ns()
        self._set_up = False  # the first loop step has come
        self._last_status_ns = 0
        self._last_input_ns = 0  # when a wait last found input
        self._periodic = [_Periodic(int(config.status_period_s * 1e9), self._publish_status)]
        if tracing.enabled:  # write the trace at quiet moments, not when a frame fills the buffer
            self.every(1.0, lambda _now: tracing.flush())
        self._last_output_counts: dict[str, tuple[int, int]] = {}
        self._warn = RateLimitedLog(self.log)
        self._poller = zmq.Poller()
        self._input_of: dict[Any, Subscriber] = {}  # each polled socket or descriptor's input
        self._status = Publisher(
            "status",
            config.bus,
            instance=self.name,
            context=self.context,
            local=self.local,
            owner=self.name,
        )
        if self.local is not None:
            self.local.node_opened(self)
        else:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._on_signal)

    # -- wiring -----------------------------------------------------------------------------
    def subscribe(
        self,
        topic: str,
        instances: Iterable[str | None] = (None,),
        policy: QueuePolicy | None = None,
    ) -> Subscriber:
        """Subscribe to ``topic``; ``policy`` overrides the topics table's queue policy.

        One input per topic: all its instances go in one call (a second call would leave the
        first subscriber polled but never read)."""
        if topic in self.inputs:
            raise UserError(
                f"{self.name} already subscribes to {topic}: list all its instances once"
            )
        sub = Subscriber(
            topic,
            self.config.bus,
            instances=list(instances),
            context=self.context,
            expected_rate_hz=self.config.expected_rates.get(topic),
            policy=policy,
            log=self.log,
            local=self.local,
            owner=self.name,
        )
        self.inputs[topic] = sub
        for item in sub.pollables():
            self._poller.register(item, zmq.POLLIN)
            self._input_of[item] = sub
        return sub

    def advertise(
        self, topic: str, instance: str | None = None, track_sends: bool = False
    ) -> Publisher:
        pub = Publisher(
            topic,
            self.config.bus,
            instance=instance,
            context=self.context,
            track_sends=track_sends,
            local=self.local,
            owner=self.name,
        )
        self.outputs[pub.key] = pub
        return pub

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at shutdown (flush files, release devices), newest first."""
        self._on_close.append(callback)

    # -- loop helpers -----------------------------------------------------------------------
    def wait(
        self, timeout_s: float, inputs: Sequence[Subscriber] | None = None
    ) -> list[Subscriber]:
        """Wait up to ``timeout_s`` for any input (or any of ``inputs``: an input that is only
        read along with another need not wake the node); publishes status when due."""
        self.spin_once()
        if not self.inputs:
            self.sleep_until(time.monotonic_ns() + int(max(0.0, timeout_s) * 1e9))
            self.note_input(False)
            return []
        items = None if inputs is None else [(p, zmq.POLLIN) for s in inputs for p in s.pollables()]
        deadline_ns = time.monotonic_ns() + int(max(0.0, timeout_s) * 1e9)
        while True:
            now = time.monotonic_ns()
            # wake up when a periodic task may run, if that comes first
            step_ns = min(deadline_ns, self._next_task_ns()) - now
            timeout_ms = max(0, -(-step_ns // 1_000_000))
            ready = (
                self._poller.poll(timeout_ms) if items is None else zmq.zmq_poll(items, timeout_ms)
            )
            if ready or time.monotonic_ns() >= deadline_ns:
                break
            self.spin_once()
        self.note_input(bool(ready))  # first: a status waits while input is there
        self.spin_once()
        woken = {self._input_of[item] for item, _ in ready}
        return [s for s in self.inputs.values() if s in woken]

    def note_input(self, found: bool) -> None:
        """Say whether the latest wait for input found any (``wait`` does; a loop that polls
        its own sockets calls it). While draining after a stop signal, nothing found ends it."""
        if found:
            self._last_input_ns = time.monotonic_ns()
        if self._stop_signal is not None and self.running:
            if not found:
                self.log.info("queued input finished")
                self.running = False
            elif time.monotonic() >= self._stop_signal[1] + DRAIN_LIMIT_S:
                self.log.warning("input still arriving after %.0f s: stopping", DRAIN_LIMIT_S)
                self.running = False

    def sleep_until(self, deadline_ns: int) -> None:
        """Sleep until a monotonic deadline in short steps, staying responsive to signals."""
        while self.running:
            self.spin_once(next_output_ns=deadline_ns)
            now = time.monotonic_ns()
            left = deadline_ns - now
            if left <= 0:
                return
            task_in = self._next_task_ns() - now  # wake up for it, if it comes first
            time.sleep(min(left, task_in if task_in > 0 else left, 50_000_000) / 1e9)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a processing stage; medians and p99 go into the status."""
        t0 = time.perf_counter_ns()
        try:
            yield
        finally:
            self.record_stage(name, (time.perf_counter_ns() - t0) / 1e6)

    def record_stage(self, name: str, ms: float) -> None:
        """Add a duration measured elsewhere (e.g. on the GPU) to a stage's statistics."""
        timer = self.stages.get(name)
        if timer is None:
            timer = self.stages[name] = StageTimer()
        timer.add(ms)

    def inputs_ok(self, topics: Sequence[str] | None = None) -> bool:
        """True when every (named) input is alive, at rate and upstream-valid."""
        now = time.monotonic_ns()
        subs = [self.inputs[t] for t in topics] if topics else list(self.inputs.values())
        return all(s.stats.health(now).ok for s in subs)

    def reject(self, reason: str, detail: str) -> None:
        """Count a rejected input and log it at a bounded rate; the node goes on."""
        self.counters[f"rejected.{reason}"] += 1
        self._warn.warning(reason, f"rejected input ({reason}): {detail}")

    def set_state(self, state: str, message: str = "") -> None:
        if (state, message) != (self.state, self.state_message):
            log = self.log.info if state == "ok" else self.log.warning
            log("state %s%s", state, f": {message}" if message else "")
        self.state, self.state_message = state, message

    # -- status -----------------------------------------------------------------------------
    def ready(self) -> None:
        """Say that set-up (sockets, models) is done; the first loop step says it anyway. In a
        composed process the container waits for this before it starts its next node, and
        holds this one here until all are set up. A source that pauses for late subscribers
        calls it first, so that its pause starts when the others are up."""
        if not self._set_up:
            self._set_up = True
            if self.local is not None:
                self.local.node_ready(self)

    def spin_once(self, next_output_ns: int | None = None) -> None:
        """Housekeeping between steps: the periodic tasks (the status, ...) whose moment has
        come. ``next_output_ns``: when the node publishes next (a source's next frame), so
        that a task does not run just before it."""
        self.ready()
        for task in self._periodic:
            now = time.monotonic_ns()
            if now < task.due_ns:
                continue  # not due: nearly always (kept cheap: it runs on every step)
            if now >= task.latest_ns() or (
                now >= task.send_ns(self._last_active_ns())
                and (next_output_ns is None or next_output_ns - now >= QUIET_NS)
            ):
                task.ran(now)
                task.run(now)

    # A status is ~0.5 ms of Python, more while another thread of the process holds the
    # interpreter. Sent while a frame was on its way through the stack, beside or ahead of the
    # work on it, it held that frame up by as much (one frame in six on the reference VM). So
    # periodic work runs at a quiet moment: a little after the node's input or output, when
    # the frame it handled has moved on and the next is not due.
    def every(self, period_s: float, task: Callable[[int], None]) -> None:
        """Run ``task(now_ns)`` about every ``period_s`` at a quiet moment of this node (from
        ``spin_once``, which ``wait`` and ``sleep_until`` call); the first run at once."""
        if not period_s > 0:
            raise ValueError(f"a periodic task needs a period > 0 s, not {period_s}")
        self._periodic.append(_Periodic(int(period_s * 1e9), task))

    def _last_active_ns(self) -> int:
        return max([self._last_input_ns, *(p.last_publish_ns for p in self.outputs.values())])

    def _next_task_ns(self) -> int:
        """When the next periodic task may run (a task not yet due: when it falls due)."""
        now, active_ns = time.monotonic_ns(), self._last_active_ns()
        return min(t.due_ns if t.due_ns > now else t.send_ns(active_ns) for t in self._periodic)

    def status_message(self, now_ns: int) -> NodeStatus:
        elapsed_s = max((now_ns - self._last_status_ns) / 1e9, 1e-9) if self._last_status_ns else 0
        outputs = {}
        for key, pub in self.outputs.items():
            last_count, _ = self._last_output_counts.get(key, (0, 0))
            rate = (pub.published - last_count) / elapsed_s if elapsed_s else 0.0
            outputs[key] = {"rate_hz": round(rate, 3), "published": pub.published}
            self._last_output_counts[key] = (pub.published, now_ns)
        state = self.state
        if state == "ok" and self.inputs and not self.inputs_ok():
            state = "degraded"
        return NodeStatus(
            frame_id=self.name,
            stamp_ns=time.time_ns(),
            node=self.name,
            pid=os.getpid(),
            uptime_s=(now_ns - self._started_ns) / 1e9,
            state=state,
            message=self.state_message,
            inputs={
                t: {**s.stats.report(now_ns), "links": s.links()} for t, s in self.inputs.items()
            },
            outputs=outputs,
            stages_ms={k: v.report() for k, v in self.stages.items()},
            counters=dict(self.counters),
        )

    def _publish_status(self, now_ns: int) -> None:
        msg = self.status_message(now_ns)
        self._last_status_ns = now_ns
        self._status.publish(msg)

    # -- lifecycle --------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.request_stop(signum):
            raise KeyboardInterrupt  # a second signal: stop now, even mid-way through a long step

    def request_stop(self, signum: int = signal.SIGINT) -> bool:
        """Stop as a stop signal ``signum`` asks (draining first, if this node does); True for
        a second request, which stops the loop at once."""
        name = signal.Signals(signum).name
        now = time.monotonic()
        if self._closing or repeated_signal(self._stop_signal, signum, now):
            return False  # closing already (SIGKILL remains for a hang), or the same request
        if self._stop_signal is not None:
            self.log.info("received %s again, stopping at once", name)
            self.running = False
            return True
        self._stop_signal = (signum, now)
        if self.drain_on_stop:
            self.log.info("received %s, finishing queued input before stopping", name)
        else:
            self.log.info("received %s, shutting down", name)
            self.running = False
        return False

    def close(self) -> None:
        self.running = False
        self._closing = True
        for callback in reversed(self._on_close):
            try:
                callback()
            except Exception:  # shutdown goes on: one failing close must not leak the rest
                self.log.exception("error while closing")
        # The last status says so: a node that ends inside a composed process that goes on
        # would otherwise be shown with its last rates, as if still running. (An error stays:
        # the last status is where it is reported.)
        if self.state != "error":
            self.state = "stopped"
        with contextlib.suppress(zmq.ZMQError):
            self._publish_status(time.monotonic_ns())
        for sub in self.inputs.values():
            sub.close()
        for pub in [*self.outputs.values(), self._status]:
            pub.close()
        if self.local is None:  # a shared context is the container's to end
            self.context.term()
        self.log.info("stopped")

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def node_main(
    kind: str,
    config_cls: type[C],
    run: Callable[[C], int | None],
    argv: Sequence[str] | None = None,
    description: str = "",
) -> int:
    """Parse ``config_cls`` from the command line and call ``run``; errors become exit 2."""
    parser = argparse.ArgumentParser(
        prog=f"perception run {kind}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser, config_cls)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(config_cls, args)
        return run(config) or 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def exit_process(code: int) -> NoReturn:
    """End a node process once ``main`` has returned: logs and standard streams flushed, then
    ``os._exit``. The node closed its sockets and files itself; skipping the interpreter's
    teardown saves ~1 s per process that imported torch (2 s for the detector), which a launch
    stopping its nodes one after another would otherwise wait for."""
    tracing.flush()  # atexit handlers do not run
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
