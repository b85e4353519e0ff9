"""Durations in config: ``30s``, ``5m``, ``1h``, ``1d``, ``2w``; plain integers are seconds.

>>> parse_duration("5m"), parse_duration("1d"), parse_duration(90)
(300, 86400, 90)
>>> parse_duration("10m" + chr(0x1C))  # an editor's schema (JavaScript's regex) refuses it
Traceback (most recent call last):
...
ValueError: '10m\\x1c' is not a duration (use e.g. 30s, 5m, 1h, 1d, 2w)
>>> parse_duration("１h")
Traceback (most recent call last):
...
ValueError: '１h' is not a duration (use e.g. 30s, 5m, 1h, 1d, 2w)
>>> parse_duration("5 parsecs")
Traceback (most recent call last):
...
ValueError: '5 parsecs' is not a duration (use e.g. 30s, 5m, 1h, 1d, 2w)
"""

from __future__ import annotations

import re
from typing import Final

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# ASCII digits: Python's \d also takes "１h" (fullwidth), which an editor's schema
# (JavaScript's \d) refuses; the config and the schema must agree.
# Spaces and tabs only: Python's \s also takes \x1c-\x1f, JavaScript's does not.
_DURATION = re.compile(r"[ \t]*([0-9]+)[ \t]*([smhdw])[ \t]*")

#: JSON Schema of a duration given as text (the config's durations), for editors.
DURATION_JSON: Final = {"pattern": f"^{_DURATION.pattern}$"}


def parse_duration(value: object) -> int:
    """Seconds in ``value``; ValueError with a readable message otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _DURATION.fullmatch(value)
        if m:
            return int(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 5m, 1h, 1d, 2w)")


def format_duration(seconds: int) -> str:
    """The shortest exact spelling: ``format_duration(3600) == '1h'``.

    >>> format_duration(300), format_duration(90)
    ('5m', '90s')
    """
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
