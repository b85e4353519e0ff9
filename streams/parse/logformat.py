"""Compile Apache ``LogFormat`` and nginx ``log_format`` strings into one line parser.

A format string becomes one anchored regex plus one generated function that turns the
match groups into a :class:`~streams.records.Request`. Both are built once at startup;
per line there is one ``match`` and straight-line attribute assignments.

Apache directives: ``%h %{c}h %a %{c}a %l %u %t %{sec|msec|usec|msec_frac|usec_frac}t
%{STRFTIME}t`` (``%Y %m %d %b %h %a %H %M %S %T %F %z %%``, with ``%z``), each of these
``%{...}t`` also with a ``begin:`` or ``end:`` prefix, ``%r %m %U %q %H
%s %>s %<s %b %B %O %I %S %D %T %{s|ms|us}T %v %V %p %{...}p %P %k %L %X %R %f %e %{X}i
%{X}C %{X}e %{X}n %{X}o %{X}x %{X}c %{X}^ti %{X}^to %%`` with ``<``/``>`` and
status-condition modifiers. Any other ``%`` is a :class:`FormatError`.
nginx variables: ``$remote_addr $realip_remote_addr $remote_user $time_local
$time_iso8601 $msec $request $request_method $request_uri $uri $args $server_protocol
$status $body_bytes_sent $bytes_sent $request_time $http_NAME $cookie_NAME $host
$server_name`` (anything else is matched and ignored).

A field not in this list is matched and thrown away: default deny starts at parsing.
Of several fields giving one value (``%T/%D``, ``%s %>s``, ``%b %O``) the most precise
or final one is read, whatever their order (see :data:`_VALUE_OF_ROLE`).

>>> p = compile_apache('%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i" %D')
>>> r = p.parse('203.0.113.9 - - [10/Oct/2000:13:55:36 -0700] "GET /a?b=1 HTTP/1.1" '
...             '200 2326 "-" "Mozilla/5.0 (X11)" 1520')
>>> (r.ip, r.time, r.method, r.target, r.status, r.bytes_sent, r.duration_ms)
('203.0.113.9', 971211336, 'GET', '/a?b=1', 200, 2326, 1.52)
>>> r.referrer is None, r.user_agent
(True, 'Mozilla/5.0 (X11)')
>>> compile_apache('%h %Z')
Traceback (most recent call last):
...
streams.parse.logformat.FormatError: unsupported directive '%Z' at column 3
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final, NoReturn

from streams.parse.ip import ClientResolver, canonical_ip_or_raise
from streams.parse.timefmt import (
    clf_time,
    epoch_micros,
    epoch_millis,
    epoch_time,
    iso_time,
    strftime_parser,
    strftime_regex,
)
from streams.records import (
    MAX_BYTES,
    MAX_DURATION_MS,
    MAX_STATUS,
    MIN_STATUS,
    NO_STATUS,
    PARSE_BAD_IP,
    PARSE_BAD_NUMBER,
    PARSE_NO_MATCH,
    RejectedLine,
    Request,
)


class FormatError(ValueError):
    """A format string logfog cannot compile; the message names the directive and column."""


# Unrolled "escaped string" loop: about 5x faster than (?:[^"\\]|\\.)* in CPython's re.
QUOTED = r'([^"\\]*(?:\\.[^"\\]*)*)'
TOKEN = r"(\S+)"
# Numbers are [0-9]: \d matches any Unicode digit ("２００"), and int() reads them.
_SPECIFIC = {
    "status": r"([0-9]{3}|-)",
    "bytes": r"([0-9]+|-)",
    "time_clf_bracketed": r"\[([^\]]+)\]",
    # The zone is optional here: without one the line is parse.bad_time (clf_time).
    "time_clf": r"([0-9]{1,2}/\w{3}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2}(?: [+-][0-9]{4})?)",
    "duration_us": r"([0-9]+|-)",
    # %U%q are written back to back: the path stops at '?', the query keeps it.
    "path": r"([^\s?\"]+)",
    "query": r"(\?[^\s\"]*|)",
    "duration_ms": r"([0-9]+(?:\.[0-9]*)?|-)",
    "duration_s": r"([0-9]+(?:\.[0-9]*)?|-)",
    # Unquoted, an X-Forwarded-For chain of several hops holds ", ": as one word, its
    # last hop was read as the next field and the line did not match (every line that
    # came through two proxies). Only ", " (or ",") continues it: a client's value with
    # a bare space still ends it, as any unquoted header (see _user_pattern).
    "forwarded_for": r"([^\s,]+(?:, *[^\s,]+)*,?)",
}

# Roles a captured field can play; "skip" means matched and discarded.
ROLES = frozenset(
    {
        "client", "peer", "forwarded_for", "user", "time_clf", "time_clf_bracketed",
        "time_iso", "time_sec", "time_msec", "time_usec", "time_strftime", "request_line", "method",
        "target", "path", "query", "protocol", "status", "bytes", "duration_us", "duration_ms",
        "duration_s", "referrer", "user_agent", "language", "cookie", "host", "skip",
    }
)  # fmt: skip

_HEADER_ROLES = {
    "referer": "referrer",
    "referrer": "referrer",
    "user-agent": "user_agent",
    "accept-language": "language",
    "x-forwarded-for": "forwarded_for",
    "cookie": "cookie",
    "host": "host",
}


@dataclass(frozen=True, slots=True)
class Field:
    role: str
    quoted: bool
    column: int
    #: The field's own regex (one group), when its role's is not enough.
    pattern: str | None = None
    #: time_strftime: the datetime.strptime format of the field's text.
    strptime: str | None = None
    #: The fast path's regex, when it differs from ``pattern`` (see :func:`_fast_regex`).
    fast_pattern: str | None = None
    #: A ``%{end:...}t`` time (when the log entry was written), not the request's start.
    end: bool = False
    #: The server may write a space in this field (text a client sends: a header, a
    #: cookie, a decoded path): unquoted, the line then has more words than the format
    #: and the words after it shift (see :func:`_user_pattern`). False for addresses,
    #: ports, numbers, times and names from the server's config.
    spaces: bool = True
    #: Apache's ``%l`` (identd): "-" unless ``IdentityCheck On``.
    ident: bool = False
    #: Among fields that give the same value (:data:`_VALUE_OF_ROLE`), the one of the
    #: highest rank is read, the first of them on a tie (see :func:`_read_fields`).
    rank: int = 0


# Apache directives written without a space: addresses, the server's name and ports,
# process/connection ids, numbers, times.
_APACHE_WORDS = frozenset("haAvpPkLXsbBOISDTt")


def _apache_field(
    directive: str, argument: str | None, column: int, quoted: bool, modifiers: str = ""
) -> Field:
    if directive == "t" and argument is not None:
        field = _apache_time(argument, column, quoted)
    else:
        field = Field(_apache_role(directive, argument, column), quoted, column)
    rank = _rank(field.role)
    if field.role == "status":
        # %>s is the final status of an internally redirected request; %s and %<s the
        # original one (mod_log_config: the last "<" or ">" decides, "<" by default).
        rank = int(modifiers.rfind(">") > modifiers.rfind("<"))
    elif field.role == "bytes":
        rank = int(directive in "bB")  # the body over %O's headers and body
    return replace(field, spaces=directive not in _APACHE_WORDS, ident=directive == "l", rank=rank)


# Directives that give one value, and which of them is read (an audit: the first one
# in the format won, so "%T/%D" published whole seconds where %D said 2.5 ms, "%s %>s"
# the status before an internal redirect, and "%b %O" and "%O %b" two byte counts):
#
# * a duration: the most precise, %D or %{us}T, then %{ms}T, then %T or %{s}T;
# * the status: Apache's %>s, the final status, over %s and %<s (the original one);
# * the byte count: the response body, %b, %B or $body_bytes_sent (what the named
#   formats other than vhost_combined log), over %O or $bytes_sent (headers included).
#
# Among equals, the first in the format. The choice is made at startup: a line reads
# one field per value, the others are matched and thrown away.
_VALUE_OF_ROLE: dict[str, str] = {
    "duration_us": "duration",
    "duration_ms": "duration",
    "duration_s": "duration",
}
_DURATION_RANK = {"duration_us": 2, "duration_ms": 1, "duration_s": 0}


def _rank(role: str) -> int:
    return _DURATION_RANK.get(role, 0)


def _read_fields(fields: Sequence[Field]) -> dict[int, Field]:
    """The fields a builder reads, by position: for each value the field of the highest
    :attr:`Field.rank`, the first of them on a tie.

    >>> fields = compile_apache("%h %t %s %T/%D %b %>s %O %>s").fields
    >>> [(f.role, f.column) for f in _read_fields(fields).values()]
    [('client', 0), ('time_clf_bracketed', 3), ('duration_us', 12), ('bytes', 15), ('status', 18)]
    """
    best: dict[str, int] = {}
    for n, field in enumerate(fields):
        if field.role == "skip":
            continue
        value = _VALUE_OF_ROLE.get(field.role, field.role)
        chosen = best.get(value)
        if chosen is None or field.rank > fields[chosen].rank:
            best[value] = n
    return {n: fields[n] for n in sorted(best.values())}


def _apache_time(argument: str, column: int, quoted: bool) -> Field:
    """``%{FORMAT}t``: ``sec``, ``msec``, ``usec``, ``msec_frac``, ``usec_frac`` or a
    strftime format, each optionally prefixed ``begin:`` (request start, the default)
    or ``end:`` (when the log entry was written); either is taken as the request time."""
    form = argument.split(":", 1)[1] if argument.startswith(("begin:", "end:")) else argument
    epoch = {"sec": "time_sec", "msec": "time_msec", "usec": "time_usec"}
    if form.lower() in epoch:
        return Field(epoch[form.lower()], quoted, column)
    if form.lower() in ("msec_frac", "usec_frac"):  # sub-second digits; times are seconds
        digits = 3 if form.lower() == "msec_frac" else 6
        return Field("skip", quoted, column, rf"([0-9]{{{digits}}})")
    if "%" in form:
        try:
            regex, strptime = strftime_regex(form)
        except ValueError as error:
            raise FormatError(f"%{{{argument}}}t at column {column}: {error}") from None
        return Field("time_strftime", quoted, column, regex, strptime, end=argument[:4] == "end:")
    _unsupported(f"%{{{argument}}}t", column)


def _apache_role(directive: str, argument: str | None, column: int) -> str:
    arg = (argument or "").lower()
    # %{c}a and %{c}h: the TCP peer (a proxy or load balancer), not the client
    # mod_remoteip resolved; the first client field wins, so %{c}h %a took the peer.
    peer_or_client = "peer" if arg == "c" else "client"
    simple = {
        "h": peer_or_client, "a": peer_or_client, "l": "skip", "u": "user",
        "r": "request_line", "m": "method", "U": "path", "q": "query", "H": "protocol",
        "s": "status", "b": "bytes", "B": "bytes", "O": "bytes", "I": "skip", "S": "skip",
        "D": "duration_us", "v": "host", "V": "host", "p": "skip", "P": "skip", "k": "skip",
        "L": "skip", "X": "skip", "R": "skip", "f": "skip", "e": "skip", "n": "skip",
        "o": "skip", "A": "skip",
    }  # fmt: skip
    if directive == "t":
        return "time_clf_bracketed"
    if directive == "T":
        units = {"": "duration_s", "s": "duration_s", "ms": "duration_ms", "us": "duration_us"}
        return units[arg] if arg in units else _unsupported(f"%{{{argument}}}T", column)
    if directive == "i":
        return _HEADER_ROLES.get(arg, "skip")
    if directive == "C":
        return "cookie"
    if directive in ("x", "c", "^ti", "^to") and argument is not None:
        # mod_ssl's %{VAR}x and %{...}c (the stock ssl.conf's ssl_request_log uses
        # %{SSL_PROTOCOL}x %{SSL_CIPHER}x): TLS details; %{VAR}^ti / %{VAR}^to
        # (httpd 2.4.24+): a request or response trailer. Matched and thrown away.
        return "skip"
    if directive in simple:
        return simple[directive]
    return _unsupported("%" + directive, column)


def _unsupported(what: str, column: int) -> NoReturn:
    raise FormatError(f"unsupported directive {what!r} at column {column}")


_APACHE_TOKEN = re.compile(
    r"%([<>]|!?[0-9]{3}(?:,[0-9]{3})*)*(?:\{([^}]*)\})?([<>]?)(\^t[io]|[a-zA-Z%])"
)
# What a "%" no directive starts is reported as (up to the next space or quote).
_STRAY = re.compile(r'%(?:[^\s"{%]*\{[^}]*\}?)?[^\s"%]{0,8}')
_NGINX_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def compile_apache(
    log_format: str, trusted_proxies: Iterable[str] = (), name: str = "logformat"
) -> LineParser:
    """Compile an Apache ``LogFormat`` string, Apache's escapes in its literal text
    included (``\\t \\n \\r \\\\``), and ``\\"`` read as a quote (as httpd.conf
    writes one), so a format can be copied from a ``LogFormat`` line as it is."""
    directives: list[re.Match[str]] = []
    texts = [""]  # the literal text before each directive, and after the last one
    pos = 0
    for m in _APACHE_TOKEN.finditer(log_format):
        texts[-1] += _apache_text(log_format, pos, m.start())
        pos = m.end()
        if m.group(4) == "%":
            texts[-1] += "%"
        else:
            directives.append(m)
            texts.append("")
    texts[-1] += _apache_text(log_format, pos, len(log_format))
    parts: list[str | Field] = []
    for k, m in enumerate(directives):
        if texts[k]:
            parts.append(texts[k])
        quoted = texts[k].endswith('"') and texts[k + 1].startswith('"')
        # The "<", ">" and status conditions written before and after the braces.
        modifiers = m.group(0)[1 : m.start(4) - m.start()]
        if m.group(2) is not None:
            modifiers = modifiers.replace("{" + m.group(2) + "}", "", 1)
        parts.append(_apache_field(m.group(4), m.group(2), m.start(), quoted, modifiers))
    if texts[-1]:
        parts.append(texts[-1])
    return LineParser(name, parts, ClientResolver(trusted_proxies))


def _apache_text(log_format: str, start: int, end: int) -> str:
    """The literal text between two directives, unescaped as Apache does.

    A "%" in it starts no directive logfog knows (``%5``, ``%{X}^tx``, ``%-``): Apache
    refuses such a format, and taken as text it made every line parse.no_match while
    check-config passed (only one after the last directive was reported; an audit).

    mod_log_config writes ``\\t \\n \\r \\\\`` as a tab, newline, carriage return
    and backslash, and keeps any other backslash; httpd's config parser has already
    turned the ``\\"`` of ``LogFormat "%h \\"%r\\""`` into a quote. Taken as they
    were, a tab-separated format or one copied from httpd.conf with its ``\\"`` made
    every line parse.no_match (an audit).
    """
    stray = log_format.find("%", start, end)
    if stray >= 0:
        what = _STRAY.match(log_format, stray, end)
        _unsupported(what.group() if what else "%", stray)
    text = log_format[start:end]
    return _APACHE_ESCAPE.sub(_apache_escape, text) if "\\" in text else text


_APACHE_ESCAPE = re.compile(r'\\([\\tnr"])')
_APACHE_ESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", '"': '"'}


def _apache_escape(m: re.Match[str]) -> str:
    return _APACHE_ESCAPES[m.group(1)]


_NGINX_ROLES: Final = {
    "remote_addr": "client", "realip_remote_addr": "peer", "binary_remote_addr": "skip",
    "remote_user": "user", "time_local": "time_clf", "time_iso8601": "time_iso",
    "msec": "time_sec", "request": "request_line", "request_method": "method",
    "request_uri": "target", "uri": "path", "args": "query", "query_string": "query",
    "server_protocol": "protocol", "status": "status", "body_bytes_sent": "bytes",
    "bytes_sent": "bytes", "request_time": "duration_s", "host": "host",
    "server_name": "host",
}  # fmt: skip
#: The nginx variables logfog stores (``$http_<header>`` of the headers it reads too).
NGINX_STORED: Final = frozenset(
    [*(v for v, role in _NGINX_ROLES.items() if role != "skip"),
     *(f"http_{header.replace('-', '_')}" for header in _HEADER_ROLES)]
)  # fmt: skip


def nginx_unstored(log_format: str) -> list[str]:
    """The variables of an nginx ``log_format`` that are matched but not stored, each
    once: those logfog has no use for, and those it does not know (nginx has hundreds),
    a misspelled one among them.

    >>> nginx_unstored('$remote_addr [$time_local] "$request" $staus $pid $staus $cookie_a')
    ['staus', 'pid']
    """
    names = (m.group(1) or m.group(2) for m in _NGINX_VAR.finditer(log_format))
    return list(dict.fromkeys(name for name in names if _nginx_role(name) == "skip"))


def _nginx_role(variable: str) -> str:
    if variable in _NGINX_ROLES:
        return _NGINX_ROLES[variable]
    if variable.startswith("http_"):
        return _HEADER_ROLES.get(variable[5:].replace("_", "-"), "skip")
    if variable.startswith("cookie_"):
        return "cookie"
    return "skip"


# nginx writes an unset variable as "-", but many are set and empty ($https,
# $request_completion, $http2, $is_args); with several upstreams tried, $upstream_*
# are lists: "10.0.0.1:80, 10.0.0.2:80 : 10.0.0.3:80" (" : " after an internal
# redirect). Skipped fields are matched as such (they made the line parse.no_match).
_NGINX_ANY = r"(\S*)"
_NGINX_LIST = r"([^\s,]*(?:(?:, | : )[^\s,]*)*)"
# $args and $query_string are the query without its "?" (Apache's %q starts with one):
# with %q's regex every request with a query string was parse.no_match (an audit).
_NGINX_QUERY = r'([^\s"]*)'


# nginx variables written without a space (as _APACHE_WORDS).
_NGINX_WORDS = frozenset(
    {
        "remote_addr", "realip_remote_addr", "server_addr", "remote_port", "server_port",
        "realip_remote_port", "server_name", "hostname", "pid", "connection",
        "connection_requests", "msec", "time_local", "time_iso8601", "status",
        "body_bytes_sent", "bytes_sent", "request_length", "request_time",
    }
)  # fmt: skip


def compile_nginx(
    log_format: str, trusted_proxies: Iterable[str] = (), name: str = "nginx"
) -> LineParser:
    """Compile an nginx ``log_format`` string (``escape=default``)."""
    parts: list[str | Field] = []
    pos = 0
    for m in _NGINX_VAR.finditer(log_format):
        if m.start() > pos:
            parts.append(log_format[pos : m.start()])
        variable = m.group(1) or m.group(2)
        role = _nginx_role(variable)
        quoted = _is_quoted(log_format, m.start(), m.end())
        pattern = None
        if role == "skip" and not quoted:
            pattern = _NGINX_LIST if variable.startswith("upstream_") else _NGINX_ANY
        elif role == "query" and not quoted:
            pattern = _NGINX_QUERY
        spaces = variable not in _NGINX_WORDS
        # $body_bytes_sent over $bytes_sent, as %b over %O (see _VALUE_OF_ROLE); $host
        # over $server_name, which is "_" for a catch-all "server_name _;" (a review).
        rank = 1 if variable in ("body_bytes_sent", "host") else _rank(role)
        parts.append(Field(role, quoted, m.start(), pattern, spaces=spaces, rank=rank))
        pos = m.end()
    if pos < len(log_format):
        parts.append(log_format[pos:])
    return LineParser(name, parts, ClientResolver(trusted_proxies))


def _is_quoted(text: str, start: int, end: int) -> bool:
    return start > 0 and text[start - 1] == '"' and end < len(text) and text[end] == '"'


def unescape(value: str) -> str:
    r"""Undo Apache/nginx escaping: ``\"``, ``\\``, Apache's ``\b \n \r \t \v``, and
    ``\xHH``. Both servers write every byte >= 0x7f as ``\xHH``, so a non-ASCII
    character is a run of escapes: a run is decoded as UTF-8 (invalid bytes become
    U+FFFD). Byte by byte, "é" became "Ã©" and a fullwidth "＠" became "ï¼\xa0", which
    the leak detectors do not read as "@" (an audit).

    >>> unescape(r'a \"quoted\" \x22b\x22 c\\d')
    'a "quoted" "b" c\\d'
    >>> unescape(r"/caf\xc3\xa9 jane\xef\xbc\xa0mail")
    '/café jane＠mail'
    >>> unescape(r"\xff") == "\N{REPLACEMENT CHARACTER}"
    True
    >>> unescape(r"a\rb\tc")
    'a\rb\tc'
    """
    if "\\" not in value:
        return value
    return _ESCAPE.sub(_unescape_one, value)


# A run of \xHH escapes (one character's UTF-8 bytes), or one other escape. The leading
# literal backslash lets re skip to the next one (a pattern starting with an
# alternation or group made unescaping 3x slower).
_ESCAPE = re.compile(r"\\(?:(x[0-9a-fA-F]{2}(?:\\x[0-9a-fA-F]{2})*)|(.))")
# What ap_escape_logitem writes for control characters it does not write as \xHH.
_CONTROL = {"b": "\b", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _unescape_one(m: re.Match[str]) -> str:
    hex_run, s = m.groups()
    if hex_run is not None:
        return bytes.fromhex(hex_run[1:].replace("\\x", "")).decode("utf-8", "replace")
    return _CONTROL.get(s, s)


def split_request_line(line: str) -> tuple[str | None, str | None, str | None]:
    """``GET /x HTTP/1.1`` -> parts; anything that is not a request line -> Nones.

    The method runs to the first space and the protocol from the last one: nginx
    serves a target with a space in it (``space_in_uri``) and logs the line as it came
    (split on every space, such lines lost all three parts; an audit).

    >>> split_request_line("GET /x HTTP/1.1")
    ('GET', '/x', 'HTTP/1.1')
    >>> split_request_line("GET /a b HTTP/1.1")
    ('GET', '/a b', 'HTTP/1.1')
    >>> split_request_line("GET /old")
    ('GET', '/old', None)
    >>> split_request_line("-")
    (None, None, None)
    >>> split_request_line("\\x16\\x03\\x01\\x00")
    (None, None, None)
    """
    method, space, rest = line.partition(" ")
    if not space:
        return None, None, None
    target, space, protocol = rest.rpartition(" ")
    if space and protocol.startswith("HTTP/"):
        if method in METHODS:
            return method, target, protocol
        if _METHOD.fullmatch(method):
            return OTHER_METHOD, target, protocol
    elif not space and _METHOD.fullmatch(method):  # HTTP/0.9: no protocol
        return METHODS.get(method, OTHER_METHOD), rest, None
    return None, None, None


def method_name(value: str | None) -> str | None:
    """A registered HTTP method as it is, any other token as ``"OTHER"``: the method is
    text the client chooses ("JOHNDOE / HTTP/1.1" is a valid request line), and a
    ``keep`` rule must not publish free text (found by an audit).

    >>> method_name("PROPFIND"), method_name("JOHNDOE"), method_name(None), method_name("-")
    ('PROPFIND', 'OTHER', None, None)
    """
    if not value or value == "-":
        return None
    return METHODS.get(value, OTHER_METHOD)


_METHOD = re.compile(r"[A-Z][A-Z_-]{0,19}")
OTHER_METHOD = "OTHER"
#: The IANA HTTP Method Registry, plus PURGE (caches). Each maps to itself.
METHODS: dict[str, str] = {m: m for m in [
    "ACL", "BASELINE-CONTROL", "BIND", "CHECKIN", "CHECKOUT", "CONNECT", "COPY", "DELETE",
    "GET", "HEAD", "LABEL", "LINK", "LOCK", "MERGE", "MKACTIVITY", "MKCALENDAR", "MKCOL",
    "MKREDIRECTREF", "MKWORKSPACE", "MOVE", "OPTIONS", "ORDERPATCH", "PATCH", "POST", "PRI",
    "PROPFIND", "PROPPATCH", "PURGE", "PUT", "QUERY", "REBIND", "REPORT", "SEARCH", "TRACE",
    "UNBIND", "UNCHECKOUT", "UNLINK", "UNLOCK", "UPDATE", "UPDATEREDIRECTREF",
    "VERSION-CONTROL",
]}  # fmt: skip


class LineParser:
    """One compiled format: ``parse(text) -> Request`` or :class:`RejectedLine`."""

    def __init__(self, name: str, parts: list[str | Field], resolver: ClientResolver) -> None:
        self.name = name
        parts = _in_context(parts)
        fields = [p for p in parts if isinstance(p, Field)]
        roles = [f.role for f in fields]
        if not {"client", "peer", "forwarded_for"} & set(roles):
            raise FormatError(
                f"{name}: the format has no client address (%h, %a, $remote_addr or "
                "X-Forwarded-For)"
            )
        if not any(r.startswith("time") for r in roles):
            raise FormatError(f"{name}: the format has no request time (%t, $time_local, ...)")
        strftime = _strftime_fields(fields)
        strftime_time = None
        if strftime:
            try:
                strftime_time = strftime_parser(" ".join(f.strptime or "" for f in strftime))
            except ValueError as error:
                raise FormatError(
                    f"{name}: %{{...}}t at column {strftime[0].column}: {error}"
                ) from None
        self.regex = re.compile(_assemble(parts, _field_regex) + r"\s*\Z")
        self.fields = tuple(fields)
        self.build = _generate_builder(self.fields, resolver, strftime_time)
        #: The fast path, for lines without a backslash (see :func:`first_match`).
        self.fast_regex = re.compile(_assemble(parts, _fast_regex) + r"\s*\Z")
        self.fast_build = _generate_builder(self.fields, resolver, strftime_time, fast=True)
        #: ``parse(text) -> Request``, or :class:`RejectedLine` with a reason code.
        self.parse = first_match((self,))


def _strftime_fields(fields: Sequence[Field]) -> list[Field]:
    """The %{...}t fields that spell the request time: those of the first one's instant.

    One time may be split over several fields (Apache's own example:
    ``[%{%d/%b/%Y %T}t.%{msec_frac}t %{%z}t]``); they are read together. A format may
    also log when the request began and when it ended (``begin:``, ``end:``): joined,
    every conversion appeared twice and each line failed (an audit). The first
    instant is the request time, as with other time fields.
    """
    strftime = [f for f in fields if f.role == "time_strftime"]
    return [f for f in strftime if f.end == strftime[0].end]


def first_match(parsers: Sequence[LineParser]) -> Callable[[str], Request]:
    """One parse function over formats tried in order (the first that matches wins;
    the most specific rejection reason seen is kept).

    Most lines hold no backslash, hence no escaped quote: then a quoted field is
    simply ``[^"]*``, which CPython's ``re`` scans twice as fast as the escape-aware
    ``[^"\\]*(?:\\.[^"\\]*)*`` (they match the same strings when there is no
    backslash), nothing needs unescaping, and an HTTP request line is split by the
    regex. Such lines try each format's fast regex first; a line it does not match
    (``"-"`` or junk as request line, a space in a target or user name), or whose
    fields it rejects, takes that format's exact path, so results never differ (tested
    on generated lines). Matches and builders are inlined: no Python frame per format.
    """
    steps = tuple((p.fast_regex.match, p.fast_build, p.regex.match, p.build) for p in parsers)

    def parse(text: str) -> Request:
        reason = PARSE_NO_MATCH
        simple = "\\" not in text
        for fast_match, fast_build, match, build in steps:
            if simple:
                m = fast_match(text)
                if m is not None:
                    try:
                        return fast_build(m.groups())
                    except RejectedLine as rejected:
                        # The exact path may split the line otherwise: after a user
                        # name "x [y" the fast regex reads "y [10/Oct/..." as the time.
                        reason = rejected.reason
            m = match(text)
            if m is None:
                continue
            try:
                return build(m.groups())
            except RejectedLine as rejected:  # a later format may still match
                reason = rejected.reason
        raise RejectedLine(reason)

    return parse


# %U and $uri write the decoded path, spaces included. Between quotes ("%m %U%q %H")
# a space cannot end it; the escape-aware form reads \" as part of it. The path stops at
# "?" only when %q follows (back to back, the query keeps its "?").
_QUOTED_PATH = {
    "?": (r'((?=[^?"])[^?"\\]*(?:\\.[^?"\\]*)*)', r'([^?"]+)'),
    "": (r'((?=[^"])[^"\\]*(?:\\.[^"\\]*)*)', r'([^"]+)'),
}


# %u and $remote_user are decoded from any request's Basic auth header, and a space is
# not escaped: with \S+ any client could make its lines parse.no_match (an audit). A user
# name runs up to the " [" that starts the time: for a CLF time (%t, [$time_local]) only
# a " [" followed by a CLF date, so a name holding " [" ("x [y]") parses too (it was
# parse.no_match or bad_time: a client could still opt out of every count; an audit).
# The group is atomic, so linear however long the line: the name is the longest one
# (or else one word, see _user_pattern).
# The fast regex keeps \S+ (this pattern cost 3% a line): a name with a space, or
# empty, fails it and takes the exact path, which reads the same name whenever \S+
# matches and the time is a CLF date.
_USER = r"[^ ]*(?: (?!{stop})[^ ]*)*"
_CLF_START = r"\[[0-9]{1,2}/\w{3}/[0-9]{4}:"


def _time_follows(parts: list[str | Field], k: int) -> str | None:
    """When ``parts[k:]`` begins with " [" (nginx's ``[$time_local]``) or with " " and
    Apache's bracketed ``%t``, a regex for what the time starts with (its bracket, and
    a CLF date's beginning when the time is one); otherwise None."""
    text = parts[k] if k < len(parts) else None
    following = parts[k + 1] if k + 1 < len(parts) else None
    role = following.role if isinstance(following, Field) else None
    if (text, role) in ((" ", "time_clf_bracketed"), (" [", "time_clf")):
        return _CLF_START
    return r"\[" if isinstance(text, str) and text.startswith(" [") else None


def _user_pattern(parts: list[str | Field], k: int) -> str | None:
    """The exact regex of the user name ``parts[k]`` when it may hold a space, or None.

    A name with spaces runs up to the time, so a line with one word too many before it
    still matched, the extra word shifting every field: a vhost_combined line whose
    %v is an address under ``[combined, common]`` published the vhost as the client,
    and an unquoted header before the address (``%{X-Forwarded-For}i %h %l %u``,
    ``$http_x_forwarded_for $remote_addr - $remote_user``) let the client choose the
    published address (an audit). So a name may hold a space only when no unquoted
    field before it may hold one (:attr:`Field.spaces`), and, right after Apache's
    ``%l``, only when that is "-" (identd is off: an address there is a shifted line).
    """
    stop = _time_follows(parts, k + 1)
    if stop is None:
        return None
    before = parts[:k]
    after_ident = (
        len(before) >= 2 and before[-1] == " " and isinstance(before[-2], Field)
        and before[-2].ident
    )  # fmt: skip
    if after_ident:
        before = before[:-2]
    if any(isinstance(p, Field) and p.spaces and not p.quoted for p in before):
        return None
    name = _USER.format(stop=stop)
    if after_ident:  # "-" is the whole %l: a space or the line's start before it
        name = r"(?<=(?<!\S)- )" + name
    # Else one word, as the fast regex reads it: a time that is not a CLF date is then
    # parse.bad_time on both paths, not parse.no_match on this one.
    return rf"((?>{name})|\S+)"


def _in_context(parts: list[str | Field]) -> list[str | Field]:
    """The fields whose regex depends on the format text around them."""
    out: list[str | Field] = []
    quotes = 0  # literal quotes so far: odd inside a quoted string
    for k, part in enumerate(parts):
        if isinstance(part, str):
            quotes += part.count('"')
        elif part.role == "path" and not part.quoted and part.pattern is None:
            following = parts[k + 1] if k + 1 < len(parts) else ""
            stop = "?" if isinstance(following, Field) and following.role == "query" else ""
            if quotes % 2:
                exact, fast = _QUOTED_PATH[stop]
                part = replace(part, pattern=exact, fast_pattern=fast)
            elif not stop:
                part = replace(part, pattern=r'([^\s"]+)')
        elif part.role == "user" and not part.quoted:
            pattern = _user_pattern(parts, k)
            if pattern is not None:
                part = replace(part, pattern=pattern, fast_pattern=TOKEN)
        out.append(part)
    return out


# Field regexes that never match whitespace (see _assemble).
_NO_SPACE = frozenset(
    {TOKEN, r"(\S*)", r'([^\s"]+)', _NGINX_QUERY, r"([0-9]{3})", r"([0-9]{6})"}
    | {_SPECIFIC[r] for r in ("status", "bytes", "duration_us", "duration_ms", "duration_s")}
    | {_SPECIFIC["path"], _SPECIFIC["query"]}
)


def _matches_no_space(field: Field) -> bool:
    if field.quoted:
        return False
    if field.role == "time_strftime":
        return not any(c.isspace() for c in field.strptime or " ")
    return (field.pattern or _SPECIFIC.get(field.role, TOKEN)) in _NO_SPACE


def _assemble(parts: list[str | Field], regex: Callable[[Field], str]) -> str:
    r"""The format's regex, fields by ``regex``.

    Two or more fields that match no whitespace, joined by literal text without
    whitespace (a "word", as vhost_combined's ``%v:%p``), are one atomic group ending at
    whitespace or the line's end. Backtracking would try every split of the word
    against the rest of the line: ``(\S+):(?:\S+) `` took 9.5 s to reject 64 KB of
    colons, and ~1 s for a compact JSON line (an audit). The result is the same: every
    split of a word ends at the same place, so the rest of the line cannot match after
    one split and not after another, and the first split is the one greedy matching
    returns.
    """
    out: list[str] = []
    word: list[str] = []
    fields = 0

    def close(atomic: bool) -> None:
        nonlocal fields
        if atomic and fields > 1:
            out.append("(?>" + "".join(word) + r"(?=\s|\Z))")
        else:
            out.extend(word)
        word.clear()
        fields = 0

    for part in parts:
        if isinstance(part, Field):
            if _matches_no_space(part):
                word.append(regex(part))
                fields += 1
            else:
                close(False)
                out.append(regex(part))
            continue
        spaces = [i for i, c in enumerate(part) if c.isspace()]
        if not spaces:
            word.append(re.escape(part))
            continue
        word.append(re.escape(part[: spaces[0]]))
        close(True)
        out.append(re.escape(part[spaces[0] : spaces[-1] + 1]))
        word.append(re.escape(part[spaces[-1] + 1 :]))
    close(True)
    return "".join(out)


# Numbers keep their own regex between quotes ("$status" "$request_time" in JSON-like
# nginx formats): as any quoted text, "x" reached int() and raised ValueError, a
# parse.error instead of a reason code, and later formats were never tried (an audit).
_NUMBERS = frozenset({"status", "bytes", "duration_us", "duration_ms", "duration_s"})
# Likewise Apache's %t between quotes ("%t"): as quoted text it kept its brackets, and
# every line was parse.bad_time while check-config accepted the format (an audit).
_OWN_REGEX = _NUMBERS | {"time_clf_bracketed"}


def _field_regex(field: Field) -> str:
    if field.quoted and field.role not in _OWN_REGEX:
        pattern = QUOTED
    else:
        pattern = field.pattern or _SPECIFIC.get(field.role, TOKEN)
    if field.role == "skip":  # matched, never captured: no string is made for it
        return "(?:" + pattern[1:]
    return pattern


# An HTTP request line as split_request_line splits it: exactly two single spaces,
# a method, a protocol starting "HTTP/". Anything else fails the fast regex.
_FAST_REQUEST_LINE = r"([A-Z][A-Z_-]{0,19}) ([^ \"]*) (HTTP/[^ \"]*)"


def _fast_regex(field: Field) -> str:
    """The field's regex for a line without backslashes (see first_match)."""
    if field.quoted and field.role == "request_line":
        return _FAST_REQUEST_LINE
    if field.fast_pattern is not None:
        return field.fast_pattern
    if field.quoted and field.role not in _OWN_REGEX:
        return r'(?:[^"]*)' if field.role == "skip" else r'([^"]*)'
    return _field_regex(field)


_NULLABLE = "None if {v} == '-' or not {v} else {u}"
_BAD = "raise RejectedLine(PARSE_BAD_NUMBER)"


def _generate_builder(
    fields: tuple[Field, ...],
    resolver: ClientResolver,
    strftime_time: Callable[[str], int] | None = None,
    *,
    fast: bool = False,
) -> Callable[[tuple[str, ...]], Request]:
    """Generate straight-line code for this format: no per-field dispatch per line.

    ``fast``: the builder for :func:`_fast_regex` groups (nothing to unescape; a
    quoted request line is three groups).
    """
    # The object is made without __init__: the builder sets every slot exactly once
    # (the format's fields from the match, the others to None below).
    lines = ["def build(g):", "    r = new(Request)"]
    groups: dict[int, int] = {}  # field number -> its first match group (skip: none)
    position = 0
    for n, f in enumerate(fields):
        if f.role != "skip":
            groups[n] = position
            position += 3 if fast and f.quoted and f.role == "request_line" else 1
    # One field a value (_read_fields); the others' groups are not read. In reverse, so
    # that of roles setting one attribute (%r and %m) the first one's line comes last.
    read = _read_fields(fields)
    first = {f.role: f for f in read.values()}
    index = {f.role: groups[n] for n, f in reversed(read.items())}
    client = index.get("client", index.get("peer"))
    xff = index.get("forwarded_for")
    xff_expr = f"g[{xff}]" if xff is not None and resolver.uses_forwarded_for else "None"
    if client is None:
        # X-Forwarded-For in place of the peer (behind a load balancer: Apache's
        # "%{X-Forwarded-For}i %l %u %t ..."): its last hop is the peer its proxy saw.
        lines += [
            f"    ip = resolve_forwarded(g[{xff}])",
            "    if ip is None: raise RejectedLine(PARSE_BAD_IP)",
        ]
    elif resolver.uses_forwarded_for:
        lines += [
            f"    ip = resolve(g[{client}], {xff_expr})",
            "    if ip is None: raise RejectedLine(PARSE_BAD_IP)",
        ]
    else:
        # Without trusted proxies the client is the peer: the cached canonicalizer
        # directly, one Python frame less per line.
        lines += [
            f"    try: ip = canonical_ip_or_raise(g[{client}])",
            "    except ValueError: raise RejectedLine(PARSE_BAD_IP) from None",
        ]
    lines.append("    r.ip = ip")
    for role, i in index.items():
        v = f"g[{i}]"
        # Apache and nginx escape every text field they write, quoted or not (%U in
        # "%m %U%q %H" too); a line without a backslash (the fast path) has no escape.
        text = v if fast else f"unescape({v})"
        if role == "time_clf_bracketed" or role == "time_clf":
            lines.append(f"    r.time = clf_time({v})")
        elif role == "time_strftime":
            time_fields = _strftime_fields(fields)
            parts = [f"g[{groups[n]}]" for n, f in enumerate(fields) if f in time_fields]
            joined = " + ' ' + ".join(parts)
            lines.append(f"    r.time = strftime_time({joined})")
        elif role in ("time_iso", "time_sec", "time_msec", "time_usec"):
            fn = {"time_iso": "iso_time", "time_sec": "epoch_time", "time_msec": "epoch_millis",
                  "time_usec": "epoch_micros"}[role]  # fmt: skip
            lines.append(f"    r.time = {fn}({v})")
        elif role == "request_line" and fast and first[role].quoted:
            lines.append(f"    r.method = methods.get(g[{i}], OTHER_METHOD)")
            lines.append(f"    r.target, r.protocol = g[{i + 1}], g[{i + 2}]")
        elif role == "request_line":
            lines.append(f"    r.method, r.target, r.protocol = split_request_line({text})")
        elif role == "method":
            lines.append(f"    r.method = method_name({text})")
        elif role == "protocol":
            lines.append(f"    r.{role} = " + _NULLABLE.format(v=v, u=text))
        elif role == "path":
            q = index.get("query")
            query = ""
            if q is not None:
                lines.append(f"    q = g[{q}]" if fast else f"    q = unescape(g[{q}])")
                query = " + ('' if q in ('', '-') else q if q[0] == '?' else '?' + q)"
            lines.append("    r.target = " + _NULLABLE.format(v=v, u=text + query))
        # Numbers are bounded (parse.bad_number): an integer orjson cannot serialize
        # would fail every rule of the line later, as a rules.error.
        elif role == "status":
            lines.append(f"    r.status = s = None if {v} == '-' else int({v})")
            lines.append(f"    if s is not None and not {MIN_STATUS} <= s <= {MAX_STATUS}:")
            lines.append(f"        if s not in {NO_STATUS!r}: {_BAD}")
            lines.append("        r.status = None")
        elif role == "bytes":
            lines.append(f"    r.bytes_sent = n = 0 if {v} == '-' else int({v})")
            lines.append(f"    if not 0 <= n <= {MAX_BYTES}: {_BAD}")
        elif role in ("duration_us", "duration_ms", "duration_s"):
            # float(): a huge number becomes inf (rejected below), not an OverflowError.
            scale = {"duration_us": " / 1000", "duration_ms": "", "duration_s": " * 1000"}[role]
            lines.append(f"    r.duration_ms = d = None if {v} == '-' else float({v}){scale}")
            lines.append(f"    if d is not None and not 0 <= d <= {MAX_DURATION_MS!r}: {_BAD}")
        elif role == "target" and "path" not in index:
            lines.append("    r.target = " + _NULLABLE.format(v=v, u=text))
        elif role in ("referrer", "user_agent", "language", "cookie", "host", "user"):
            attr = role
            lines.append(f"    r.{attr} = " + _NULLABLE.format(v=v, u=text))
    assigned = {
        attr
        for line in lines
        if " = " in line
        for attr in re.findall(r"\br\.(\w+)", line.split(" = ", 1)[0])
    }
    lines += [f"    r.{attr} = None" for attr in Request.__slots__ if attr not in assigned]
    lines.append("    return r")
    namespace: dict[str, object] = {
        "new": object.__new__,
        "Request": Request, "RejectedLine": RejectedLine, "PARSE_BAD_IP": PARSE_BAD_IP,
        "PARSE_BAD_NUMBER": PARSE_BAD_NUMBER,
        "resolve": resolver.resolve, "resolve_forwarded": resolver.resolve_forwarded,
        "canonical_ip_or_raise": canonical_ip_or_raise,
        "clf_time": clf_time,
        "iso_time": iso_time, "epoch_time": epoch_time, "epoch_millis": epoch_millis,
        "epoch_micros": epoch_micros,
        "split_request_line": split_request_line, "unescape": unescape,
        "methods": METHODS, "OTHER_METHOD": OTHER_METHOD, "method_name": method_name,
    }  # fmt: skip
    if strftime_time is not None:
        namespace["strftime_time"] = strftime_time
    exec(compile("\n".join(lines), "<logformat>", "exec"), namespace)
    return namespace["build"]  # type: ignore[return-value]
