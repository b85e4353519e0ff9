"""A stand-in for the percentiles' keyed random draw (``streams.aggregate.histogram``):
the most likely bucket, i.e. the one holding the nearest rank, so tests of the gate's
bookkeeping can compare published percentiles with a brute-force nearest rank. The
draw itself is tested in ``tests/unit/test_histogram.py``."""

from __future__ import annotations

from collections.abc import Sequence


def most_likely(weights: Sequence[float], basis: bytes, key: bytes) -> int:
    """``histogram.draw``'s stand-in: the first index of greatest weight."""
    return max(range(len(weights)), key=weights.__getitem__)
