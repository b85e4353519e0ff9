"""``coarsen_time``: replace the request time by the start of its bucket.

Privacy floors (rule 8): operations buckets are at least 1 minute, analytics at least
1 hour; finer needs ``unsafe: true``. Buckets are aligned to the UTC epoch, so a 1d
bucket is a UTC day.

>>> f = SPEC.build({"bucket": "5m", "format": "iso"}, BuildContext())
>>> f(971211336)
'2000-10-10T20:55:00Z'
>>> SPEC.build({"bucket": "1h", "format": "epoch"}, BuildContext())(971211336)
971208000
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from streams.actions.base import ActionSpec, BuildContext, Option, Transform
from streams.durations import DURATION_JSON, format_duration, parse_duration
from streams.memo import remember

FLOORS = {"operations": 60, "analytics": 3600}


def _check_bucket(value: str) -> str | None:
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        return str(error)
    return None if seconds > 0 else "must be longer than 0s"


def build(options: Mapping[str, Any], context: BuildContext) -> Transform:
    width = parse_duration(options["bucket"])
    as_iso = options["format"] == "iso"
    cache: dict[int, Any] = {}

    def coarsen(seconds: int) -> Any:
        start = seconds - seconds % width
        out = cache.get(start)
        if out is None:  # bounded: a long replay must not grow it forever
            text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)) if as_iso else start
            out = remember(cache, start, text, 4096)
        return out

    return coarsen


def bucket_seconds(options: Mapping[str, Any]) -> int:
    return parse_duration(options["bucket"])


def validate(options: Mapping[str, Any], context: BuildContext) -> list[str]:
    floor = FLOORS.get(context.destination_kind, 60)
    if parse_duration(options["bucket"]) < floor and not context.unsafe:
        return [
            f"bucket {options['bucket']} is finer than {format_duration(floor)}, the limit for "
            f"{context.destination_kind} output (set unsafe: true to override)"
        ]
    return []


SPEC = ActionSpec(
    name="coarsen_time",
    doc="Bucket the request time (UTC-aligned).",
    options=(
        Option(
            "bucket",
            str,
            "5m",
            "bucket width, a duration: 1m, 5m, 1h, 1d, 2w... (at least 1m, 1h in analytics "
            "destinations, unless unsafe)",
            check=_check_bucket,
            json=DURATION_JSON,
        ),
        Option(
            "format",
            str,
            "iso",
            "'iso' (2000-10-10T20:55:00Z) or 'epoch' seconds",
            choices=("iso", "epoch"),
        ),
    ),
    build=build,
    accepts=frozenset({"request.time"}),
    validate=validate,
)
