"""Logging set-up and a rate-limited warning for things that can happen many times a second."""

from __future__ import annotations

import logging
import sys
import time


def setup_logging(name: str, level: str = "INFO") -> logging.Logger:
    """One line per record on stderr, naming the node: the launcher interleaves these."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d %(levelname)s [%(name)s] %(message)s", "%H:%M:%S"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logger = logging.getLogger(name)
    logger.setLevel(level.upper())  # its own: nodes composed in one process each keep theirs
    return logger


class RateLimitedLog:
    """Logs the first occurrence of each key, then at most one summary line per ``period_s``."""

    def __init__(self, logger: logging.Logger, period_s: float = 5.0) -> None:
        self._logger = logger
        self._period_ns = int(period_s * 1e9)
        self._last: dict[str, int] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str) -> None:
        now = time.monotonic_ns()
        last = self._last.get(key)
        if last is not None and now - last < self._period_ns:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        skipped = self._suppressed.pop(key, 0)
        suffix = f" (+{skipped} more like it since the last report)" if skipped else ""
        self._logger.warning("%s%s", message, suffix)
        self._last[key] = now
