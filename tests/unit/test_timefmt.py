"""Request time parsing: CLF, ISO 8601, epoch forms; bad times are a reason code."""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.parse import build_parser
from streams.parse.timefmt import (
    MAX_EPOCH,
    MAX_EPOCH_SECONDS,
    MAX_OFFSET,
    any_time,
    clf_time,
    epoch_micros,
    epoch_millis,
    epoch_time,
    iso_time,
    strftime_parser,
    strftime_regex,
)
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


@pytest.mark.parametrize(
    "text",
    [
        "31/Feb/2024:10:00:00 +0000",  # was published as 2024-03-02
        "29/Feb/2023:10:00:00 +0000",  # not a leap year
        "31/Apr/2024:10:00:00 +0000",
        "01/Jan/0001:10:00:00 +1000",  # before 1970: was "0-12-31T10:00:00Z"
        "31/Dec/1969:23:59:59 +0000",
        "31/Dec/9999:23:59:59 -2359",  # after 9999: was year 10000
        "10/Oct/2000:13:55:36 +9999",  # was accepted
        "10/Oct/2000:13:55:36 +1401",
        "10/Oct/2000:13:55:36 -1500",
        "10/Oct/2000:13:55:36 +0560",
        "10/Oct/2000:13:55:36 +05",
        "10/Oct/2000:13:55:36 0530x",
    ],
)
def test_impossible_clf_dates_zones_and_years_are_rejected(text: str) -> None:
    with pytest.raises(RejectedLine, match=r"parse\.bad_time"):
        clf_time(text)
    with pytest.raises(RejectedLine, match=r"parse\.bad_time"):
        any_time(f"[{text}]")


@pytest.mark.parametrize(
    "call",
    [lambda: clf_time("10/Oct/2000:13:55:36"), lambda: clf_time("10/Oct/2000:13:55:36 "),
     lambda: any_time("[10/Oct/2000:13:55:36]"), lambda: any_time("10/Oct/2000:13:55:36")],
)  # fmt: skip
def test_a_clf_time_without_a_zone_is_rejected(call: Callable[[], int]) -> None:
    """clf_time read a time without its zone as UTC: a server at -0700 was published
    7 hours early (strftime_parser refuses a %{...}t without %z for that reason; an
    audit). No zone option exists to say what the offset is: parse.bad_time."""
    with pytest.raises(RejectedLine, match=r"parse\.bad_time"):
        call()


@pytest.mark.parametrize(
    "text",
    ["0001-01-01T10:00:00+10:00", "9999-12-31T23:59:59-23:59", "1969-12-31T23:59:59Z",
     "2024-02-30T00:00:00Z", "2000-10-10T20:55:36+15:00", "2000-10-10T20:55:36-14:01"],
)  # fmt: skip
def test_impossible_iso_times_are_rejected(text: str) -> None:
    with pytest.raises(RejectedLine, match=r"parse\.bad_time"):
        iso_time(text)


@pytest.mark.parametrize("text", ["2000-10-10", "20001010", "2000-W41-2"])
def test_a_date_without_a_time_of_day_is_no_request_time(text: str) -> None:
    """A bare date was read as midnight UTC: a day's lines in its first hour (a review).
    Naive date-times stay UTC (JSON application logs write UTC without a zone)."""
    with pytest.raises(RejectedLine, match=r"parse\.bad_time"):
        iso_time(text)
    assert iso_time("2000-10-10t13:55:36") == iso_time("2000-10-10T13:55:36Z")


def test_the_edges_are_accepted() -> None:
    assert clf_time("29/Feb/2024:10:00:00 +0000") == 1709200800
    assert clf_time("01/Jan/1970:00:00:00 +0000") == 0
    assert clf_time("31/Dec/9999:23:59:59 +0000") == MAX_EPOCH - 1
    assert clf_time("10/Oct/2000:13:55:36 +1400") == 971211336 - 21 * 3600
    assert iso_time("9999-12-31T23:59:59Z") == MAX_EPOCH - 1
    assert iso_time("2000-10-10T20:55:36-14:00") == 971211336 + 14 * 3600


