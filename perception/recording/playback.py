"""Replay order and pacing of recorded messages.

A replay publishes each message at its recorded stamp (the MCAP publish time, i.e. ``stamp_ns``)
on a clock running at ``rate`` times real time. Derived messages (detections, tracks) carry the
stamp of the frame they came from but were received later, so file order (receive order) is not
stamp order; :func:`in_play_order` sorts a sliding window of receive time: at least
``MIN_WINDOW_NS``, longer once a larger lag between stamp and receipt has been seen. A message
whose stamp is implausibly far from its receive time (more than ``max_lag_ns``, e.g. a stamp of 0)
is played at its receive time instead, so one bad stamp cannot stall or reorder a replay.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator

from perception.recording.mcap_io import RecordedMessage

MAX_LAG_NS = 5_000_000_000
MIN_WINDOW_NS = 1_000_000_000  # results of a stack slower than this may play after later frames


def play_time_ns(msg: RecordedMessage, max_lag_ns: int = MAX_LAG_NS) -> int:
    """When ``msg`` plays on the recording's time axis: its stamp when plausible, else its
    receive time."""
    if abs(msg.log_time_ns - msg.publish_time_ns) <= max_lag_ns:
        return msg.publish_time_ns
    return msg.log_time_ns


def in_play_order(
    messages: Iterable[RecordedMessage],
    max_lag_ns: int = MAX_LAG_NS,
    min_window_ns: int = MIN_WINDOW_NS,
) -> Iterator[tuple[int, RecordedMessage]]:
    """``(play time, message)`` in play-time order (file order among equal times).

    Assumes receive times never decrease in file order (true of the recorder and importers);
    a message is released once no later message can play before it.
    """
    heap: list[tuple[int, int, RecordedMessage]] = []
    counter = itertools.count()
    lag = min_window_ns
    for msg in messages:
        t = play_time_ns(msg, max_lag_ns)
        lag = max(lag, msg.log_time_ns - t)
        heapq.heappush(heap, (t, next(counter), msg))
        while heap and heap[0][0] <= msg.log_time_ns - lag:
            t0, _, m = heapq.heappop(heap)
            yield t0, m
    while heap:
        t0, _, m = heapq.heappop(heap)
        yield t0, m


class Pacer:
    """Maps recording time to monotonic wall time at ``rate`` times real time."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._origin: tuple[int, int] | None = None  # (recording ns, monotonic ns)

    def due_ns(self, play_time: int, now_ns: int) -> int:
        """The monotonic time at which ``play_time`` is due (the first call sets the origin)."""
        if self._origin is None:
            self._origin = (play_time, now_ns)
        rec0, wall0 = self._origin
        return wall0 + int((play_time - rec0) / self.rate)

    def reset(self) -> None:
        self._origin = None


class Timeline:
    """One time axis over recordings played in a row: ns elapsed since the first message.

    A file that begins within ``max_gap_ns`` after the previous one ended (the next part of a
    split recording) keeps the clock running; any other file (an unrelated drive, stamps years
    apart) starts right after the previous one instead of after the gap.
    """

    def __init__(self, max_gap_ns: int = 10_000_000_000) -> None:
        self.max_gap_ns = max_gap_ns
        self._base = 0  # elapsed time at the current file's first message
        self._end = 0  # largest elapsed time so far
        self._file_first: int | None = None
        self._file_last: int | None = None
        self._prev_last: int | None = None

    def start_file(self) -> None:
        if self._file_last is not None:
            self._prev_last = self._file_last
        self._file_first = self._file_last = None

    def elapsed(self, t: int) -> int:
        if self._file_first is None:
            self._file_first = t
            if self._prev_last is not None:
                gap = t - self._prev_last
                self._base = self._end + (gap if 0 <= gap <= self.max_gap_ns else 0)
        self._file_last = t if self._file_last is None else max(self._file_last, t)
        e = self._base + t - self._file_first
        self._end = max(self._end, e)
        return e
