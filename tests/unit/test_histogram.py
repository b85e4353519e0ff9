"""The duration histogram's percentiles (``streams.aggregate.histogram``): the random
draw's odds, computed from :func:`rank_weights`, so these tests do not depend on luck."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.aggregate import histogram
from streams.aggregate.histogram import BUCKETS, EPSILON, bucket, quantile, rank_weights


def hist_of(durations: list[float]) -> dict[int, int]:
    hist: dict[int, int] = {}
    for d in durations:
        histogram.add(hist, bucket(d))
    return hist


def odds(durations: list[float], q: float) -> list[float]:
    """Each bucket's probability of being published as the q quantile."""
    weights = rank_weights(hist_of(durations), max(1, math.ceil(q * len(durations))))
    total = sum(weights)
    return [w / total for w in weights]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 1e5), min_size=19, max_size=60),
    st.floats(0.0, 1e5),
    st.sampled_from([0.5, 0.95, 0.99]),
)
def test_one_visitors_value_changes_any_values_odds_by_e_to_the_epsilon_at_most(
    others: list[float], moved: float, q: float
) -> None:
    """Two rows over the same visitors but one visitor's value (a summary and a cell
    holding all but one visitor's first request; a window with or without one slow
    request) publish each value with odds within e**EPSILON of each other: the mean
    of the 2k - 1 values around the rank and the two ends of those ranks, before,
    let the difference of two rows give that value (two audits, session 16)."""
    a = odds([*others, others[0]], q)
    b = odds([*others, moved], q)
    bound = math.exp(EPSILON) * (1 + 1e-9)
    assert all(x <= bound * y and y <= bound * x for x, y in zip(a, b, strict=True))


def test_a_lone_visitors_value_between_two_groups_is_rarely_published() -> None:
    """10 visitors at 10 ms, one at 500 ms, 10 at 10 s: the median's nearest rank is
    the lone visitor's (a review). Its bucket is about as likely as each empty bucket
    of the gap around it, so published under 1 time in 10."""
    p = odds([10.0] * 10 + [500.0] + [10_000.0] * 10, 0.5)
    assert p[bucket(500.0)] < 0.1
    assert sum(p[bucket(450.0) : bucket(560.0) + 1]) < 0.2


def test_a_slow_request_does_not_set_p95() -> None:
    """180 visitors around 20 ms and one at 45 s: p95 stays among the 20 ms values
    (the mean of the top 19 gave 2360 ms; an audit). The draw can land anywhere, but
    at this smallest publishable size about 1 in 100 lands above them, on any of the
    empty buckets alike: the slow request's own is no likelier than its neighbours."""
    p = odds([20.0 + (i % 7) for i in range(179)] + [45_000.0], 0.95)
    assert sum(p[bucket(30.0) :]) < 0.02
    slow = bucket(45_000.0)
    assert p[slow] < 1.1 * math.exp(EPSILON / 2) * p[slow + 1]


def test_the_draw_lands_on_the_nearest_rank_of_a_busy_cell() -> None:
    """Utility: 1,000 log-normal latencies; p50, p95 and p99 within two buckets
    (about 19%) of the nearest rank's, all but rarely."""
    rng = random.Random(7)
    durations = [math.exp(rng.gauss(3.0, 1.0)) for _ in range(1000)]
    ordered = sorted(durations)
    for q in (0.5, 0.95, 0.99):
        true = bucket(ordered[math.ceil(q * 1000) - 1])
        p = odds(durations, q)
        assert sum(p[max(0, true - 2) : true + 3]) > 0.95, q


def test_percentiles_need_k_values_on_each_side() -> None:
    def p(n: int, q: float) -> float | None:
        return quantile(hist_of([float(i + 1) for i in range(n)]), q, k=10)

    assert p(18, 0.5) is None and p(19, 0.5) is not None
    assert p(179, 0.95) is None and p(180, 0.95) is not None
    assert p(899, 0.99) is None and p(900, 0.99) is not None