_MONTH_NAMES = dict(enumerate(calendar.month_abbr))


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31)),
    st.integers(-MAX_OFFSET // 60, MAX_OFFSET // 60),
)
def test_clf_and_iso_agree_with_datetime(moment: datetime, offset_minutes: int) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    local = moment.replace(microsecond=0, tzinfo=zone)
    expected = int(local.astimezone(UTC).timestamp())
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    clf = (f"{local.day:02d}/{_MONTH_NAMES[local.month]}/{local.year:04d}:"
           f"{local:%H:%M:%S} {sign}{hours:02d}{minutes:02d}")  # fmt: skip
    assert clf_time(clf) == expected
    assert iso_time(local.isoformat()) == expected


@given(
    st.integers(1, 9999), st.sampled_from(calendar.month_abbr[1:]), st.integers(1, 31),
    st.integers(0, 23), st.integers(-2359, 9999),
)  # fmt: skip
def test_clf_results_are_real_dates_in_range(
    year: int, month: str, day: int, hour: int, zone: int
) -> None:
    text = (
        f"{day:02d}/{month}/{year:04d}:{hour:02d}:00:00 {'-' if zone < 0 else '+'}{abs(zone):04d}"
    )
    try:
        seconds = clf_time(text)
    except RejectedLine:
        return
    assert 0 <= seconds < MAX_EPOCH
    month_number = list(calendar.month_abbr).index(month)
    assert day <= calendar.monthrange(year, month_number)[1]
    assert abs(zone) // 100 * 3600 + abs(zone) % 100 * 60 <= MAX_OFFSET and abs(zone) % 100 < 60


@pytest.mark.parametrize(
    "call",
    [
        lambda: clf_time("10/Oct/99999999999999999999:13:55:36 +0000"),
        lambda: any_time("[10/Oct/99999999999999999999:13:55:36 +0000]"),
        lambda: build_parser("combined")(
            '203.0.113.9 - - [10/Oct/99999999999999999999:13:55:36 -0700] "GET / HTTP/1.1" '
            '200 5 "-" "-"'
        ),
    ],
)
def test_a_huge_year_is_bad_time_not_overflow_error(call: Callable[[], Any]) -> None:
    """A 20-digit year raised OverflowError (a parse.error) (an audit)."""
    with pytest.raises(RejectedLine) as caught:
        call()
    assert caught.value.reason == "parse.bad_time"


@pytest.mark.parametrize(
    "text",
    ["10/Oct/2000:-1:55:36 +0000", "10/Oct/2000:13:-5:36 +0000", "10/Oct/2000:13:55:-1 +0000",
     "1_0/Oct/2000:13:55:36 +0000", "10/Oct/2000:+1:55:36 +0000", "10/Oct/2000: 1:55:36 +0000",
     "１０/Oct/2000:13:55:36 +0000", "10/Oct/02000:13:55:36 +0000", "10/Oct/2000:013:55:36 +0000"],
)  # fmt: skip
def test_clf_time_rejects_signed_and_underscored_fields(text: str) -> None:
    """int() accepts "-1", "+1", " 1", "1_0" and fullwidth digits; only upper bounds
    were checked, so a negative hour was published as the previous day (an audit)."""
    with pytest.raises(RejectedLine):
        clf_time(text)


def test_a_leap_second_is_read_alike_in_every_time_format() -> None:
    """clf_time accepted :60 (as the next minute's :00); iso_time and %{...}t rejected
    the same second (an audit). All read it as :59."""
    expected = 1483228799  # 2016-12-31T23:59:59Z
    assert clf_time("31/Dec/2016:23:59:60 +0000") == expected
    assert clf_time("01/Jan/2017:00:59:60 +0100") == expected
    assert iso_time("2016-12-31T23:59:60+00:00") == expected
    assert iso_time("2016-12-31T23:59:60.5Z") == expected
    assert any_time("2016-12-31 23:59:60Z") == expected
    strftime = strftime_parser("%d/%b/%Y:%H:%M:%S %z")
    assert strftime("31/Dec/2016:23:59:60 +0000") == expected
    assert strftime("01/Jan/2017:00:59:60 +0100") == expected
    for bad in ("31/Dec/2016:23:59:61 +0000", "31/Feb/2016:23:59:60 +0000"):
        with pytest.raises(RejectedLine):
            strftime(bad)
        with pytest.raises(RejectedLine):
            clf_time(bad)
    with pytest.raises(RejectedLine):
        iso_time("2016-12-31T23:59:61Z")


