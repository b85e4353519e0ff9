"""coarsen_time: UTC-aligned buckets, output formats, floors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.actions.base import BuildContext
from streams.actions.coarsen_time import SPEC


def test_buckets() -> None:
    five = SPEC.build({"bucket": "5m", "format": "iso"}, BuildContext())
    assert five(971211336) == "2000-10-10T20:55:00Z"
    assert five(971211299) == "2000-10-10T20:50:00Z"
    day = SPEC.build({"bucket": "1d", "format": "epoch"}, BuildContext())
    assert day(971211336) == 971136000


@given(st.integers(min_value=0, max_value=4_000_000_000), st.sampled_from(["1m", "5m", "1h", "1d"]))
def test_bucket_start_is_never_after_the_time_and_aligned(t: int, bucket: str) -> None:
    width = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}[bucket]
    out = SPEC.build({"bucket": bucket, "format": "epoch"}, BuildContext())(t)
    assert out <= t < out + width and out % width == 0


@pytest.mark.parametrize(("kind", "bucket"), [("operations", "30s"), ("analytics", "5m")])
def test_finer_than_floor_is_refused(kind: str, bucket: str) -> None:
    assert SPEC.validate is not None
    errors = SPEC.validate({"bucket": bucket, "format": "iso"}, BuildContext(destination_kind=kind))
    assert errors and "finer than" in errors[0]
