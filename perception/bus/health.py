"""Per-input health (cf. openpilot's SubMaster): alive, rate ok, upstream valid, and counts.

Drops are counted from ``seq`` gaps per source (``frame_id``): a publisher numbers its messages,
so a gap is messages lost in transport (e.g. a full queue). Messages a keep-latest input skipped
on purpose, because a newer one was waiting, are counted apart as ``stale_dropped``.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

from perception.stats import median_p99

ALIVE_PERIODS = 5.0  # an input is dead after this many expected periods of silence...
MIN_ALIVE_S = 1.0  # ...but never sooner than this
RATE_OK_FRACTION = 0.5  # an input is slow below this fraction of its expected rate
RATE_WINDOW = 32  # arrivals remembered for the rate estimate


@dataclass
class Health:
    alive: bool
    rate_ok: bool
    upstream_valid: bool

    @property
    def ok(self) -> bool:
        return self.alive and self.rate_ok and self.upstream_valid


@dataclass
class InputStats:
    """What one subscribed input has seen."""

    expected_rate_hz: float
    received: int = 0
    dropped: int = 0
    stale_dropped: int = 0
    restarts: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    last_valid: bool = True
    last_seen_ns: int = 0
    _arrivals: deque[int] = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))
    _last_seq: dict[str, int] = field(default_factory=dict)
    _transit_ns: deque[int] = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))

    def on_message(self, source: str, seq: int, now_ns: int, sent_mono_ns: int = 0) -> None:
        """Account one arrival (delivered or skipped) from ``source``; ``sent_mono_ns`` is the
        sender's ``mono_ns`` (same host: the same monotonic clock), 0 when unknown."""
        if sent_mono_ns > 0:
            self._transit_ns.append(now_ns - sent_mono_ns)
        last = self._last_seq.get(source)
        if last is not None:
            if seq > last + 1:
                self.dropped += seq - last - 1
            elif seq <= last:  # the publisher restarted and counts from 0 again
                self.restarts += 1
        self._last_seq[source] = seq
        self._arrivals.append(now_ns)
        self.last_seen_ns = now_ns

    def on_delivered(self, valid: bool) -> None:
        self.received += 1
        self.last_valid = valid

    def rate_hz(self, now_ns: int | None = None) -> float:
        """Arrival rate over the recent window; decays to 0 when the input goes silent."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        n = len(self._arrivals)
        first, last = (self._arrivals[0], self._arrivals[-1]) if n else (0, 0)
        if n < 2 or last == first:
            return 0.0
        mean_period = (last - first) / (n - 1)
        if now_ns - last > 2 * mean_period:  # gone silent: let the estimate decay
            return (n - 1) * 1e9 / (now_ns - first)
        return (n - 1) * 1e9 / (last - first)

    def health(self, now_ns: int | None = None) -> Health:
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        period_s = 1.0 / self.expected_rate_hz if self.expected_rate_hz > 0 else MIN_ALIVE_S
        timeout_ns = int(max(ALIVE_PERIODS * period_s, MIN_ALIVE_S) * 1e9)
        alive = self.last_seen_ns > 0 and now_ns - self.last_seen_ns <= timeout_ns
        rate_ok = self.expected_rate_hz <= 0 or (
            self.rate_hz(now_ns) >= RATE_OK_FRACTION * self.expected_rate_hz
        )
        return Health(alive=alive, rate_ok=alive and rate_ok, upstream_valid=self.last_valid)

    def report(self, now_ns: int | None = None) -> dict[str, object]:
        """The input's entry in NodeStatus.inputs."""
        h = self.health(now_ns)
        transit = median_p99([t / 1e6 for t in self._transit_ns], digits=3)
        return {
            "rate_hz": round(self.rate_hz(now_ns), 3),
            "alive": h.alive,
            "rate_ok": h.rate_ok,
            "upstream_valid": h.upstream_valid,
            "received": self.received,
            "dropped": self.dropped,
            "stale_dropped": self.stale_dropped,
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(self.rejected),
            # send -> arrival, before decoding; meaningful when both ends share a host (ipc)
            "transit_ms": transit["median"] if transit else None,
        }