def test_json_epoch_milliseconds_as_text_are_read_like_numbers() -> None:
    """A numeric string was read as seconds: "1700000000000" was out of range (an
    audit)."""
    assert any_time(1700000000000) == 1700000000
    assert any_time("1700000000000") == 1700000000
    assert any_time("1700000000999.5") == 1700000000
    assert any_time("1700000000") == 1700000000
    for bad in ("nan", "inf", "1e400", "x1"):
        with pytest.raises(RejectedLine):
            any_time(bad)


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (epoch_time, "９７１２１１３３６"), (epoch_time, "٩٧١٢١١٣٣٦"), (epoch_time, "971_211_336"),
        (epoch_time, "９７１２１１３３６.5"), (epoch_time, "971211336.５"), (epoch_time, "+971211336"),
        (epoch_time, " 971211336"), (epoch_time, "9.7e8"), (epoch_time, "nan"), (epoch_time, ""),
        (epoch_millis, "９７１２１１３３６１２３"), (epoch_millis, "971_211_336_123"),
        (epoch_millis, "+971211336123"), (epoch_micros, "９７１２１１３３６１２３４５６"),
        (epoch_micros, "971_211_336_123_456"), (epoch_micros, " 971211336123456"),
    ],
)  # fmt: skip
def test_epoch_text_is_ascii_digits(call: Callable[[str], int], text: str) -> None:
    """int() and float() read Unicode digits, "_", signs and spaces: "９７１２１１３３６"
    was a time in %{sec}t and $msec (JSON logs refuse it already)."""
    with pytest.raises(RejectedLine) as caught:
        call(text)
    assert caught.value.reason == "parse.bad_time"


@pytest.mark.parametrize(
    ("call", "scale"), [(epoch_time, 1), (epoch_millis, 1000), (epoch_micros, 1_000_000)]
)
def test_text_epochs_end_at_2286_as_json_epochs_do(call: Callable[[str], int], scale: int) -> None:
    """An epoch read as a time from 2286-11-20 on (1e10 seconds) was accepted in text
    formats up to 9999, where JSON logs refuse it: one bound for every format."""
    last = MAX_EPOCH_SECONDS - 1
    assert call(str(last * scale)) == last
    for seconds in (MAX_EPOCH_SECONDS, MAX_EPOCH - 1, 10**15):
        with pytest.raises(RejectedLine) as caught:
            call(str(seconds * scale))
        assert caught.value.reason == "parse.bad_time"
    assert epoch_time(f"{last}.999") == last
    for number in (MAX_EPOCH_SECONDS, MAX_EPOCH_SECONDS * 1000):  # seconds, milliseconds
        with pytest.raises(RejectedLine):
            any_time(number)


def test_the_readme_gives_the_epoch_cutoff_to_the_second() -> None:
    """The README said epochs "from 2286-11-20 on" are parse.bad_time, but %{sec}t
    9999999999 (2286-11-20T17:46:39Z) is read: the cutoff is 1e10 seconds, in the
    middle of that day (an audit). Both of its statements (text and JSON logs) give it."""
    from pathlib import Path

    cutoff = datetime.fromtimestamp(MAX_EPOCH_SECONDS, UTC)
    stated = f"{cutoff:%Y-%m-%dT%H:%M:%S}Z (1e10 seconds)"
    assert stated == "2286-11-20T17:46:40Z (1e10 seconds)"
    last = str(MAX_EPOCH_SECONDS - 1)  # 2286-11-20T17:46:39Z
    assert build_parser("apache:%h %{sec}t %>s")(f"203.0.113.9 {last} 200").time == int(last)
    assert any_time(int(last)) == any_time(last) == int(last)
    for first_refused in (str(MAX_EPOCH_SECONDS), MAX_EPOCH_SECONDS):
        with pytest.raises(RejectedLine):
            any_time(first_refused)
    with pytest.raises(RejectedLine):
        epoch_time(str(MAX_EPOCH_SECONDS))
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert "2286-11-20 on" not in readme
    assert readme.count(f"from {stated} on") == 2


@pytest.mark.parametrize(
    "text", ["1０/Oct/2000 13:55:36 +0000", "10/Oct/２000 13:55:36 +0000",
             "10/Oct/2000 1３:55:36 +0000", "10/Oct/2000 13:55:36 +０000"],
)  # fmt: skip
def test_strftime_numbers_are_ascii_digits(text: str) -> None:
    """strptime reads Unicode digits (its regexes use \\d): the regex a %{...}t field
    matches refuses them."""
    regex, _ = strftime_regex("%d/%b/%Y %T %z")
    assert re.fullmatch(regex, text) is None
    assert re.fullmatch(regex, "10/Oct/2000 13:55:36 +0000") is not None
