"""JSON-lines access logs (nginx ``escape=json``, Caddy, load balancers).

Which JSON key holds which source field is configuration: ``input.json_fields`` maps a
source-field role to a key (dotted keys reach into nested objects), or to a list of
keys, one per level, each taken as it is: a key holding a dot, as OpenTelemetry and
flattened ECS write them, is ``["source.ip"]`` (``["attributes", "client.address"]``
inside an object). The defaults are nginx's variable names.

Header arrays: Caddy logs each request header as an array of its values
(``"User-Agent": ["curl/8.4.0"]``). For a header of one value (referrer, user_agent,
host) the first is read; a list header is joined as HTTP joins repeated field lines
(language and forwarded_for with ", ", cookie with "; "). Any other role, and an array
holding anything but text, is absent: an array is never turned into text.

>>> p = JsonParser()
>>> r = p.parse('{"remote_addr":"203.0.113.9","time_iso8601":"2000-10-10T20:55:36+00:00",'
...             '"request":"GET /x HTTP/1.1","status":"200","body_bytes_sent":"12",'
...             '"request_time":"0.004","http_user_agent":"curl/8.0"}')
>>> (r.ip, r.time, r.target, r.status, r.bytes_sent, r.duration_ms, r.user_agent)
('203.0.113.9', 971211336, '/x', 200, 12, 4.0, 'curl/8.0')
>>> p.parse('{"remote_addr": "not an ip", "time_iso8601": "2000-10-10T20:55:36Z"}')
Traceback (most recent call last):
...
streams.records.RejectedLine: parse.bad_ip
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

from streams.parse.ip import ClientResolver
from streams.parse.logformat import method_name, split_request_line
from streams.parse.timefmt import any_time
from streams.records import (
    MAX_BYTES,
    MAX_DURATION_MS,
    MAX_STATUS,
    MIN_STATUS,
    NO_STATUS,
    PARSE_BAD_IP,
    PARSE_BAD_JSON,
    PARSE_BAD_NUMBER,
    PARSE_BAD_TIME,
    PARSE_MISSING_CLIENT,
    PARSE_MISSING_TIME,
    PARSE_NO_MATCH,
    RejectedLine,
    Request,
)

#: role -> key, nginx naming. ``duration_s`` is seconds; ``duration_ms`` milliseconds.
DEFAULT_FIELDS: Final[Mapping[str, str]] = {
    "client": "remote_addr",
    "forwarded_for": "http_x_forwarded_for",
    "time": "time_iso8601",
    "request_line": "request",
    "method": "request_method",
    "path": "request_uri",
    "status": "status",
    "bytes": "body_bytes_sent",
    "duration_s": "request_time",
    "referrer": "http_referer",
    "user_agent": "http_user_agent",
    "language": "http_accept_language",
    "host": "host",
    "user": "remote_user",
    "cookie": "http_cookie",
}
ROLES: Final = frozenset((*DEFAULT_FIELDS, "duration_ms", "protocol"))

#: What ``json_fields`` maps a role to: a key, dotted for nesting, or a list of keys,
#: one per level, dots kept.
JsonKey = str | Sequence[str]


def key_path(key: JsonKey) -> tuple[str, ...]:
    """The keys, one per level, that ``key`` names.

    >>> key_path("client.ip"), key_path(["client.ip"]), key_path(["attributes", "url.path"])
    (('client', 'ip'), ('client.ip',), ('attributes', 'url.path'))
    """
    return tuple(key.split(".")) if isinstance(key, str) else tuple(key)


def _text(value: Any) -> str | None:
    """A text field's value; None when absent, or when it is an object or array: its
    text form would carry whatever the object holds, mapped or not (an audit). A
    boolean is no text either (a referrer ``true`` became the text "True").

    >>> _text("GET"), _text(7), _text("-"), _text({"session": "x"}), _text(["a"]), _text(True)
    ('GET', '7', None, None, None, None)
    """
    if isinstance(value, str):
        return None if value in ("", "-") else value
    return None if value is None or isinstance(value, (dict, list, bool)) else str(value)


def _header(value: Any) -> str | None:
    """A request header of one value (User-Agent, Referer, Host). Caddy, like any dump
    of Go's ``http.Header``, logs every header as an array of its values: the first is
    read (the header as sent first: a repeated header of one value is malformed, and
    joined values are no user agent or URL). An array holding anything but text is
    absent, like an object.

    >>> _header("curl/8"), _header(["curl/8", "x"]), _header([]), _header([{"a": 1}])
    ('curl/8', 'curl/8', None, None)
    """
    if isinstance(value, str):  # the common cases first: one call per field and line
        return None if value in ("", "-") else value
    if value is None:
        return None
    if isinstance(value, list):
        if not value or not all(isinstance(item, str) for item in value):
            return None
        value = value[0]
    return _text(value)


def _header_list(value: Any, separator: str = ", ") -> str | None:
    """A request header that is a list (Accept-Language, X-Forwarded-For; Cookie with
    ``separator`` "; "): an array of its values is joined as HTTP combines repeated
    field lines (RFC 9110 5.3; cookies as RFC 9113 8.2.3 rejoins them).

    >>> _header_list(["de-CH", "fr"]), _header_list(["a=1", "", "b=2"], "; ")
    ('de-CH, fr', 'a=1; b=2')
    """
    if isinstance(value, str):
        return None if value in ("", "-") else value
    if value is None:
        return None
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            return None
        value = separator.join([item for item in value if item])
    return _text(value)


#: What nginx writes for an unset variable (and JSON's null): a field that is absent.
_UNSET: Final = (None, "", "-")


def _int(value: Any, low: int, high: int) -> int | None:
    """An integer in ``low..high``; None when absent (null, "-", ""). Anything else is
    parse.bad_number: a boolean, an object, a fraction, text that is not ASCII digits,
    as an out-of-range number is (text, true and 200.5 were None or 200, while 99999
    and -5 were bad numbers; an audit). The text formats refuse such a line too.

    Text is ASCII digits alone: int() also reads Unicode digits ("２００", which the
    text formats' [0-9] refuse), "_" between digits, signs and spaces. A JSON number of
    integral value is that integer (JSON has one number type: 200.0 is 200):

    >>> _int("200", 0, 999), _int(200.0, 0, 999), _int("-", 0, 999), _int(None, 0, 999)
    (200, 200, None, None)
    >>> _int("２００", 0, 999)
    Traceback (most recent call last):
    ...
    streams.records.RejectedLine: parse.bad_number
    """
    if type(value) is int:  # the common cases first: one call per field and line
        number = value
    elif type(value) is str and value.isdigit() and value.isascii():
        try:
            number = int(value)
        except ValueError:  # more digits than int() reads: out of bounds anyway
            raise RejectedLine(PARSE_BAD_NUMBER) from None
    elif value in _UNSET:
        return None
    elif type(value) is float and value.is_integer():  # not NaN nor infinity
        number = int(value)
    else:
        raise RejectedLine(PARSE_BAD_NUMBER)
    if not low <= number <= high:
        raise RejectedLine(PARSE_BAD_NUMBER)
    return number


def _status(value: Any) -> int | None:
    """A status code; nginx's "000" and "009" (no status) are None.

    >>> _status("200"), _status("000"), _status(9), _status("-")
    (200, None, None, None)
    """
    status = _int(value, 0, MAX_STATUS)
    if status is None or status >= MIN_STATUS:
        return status
    if status in NO_STATUS:
        return None
    raise RejectedLine(PARSE_BAD_NUMBER)


def _float(value: Any) -> float | None:
    """A number; None when absent, parse.bad_number when it is none (as :func:`_int`;
    text is read by float(), ASCII and without "_").

    >>> _float("0.004"), _float(2), _float("-")
    (0.004, 2.0, None)
    """
    if type(value) is float or type(value) is int:
        return float(value)
    if type(value) is str and value not in _UNSET and value.isascii() and "_" not in value:
        try:
            return float(value)
        except ValueError:
            pass
    elif value in _UNSET:
        return None
    raise RejectedLine(PARSE_BAD_NUMBER)


class JsonParser:
    name = "json"

    def __init__(
        self, fields: Mapping[str, JsonKey] | None = None, trusted_proxies: Iterable[str] = ()
    ) -> None:
        mapping: dict[str, JsonKey] = dict(DEFAULT_FIELDS)
        mapping.update(fields or {})
        self._resolver = ClientResolver(trusted_proxies)
        self._key = {role: key_path(key) for role, key in mapping.items()}

    def _get(self, doc: Mapping[str, Any], role: str) -> Any:
        path = self._key.get(role)
        if path is None:
            return None
        value: Any = doc
        for part in path:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    def parse(self, text: str) -> Request:
        """One line: a JSON object -> Request; a line that is no object is
        parse.no_match, so that in a format list the reason a text format gave it
        stands (it was parse.bad_json, which hid a text line's bad time or address;
        an audit). A broken object is parse.bad_json.

        >>> JsonParser().parse('198.51.100.7 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.0"')
        Traceback (most recent call last):
        ...
        streams.records.RejectedLine: parse.no_match
        >>> JsonParser().parse('{"remote_addr": "198.51.100.7", "time')
        Traceback (most recent call last):
        ...
        streams.records.RejectedLine: parse.bad_json
        """
        if text[:1] != "{" and not text.lstrip().startswith("{"):
            raise RejectedLine(PARSE_NO_MATCH)
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise RejectedLine(PARSE_BAD_JSON) from None
        if not isinstance(doc, dict):
            raise RejectedLine(PARSE_BAD_JSON)
        get = self._get
        value = get(doc, "client")
        client = _text(value)
        if client is None:  # absent: missing; an object or a boolean: a bad address
            raise RejectedLine(PARSE_MISSING_CLIENT if value in _UNSET else PARSE_BAD_IP)
        ip = self._resolver.resolve(client, _header_list(get(doc, "forwarded_for")))
        if ip is None:
            raise RejectedLine(PARSE_BAD_IP)
        time = get(doc, "time")
        # Time text is ASCII without "_", as servers write it (any_time's float() read
        # "９７１２１１３３６" and "971_211_336" as epochs).
        if isinstance(time, str) and (not time.isascii() or "_" in time):
            raise RejectedLine(PARSE_BAD_TIME)
        r = Request()
        r.ip = ip
        try:
            r.time = any_time(time)  # an epoch from 1e10 s: parse.bad_time (MAX_EPOCH_SECONDS)
        except RejectedLine:
            # any_time refuses None, "" and "-": told apart only on this (rare) path.
            if time in _UNSET:
                raise RejectedLine(PARSE_MISSING_TIME) from None
            raise
        line = _text(get(doc, "request_line"))
        if line is not None:
            r.method, r.target, r.protocol = split_request_line(line)
        else:
            r.method = method_name(_text(get(doc, "method")))
            r.target = _text(get(doc, "path"))
            r.protocol = _text(get(doc, "protocol"))
        r.status = _status(get(doc, "status"))
        r.bytes_sent = _int(get(doc, "bytes"), 0, MAX_BYTES)
        # Milliseconds first: ``duration_s`` is mapped by default (nginx's request_time),
        # so a mapped ``duration_ms`` is the user's explicit, finer choice (as %D over %T).
        ms = _float(get(doc, "duration_ms"))
        if ms is None and (seconds := _float(get(doc, "duration_s"))) is not None:
            ms = seconds * 1000
        r.duration_ms = ms
        if ms is not None and not 0 <= ms <= MAX_DURATION_MS:  # also NaN, infinity
            raise RejectedLine(PARSE_BAD_NUMBER)
        r.referrer = _header(get(doc, "referrer"))
        r.user_agent = _header(get(doc, "user_agent"))
        r.language = _header_list(get(doc, "language"))
        r.host = _header(get(doc, "host"))
        r.user = _text(get(doc, "user"))
        r.cookie = _header_list(get(doc, "cookie"), "; ")
        return r
