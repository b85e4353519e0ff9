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
>>> quantile(h, 0.99, k=2) is None  # the top value alone: withheld
True
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import orjson

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


#: Privacy loss of one published percentile: one visitor's value changes the odds of
#: any value being published by a factor of at most e**EPSILON (about 7.4).
EPSILON: Final = 2.0
#: The draws' key when the caller has none (:func:`quantile`): this process's own.
_PROCESS_KEY: Final = secrets.token_bytes(32)


def quantile(
    hist: Mapping[int, int],
    q: float,
    k: int = 1,
    key: bytes | None = None,
    row: Sequence[str | int] = (),
) -> float | None:
    """The ``q`` quantile of the recorded durations, a bucket's value (:func:`value`):
    for ``k = 1`` that of its nearest rank; for ``k > 1`` one drawn at random, None
    when empty or unless k values lie at or below the nearest rank and k at or above.

    With one value per visitor (the aggregates' histograms) no visitor's value may be
    read off a published quantile, and every deterministic rule tried let it be:
    nearest rank published a lone visitor's bucket between two groups of 9 (a review);
    the mean of the 2k - 1 values around the rank took in the maximum, and the means of
    a summary and a cell over the same visitors but one differed by that visitor's
    value / 19; the two ends of those ranks gave a visitor's value when it sat in a
    gap at an end (two audits, session 16). So the bucket is drawn by the exponential
    mechanism (:func:`rank_weights`): a bucket's odds fall by e**(EPSILON / 2) for each
    value that would have to move for it to hold the nearest rank, so one visitor's
    value changes the odds of any published value by at most e**EPSILON, and a value
    alone in a gap is published about as often as each of the gap's empty buckets. On
    the many values of a busy cell the draw lands on or next to the nearest rank.

    The draw is keyed (:func:`draw`) by ``key`` and made from ``row`` (what identifies
    the published row: output, window and its start, dimension, value), ``q`` and the
    histogram: the same row publishing the same histogram again under the same key (a
    merger restored after a crash, with the window's key from its checkpoint) repeats
    its value instead of drawing anew, as independent draws of one histogram average
    toward its nearest rank. The row is in what is hashed because without it any row
    could repeat another's draw: a cell of an attacker's visitors plus one at a guessed
    value repeated the victim's cell's value exactly when the guess was right (an
    audit, session 17). A key must not outlive what it keys (one window, one run):
    every key kept across runs made the same equality test. ``key``: None for this
    process's own random key.

    For k = 10 that takes 19 values for the median, 180 for p95 and 900 for p99.

    >>> quantile({bucket(20.0): 40}, 0.5, k=10)  # 40 values in one bucket: that bucket
    19.9
    >>> h = {bucket(float(ms)): 3 for ms in range(10, 400, 10)}
    >>> len({quantile(h, 0.5, k=10, key=b"k" * 32, row=("ops", 0)) for _ in range(20)})
    1
    """
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    if k == 1:
        seen = 0
        for i in sorted(hist):
            seen += hist[i]
            if seen >= rank:
                return value(i)
    if rank < k or total - rank + 1 < k:
        return None
    # JSON: every field delimited, so no two (row, q, histogram) encode alike; zero
    # counts left out, as the weights do not tell them from absent buckets.
    basis = orjson.dumps([list(row), q, [[i, c] for i, c in sorted(hist.items()) if c]])
    return value(draw(rank_weights(hist, rank), basis, _PROCESS_KEY if key is None else key))


def draw(weights: Sequence[float], basis: bytes, key: bytes) -> int:
    """An index drawn with odds ``weights`` from a keyed hash of ``basis``: a uniform
    number to whoever lacks ``key`` (BLAKE2b is a pseudorandom function under its key,
    at most 64 bytes), and the same index for the same ``basis``, ``weights`` and
    ``key``. Whoever holds the key can compute every draw: it must be kept as secret
    as the values drawn from.

    >>> weights, key = [0.0, 1.0, 3.0], b"k" * 32
    >>> picks = [draw(weights, bytes([n]), key) for n in range(200)]
    >>> picks.count(0), 30 < picks.count(1) < 70
    (0, True)
    >>> draw(weights, b"x", key) == draw(weights, b"x", key)
    True
    """
    digest = hashlib.blake2b(basis, key=key, person=b"logfog-draw", digest_size=8).digest()
    cumulative = list(itertools.accumulate(weights))
    # 53 bits: a float's mantissa, so each index's odds are its weight's share.
    target = (int.from_bytes(digest, "big") >> 11) / (1 << 53) * cumulative[-1]
    return min(bisect.bisect_right(cumulative, target), len(weights) - 1)


def rank_weights(hist: Mapping[int, int], rank: int) -> list[float]:
    """Each bucket's odds of being published as the quantile of nearest rank ``rank``
    (:func:`quantile`): e**(-EPSILON / 2 * d), d = how many values would have to move
    for the bucket to hold that rank (0 for the bucket holding it): one value changed
    moves each d by one at most.

    >>> [round(w, 3) for w in rank_weights({3: 1, 4: 2, 6: 1}, 2)[2:8]]
    [0.135, 0.368, 1.0, 0.135, 0.135, 0.05]
    """
    decay = -EPSILON / 2
    weights = []
    below = 0
    get = hist.get
    for i in range(BUCKETS):
        count = get(i, 0)
        if below >= rank:
            distance = below + 1 - rank
        elif below + count >= rank:
            distance = 0
        else:
            distance = rank - below - count
        weights.append(math.exp(decay * distance))
        below += count
    return weights


def value(index: int) -> float:
    """What a bucket publishes: its midpoint (:func:`midpoint`), 0.0 for the bottom
    bucket, which holds 0 ms (a log with millisecond resolution writes sub-millisecond
    requests so) and whose midpoint 0.004 ms would read as a real time.

    >>> value(0), value(bucket(20.0))
    (0.0, 19.9)
    """
    return 0.0 if index == 0 else midpoint(index)


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
