"""Deterministic random streams keyed by what they are for.

Every random choice in a drive comes from a generator seeded by ``(seed, purpose, *keys)``:
the world at any time is then a pure function of the seed, so ``frame(i)`` needs no history
and two drives with the same seed are bit-identical whatever order frames are asked in.
"""

from __future__ import annotations

import numpy as np

# Purposes (the second key of every stream).
LAYOUT = 1
APPEARANCE = 2
STREAM_BLOCK = 3
PROPS = 4
CROSSING = 5
FRAME = 6
SENSOR = 7


def zigzag(k: int) -> int:
    """Map any integer to a non-negative one, one-to-one (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...)."""
    return 2 * k if k >= 0 else -2 * k - 1


def rng_for(seed: int, purpose: int, *keys: int) -> np.random.Generator:
    """A generator for one purpose; keys may be negative (they are zigzag-encoded)."""
    return np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, purpose, *map(zigzag, keys)])
