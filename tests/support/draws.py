"""A stand-in for the percentiles' random draw (``streams.aggregate.histogram``): the
most likely bucket, i.e. the one holding the nearest rank, so tests of the gate's
bookkeeping can compare published percentiles with a brute-force nearest rank. The
draw itself is tested in ``tests/unit/test_histogram.py``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class MostLikely:
    """``random.Random.choices`` for one draw: the first bucket of greatest weight."""

    def choices(self, population: Sequence[Any], weights: Sequence[float]) -> list[Any]:
        return [population[max(range(len(weights)), key=weights.__getitem__)]]
