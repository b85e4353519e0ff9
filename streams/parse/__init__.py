"""Parsers: raw text line -> :class:`~streams.records.Request`, or a reason code.

``build_parser`` turns the ``input`` section of the config into one callable. Named
formats are LogFormat strings compiled like any custom one, so there is a single code
path to trust.

>>> parse = build_parser(["combined", "common"])
>>> parse('198.51.100.7 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.0" 200 5').status
200
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from streams.parse.jsonlines import JsonKey, JsonParser
from streams.parse.logformat import (
    FormatError,
    LineParser,
    compile_apache,
    compile_nginx,
    first_match,
)
from streams.records import PARSE_NO_MATCH, RejectedLine, Request

#: Named formats, as their servers define them.
APACHE_FORMATS: Final = {
    "common": '%h %l %u %t "%r" %>s %b',
    "combined": '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"',
    "vhost_combined": '%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"',
    "vhost_common": '%v %h %l %u %t "%r" %>s %b',
}
NGINX_FORMATS: Final = {
    "nginx_main": (
        '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent" "$http_x_forwarded_for"'
    ),
    "nginx_combined": (
        '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent"'
    ),
}
NAMED_FORMATS: Final = (*APACHE_FORMATS, *NGINX_FORMATS, "json")

Parse = Callable[[str], Request]

__all__ = ["NAMED_FORMATS", "FormatError", "Parse", "build_parser", "compile_one"]


def compile_one(
    spec: str,
    trusted_proxies: Iterable[str] = (),
    json_fields: Mapping[str, JsonKey] | None = None,
) -> LineParser | JsonParser:
    """A named format, ``apache:<LogFormat>``, ``nginx:<log_format>`` or ``json``."""
    proxies = tuple(trusted_proxies)
    if spec == "json":
        return JsonParser(json_fields, proxies)
    if spec in APACHE_FORMATS:
        return compile_apache(APACHE_FORMATS[spec], proxies, name=spec)
    if spec in NGINX_FORMATS:
        return compile_nginx(NGINX_FORMATS[spec], proxies, name=spec)
    if spec.startswith("apache:"):
        return compile_apache(spec[7:], proxies)
    if spec.startswith("nginx:"):
        return compile_nginx(spec[6:], proxies)
    raise FormatError(
        f"unknown format {spec!r}: use one of {', '.join(NAMED_FORMATS)}, "
        "'apache:<LogFormat string>' or 'nginx:<log_format string>'"
    )


def build_parser(
    formats: str | Sequence[str],
    trusted_proxies: Iterable[str] = (),
    json_fields: Mapping[str, JsonKey] | None = None,
) -> Parse:
    """One parse function; with several formats the first that matches wins."""
    specs = [formats] if isinstance(formats, str) else list(formats)
    parsers = [compile_one(s, trusted_proxies, json_fields) for s in specs]
    if len(parsers) == 1:
        return parsers[0].parse
    if all(isinstance(p, LineParser) for p in parsers):
        return first_match([p for p in parsers if isinstance(p, LineParser)])
    methods = tuple(p.parse for p in parsers)

    def parse_any(text: str) -> Request:
        reason = PARSE_NO_MATCH
        for parse in methods:
            try:
                return parse(text)
            except RejectedLine as rejected:
                # A later format may match; report the most specific reason seen.
                if rejected.reason != PARSE_NO_MATCH:
                    reason = rejected.reason
        raise RejectedLine(reason)

    return parse_any
