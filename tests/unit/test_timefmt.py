"""Request time parsing: CLF, ISO 8601, epoch forms; bad times are a reason code."""

from __future__ import annotations

import pytest

from streams.parse.timefmt import any_time, clf_time, epoch_micros, epoch_millis, iso_time
from streams.records import RejectedLine


def test_clf_with_offsets() -> None:
    assert clf_time("10/Oct/2000:13:55:36 -0700") == 971211336
    assert clf_time("10/Oct/2000:20:55:36 +0000") == 971211336
    assert clf_time("11/Oct/2000:02:25:36 +0530") == 971211336


def test_iso_and_epochs() -> None:
    assert iso_time("2000-10-10T20:55:36Z") == 971211336
    assert iso_time("2000-10-10T20:55:36.123+00:00") == 971211336
    assert iso_time("2000-10-10T20:55:36") == 971211336  # naive: UTC
    assert epoch_millis("971211336123") == 971211336
    assert epoch_micros("971211336123456") == 971211336


@pytest.mark.parametrize(
    "value", [971211336, 971211336.5, 971211336123, "2000-10-10T20:55:36Z",
              "[10/Oct/2000:20:55:36 +0000]", "10/Oct/2000:20:55:36 +0000", "971211336.5"],
)  # fmt: skip
def test_any_time(value: object) -> None:
    assert any_time(value) == 971211336


@pytest.mark.parametrize(
    "text", ["", "10/Foo/2000:13:55:36 -0700", "40/Oct/2000:13:55:36 -0700",
             "10/Oct/2000:25:55:36 -0700", "yesterday"],
)  # fmt: skip
def test_bad_times_are_rejected_with_reason(text: str) -> None:
    with pytest.raises(RejectedLine) as caught:
        clf_time(text)
    assert caught.value.reason == "parse.bad_time"
    assert text not in str(caught.value) or not text


def test_any_time_rejects_bool_and_none() -> None:
    for value in (True, None, "", []):
        with pytest.raises(RejectedLine):
            any_time(value)