def test_zero_durations_publish_zero() -> None:
    """0 ms (sub-millisecond requests in a log of whole milliseconds) lands in the
    bottom bucket, which used to publish as 0.004 ms."""
    assert quantile(hist_of([0.0] * 30), 0.5, k=10) == 0.0
    assert histogram.value(0) == 0.0 and histogram.value(BUCKETS - 1) > 1e7


def test_a_keyed_draw_follows_the_weights() -> None:
    """Over many histograms (bases) the keyed draw picks each index with its weight's
    share: it is the exponential mechanism, only made repeatable."""
    weights = [0.0, 1.0, 2.0, 7.0]
    picks = [histogram.draw(weights, n.to_bytes(4, "big"), b"k" * 32) for n in range(20_000)]
    shares = [picks.count(i) / len(picks) for i in range(len(weights))]
    assert shares[0] == 0.0
    for share, expected in zip(shares[1:], (0.1, 0.2, 0.7), strict=True):
        assert abs(share - expected) < 0.015, shares


def test_the_same_row_and_histogram_draw_the_same_value_and_another_key_draws_anew() -> None:
    """A row published again under its window's key (a restored merger) repeats its
    percentile: two independent draws of one histogram would average toward the
    nearest rank. Under another key the draws are independent."""
    # 19 values an octave apart: the median's odds spread over the buckets around it.
    hist = hist_of([float(2**i) for i in range(19)])
    key, row = b"k" * 32, ("ops", "5m", 0, "route", "/")
    first = quantile(hist, 0.5, k=10, key=key, row=row)
    assert all(quantile(dict(hist), 0.5, k=10, key=key, row=row) == first for _ in range(50))
    # The process's own key when none is given: repeatable within the process too.
    assert len({quantile(hist, 0.5, k=10, row=row) for _ in range(20)}) == 1
    others = {quantile(hist, 0.5, k=10, key=bytes([n]) * 32, row=row) for n in range(60)}
    assert len(others) > 3  # many buckets have fair odds: keys disagree


def matches(a: Callable[[int], float | None], b: Callable[[int], float | None]) -> int:
    """How many of 100 trials (keys) publish the same value from ``a`` and ``b``."""
    return sum(a(n) == b(n) for n in range(100))


SPREAD = hist_of([float(2**i) for i in range(19)])  # any two draws agree ~4% of the time


def test_two_rows_with_one_histogram_draw_independently() -> None:
    """Two rows (cells, windows, outputs) holding the same histogram are independent
    draws under one key: when the row was not hashed, a cell of an attacker's visitors
    plus one at a guessed value repeated a victim's cell's value exactly when the guess
    was right (an audit, session 17: the right bucket's posterior 0.65 against e**2's
    bound of 0.07)."""

    def cell(value: str) -> Callable[[int], float | None]:
        row = ("ops", "5m", 0, "route", value)
        return lambda n: quantile(SPREAD, 0.5, k=10, key=bytes([n]) * 32, row=row)

    assert matches(cell("/a"), cell("/a")) == 100
    assert matches(cell("/a"), cell("/b")) < 20


def test_what_is_hashed_holds_q_and_every_count() -> None:
    """Two quantiles of one rank, and two histograms of the same buckets with other
    counts, are independent draws (an audit: neither was tested through quantile)."""
    row = ("ops", "5m", 0, "summary")

    def median(hist: dict[int, int], q: float = 0.5) -> Callable[[int], float | None]:
        return lambda n: quantile(hist, q, k=10, key=bytes([n]) * 32, row=row)

    assert matches(median(SPREAD), median(SPREAD, 0.52)) < 20  # rank 10 both
    # One more value in the top bucket: the median's rank and odds around it unchanged.
    top = max(SPREAD)
    assert matches(median(SPREAD), median({**SPREAD, top: SPREAD[top] + 1})) < 20
