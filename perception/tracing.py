"""Per-frame trace: when each message was sent and received, and each frame's stage times.

Set ``PERCEPTION_TRACE`` to a folder and every process of the stack appends to
``FOLDER/<pid>.jsonl`` one JSON object a line per event::

    {"event": "sent", "node": "detector", "topic": "perception/detections",
     "stamp_ns": <source capture stamp>, "t_ns": <monotonic clock>}
    {"event": "received", "node": "tracker", "topic": "perception/detections", ...}
    {"event": "stage", "node": "detector", "stage": "forward", "stamp_ns": ..., "ms": 58.1}

``sent`` is the moment a publish began (the message's ``mono_ns``, before encoding);
``received`` the moment the subscriber handed the message over (decoded, or delivered in
the process). Events of one frame
share its capture ``stamp_ns``, so a frame can be followed through every hop and node: what
``perception bench pipeline`` does to split the time the stack adds into its parts. The
monotonic clock is shared by the processes of one host only.

Off (the default), each event site costs one flag check; on, one list append. Nodes write
the events out about once a second at a quiet moment (``Node`` periodic work), the buffer
when it fills (a process that is never quiet), and the process when it ends.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from pathlib import Path
from typing import Any

ENV = "PERCEPTION_TRACE"
FLUSH_EVERY = 4096  # events held in memory before a write

enabled = False
_folder: Path | None = None
_events: list[tuple[Any, ...]] = []
_flush_lock = threading.Lock()  # the nodes of a composed process share this module


def enable(folder: str | os.PathLike[str]) -> None:
    """Trace this process into ``folder`` (created if missing)."""
    global enabled, _folder
    _folder = Path(folder)
    _folder.mkdir(parents=True, exist_ok=True)
    enabled = True


def sent(node: str, topic: str, stamp_ns: int, t_ns: int) -> None:
    _add(("sent", node, topic, stamp_ns, t_ns))


def received(node: str, topic: str, stamp_ns: int, t_ns: int) -> None:
    _add(("received", node, topic, stamp_ns, t_ns))


def stage(node: str, name: str, stamp_ns: int, ms: float) -> None:
    _add(("stage", node, name, stamp_ns, ms))


def _add(event: tuple[Any, ...]) -> None:
    _events.append(event)
    if len(_events) >= FLUSH_EVERY:
        flush()


def flush() -> None:
    """Write the events held so far (threads may go on adding meanwhile)."""
    if _folder is None or not _events:
        return
    with _flush_lock:
        batch = _events[:]
        if not batch:  # another thread wrote them while this one waited for the lock
            return
        del _events[: len(batch)]  # what other threads added meanwhile stays
        _write(_folder, batch)


def _write(folder: Path, batch: list[tuple[Any, ...]]) -> None:
    lines = []
    for kind, node, name, stamp_ns, value in batch:
        event: dict[str, Any] = {"event": kind, "node": node}
        if kind == "stage":
            event.update(stage=name, stamp_ns=stamp_ns, ms=round(value, 4))
        else:
            event.update(topic=name, stamp_ns=stamp_ns, t_ns=value)
        lines.append(json.dumps(event))
    with open(folder / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def read(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every event written into ``folder`` (all processes); unreadable lines are skipped
    (a process killed mid-write)."""
    events = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                events.append(event)
    return events


if os.environ.get(ENV):
    enable(os.environ[ENV])
atexit.register(flush)
