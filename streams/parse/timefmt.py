"""Request times as logs write them, to UTC epoch seconds.

Each parser is cached on the exact text: a busy server writes the same second many
times, so the hot path is one dict lookup.

>>> clf_time("10/Oct/2000:13:55:36 -0700")
971211336
>>> iso_time("2000-10-10T13:55:36-07:00")
971211336
>>> epoch_time("971211336.123")
971211336
>>> clf_time("32/Foo/2000:99:99:99 +0000")
Traceback (most recent call last):
...
streams.records.RejectedLine: parse.bad_time
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Final

from streams.records import PARSE_BAD_TIME, RejectedLine

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


#: Largest UTC offset accepted, in seconds. Real zones span -12:00 to +14:00 (Kiribati);
#: RFC 3339 itself only bounds the digits (23:59). A wider offset is a broken clock or a
#: broken line, and would shift the published time by up to a day: rejected.
MAX_OFFSET = 14 * 3600

#: Times must fall in years 1970..9999 (what ISO/CLF can spell and gmtime can format).
MAX_EPOCH = 253402300800

# A leap second (23:59:60 UTC, whatever the local minute) is read as :59 in every
# format: clf_time took it as the next minute's :00, iso_time and %{...}t rejected it
# (datetime has no second 60), so one second was published or dropped by format (an
# audit). Published times are bucketed to minutes or more: :59 keeps its minute.
LEAP_SECOND = 60


def _in_range(seconds: int) -> int:
    if 0 <= seconds < MAX_EPOCH:
        return seconds
    raise RejectedLine(PARSE_BAD_TIME)


# The checks below run once per distinct time text (the cache holds successes only).
@lru_cache(maxsize=4096)
def clf_time(text: str) -> int:
    """Apache/nginx ``%t``/``$time_local``: ``10/Oct/2000:13:55:36 -0700`` (brackets off).

    The date must exist, the zone must be ``+HHMM``/``-HHMM`` within 14:00, and the time
    within 1970..9999 UTC:

    >>> clf_time("31/Feb/2024:10:00:00 +0000")
    Traceback (most recent call last):
    ...
    streams.records.RejectedLine: parse.bad_time
    >>> clf_time("10/Oct/2000:13:55:36 +9999")
    Traceback (most recent call last):
    ...
    streams.records.RejectedLine: parse.bad_time

    A time without its zone is rejected: it is a local time of an unknown offset, and
    read as UTC it was published shifted by the server's offset (an audit), as
    :func:`strftime_parser` refuses a ``%{...}t`` without ``%z``:

    >>> clf_time("10/Oct/2000:13:55:36")
    Traceback (most recent call last):
    ...
    streams.records.RejectedLine: parse.bad_time

    Numbers are ASCII digits of the widths servers write (int() alone took "-1" as an
    hour, "1_0" as a day, and a 20-digit year to an OverflowError):

    >>> clf_time("10/Oct/2000:-1:55:36 +0000")
    Traceback (most recent call last):
    ...
    streams.records.RejectedLine: parse.bad_time
    """
    try:
        if not _CLF_NUMBERS.match(text):
            raise ValueError
        day, month, rest = text.split("/", 2)
        year, hh, mm, tail = rest.split(":", 3)
        ss, zone = tail.split(" ", 1)  # no zone: ValueError (no default, see above)
        y, mo, d, h, mi, sec = int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss[:2])
        if not (1 <= d <= calendar.monthrange(y, mo)[1] and h < 24 and mi < 60 and sec < 61):
            raise ValueError
        sec = min(sec, LEAP_SECOND - 1)
        if len(zone) != 5 or zone[0] not in "+-" or not zone[1:].isdigit():
            raise ValueError
        offset = int(zone[1:3]) * 3600 + int(zone[3:5]) * 60
        if zone[3:5] >= "60" or offset > MAX_OFFSET:
            raise ValueError
        seconds = calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0))
    except (ValueError, KeyError, IndexError, OverflowError, calendar.IllegalMonthError):
        raise RejectedLine(PARSE_BAD_TIME) from None
    return _in_range(seconds - offset if zone[0] == "+" else seconds + offset)


# The numeric fields of a CLF time ([0-9]: \d and int() take any Unicode digit).
_CLF_NUMBERS = re.compile(r"[0-9]{1,2}/[^/]*/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2}")


@lru_cache(maxsize=4096)
def iso_time(text: str) -> int:
    """ISO 8601 (nginx ``$time_iso8601``, JSON logs). Naive times are taken as UTC
    (JSON application logs commonly write UTC without a zone; nginx always writes its
    offset). A date without a time of day is no request time:

    >>> iso_time("2000-10-10")
    Traceback (most recent call last):
    ...
    streams.records.RejectedLine: parse.bad_time

    The same zone and year limits as :func:`clf_time`:

    >>> iso_time("0001-01-01T00:00:00+10:00")
    Traceback (most recent call last):
    ...
    streams.records.RejectedLine: parse.bad_time

    A leap second is read as :59, as :func:`clf_time` reads it:

    >>> iso_time("2016-12-31T23:59:60Z") == iso_time("2016-12-31T23:59:59Z")
    True
    """
    if len(text) <= 10:  # a date alone (2000-10-10, 20001010): no time of day
        raise RejectedLine(PARSE_BAD_TIME)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        leap = _ISO_LEAP.sub(r"\g<1>59", text, count=1)
        if leap == text:
            raise RejectedLine(PARSE_BAD_TIME) from None
        return iso_time(leap)
    return _seconds(parsed)


_ISO_LEAP = re.compile(r"([T ][0-9]{2}:[0-9]{2}:)60(?![0-9])")


def _seconds(parsed: datetime) -> int:
    """UTC epoch seconds of a parsed time (naive: UTC), zone and range checked."""
    offset = parsed.utcoffset()
    if offset is None:
        return _in_range(calendar.timegm(parsed.timetuple()))
    if abs(offset.total_seconds()) > MAX_OFFSET:
        raise RejectedLine(PARSE_BAD_TIME)
    # Not parsed.timestamp(): it fails (OverflowError) for times near year 1 or 9999.
    return _in_range(
        calendar.timegm(parsed.replace(tzinfo=None).timetuple()) - int(offset.total_seconds())
    )


# strftime conversions an Apache %{FORMAT}t may use: the regex matching what it writes
# (C locale; [0-9]: strptime, like \d, also reads Unicode digits), and the equivalent
# for datetime.strptime.
_STRFTIME: dict[str, tuple[str, str]] = {
    "Y": (r"[0-9]{4}", "%Y"), "m": (r"[0-9]{2}", "%m"), "d": (r"[0-9]{2}", "%d"),
    "b": (r"[A-Z][a-z]{2}", "%b"), "h": (r"[A-Z][a-z]{2}", "%b"),
    "a": (r"[A-Z][a-z]{2}", "%a"), "H": (r"[0-9]{2}", "%H"), "M": (r"[0-9]{2}", "%M"),
    "S": (r"[0-9]{2}", "%S"), "z": (r"[+-][0-9]{4}", "%z"),
    "T": (r"[0-9]{2}:[0-9]{2}:[0-9]{2}", "%H:%M:%S"),
    "F": (r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "%Y-%m-%d"),
    "%": ("%", "%%"),
}  # fmt: skip


def strftime_regex(text: str) -> tuple[str, str]:
    """A regex (one group) matching what strftime ``text`` writes, and the equivalent
    ``datetime.strptime`` format. Raises ``ValueError`` naming a conversion it cannot read.

    >>> regex, python = strftime_regex("%d/%b/%Y %T")
    >>> python, re.fullmatch(regex, "10/Oct/2000 13:55:36") is not None
    ('%d/%b/%Y %H:%M:%S', True)
    """
    regex, python = [], []
    i = 0
    while i < len(text):
        if text[i] != "%":
            regex.append(re.escape(text[i]))
            python.append(text[i])
            i += 1
            continue
        conversion = text[i + 1 : i + 2]
        if conversion not in _STRFTIME:
            known = " ".join(f"%{c}" for c in _STRFTIME)
            raise ValueError(f"cannot read strftime %{conversion} (supported: {known})")
        regex.append(_STRFTIME[conversion][0])
        python.append(_STRFTIME[conversion][1])
        i += 2
    return "(" + "".join(regex) + ")", "".join(python)


def strftime_parser(python_format: str) -> Callable[[str], int]:
    """Parser of times written in ``python_format`` (from :func:`strftime_regex`),
    memoized per distinct text like :func:`clf_time`. The format must name a zone
    (``%z``): a local time without one would be published shifted by the server's
    offset.

    >>> strftime_parser("%d/%b/%Y:%H:%M:%S %z")("10/Oct/2000:13:55:36 -0700")
    971211336
    >>> strftime_parser("%d/%b/%Y %H:%M")
    Traceback (most recent call last):
    ...
    ValueError: has no %z (the time zone would be unknown)

    A conversion may appear once (strptime would fail on every line):

    >>> strftime_parser("%Y-%m-%d %H:%M:%S %z %d")
    Traceback (most recent call last):
    ...
    ValueError: repeats %d (a time is read once)
    """
    conversions = re.findall(r"%(.)", python_format.replace("%%", ""))
    if "z" not in conversions:
        raise ValueError("has no %z (the time zone would be unknown)")
    repeated = [c for c in conversions if conversions.count(c) > 1]
    if repeated:
        raise ValueError(f"repeats %{repeated[0]} (a time is read once)")

    @lru_cache(maxsize=4096)
    def parse(value: str) -> int:
        try:
            parsed = datetime.strptime(value, python_format)
        except ValueError:  # 31/Feb, hour 25, zone +9999 ... or a leap second
            parsed = _leap_second(value, python_format)
        return _seconds(parsed)

    return parse


def _leap_second(value: str, python_format: str) -> datetime:
    """``value`` read as :59 when its second is 60 (time.strptime takes 60, datetime
    does not); parse.bad_time otherwise."""
    try:
        parsed = time.strptime(value, python_format)
        if parsed.tm_sec != LEAP_SECOND or parsed.tm_gmtoff is None:
            raise ValueError
        zone = timezone(timedelta(seconds=parsed.tm_gmtoff))
        return datetime(*parsed[:5], LEAP_SECOND - 1, tzinfo=zone)
    except ValueError:
        raise RejectedLine(PARSE_BAD_TIME) from None


#: 1e10 seconds, 2286-11-20T17:46:40Z: an epoch (number or text) read as this time or
#: a later one is parse.bad_time, in every format (9999999999 is read).
#: :func:`any_time` takes an epoch under 1e11 as seconds and from 1e11 as
#: milliseconds, so 99,999,999,999 was the year 5138, and
#: milliseconds from 1e13 the year 2286 on; neither is any request's time. Times
#: written as dates are read up to 9999 (:data:`MAX_EPOCH`).
MAX_EPOCH_SECONDS: Final = 10_000_000_000


def _epoch_range(seconds: int) -> int:
    if 0 <= seconds < MAX_EPOCH_SECONDS:
        return seconds
    raise RejectedLine(PARSE_BAD_TIME)


# What servers write for an epoch: ASCII digits (int() and float() also read Unicode
# digits, "_" between digits, signs, spaces, exponents, "inf"), at most as many as
# MAX_EPOCH_SECONDS allows (so int() never reads a huge number).
_EPOCH_SECONDS = re.compile(r"([0-9]{1,10})(?:\.[0-9]*)?")
_EPOCH_MILLIS = re.compile(r"[0-9]{1,13}")
_EPOCH_MICROS = re.compile(r"[0-9]{1,16}")


def epoch_time(text: str) -> int:
    """Seconds (``$msec``, ``%{sec}t``), possibly with a fraction: ASCII digits, a time
    before :data:`MAX_EPOCH_SECONDS`.

    >>> epoch_time("9" * 400)
    Traceback (most recent call last):
    ...
    streams.records.RejectedLine: parse.bad_time
    >>> epoch_time("９７１２１１３３６")
    Traceback (most recent call last):
    ...
    streams.records.RejectedLine: parse.bad_time
    """
    m = _EPOCH_SECONDS.fullmatch(text)
    if m is None:
        raise RejectedLine(PARSE_BAD_TIME)
    return _epoch_range(int(m.group(1)))


def epoch_millis(text: str) -> int:
    """Milliseconds (``%{msec}t``), as :func:`epoch_time` reads seconds."""
    if _EPOCH_MILLIS.fullmatch(text) is None:
        raise RejectedLine(PARSE_BAD_TIME)
    return _epoch_range(int(text) // 1000)


def epoch_micros(text: str) -> int:
    """Microseconds (``%{usec}t``), as :func:`epoch_time` reads seconds."""
    if _EPOCH_MICROS.fullmatch(text) is None:
        raise RejectedLine(PARSE_BAD_TIME)
    return _epoch_range(int(text) // 1_000_000)


def any_time(value: object) -> int:
    """A JSON log's time field: epoch number, ISO 8601 text or CLF text (with its zone,
    as :func:`clf_time` requires).

    An epoch from 1e11 on is milliseconds (1e11 seconds is the year 5138), whether
    the log writes it as a number or as text (text was read as seconds and rejected
    as out of range; an audit):

    >>> any_time(1700000000123), any_time("1700000000123"), any_time("1700000000.5")
    (1700000000, 1700000000, 1700000000)

    An epoch read as a time from 2286-11-20T17:46:40Z on (:data:`MAX_EPOCH_SECONDS`)
    is parse.bad_time; a date is read up to 9999:

    >>> any_time(99_999_999_999)
    Traceback (most recent call last):
    ...
    streams.records.RejectedLine: parse.bad_time
    >>> any_time("2286-11-20T17:46:40Z")
    10000000000
    """
    if isinstance(value, bool):
        raise RejectedLine(PARSE_BAD_TIME)
    if isinstance(value, str) and value:
        if value[0].isdigit() and "-" in value[:5]:
            return iso_time(value)
        if value[0] == "[":
            return clf_time(value[1:-1])
        if "/" in value[:7]:
            return clf_time(value)
        try:
            value = float(value)
        except ValueError:
            raise RejectedLine(PARSE_BAD_TIME) from None
    if isinstance(value, int | float):
        try:
            return _epoch_range(int(value) if value < 1e11 else int(value) // 1000)
        except (ValueError, OverflowError):  # NaN, infinity
            raise RejectedLine(PARSE_BAD_TIME) from None
    raise RejectedLine(PARSE_BAD_TIME)
