"""Replay order and the time axis over several files (the pacing itself is tested on a live
player in test_player_node.py)."""

from __future__ import annotations

import pytest

from perception.recording.mcap_io import ChannelInfo, RecordedMessage
from perception.recording.playback import Pacer, Timeline, in_play_order, play_time_ns

S = 1_000_000_000
CHANNEL = ChannelInfo(1, "camera/frames", "perception-msgpack", "", "", b"")


def rec(log: int, stamp: int, tag: str = "") -> RecordedMessage:
    return RecordedMessage(CHANNEL, log, stamp, 0, tag.encode())


def _live(lag_s: float, n: int = 20) -> list[RecordedMessage]:
    """Frames at 10 Hz; the results of frame k (its stamp) received ``lag_s`` later."""
    out = []
    for k in range(n):
        t = k * S // 10
        out.append(rec(t, t, f"frame{k}"))
        out.append(rec(t + int(lag_s * S), t, f"result{k}"))
    return sorted(out, key=lambda m: m.log_time_ns)  # file order = receive order


@pytest.mark.parametrize("lag_s", [0.05, 0.35, 0.95])
def test_results_play_with_their_frame_in_stamp_order(lag_s: float) -> None:
    played = [(t, m.data.decode()) for t, m in in_play_order(_live(lag_s))]
    assert [t for t, _ in played] == sorted(t for t, _ in played)
    names = [n for _, n in played]
    for k in range(20):  # each result right after its own frame, before the next frame
        assert names.index(f"result{k}") == names.index(f"frame{k}") + 1


def test_a_slower_stack_is_ordered_once_its_lag_was_seen() -> None:
    played = [m.data.decode() for _, m in in_play_order(_live(1.5))]
    late = [k for k in range(20) if played.index(f"result{k}") != played.index(f"frame{k}") + 1]
    assert late and max(late) < 6  # only the results before the first 1.5 s lag was seen


def test_implausible_stamps_play_at_receive_time() -> None:
    assert play_time_ns(rec(100 * S, 0)) == 100 * S  # an unset stamp
    assert play_time_ns(rec(100 * S, 99 * S)) == 99 * S
    out = [m.data for _, m in in_play_order([rec(10 * S, 10 * S, "a"), rec(11 * S, 0, "b")])]
    assert out == [b"a", b"b"]


def test_imported_drives_stream_with_a_bounded_window() -> None:
    seen = []

    def source():
        for k in range(100):
            seen.append(k)
            yield rec(k * S // 10, k * S // 10)

    it = in_play_order(source())
    next(it)
    assert len(seen) == 11  # released once 1 s (the minimum window) later was read


def test_timeline_continues_split_parts_and_closes_unrelated_gaps() -> None:
    tl = Timeline()
    tl.start_file()
    assert [tl.elapsed(t) for t in (100 * S, 101 * S, 102 * S)] == [0, S, 2 * S]
    tl.start_file()  # the next part of a split recording, 0.1 s later
    assert tl.elapsed(102 * S + S // 10) == 2 * S + S // 10
    tl.start_file()  # a drive from years before: plays right after
    assert tl.elapsed(5 * S) == 2 * S + S // 10
    assert tl.elapsed(6 * S) == 3 * S + S // 10


def test_pacer_scales_time_by_the_rate() -> None:
    pacer = Pacer(2.0)
    assert pacer.due_ns(10 * S, 1000) == 1000
    assert pacer.due_ns(12 * S, 5000) == 1000 + S
