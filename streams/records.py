"""The small types that flow through the pipeline.

A :class:`Request` is what a parser makes of one raw line. It holds the full client
address, user agent and URL: it lives only in memory, inside one call of the pipeline,
and is never serialized. Everything that leaves the process is built from it by the
field rules (``streams.rules``).

A :class:`Rejection` says why a line was not published. It carries coordinates
(topic/partition/offset or a line number), never the payload.

>>> Rejection("parse", "parse.no_match", line=3).as_dict()["reason"]
'parse.no_match'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

#: A UTF-8 byte order mark: Windows tools start a text file with one. It is no part of
#: the first line (whose address it made parse.bad_ip): the readers of files and
#: streams (``logfog anonymize``, ``logfog ship``) drop it at their start only, since
#: further on it is the line's own.
BOM: Final = b"\xef\xbb\xbf"


def without_bom(start: bytes) -> bytes | None:
    """A stream's first bytes so far, ``start``, without the :data:`BOM` starting them;
    None while they may still be a BOM's start (read more to tell: a pipe's read may
    give one or two of its bytes, and the next read the rest).

    >>> without_bom(b"\\xef\\xbb"), without_bom(b"\\xef\\xbb\\xbfa"), without_bom(b"\\xefa")
    (None, b'a', b'\\xefa')
    >>> without_bom(b""), without_bom(b"\\xef\\xbb\\xbf")
    (None, b'')
    """
    if len(start) < len(BOM) and BOM.startswith(start):
        return None
    return start.removeprefix(BOM)


# Reason codes: stable strings, used as metric labels and in dead letters.
PARSE_NO_MATCH: Final = "parse.no_match"
PARSE_BAD_TIME: Final = "parse.bad_time"
PARSE_BAD_IP: Final = "parse.bad_ip"
PARSE_NOT_UTF8: Final = "parse.not_utf8"
PARSE_TOO_LONG: Final = "parse.too_long"
PARSE_EMPTY: Final = "parse.empty"
PARSE_BAD_JSON: Final = "parse.bad_json"
#: A JSON line without a client address or request time: its key absent, null, or
#: "-" or "" (nginx's unset variable). Not bad_ip/bad_time: often the mapping
#: (``input.json_fields``) names a key the log does not have.
PARSE_MISSING_CLIENT: Final = "parse.missing_client"
PARSE_MISSING_TIME: Final = "parse.missing_time"
#: A status, byte count or duration outside the bounds below (e.g. a 26-digit %b), or
#: in JSON logs no number at all (true, "abc", a status 200.5).
PARSE_BAD_NUMBER: Final = "parse.bad_number"
PARSE_ERROR: Final = "parse.error"
RULES_ERROR: Final = "rules.error"
#: The worker could not publish a record's output (the broker refused it for good, or
#: a bug in publishing): its lines are dead-lettered rather than retried forever.
PUBLISH_ERROR: Final = "publish.error"

#: How far past the wall clock an event may be dated and still count as "now" (clock
#: skew between log servers and this machine), everywhere one rule is needed: the file
#: command's key ring and the aggregation's watermark.
FUTURE_SKEW_SECONDS: Final = 300

REASONS: Final = (
    PARSE_NO_MATCH,
    PARSE_BAD_TIME,
    PARSE_BAD_IP,
    PARSE_NOT_UTF8,
    PARSE_TOO_LONG,
    PARSE_EMPTY,
    PARSE_BAD_JSON,
    PARSE_MISSING_CLIENT,
    PARSE_MISSING_TIME,
    PARSE_BAD_NUMBER,
    PARSE_ERROR,
    RULES_ERROR,
    PUBLISH_ERROR,
)


# Bounds of the numbers a parser accepts: HTTP's three-digit status codes; counts and
# durations that every JSON reader takes exactly (2**53 - 1, JavaScript's safe integer)
# and that orjson can serialize (it refuses integers beyond 64 bits: a rules.error).
MIN_STATUS: Final = 100
MAX_STATUS: Final = 999
MAX_BYTES: Final = 2**53 - 1
MAX_DURATION_MS: Final = float(2**53 - 1)
#: What nginx writes as the status of a request without one: 0 ("000": the connection
#: ended before a response, e.g. the client went away) and 9 ("009": an HTTP/0.9
#: request). Parsed as no status; they were parse.bad_number, the request lost.
NO_STATUS: Final = (0, 9)


class Request:
    """One parsed access-log line, full fidelity, in memory only.

    Plain ``__slots__`` class rather than a dataclass: parsers create one per line and
    set only the attributes their format has, so construction must be cheap.
    ``ip`` is the normalized client address (port, brackets and XFF resolved), as text.
    ``time`` is the request time in UTC epoch seconds.
    """

    __slots__ = (
        "bytes_sent",
        "cookie",
        "duration_ms",
        "host",
        "ip",
        "language",
        "method",
        "protocol",
        "referrer",
        "status",
        "target",
        "time",
        "user",
        "user_agent",
    )

    def __init__(self) -> None:
        self.ip: str = ""
        self.time: int = 0
        self.method: str | None = None
        self.target: str | None = None
        self.protocol: str | None = None
        self.status: int | None = None
        self.bytes_sent: int | None = None
        self.duration_ms: float | None = None
        self.referrer: str | None = None
        self.user_agent: str | None = None
        self.host: str | None = None
        self.user: str | None = None
        self.language: str | None = None
        self.cookie: str | None = None

    def __repr__(self) -> str:  # never print the payload, even while debugging
        return f"<Request status={self.status} method={self.method!r}>"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one input line was not published. Never holds any part of the line."""

    stage: str
    reason: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    line: int | None = None
    length: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stage": self.stage, "reason": self.reason}
        if self.topic is not None:
            out["topic"] = self.topic
            out["partition"] = self.partition
            out["offset"] = self.offset
        if self.line is not None:
            out["line"] = self.line
        if self.length is not None:
            out["length"] = self.length
        return out


class RejectedLine(Exception):
    """Raised by a parser for a line it cannot turn into a :class:`Request`.

    The message is the reason code only: exceptions get logged, lines must not.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
