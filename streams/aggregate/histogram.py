"""Fixed log-bucket histogram of durations: bounded memory, exactly mergeable.

A duration ``d`` ms lands in bucket ``floor(8 * log2(d)) + 64`` (clamped to 0..255),
so each bucket is 2^(1/8) ~ 9% wide and a percentile read from the bucket's geometric
midpoint is within ~4.4% of the true value. Buckets are the same everywhere, so
partial histograms from many partitions add up exactly: stage 2 keeps one small
dict per cell, stage 3 sums them. Covers 0.0039 ms .. 2.9e7 ms; values outside
clamp to the end buckets.

>>> h = {}
>>> for d in (1.0, 2.0, 3.0, 100.0):
...     add(h, bucket(d))
>>> quantile(h, 0.5), quantile(h, 0.99)
(2.09, 103.0)
>>> quantile({}, 0.5) is None
True
>>> quantile(h, 0.5, k=2), quantile(h, 0.99, k=2)  # 4 values: too few for k = 2
(None, None)
>>> h = {bucket(d): 1 for d in (1.0, 2.0, 3.0, 4.0, 100.0)}
>>> quantile(h, 0.5, k=2)  # ranks 2 and 4 around rank 3: 2 and 4 ms, bucketed
2.95
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

STEPS_PER_OCTAVE = 8
OFFSET = 64
BUCKETS = 256
_LOG2 = math.log2


def bucket(duration_ms: object) -> int | None:
    """Bucket index of a duration; None when it is not a number (nothing to record)."""
    if duration_ms.__class__ is bool or not isinstance(duration_ms, int | float):
        return None
    if duration_ms <= 0 or duration_ms != duration_ms:  # 0, negatives, NaN: bottom bucket
        return 0
    i = math.floor(STEPS_PER_OCTAVE * _LOG2(duration_ms)) + OFFSET
    return 0 if i < 0 else (BUCKETS - 1 if i >= BUCKETS else i)


def add(hist: dict[int, int], index: int | None, n: int = 1) -> None:
    """Count ``n`` durations in bucket ``index`` (no-op for None)."""
    if index is not None:
        hist[index] = hist.get(index, 0) + n


def merge(into: dict[int, int], other: Mapping[int, int]) -> None:
    """Add ``other``'s counts to ``into`` (histograms of disjoint events add exactly)."""
    for i, n in other.items():
        into[i] = into.get(i, 0) + n


def midpoint(index: int) -> float:
    """Representative value of a bucket: its geometric midpoint, 3 significant digits."""
    return float(f"{_raw_midpoint(index):.3g}")


def quantile(hist: Mapping[int, int], q: float, k: int = 1) -> float | None:
    """The ``q`` quantile of the recorded durations: the geometric midpoint of the
    values at ranks ``r - (k - 1)`` and ``r + (k - 1)`` around its nearest rank ``r``
    (for ``k = 1``, the value at ``r``); None when empty or, for ``k > 1``, unless more
    than k values lie below ``r`` and at least k above it, so that neither end of that
    range is the lowest or the highest value.

    With one value per visitor (the aggregates' histograms), no single visitor sets a
    published quantile:

    - it is not a lone visitor's own value (a review found one visitor's bucket
      published as the median between two groups of 9: the ends are k - 1 ranks away);
    - nor the maximum or a mean pulled by it: an audit (session 16) found the mean of
      the 2k - 1 values around the rank, the rule before, decided by one visitor's
      45-second request at the smallest publishable sizes (p95 of 180 visitors took the
      top 19 values), and the difference of two such means (a summary's and a cell's
      holding the same visitors but one) gave that visitor's value times 1/19 exactly.
      An order statistic moves by at most one rank when one value changes, and both
      ends here have another visitor's value beyond them.

    For k = 10 that takes 21 values for the median, 200 for p95 and 1,000 for p99.
    """
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    if k > 1 and not k < rank <= total - k:
        return None
    first, last = rank - k + 1, rank + k - 1  # the ends, both another visitor's value
    ends: list[float] = []
    seen = 0
    for i in sorted(hist):
        low, seen = seen + 1, seen + hist[i]  # this bucket holds ranks low..seen
        ends.extend(_raw_midpoint(i) for rank_ in (first, last) if low <= rank_ <= seen)
        if seen >= last:
            break
    return float(f"{math.sqrt(ends[0] * ends[-1]):.3g}")


def _raw_midpoint(index: int) -> float:
    return 2.0 ** ((index - OFFSET + 0.5) / STEPS_PER_OCTAVE)


def to_pairs(hist: Mapping[int, int]) -> list[list[int]]:
    """JSON form (object keys must be strings): sorted ``[index, count]`` pairs."""
    return [[i, hist[i]] for i in sorted(hist)]


def from_pairs(pairs: Iterable[Iterable[int]]) -> dict[int, int]:
    """Inverse of :func:`to_pairs`.

    >>> from_pairs(to_pairs({70: 2, 3: 1}))
    {3: 1, 70: 2}
    """
    return {int(i): int(n) for i, n in pairs}
