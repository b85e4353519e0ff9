"""The LogFormat / log_format compiler and the named formats built on it."""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable

import orjson
import pytest

from streams.parse import build_parser, compile_one
from streams.parse.logformat import FormatError, compile_apache, compile_nginx, unescape
from streams.pipeline import Pipeline
from streams.records import RejectedLine

T = "[10/Oct/2000:13:55:36 -0700]"
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


def test_common() -> None:
    r = build_parser("common")(f'203.0.113.9 - frank {T} "GET /a.gif HTTP/1.0" 200 2326')
    assert (r.ip, r.user, r.method, r.target, r.protocol, r.status, r.bytes_sent) == (
        "203.0.113.9", "frank", "GET", "/a.gif", "HTTP/1.0", 200, 2326,
    )  # fmt: skip
    assert r.time == 971211336


def test_combined_with_missing_values() -> None:
    r = build_parser("combined")(f'203.0.113.9 - - {T} "GET / HTTP/1.1" 304 - "-" "-"')
    assert r.user is None and r.referrer is None and r.user_agent is None
    assert r.bytes_sent == 0  # %b writes '-' for zero bytes


def test_escaped_quotes_in_url_and_agent() -> None:
    line = (f'203.0.113.9 - - {T} "GET /search?q=\\"x\\" HTTP/1.1" 200 5 '
            f'"https://example.org/\\"r\\"" "Agent \\"quoted\\" \\\\ v1"')  # fmt: skip
    r = build_parser("combined")(line)
    assert r.target == '/search?q="x"'
    assert r.referrer == 'https://example.org/"r"'
    assert r.user_agent == 'Agent "quoted" \\ v1'


def test_ipv6_and_ports() -> None:
    parse = build_parser("combined")
    tail = f' - - {T} "GET / HTTP/1.1" 200 5 "-" "{UA}"'
    assert parse("2001:db8::1" + tail).ip == "2001:db8::1"
    assert parse("[2001:db8::1]:5555" + tail).ip == "2001:db8::1"
    assert parse("198.51.100.7:5555" + tail).ip == "198.51.100.7"
    assert parse("::ffff:198.51.100.7" + tail).ip == "198.51.100.7"


@pytest.mark.parametrize("peer", ["%{c}h", "%{c}a"])
def test_percent_c_h_is_the_peer_not_the_client(peer: str) -> None:
    """``%{c}h`` is, like ``%{c}a``, the underlying TCP peer (the proxy or load balancer),
    not the client mod_remoteip resolved; the first client field wins, so ``%{c}h %a``
    published every visitor as the load balancer (an audit)."""
    r = compile_apache(f'{peer} %a %t "%r" %>s %b').parse(
        f'10.0.0.1 203.0.113.9 {T} "GET / HTTP/1.1" 200 5'
    )
    assert r.ip == "203.0.113.9"
    # Alone, the peer is still the address logged (as %{c}a alone).
    r = compile_apache(f'{peer} %t "%r" %>s %b').parse(f'10.0.0.1 {T} "GET / HTTP/1.1" 200 5')
    assert r.ip == "10.0.0.1"


@pytest.mark.parametrize(
    "request_line",
    ["-", "\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03", "", "GET", "get / HTTP/1.1"],
)
def test_non_http_request_lines_are_kept_without_a_target(request_line: str) -> None:
    r = build_parser("combined")(f'203.0.113.9 - - {T} "{request_line}" 400 0 "-" "-"')
    assert (r.method, r.target, r.status) == (None, None, 400)


def test_http09_request_line() -> None:
    r = build_parser("common")(f'203.0.113.9 - - {T} "GET /old" 200 5')
    assert (r.method, r.target, r.protocol) == ("GET", "/old", None)


def test_vhost_combined() -> None:
    r = build_parser("vhost_combined")(
        f'www.example.org:443 203.0.113.9 - - {T} "GET / HTTP/2.0" 200 512 "-" "{UA}"'
    )
    assert (r.host, r.ip, r.bytes_sent, r.user_agent) == ("www.example.org", "203.0.113.9", 512, UA)


def test_custom_logformat_with_duration_language_and_cookie() -> None:
    parser = compile_apache(
        '%a %l %u %t "%m %U%q %H" %>s %B "%{Referer}i" "%{User-agent}i" %D '
        '"%{Accept-Language}i" "%{sid}C" %v'
    )
    r = parser.parse(
        f'203.0.113.9 - - {T} "GET /p?x=1 HTTP/1.1" 200 10 "-" "{UA}" 2500 '
        '"de-CH,de;q=0.9" "abc123" shop.example.org'
    )
    assert (r.method, r.target, r.duration_ms, r.language, r.cookie, r.host) == (
        "GET", "/p?x=1", 2.5, "de-CH,de;q=0.9", "abc123", "shop.example.org",
    )  # fmt: skip


def test_time_variants() -> None:
    assert compile_apache("%h %{sec}t %s").parse("203.0.113.9 971211336 200").time == 971211336
    assert compile_apache("%h %{msec}t %s").parse("203.0.113.9 971211336123 200").time == 971211336
    assert compile_apache("%h %t %T").parse(f"203.0.113.9 {T} 2").duration_ms == 2000
    assert compile_apache("%h %t %{ms}T").parse(f"203.0.113.9 {T} 7").duration_ms == 7


def test_nginx_main_with_forwarded_for() -> None:
    parse = build_parser("nginx_main", trusted_proxies=["10.0.0.0/8"])
    r = parse(f'10.0.0.5 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-" "{UA}" '
              '"203.0.113.9, 10.0.0.4"')  # fmt: skip
    assert r.ip == "203.0.113.9"


def test_nginx_custom_variables() -> None:
    parser = compile_nginx('$remote_addr [$time_iso8601] "$request_method $request_uri" '
                           '$status $request_time "$http_accept_language" $host')  # fmt: skip
    r = parser.parse(
        '203.0.113.9 [2000-10-10T20:55:36+00:00] "POST /api?x=1" 201 0.250 "fr" a.example'
    )
    assert (r.time, r.method, r.target, r.status, r.duration_ms, r.language, r.host) == (
        971211336, "POST", "/api?x=1", 201, 250.0, "fr", "a.example",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "line", "target"),
    [
        ("nginx:$remote_addr [$time_local] $uri?$args $status", "203.0.113.9 {T} /p?a=1 200", "/p?a=1"),
        ("nginx:$remote_addr [$time_local] $uri?$args $status", "203.0.113.9 {T} /p?- 200", "/p"),
        ("nginx:$remote_addr [$time_local] $uri $args $status", "203.0.113.9 {T} /p a=1 200", "/p?a=1"),
        ("nginx:$remote_addr [$time_local] $uri $args $status", "203.0.113.9 {T} /p - 200", "/p"),
        ('nginx:$remote_addr [$time_local] "$request_method $uri $args" $status',
         '203.0.113.9 {T} "GET /p a=1" 200', "/p?a=1"),
        ("nginx:$remote_addr [$time_local] $uri $query_string $status",
         "203.0.113.9 {T} /p a=1 200", "/p?a=1"),
        ("nginx:$remote_addr [$time_local] $uri$is_args$args $status",
         "203.0.113.9 {T} /p?a=1 200", "/p?a=1"),
    ],
)  # fmt: skip
def test_nginx_args_without_a_question_mark_are_read(fmt: str, line: str, target: str) -> None:
    """$args and $query_string are written without the "?" that Apache's %q starts with;
    with %q's regex, every request with a query string was parse.no_match while those
    without one parsed: a biased, silent loss (an audit)."""
    parser = compile_one(fmt)
    text = line.format(T=T)
    r = parser.parse(text)
    assert (r.ip, r.time, r.target, r.status) == ("203.0.113.9", 971211336, target, 200)
    assert _outcome(parser.parse, text) == _outcome(lambda t: _exact(parser, t), text)


def test_nginx_hex_escapes_are_decoded() -> None:
    r = build_parser("nginx_combined")(
        '203.0.113.9 - - [10/Oct/2000:13:55:36 -0700] "GET /a\\x22b HTTP/1.1" 200 5 "-" "x\\x22y"'
    )
    assert r.target == '/a"b' and r.user_agent == 'x"y'


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("garbage", "parse.no_match"),
        (f'not-an-ip - - {T} "GET / HTTP/1.1" 200 5 "-" "-"', "parse.bad_ip"),
        (
            '203.0.113.9 - - [10/Foo/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-" "-"',
            "parse.bad_time",
        ),
        (f'203.0.113.9 - - {T} "GET / HTTP/1.1" abc 5 "-" "-"', "parse.no_match"),
        # Not a CLF date, on the exact path too (a backslash): the user name "-" is not
        # run on to the end of the line.
        ('203.0.113.9 - - [yesterday] "GET / HTTP/1.1" 200 5 "-" "-"', "parse.bad_time"),
        ('203.0.113.9 - - [yesterday] "GET /\\"x HTTP/1.1" 200 5 "-" "-"', "parse.bad_time"),
        ('203.0.113.9 - x [y [yesterday] "GET /\\"x HTTP/1.1" 200 5 "-" "-"', "parse.bad_time"),
    ],
)
def test_rejections_have_reason_codes_and_no_payload(line: str, reason: str) -> None:
    with pytest.raises(RejectedLine) as caught:
        build_parser("combined")(line)
    assert caught.value.reason == reason
    assert str(caught.value) == reason  # the message is the code, never the line


@pytest.mark.parametrize(
    ("formats", "line"),
    [
        (["combined", "common"], '203.0.113.9 - - [10/Oct/2000:13:55:36] "GET / HTTP/1.1" 200 5'),
        (["nginx_combined"], '203.0.113.9 - - [10/Oct/2000:13:55:36] "GET / HTTP/1.1" 200 5 "-" "-"'),
        (["apache:%h %t %>s"], "203.0.113.9 [10/Oct/2000:13:55:36] 200"),
    ],
)  # fmt: skip
def test_a_log_line_whose_time_has_no_zone_is_rejected(formats: list[str], line: str) -> None:
    """A tool imitating the common format without the zone: its local time was
    published as if it were UTC (an audit)."""
    with pytest.raises(RejectedLine, match=r"parse\.bad_time"):
        build_parser(formats)(line)


def test_first_matching_format_wins_and_most_specific_reason_is_kept() -> None:
    parse = build_parser(["combined", "common"])
    assert parse(f'203.0.113.9 - - {T} "GET / HTTP/1.1" 200 5').status == 200
    with pytest.raises(RejectedLine) as caught:
        parse(f'nope - - {T} "GET / HTTP/1.1" 200 5')
    assert caught.value.reason == "parse.bad_ip"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("apache:%h %Z", "unsupported directive '%Z' at column 3"),
        ("apache:%h %{foo}t", "unsupported directive '%{foo}t'"),
        ("apache:%h %{begin:foo}t", "unsupported directive '%{begin:foo}t' at column 3"),
        ("apache:%h %{msec_frac}t", "no request time"),
        ("apache:%h %{%d/%b/%Y:%H:%M:%S}t", "%{...}t at column 3: has no %z"),
        ("apache:%h %{%s}t", "%{%s}t at column 3: cannot read strftime %s"),
        # A "%" that starts no directive, anywhere in the format (it was text, and every
        # line parse.no_match, unless it came after the last directive; an audit).
        ('apache:%h %5 %l %u %t "%r" %>s %b', "unsupported directive '%5' at column 3"),
        ('apache:%h %l %u %t "%r" %>s %b %5', "unsupported directive '%5' at column 24"),
        ("apache:%h %{X-Y}^tx %t", "unsupported directive '%{X-Y}^tx' at column 3"),
        ("apache:%h %-1 %t", "unsupported directive '%-1' at column 3"),
        ("apache:%h %t %", "unsupported directive '%' at column 6"),
        ("apache:%l %t", "no client address"),
        ("apache:%h %s", "no request time"),
        ("nginx:$status", "no client address"),
        ("combind", "unknown format 'combind'"),
    ],
)
def test_format_errors_are_specific(spec: str, message: str) -> None:
    with pytest.raises(FormatError, match=re.escape(message)):
        compile_one(spec)


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        ('apache:%h %{X-Checksum}^ti %t "%r" %>s %b', f'203.0.113.9 abc {T} "GET / HTTP/1.1" 200 5'),
        ('apache:%h %{Server-Timing}^to %t "%r" %>s %b', f'203.0.113.9 - {T} "GET / HTTP/1.1" 200 5'),
        ('apache:%h "%{X-Checksum}^ti" %t "%r" %>s %b', f'203.0.113.9 "a b" {T} "GET / HTTP/1.1" 200 5'),
    ],
)  # fmt: skip
def test_request_and_response_trailers_are_matched_and_thrown_away(spec: str, line: str) -> None:
    """httpd 2.4.24's ``%{VAR}^ti`` / ``%{VAR}^to`` (trailers) were compiled as literal
    text: check-config passed and every line was parse.no_match (an audit)."""
    r = compile_one(spec).parse(line)
    assert (r.ip, r.time, r.status) == ("203.0.113.9", 971211336, 200)
    assert "abc" not in repr([getattr(r, a) for a in r.__slots__])


def test_apache_escapes_in_a_logformat_are_applied() -> None:
    """mod_log_config writes \\t \\n \\r \\\\ in a LogFormat's text as a tab, newline,
    carriage return and backslash: a tab-separated format compiled to a regex wanting a
    backslash and a "t", and every line was parse.no_match (an audit)."""
    spec = 'apache:%h\\t%l\\t%u\\t%t\\t"%r"\\t%>s\\t%b'
    line = f'203.0.113.9\t-\t-\t{T}\t"GET /a HTTP/1.1"\t200\t5'
    r = compile_one(spec).parse(line)
    assert (r.ip, r.time, r.target, r.status, r.bytes_sent) == (
        "203.0.113.9",
        971211336,
        "/a",
        200,
        5,
    )
    # \\\\ is one backslash; any other backslash is kept, as Apache keeps it.
    r = compile_one("apache:%h \\\\%t \\d%>s").parse(f"203.0.113.9 \\{T} \\d200")
    assert (r.ip, r.time, r.status) == ("203.0.113.9", 971211336, 200)


def test_a_logformat_copied_from_httpd_conf_with_escaped_quotes_is_read() -> None:
    """httpd.conf spells quotes in a LogFormat \\" (Debian, RHEL, cPanel, Plesk); pasted
    as they are, they were read as a backslash and a quote: the config validated and
    every line was parse.no_match (an audit)."""
    spec = 'apache:%h %l %u %t \\"%r\\" %>s %b \\"%{Referer}i\\" \\"%{User-Agent}i\\"'
    parser = compile_one(spec)
    line = f'203.0.113.9 - - {T} "GET /a HTTP/1.1" 200 5 "-" "curl/8"'
    r = parser.parse(line)
    assert (r.ip, r.target, r.referrer, r.user_agent) == ("203.0.113.9", "/a", None, "curl/8")
    # The fields between the quotes are quoted fields, escapes and all.
    r = parser.parse(line.replace('"curl/8"', '"curl/8 \\"x\\""'))
    assert r.user_agent == 'curl/8 "x"'
    assert parser.regex.pattern == compile_one("combined").regex.pattern  # type: ignore[union-attr]


def test_unknown_headers_are_matched_but_never_stored() -> None:
    parser = compile_apache('%h %t "%{X-Secret}i"')
    r = parser.parse(f'203.0.113.9 {T} "s3cr3t"')
    assert "s3cr3t" not in repr([getattr(r, a) for a in r.__slots__])


def test_a_format_list_tries_each_and_reports_the_most_specific_reason() -> None:
    from streams.parse import build_parser
    from streams.records import PARSE_BAD_IP, PARSE_NO_MATCH, RejectedLine

    parse = build_parser(["combined", "common"])
    t = "[10/Oct/2000:13:55:36 -0700]"
    combined = f'203.0.113.9 - - {t} "GET /a HTTP/1.1" 200 5 "-" "curl/8"'
    common = f'203.0.113.9 - - {t} "GET /b HTTP/1.1" 200 5'
    assert parse(combined).target == "/a" and parse(combined).user_agent == "curl/8"
    assert parse(common).target == "/b" and parse(common).user_agent is None
    for line, reason in [(f'not-an-ip - - {t} "GET / HTTP/1.1" 200 5', PARSE_BAD_IP),
                         ("junk", PARSE_NO_MATCH)]:  # fmt: skip
        with pytest.raises(RejectedLine) as caught:
            parse(line)
        assert caught.value.reason == reason


@pytest.mark.parametrize("fmt", ["combined", "common", "vhost_combined", "nginx_main"])
def test_every_request_slot_is_set_by_the_generated_builder(fmt: str) -> None:
    # The builder makes the object without __init__: a slot it forgot would raise
    # AttributeError in the rules, so every slot must read (None when the format lacks it).
    from pathlib import Path

    from streams.parse import compile_one
    from streams.records import Request

    parse = compile_one(fmt, [], None).parse
    sample = Path(__file__).parent.parent / "data" / "samples" / f"{fmt}.log"
    parsed = []
    for line in sample.read_text(errors="replace").splitlines():
        try:
            parsed.append(parse(line))
        except RejectedLine:
            continue
    assert parsed
    for r in parsed:
        assert all(hasattr(r, slot) for slot in Request.__slots__)


def _exact(parser: object, text: str) -> object:
    """The escape-aware path alone (what ``parse`` does when the line has a backslash)."""
    m = parser.regex.match(text)  # type: ignore[attr-defined]
    if m is None:
        raise RejectedLine("parse.no_match")
    return parser.build(m.groups())  # type: ignore[attr-defined]


def _outcome(parse: object, text: str) -> tuple[str, ...] | str:
    from streams.records import Request

    try:
        r = parse(text)  # type: ignore[operator]
    except RejectedLine as rejected:
        return rejected.reason
    return tuple(repr(getattr(r, slot)) for slot in Request.__slots__)


_PIECES = ["GET", "POST", "get", "M-SEARCH", " ", "  ", '"', '\\"', "\\", "\\\\", "-", "/a?b=1",
           "HTTP/1.1", "HTTP/", "\x16\x03", "é", "200", "x", "\\xc3\\xa9", "\\xff", "\\r", "?"]  # fmt: skip


@pytest.mark.parametrize(
    "fmt",
    ["combined", "common", "vhost_combined", "nginx_main",
     'apache:%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i" "%{X-Junk}i" %D %{c}a',
     # Decoded paths (spaces, "?"), fields between quotes but not quoted.
     'apache:%h %l %u %t "%m %U%q %H" %>s %b "%{Referer}i" "%{User-agent}i"',
     'nginx:$remote_addr - $remote_user [$time_local] "$request_method $uri $server_protocol" '
     '$status $body_bytes_sent "$http_referer" "$http_user_agent"',
     # X-Forwarded-For in place of the peer: the hosts below are its values there.
     'apache:%{X-Forwarded-For}i %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"'],
)  # fmt: skip
def test_the_fast_path_parses_exactly_like_the_escape_aware_path(fmt: str) -> None:
    # Lines without a backslash skip the escape-aware regex (see first_match): for
    # every generated line the result (all slots, or the reason) must be the same.
    from hypothesis import given, settings
    from hypothesis import strategies as st

    parser = compile_one(fmt, [], None)
    quoted = st.lists(st.sampled_from(_PIECES), max_size=6).map("".join)
    request_line = st.tuples(
        st.sampled_from(["GET", "get", "M-SEARCH", "G3T", "", "A" * 21]),
        st.sampled_from([" ", "  ", "\t"]),
        st.sampled_from(["/a?b=1", "", "/a b", "/a  b?c d", "/é", '/"', "/\\x", "/\\xc3\\xa9"]),
        st.sampled_from([" ", "  ", ""]),
        st.sampled_from(["HTTP/1.1", "HTTP/", "http/1.1", "HTTP/1.1 x", ""]),
    ).map("".join)
    request = st.one_of(quoted, request_line)
    host = st.sampled_from(["203.0.113.9", "[2001:db8::1]:443", "www.example.com:443", "x",
                            "198.51.100.7, 203.0.113.9", "-"])  # fmt: skip
    # User names with spaces fail the fast regex (\S+) and take the exact path.
    user = st.sampled_from(
        ["-", "frank", "john doe", "", "a[b", "x [y", "x [y]", "[a] [b]", "j\\xc3\\xa9 d"]
    )
    status = st.sampled_from(["200", "-", "99", "000"])

    @settings(max_examples=300, deadline=None)
    @given(host, user, request, quoted, quoted, status, st.booleans())
    def check(
        client: str, user: str, request: str, referrer: str, agent: str, status: str, tail: bool
    ) -> None:
        head = f"{client} 203.0.113.9 - {user}" if fmt == "vhost_combined" else f"{client} - {user}"
        text = f'{head} {T} "{request}" {status} 5 "{referrer}" "{agent}"'
        if "%{X-Junk}i" in fmt:
            text += ' "junk" 1520 198.51.100.1' if tail else ' "" - 198.51.100.1'
        elif fmt == "nginx_main":
            text += ' "-"'
        elif fmt == "common":
            text = f'{head} {T} "{request}" {status} 5'
        assert _outcome(parser.parse, text) == _outcome(lambda t: _exact(parser, t), text)

    check()


@pytest.mark.parametrize(
    "request_line",
    ["A" * 20 + " /a HTTP/1.1", "A" * 21 + " /a HTTP/1.1", "GET /a HTTP/1.1 x", "GET /a", "GET  /a HTTP/1.1",
     "get /a HTTP/1.1", "GET /a http/1.1", "GET /a\tb HTTP/1.1", "-", ""],
)  # fmt: skip
def test_request_lines_at_the_edges_parse_alike_on_both_paths(request_line: str) -> None:
    parser = compile_one("combined", [], None)
    text = f'203.0.113.9 - - {T} "{request_line}" 200 5 "-" "{UA}"'
    assert _outcome(parser.parse, text) == _outcome(lambda t: _exact(parser, t), text)


def test_the_fast_path_is_taken_for_plain_lines_only() -> None:
    parser = compile_one("combined", [], None)
    plain = f'203.0.113.9 - - {T} "GET /a HTTP/1.1" 200 5 "-" "{UA}"'
    assert parser.fast_regex.match(plain) is not None  # type: ignore[union-attr]
    for other in (plain.replace("GET /a", "-"), plain.replace("/a", '/a\\"b')):
        assert parser.fast_regex.match(other) is None  # type: ignore[union-attr]
        assert parser.parse(other).ip == "203.0.113.9"


_NUMBERS = 'apache:%h %t "%r" %>s %b %D %{ms}T'


@pytest.mark.parametrize(
    ("fmt", "fields", "reason"),
    [
        (_NUMBERS, "200 " + "9" * 26 + " 1 1", "parse.bad_number"),  # was a rules.error (orjson)
        (_NUMBERS, "200 9007199254740992 1 1", "parse.bad_number"),  # 2**53
        (_NUMBERS, "099 5 1 1", "parse.bad_number"),
        (_NUMBERS, "200 5 " + "9" * 400 + " 1", "parse.bad_number"),  # µs: inf, not Overflow
        # %{ms}T alone: next to %D it is not read (the more precise one is).
        (_NUMBERS.replace("%D", "%I"), "200 5 1 " + "9" * 400, "parse.bad_number"),
        (_NUMBERS, "200 5 1 1.2.3", "parse.no_match"),  # was a parse.error (float ValueError)
    ],
)
def test_numbers_out_of_bounds_are_rejected(fmt: str, fields: str, reason: str) -> None:
    parse = build_parser(fmt)
    for path in ("", "\\"):  # the fast path, and the escape-aware one
        with pytest.raises(RejectedLine) as caught:
            parse(f'203.0.113.9 {T} "GET /{path} HTTP/1.1" {fields}')
        assert caught.value.reason == reason


def test_numbers_at_the_bounds_are_kept() -> None:
    r = build_parser(_NUMBERS)(f'203.0.113.9 {T} "GET / HTTP/1.1" 999 9007199254740991 1500 2.5')
    assert (r.status, r.bytes_sent, r.duration_ms) == (
        999,
        2**53 - 1,
        1.5,
    )  # %D, the more precise duration, wins
    r = build_parser(_NUMBERS)(f'203.0.113.9 {T} "GET / HTTP/1.1" 100 - - -')
    assert (r.status, r.bytes_sent, r.duration_ms) == (100, 0, None)


@pytest.mark.parametrize(
    ("fmt", "tail", "expected"),
    [
        # A duration: %D (µs) over %{ms}T over %T, in either order. "%T/%D" is a
        # widely used LogFormat: the whole seconds won, 0.0 where %D said 2.5 ms.
        ("%T/%D", "0/2500", (200, 100, 2.5)),
        ("%D %T", "2500 0", (200, 100, 2.5)),
        ("%{ms}T %D", "3 2500", (200, 100, 2.5)),
        ("%T %{ms}T", "0 3", (200, 100, 3.0)),
        ("%{us}T %D", "2500 2600", (200, 100, 2.5)),  # equals: the first
        ("%D %D", "2500 2600", (200, 100, 2.5)),
    ],
)
def test_the_more_precise_duration_is_read_in_any_order(
    fmt: str, tail: str, expected: tuple[int, int, float]
) -> None:
    line = f'203.0.113.9 {T} "GET / HTTP/1.1" 200 100 {tail}'
    parser = compile_apache(f'%h %t "%r" %>s %b {fmt}')
    for text in (line, line.replace("GET /", "GET /\\")):  # fast and escape-aware paths
        r = parser.parse(text)
        assert (r.status, r.bytes_sent, r.duration_ms) == expected


@pytest.mark.parametrize(
    ("fmt", "numbers", "status"),
    [
        ("%s %>s", "302 200", 200),  # %>s: the final status, whatever the order
        ("%>s %s", "200 302", 200),
        ("%<s %>s", "302 200", 200),
        ("%>s %<s", "200 302", 200),
        ("%s %<s", "302 200", 302),  # both the original one: the first
        ("%>s %>s", "200 201", 200),
    ],
)
def test_the_final_status_is_read_in_any_order(fmt: str, numbers: str, status: int) -> None:
    r = compile_apache(f'%h %t "%r" {fmt}').parse(f'203.0.113.9 {T} "GET / HTTP/1.1" {numbers}')
    assert r.status == status


@pytest.mark.parametrize(
    ("spec", "numbers"),
    [
        ("apache:%h %t %>s %b %O", "200 5 300"),
        ("apache:%h %t %>s %O %b", "200 300 5"),
        ("apache:%h %t %>s %O %B", "200 300 5"),
        ("apache:%h %t %>s %b %I %O", "200 5 80 300"),  # Apache's combinedio
        ("nginx:$remote_addr [$time_local] $status $bytes_sent $body_bytes_sent", "200 300 5"),
        ("nginx:$remote_addr [$time_local] $status $body_bytes_sent $bytes_sent", "200 5 300"),
    ],
)
def test_the_body_size_is_read_over_bytes_on_the_wire(spec: str, numbers: str) -> None:
    """One byte count whatever the order: the body (%b, %B, $body_bytes_sent), as the
    named formats but vhost_combined log it; %O and $bytes_sent only alone."""
    assert build_parser(spec)(f"203.0.113.9 {T} {numbers}").bytes_sent == 5
    assert build_parser("apache:%h %t %>s %O")(f"203.0.113.9 {T} 200 300").bytes_sent == 300


@pytest.mark.parametrize(
    "spec",
    ["nginx:$server_name $host $remote_addr [$time_local] $status",
     "nginx:$host $server_name $remote_addr [$time_local] $status"],
)  # fmt: skip
def test_the_host_is_read_over_the_server_name(spec: str) -> None:
    """A review: with a catch-all "server_name _;", $server_name is "_" and names no
    site; $host is the request's."""
    first, second = (
        ("_", "shop.example.com")
        if spec.index("server") < spec.index("$host")
        else ("shop.example.com", "_")
    )
    line = f"{first} {second} 203.0.113.9 [10/Oct/2000:13:55:36 -0700] 200"
    assert build_parser(spec)(line).host == "shop.example.com"


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("%h %{begin:sec}t %s", "971211336"),
        ("%h %{end:sec}t %s", "971211336"),
        ("%h %{begin:msec}t %s", "971211336123"),
        ("%h %{end:msec}t %s", "971211336999"),
        ("%h %{end:usec}t %s", "971211336123456"),
        ("%h %{sec}t.%{msec_frac}t %s", "971211336.123"),
        ("%h %{sec}t%{usec_frac}t %s", "971211336123456"),
        ("%h [%{%d/%b/%Y:%H:%M:%S %z}t] %s", "[10/Oct/2000:13:55:36 -0700]"),
        ("%h [%{begin:%d/%b/%Y:%H:%M:%S %z}t] %s", "[10/Oct/2000:13:55:36 -0700]"),
        ("%h %{end:%FT%T%z}t %s", "2000-10-10T13:55:36-0700"),
        ("%h %{%a, %d %h %Y %T %z}t %s", "Tue, 10 Oct 2000 13:55:36 -0700"),
        # Apache's own example: one time in three fields, the zone in the last.
        ("%h [%{%d/%b/%Y %T}t.%{msec_frac}t %{%z}t] %s", "[10/Oct/2000 13:55:36.123 -0700]"),
    ],
)
def test_time_directives(fmt: str, text: str) -> None:
    parser = compile_apache(fmt + ' "%{User-agent}i"')
    assert parser.parse(f'203.0.113.9 {text} 200 "a"').time == 971211336
    assert parser.parse(f'203.0.113.9 {text} 200 "a\\"b"').time == 971211336  # escape-aware


@pytest.mark.parametrize(
    "text",
    ["[31/Feb/2024:13:55:36 -0700]", "[10/Oct/2000:25:55:36 -0700]",
     "[10/Oct/2000:13:55:36 -1500]", "[01/Jan/1969:13:55:36 +0000]"],
)  # fmt: skip
def test_strftime_times_are_checked_like_clf(text: str) -> None:
    with pytest.raises(RejectedLine) as caught:
        compile_apache("%h [%{%d/%b/%Y:%H:%M:%S %z}t] %s").parse(f"203.0.113.9 {text} 200")
    assert caught.value.reason == "parse.bad_time"


@pytest.mark.parametrize(
    ("fmt", "line"),
    [
        (
            "combined",
            '203.0.113.9 - - [10/Oct/2000:13:55:36 -0700] "{m} /x HTTP/1.1" 200 5 "-" "-"',
        ),
        ("apache:%h %t %m %U %>s", "203.0.113.9 [10/Oct/2000:13:55:36 -0700] {m} /x 200"),
    ],
)
def test_an_unregistered_method_is_other(fmt: str, line: str) -> None:
    """The method is text the client chooses, and ops keeps it: a name sent as the
    method was published (an audit). Registered methods pass, others are OTHER."""
    parse = compile_one(fmt, [], None).parse
    assert parse(line.format(m="JOHNDOESECRET")).method == "OTHER"
    assert parse(line.format(m="PROPFIND")).method == "PROPFIND"
    assert parse(line.format(m="GET")).method == "GET"


def _apache_escape(text: str) -> str:
    r"""What Apache's ap_escape_logitem and nginx's escape=default write for ``text``:
    every byte >= 0x7f (so every byte of a non-ASCII UTF-8 character) as ``\xhh``."""
    return "".join(c if ord(c) < 0x7F else "".join(f"\\x{b:02x}" for b in c.encode()) for c in text)


def test_escaped_utf8_bytes_are_decoded_as_utf8() -> None:
    """Each ``\\xhh`` was chr(hh): "é" logged as \\xc3\\xa9 became "Ã©" (an audit)."""
    assert unescape(r"/caf\xc3\xa9") == "/café"
    assert unescape(r"Mozilla/5.0 \xe6\x97\xa5\xe6\x9c\xac") == "Mozilla/5.0 日本"
    assert unescape(r"\x22a\x5cb\x22") == '"a\\b"'  # nginx's escaped quote and backslash
    assert unescape(r"a\xffb\xc3") == "a\ufffdb\ufffd"  # not UTF-8: replaced, not Latin-1
    r = build_parser("combined")(f'203.0.113.9 - - {T} "GET /caf\\xc3\\xa9 HTTP/1.1" 200 5 "-" "-"')
    assert r.target == "/café"


def test_lookalike_email_escaped_by_the_server_is_still_templated(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    """The same request, logged raw or as Apache/nginx log it (\\xhh per byte): raw, the
    fullwidth "＠" and ideographic "。" are folded and the email becomes {email}; escaped,
    the mojibake "janeï¼\\xa0gmailã\\x80\\x82com" passed the URL policy and the sweep,
    and the person's address was published in ops.route and product.page."""
    pipeline = make_pipeline()
    path = "/u/jane＠gmail。com/orders"
    line = f'203.0.113.9 - - {T} "GET {_apache_escape(path)} HTTP/1.1" 200 5 "-" "curl/8.5.0"'
    out = pipeline.test([line])
    assert not out.rejections
    (ops,) = out.events("ops")
    (product,) = out.events("product")
    for value in (ops["route"], product["page"]):
        assert "jane" not in value and "gmail" not in value, value


def test_apache_control_character_escapes() -> None:
    r"""ap_escape_logitem writes \b \n \r \t \v; only \n and \t were undone, so "\r"
    became the letter "r"."""
    assert unescape(r"a\rb\vc\bd\ne\tf") == "a\rb\vc\bd\ne\tf"
    assert unescape(r"a\\rb") == "a\\rb"  # an escaped backslash, then the letter r


def test_unquoted_fields_are_unescaped_too(make_pipeline: Callable[..., Pipeline]) -> None:
    """Only fields directly between quotes were unescaped. In ``"%m %U%q %H"`` (Apache's
    %U is ap_escape_logitem(r->uri), the decoded path) the path kept literal
    ``\\xef\\xbc\\xa0`` text, which no detector reads as "@" (an audit)."""
    fmt = 'apache:%h %l %u %t "%m %U%q %H" %>s %b'
    pipeline = make_pipeline(input={"format": fmt})
    path = _apache_escape("/u/jane＠gmail.com")
    out = pipeline.test([f'203.0.113.9 - - {T} "GET {path} HTTP/1.1" 200 5'])
    (ops,) = out.events("ops")
    (product,) = out.events("product")
    for value in (ops["route"], product["page"]):  # was "/u/jane\\xef\\xbc\\xa0gmail.com"
        assert "jane" not in value, value
    r = compile_one(fmt).parse(f'203.0.113.9 - - {T} "GET /caf\\xc3\\xa9?q=\\x22 HTTP/1.1" 200 5')
    assert r.target == '/café?q="'
    r = build_parser("combined")(f'203.0.113.9 - jos\\xc3\\xa9 {T} "GET / HTTP/1.1" 200 5 "-" "-"')
    assert r.user == "josé"
    r = compile_nginx("$remote_addr [$time_local] $request_method $uri $host").parse(
        f"203.0.113.9 {T} GET /caf\\xC3\\xA9 b\\xC3\\xBCcher.example"
    )
    assert (r.target, r.host) == ("/café", "bücher.example")


@pytest.mark.parametrize(
    ("fmt", "line"),
    [
        # GET /my%20file.pdf: Apache logs %U = r->uri (decoded), a space is not escaped.
        ('apache:%h %l %u %t "%m %U%q %H" %>s %b',
         f'203.0.113.9 - - {T} "GET /my file.pdf HTTP/1.1" 200 5'),
        ('nginx:$remote_addr [$time_local] "$request_method $uri $server_protocol" $status',
         f'203.0.113.9 {T} "GET /my file.pdf HTTP/1.1" 200'),
    ],
)  # fmt: skip
def test_a_decoded_path_with_a_space_is_parsed(fmt: str, line: str) -> None:
    """A decoded path with a space made the line parse.no_match (an audit)."""
    parse = compile_one(fmt).parse
    r = parse(line)
    assert (r.method, r.target, r.status) == ("GET", "/my file.pdf", 200)
    r = parse(line.replace("/my file", '/my \\"file\\"'))  # the escape-aware path
    assert (r.method, r.target, r.status) == ("GET", '/my "file".pdf', 200)


def test_a_decoded_question_mark_in_a_path_without_query_is_parsed() -> None:
    """%U and $uri decode %3F to "?": the path stops at "?" only when %q follows."""
    r = compile_one('apache:%h %t "%m %U %H" %>s').parse(
        f'203.0.113.9 {T} "GET /a?.pdf HTTP/1.1" 200'
    )
    assert r.target == "/a?.pdf"
    r = compile_one("apache:%h %t %m %U %H %>s").parse(f"203.0.113.9 {T} GET /a?.pdf HTTP/1.1 200")
    assert r.target == "/a?.pdf"
    r = compile_one('apache:%h %t "%m %U%q %H" %>s').parse(
        f'203.0.113.9 {T} "GET /a b?x=1 HTTP/1.1" 200'
    )
    assert r.target == "/a b?x=1"


@pytest.mark.parametrize(
    "line",
    [
        ("a:" * 32767)[:65530] + " x",
        ("a:" * 32767)[:65530],
        # A compact JSON line sent to a text-format input: ~1 s each.
        orjson.dumps({"remote_addr": "203.0.113.9", "e": [{"a": 1}] * 10000}).decode()[:65536],
    ],
)
def test_a_64k_line_of_colons_is_rejected_quickly(line: str) -> None:
    """``(\\S+):(?:\\S+) `` (vhost_combined's ``%v:%p``) backtracked over every colon of
    the first token: a 64 KB token of colons took ~9.5 s with the default format list
    (an audit)."""
    parse = build_parser(["combined", "vhost_combined", "common"])
    started = time.perf_counter()
    with pytest.raises(RejectedLine):
        parse(line)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("fmt", "tail"),
    [
        ("vhost_combined", f' 203.0.113.9 - - {T} "GET / HTTP/1.1" 200 5 "-" "-"'),
        ("apache:%v:%p:%{c}a %h %t %>s", f" 203.0.113.9 {T} 200"),
        ("apache:%h %{sec}t.%{msec_frac}t:%D %>s", " 200"),
    ],
)
def test_atomic_words_match_like_backtracking(fmt: str, tail: str) -> None:
    """Words such as ``%v:%p`` are atomic groups (no backtracking into them): the
    match and its groups must be those of the plain regex, whatever the word holds."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    parser = compile_one(fmt)
    for compiled in (parser.regex, parser.fast_regex):  # type: ignore[union-attr]
        assert "(?>" in compiled.pattern
    plain = [
        re.compile(c.pattern.replace("(?>", "(?:").replace(r"(?=\s|\Z))", ")"))
        for c in (parser.regex, parser.fast_regex)  # type: ignore[union-attr]
    ]

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet="a1:.-[ ", max_size=14), st.sampled_from(["", " ", "x"]))
    def check(word: str, end: str) -> None:
        head = "203.0.113.9 " if fmt.startswith("apache:%h") else ""
        text = head + word + tail + end
        for atomic, backtracking in zip(
            (parser.regex, parser.fast_regex),  # type: ignore[union-attr]
            plain,
            strict=True,
        ):
            m, expected = atomic.match(text), backtracking.match(text)
            assert (m and m.groups()) == (expected and expected.groups())

    check()


def test_begin_and_end_strftime_times_in_one_format() -> None:
    """All %{...}t strftime fields were joined into one strptime format; a conversion
    used twice (%d in begin: and end:) made every line raise re.error (an audit). The
    fields of the first time's instant are read, as for the other time fields."""
    line = "203.0.113.9 [10/Oct/2000:13:55:36 -0700] [10/Oct/2000:13:55:37 -0700] 200"
    begin_end = "%h [%{begin:%d/%b/%Y:%H:%M:%S %z}t] [%{end:%d/%b/%Y:%H:%M:%S %z}t] %>s"
    assert compile_apache(begin_end).parse(line).time == 971211336
    end_begin = "%h [%{end:%d/%b/%Y:%H:%M:%S %z}t] [%{%d/%b/%Y:%H:%M:%S %z}t] %>s"
    assert compile_apache(end_begin).parse(line).time == 971211336
    split = "%h [%{end:%d/%b/%Y:%T}t %{end:%z}t] [%{begin:%d/%b/%Y:%T}t %{begin:%z}t] %>s"
    assert compile_apache(split).parse(line).time == 971211336
    with pytest.raises(FormatError, match=r"column 4: repeats %d"):
        compile_apache("%h [%{%d/%b/%Y:%H:%M:%S %z}t] [%{%d}t] %>s")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [('"x" "5" "0.1"', "parse.no_match"), ('"200" "x" "0.1"', "parse.no_match"),
     ('"200" "5" "1.2.3"', "parse.no_match"), ('"200" "5" "a\\"b"', "parse.no_match"),
     ('"200" "5" "' + "9" * 400 + '"', "parse.bad_number")],
)  # fmt: skip
def test_quoted_numbers_that_are_not_numbers_are_a_reason_code(fields: str, reason: str) -> None:
    """A quoted status/bytes/duration field was matched by the quoted-string regex, then
    int()/float() raised ValueError (with the field's text in its message) instead of
    RejectedLine; in a format list the later formats were never tried (an audit)."""
    fmt = '$remote_addr [$time_local] "$request" "$status" "$body_bytes_sent" "$request_time"'
    parser = compile_nginx(fmt)
    with pytest.raises(RejectedLine) as caught:
        parser.parse(f'203.0.113.9 {T} "GET / HTTP/1.1" {fields}')
    assert caught.value.reason == reason
    r = parser.parse(f'203.0.113.9 {T} "GET / HTTP/1.1" "200" "5" "0.004"')
    assert (r.status, r.bytes_sent, r.duration_ms) == (200, 5, 4.0)
    r = parser.parse(f'203.0.113.9 {T} "GET /\\" HTTP/1.1" "-" "-" "-"')  # escape-aware
    assert (r.status, r.bytes_sent, r.duration_ms) == (None, 0, None)
    parse = build_parser([f"nginx:{fmt}", "nginx:$remote_addr [$time_local] $request_uri"])
    assert parse(f'203.0.113.9 {T} /a"').target == '/a"'  # a later format is tried


@pytest.mark.parametrize(
    ("fmt", "time_text"),
    [('apache:%h "%t" "%r" %>s %b', T), ('apache:%h "%{%d/%b/%Y:%T %z}t" "%r" %>s %b', T[1:-1])],
)
def test_a_quoted_percent_t_is_read(fmt: str, time_text: str) -> None:
    """Apache's %t between quotes got the quoted-text regex, which kept the brackets:
    every line was parse.bad_time while check-config accepted the format (an audit)."""
    parser = compile_one(fmt)
    for line in (f'203.0.113.9 "{time_text}" "GET / HTTP/1.1" 200 5',
                 f'203.0.113.9 "{time_text}" "GET /\\"a HTTP/1.1" 200 5'):  # fmt: skip
        r = parser.parse(line)
        assert (r.ip, r.time, r.status) == ("203.0.113.9", 971211336, 200)


@pytest.mark.parametrize(
    ("request_line", "status"), [("GET / HTTP/1.1", "000"), ("GET /old", "009")]
)
def test_nginx_status_000_and_009_are_not_rejected(request_line: str, status: str) -> None:
    """ngx_http_log_status writes "%03ui" of 0 (no status yet, e.g. the client went
    away) or 9 (HTTP/0.9): the whole request was dropped as parse.bad_number (an
    audit). Other statuses below 100 still are."""
    parse = compile_one("nginx_combined").parse
    for agent in ("curl/8", 'curl/8 \\"x\\"'):  # the fast path, and the escape-aware one
        line = f'203.0.113.9 - - {T} "{request_line}" {status} 0 "-" "{agent}"'
        r = parse(line)
        assert (r.ip, r.status) == ("203.0.113.9", None)
        with pytest.raises(RejectedLine, match=r"parse\.bad_number"):
            parse(line.replace(f" {status} ", " 099 "))


@pytest.mark.parametrize("fmt", ["nginx_combined", "nginx_main", "combined"])
def test_a_user_name_with_a_space_is_parsed(fmt: str) -> None:
    """nginx's $remote_user is decoded from any request's Authorization: Basic header
    (no auth_basic needed) and a space is not escaped; Apache's %u likewise (401s).
    Any client could make its own lines unparseable (parse.no_match) (an audit)."""
    parse = compile_one(fmt).parse
    tail = ' "-"' if fmt == "nginx_main" else ""
    for user, agent, expected in [
        ("john doe", "curl/8", "john doe"),
        ("john doe", 'curl/8 \\"x\\"', "john doe"),  # the escape-aware path
        ("a[b] c", "curl/8", "a[b] c"),
        ("", "curl/8", None),  # Basic auth with an empty name
    ]:
        line = f'203.0.113.9 - {user} {T} "GET /admin HTTP/1.1" 401 0 "-" "{agent}"{tail}'
        r = parse(line)
        assert (r.ip, r.user, r.target, r.status, r.time) == (
            "203.0.113.9", expected, "/admin", 401, 971211336,
        )  # fmt: skip


@pytest.mark.parametrize("fmt", ["combined", "nginx_combined", "common", "vhost_combined"])
@pytest.mark.parametrize("user", ["x [y]", "x [y", "[a] [b]", "a [b [c]] d", "x [1/2"])
@pytest.mark.parametrize("escaped", [False, True])
def test_a_user_name_with_space_bracket_is_parsed(fmt: str, user: str, escaped: bool) -> None:
    """The name ran to the first " [", so a Basic-auth name holding " [" still made the
    line parse.no_match or parse.bad_time: any client could keep its requests out of
    every count (an audit). It runs to the " [" of a CLF date, on both paths."""
    parse = compile_one(fmt).parse
    agent = 'curl/8 \\"x\\"' if escaped else "curl/8"  # a backslash: the exact path only
    head = "www.example.org:443 203.0.113.9" if fmt == "vhost_combined" else "203.0.113.9"
    line = f'{head} - {user} {T} "GET /admin HTTP/1.1" 401 0 "-" "{agent}"'
    if fmt == "common":
        line = f'{head} - {user} {T} "GET /admin HTTP/1.1" 401 0'
    r = parse(line)
    assert (r.ip, r.user, r.time, r.status) == ("203.0.113.9", user, 971211336, 401)


@pytest.mark.parametrize(
    "line",
    [
        # Debian's other_vhosts_access.log (vhost_combined), ServerName unset: httpd uses
        # an address (AH00558 "...using 127.0.1.1").
        f'127.0.1.1:80 203.0.113.9 - - {T} "GET / HTTP/1.1" 200 5 "-" "curl/8"',
        f'127.0.1.1:80 203.0.113.9 - john doe {T} "GET / HTTP/1.1" 200 5 "-" "curl/8"',
        # vhost_common with an address-based virtual host.
        f'192.0.2.10 203.0.113.9 - - {T} "GET / HTTP/1.1" 200 5',
        f'192.0.2.10 203.0.113.9 - - {T} "GET /\\"x HTTP/1.1" 200 5',
    ],
)
def test_a_vhost_line_under_the_default_formats_does_not_take_the_vhost_as_client(
    line: str,
) -> None:
    """Under ``[combined, common]`` a vhost line has one word too many before the time;
    with a user name that may hold spaces it matched: %h = the virtual host (published
    as every visitor's address), %l = the visitor, %u = "- -" (an audit). A space in
    %u needs %l to be "-": such a line is rejected, or read by vhost_combined when the
    list has it (as config/logfog.yaml has)."""
    with pytest.raises(RejectedLine, match=r"parse\.no_match"):
        build_parser(["combined", "common"])(line)
    parse = build_parser(["combined", "vhost_combined", "common"])
    try:
        r = parse(line)
    except RejectedLine:
        assert not line.startswith("127.0.1.1:80")
    else:
        assert (r.ip, r.host) == ("203.0.113.9", "127.0.1.1")


_XFF_FIRST = 'apache:%{X-Forwarded-For}i %h %l %u %t "%r" %>s %b'
_NGINX_XFF_FIRST = (
    'nginx:$http_x_forwarded_for $remote_addr - $remote_user [$time_local] "$request" '
    "$status $body_bytes_sent"
)


@pytest.mark.parametrize(
    ("spec", "head", "shifted"),
    [
        # The client sends "X-Forwarded-For: 1.1.1.1 8.8.8.8" (no proxy in front).
        (_XFF_FIRST, "1.1.1.1 203.0.113.9 -", "1.1.1.1 8.8.8.8 203.0.113.9 -"),
        # ... or "1.1.1.1 8.8.8.8 -", which puts a "-" where %l is read, or more words.
        (_XFF_FIRST, "1.1.1.1 203.0.113.9 -", "1.1.1.1 8.8.8.8 - 203.0.113.9 -"),
        (_XFF_FIRST, "a 203.0.113.9 -", "a 8.8.8.8 - b 203.0.113.9 -"),
        ('apache:%h %{X-Client}i %l %u %t "%r" %>s %b', "203.0.113.9 a -", "203.0.113.9 a 8.8.8.8 -"),
        # The same through nginx: "X-Forwarded-For: x 8.8.8.8 -", or a cookie.
        (_NGINX_XFF_FIRST, "x 203.0.113.9 -", "x 8.8.8.8 - 203.0.113.9 -"),
        (_NGINX_XFF_FIRST.replace("$http_x_forwarded_for", "$cookie_a"),
         "x 203.0.113.9 -", "x 8.8.8.8 - 203.0.113.9 -"),
    ],
)  # fmt: skip
def test_a_client_header_before_the_address_cannot_choose_the_client(
    spec: str, head: str, shifted: str
) -> None:
    """A header logged unquoted before the address: a value with spaces shifted every
    field and the line still matched, the user name absorbing the extra words, so the
    client chose the published address (8.8.8.8) and its own went into user.name (an
    audit). After an unquoted field that may hold a space, a name may not hold one."""
    parser = compile_one(spec)
    for request in ("GET / HTTP/1.1", 'GET /\\"x HTTP/1.1'):  # both paths
        tail = f'{T} "{request}" 200 5'
        assert parser.parse(f"{head} - {tail}").ip == "203.0.113.9"
        with pytest.raises(RejectedLine, match=r"parse\.no_match"):
            parser.parse(f"{shifted} - {tail}")
        with pytest.raises(RejectedLine, match=r"parse\.no_match"):
            parser.parse(f"{head} john doe {tail}")  # the price: no space in the name


# Apache behind a load balancer, as AWS documents it: X-Forwarded-For in place of %h.
_PROXY_FORMAT = 'apache:%{X-Forwarded-For}i %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"'
_NGINX_PROXY_FORMAT = (
    'nginx:$http_x_forwarded_for - $remote_user [$time_local] "$request" $status '
    '$body_bytes_sent "$http_referer" "$http_user_agent"'
)


@pytest.mark.parametrize("spec", [_PROXY_FORMAT, _NGINX_PROXY_FORMAT])
@pytest.mark.parametrize(
    ("forwarded_for", "trusted", "client"),
    [
        ("203.0.113.9", [], "203.0.113.9"),
        # The last hop is the address the balancer saw: the earlier ones, which the
        # client may have written, are read only behind trusted proxies.
        ("198.51.100.7, 203.0.113.9", [], "203.0.113.9"),
        ("198.51.100.7, 10.0.0.2", ["10.0.0.0/8"], "198.51.100.7"),
        ("198.51.100.7,10.0.0.2", ["10.0.0.0/8"], "198.51.100.7"),
        ("[2001:db8::7]:4711, 10.0.0.3, 10.0.0.2", ["10.0.0.0/8"], "2001:db8::7"),
    ],
)  # fmt: skip
def test_a_format_that_logs_x_forwarded_for_in_place_of_the_peer(
    spec: str, forwarded_for: str, trusted: list[str], client: str
) -> None:
    """Such a format was a config error ("the format has no client address"), and a
    chain of several hops could not be read unquoted."""
    parser = compile_one(spec, trusted)
    for request in ("GET /a HTTP/1.1", 'GET /\\"a HTTP/1.1'):  # both paths
        line = f'{forwarded_for} - frank {T} "{request}" 200 5 "-" "{UA}"'
        r = parser.parse(line)
        assert (r.ip, r.user, r.status, r.user_agent) == (client, "frank", 200, UA)


@pytest.mark.parametrize("spec", [_PROXY_FORMAT, _NGINX_PROXY_FORMAT])
@pytest.mark.parametrize("forwarded_for", ["-", "unknown", "198.51.100.7, x", "198.51.100.7,"])
def test_no_client_in_the_x_forwarded_for_in_place_of_the_peer_is_bad_ip(
    spec: str, forwarded_for: str
) -> None:
    # "-": a request that reached the server without the balancer (a health check).
    line = f'{forwarded_for} - - {T} "GET / HTTP/1.1" 200 5 "-" "{UA}"'
    with pytest.raises(RejectedLine, match=r"parse\.bad_ip"):
        compile_one(spec).parse(line)


def test_an_unquoted_x_forwarded_for_chain_beside_the_peer_is_read_whole() -> None:
    """Unquoted, a chain of two hops was read as one word plus the next field: every
    line that came through two proxies was parse.no_match."""
    parser = compile_one('apache:%h %{X-Forwarded-For}i %l %u %t "%r" %>s %b', ["10.0.0.0/8"])
    r = parser.parse(f'10.0.0.1 198.51.100.7, 10.0.0.2 - - {T} "GET / HTTP/1.1" 200 5')
    assert (r.ip, r.status) == ("198.51.100.7", 200)
    end = compile_one('apache:%h %l %u %t "%r" %>s %b %{X-Forwarded-For}i', ["10.0.0.0/8"])
    r = end.parse(f'10.0.0.1 - - {T} "GET / HTTP/1.1" 200 5 198.51.100.7, 10.0.0.2')
    assert r.ip == "198.51.100.7"


@pytest.mark.parametrize(
    ("spec", "head"),
    [
        ('apache:"%{X-Forwarded-For}i" %h %l %u %t "%r" %>s %b', '"1.1.1.1 8.8.8.8 -" 203.0.113.9 -'),
        ('apache:%v %h %l %u %t "%r" %>s %b', "www.example.org 203.0.113.9 -"),
        ('apache:%h %{c}a:%{remote}p %l %u %t "%r" %>s %b', "203.0.113.9 10.0.0.1:443 -"),
        ('apache:%h %u %t "%r" %>s %b', "203.0.113.9"),
        ('nginx:$server_name $remote_addr - $remote_user [$time_local] "$request" $status $bytes_sent',
         "www.example.org 203.0.113.9 -"),
        ('nginx:"$http_x_forwarded_for" $remote_addr - $remote_user [$time_local] "$request" $status '
         "$body_bytes_sent", '"1.1.1.1 8.8.8.8 -" 203.0.113.9 -'),
    ],
)  # fmt: skip
def test_a_user_name_with_a_space_after_fields_without_spaces(spec: str, head: str) -> None:
    """Quoted fields, addresses, ports and the server's names before the user name
    cannot shift it: a name with a space parses there."""
    r = compile_one(spec).parse(f'{head} john doe {T} "GET / HTTP/1.1" 401 0')
    assert (r.ip, r.user, r.status) == ("203.0.113.9", "john doe", 401)


@pytest.mark.parametrize(
    "tail",
    [" [" * 32000, " [a" * 32000 + "\\", " [1/Jan/2000:" * 10000 + "\\",
     " [1/Jan/2000:00:00:00 +0000]" * 3000 + ' "\\', " a" * 32000 + "\\"],
)  # fmt: skip
def test_a_long_line_of_brackets_is_rejected_quickly(tail: str) -> None:
    """The user name runs to the first " [" of a CLF date, in an atomic group: no
    backtracking over later ones (a backslash: the exact path)."""
    parse = build_parser(["combined", "nginx_main", "common", "vhost_combined"])
    line = "203.0.113.9 - x" + tail
    started = time.perf_counter()
    with pytest.raises(RejectedLine):
        parse(line)
    assert time.perf_counter() - started < 1.0


def test_an_empty_unquoted_nginx_variable_is_matched() -> None:
    """$request_completion, $https, $http2, $is_args are "" when not set, and skipped
    fields were ``\\S+`` (at least one character) (an audit)."""
    parser = compile_nginx(
        '$remote_addr [$time_local] "$request" $status $request_completion $request_time'
    )
    r = parser.parse(f'203.0.113.9 {T} "GET / HTTP/1.1" 200  0.005')
    assert (r.status, r.duration_ms) == (200, 5.0)
    r = parser.parse(f'203.0.113.9 {T} "GET / HTTP/1.1" 200 OK 0.005')
    assert (r.status, r.duration_ms) == (200, 5.0)


@pytest.mark.parametrize(
    ("addresses", "times"),
    [("10.0.0.1:80, 10.0.0.2:80", "0.001, 0.002"), ("10.0.0.1:80", "0.001"), ("-", "-"),
     ("10.0.0.1:80, unix:/tmp/s : 10.0.0.3:80", "0.001, 0.002 : 0.003")],
)  # fmt: skip
def test_unquoted_upstream_lists_are_matched(addresses: str, times: str) -> None:
    """With several upstreams tried, nginx writes "$upstream_addr" as
    "10.0.0.1:80, 10.0.0.2:80" and $upstream_response_time as "0.001, 0.002" (an
    audit)."""
    parser = compile_nginx(
        '$remote_addr [$time_local] "$request" $status $upstream_addr $upstream_response_time '
        "$request_time"
    )
    r = parser.parse(f'203.0.113.9 {T} "GET / HTTP/1.1" 502 {addresses} {times} 0.004')
    assert (r.ip, r.status, r.duration_ms) == ("203.0.113.9", 502, 4.0)


def test_apache_ssl_request_log_format_compiles() -> None:
    """The CustomLog of Apache's stock ssl.conf uses mod_ssl's %{VAR}x: it was refused
    ("unsupported directive '%x'"), though it can be matched and thrown away (an
    audit)."""
    parser = compile_one('apache:%t %h %{SSL_PROTOCOL}x %{SSL_CIPHER}x "%r" %b')
    r = parser.parse(f'{T} 203.0.113.9 TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256 "GET /a HTTP/1.1" 5')
    assert (r.ip, r.time, r.target, r.bytes_sent) == ("203.0.113.9", 971211336, "/a", 5)
    assert "TLS" not in repr([getattr(r, a) for a in r.__slots__])
    r = compile_one("apache:%h %t %{version}c %>s").parse(f"203.0.113.9 {T} TLSv1.3 200")
    assert r.status == 200
    for spec in ("apache:%h %t %x", "apache:%h %t %c"):  # mod_ssl's need a variable
        with pytest.raises(FormatError, match="unsupported directive"):
            compile_one(spec)


@pytest.mark.parametrize(
    ("request_line", "expected"),
    [
        ("GET /a b HTTP/1.1", ("GET", "/a b", "HTTP/1.1")),
        ("GET /a  b c HTTP/1.0", ("GET", "/a  b c", "HTTP/1.0")),
        ("FROB /a b HTTP/1.1", ("OTHER", "/a b", "HTTP/1.1")),
        ('GET /a \\"b\\" HTTP/1.1', ("GET", '/a "b"', "HTTP/1.1")),  # escape-aware path
        ("GET /a b", (None, None, None)),  # no protocol, and not HTTP/0.9's two parts
        ("GET /a HTTP/1.1 x", (None, None, None)),
    ],
)
def test_a_request_line_with_a_space_in_the_uri_keeps_method_and_target(
    request_line: str, expected: tuple[str | None, ...]
) -> None:
    """nginx serves "GET /a b HTTP/1.1" (space_in_uri) and logs it as is; splitting on
    every space dropped method, target and protocol (an audit)."""
    r = compile_one("nginx_combined").parse(
        f'203.0.113.9 - - {T} "{request_line}" 200 5 "-" "curl/8"'
    )
    assert (r.method, r.target, r.protocol) == expected


@pytest.mark.parametrize(
    ("fmt", "line"),
    [
        ("combined", '203.0.113.9 - - {T} "GET /{p} HTTP/1.1" ２００ 5 "-" "-"'),  # %>s
        ("combined", '203.0.113.9 - - {T} "GET /{p} HTTP/1.1" 200 ５ "-" "-"'),  # %b
        ("combined", '203.0.113.9 - - {T} "GET /{p} HTTP/1.1" ٢٠٠ 5 "-" "-"'),  # Arabic-Indic
        ('apache:%h %t "%r" %>s %b %D', '203.0.113.9 {T} "GET /{p} HTTP/1.1" 200 5 １５'),
        ('apache:%h %t "%r" %>s %b %{ms}T', '203.0.113.9 {T} "GET /{p} HTTP/1.1" 200 5 ０.５'),
        ('apache:%h %t "%r" %>s %b "%D"', '203.0.113.9 {T} "GET /{p} HTTP/1.1" 200 5 "１５"'),
        ('apache:%h %t %{msec_frac}t "%r" %>s', '203.0.113.9 {T} １２３ "GET /{p} HTTP/1.1" 200'),
        ('nginx:$remote_addr [$time_local] "$request" $status $body_bytes_sent $request_time',
         '203.0.113.9 [10/Oct/2000:13:55:36 -0700] "GET /{p} HTTP/1.1" ２００ 5 0.1'),
        ('nginx:$remote_addr [$time_local] "$request" $status $body_bytes_sent $request_time',
         '203.0.113.9 [10/Oct/2000:13:55:36 -0700] "GET /{p} HTTP/1.1" 200 5 ０.1'),
        ('nginx:$remote_addr [$time_local] "$request" $status',
         '203.0.113.9 [１0/Oct/2000:13:55:36 -0700] "GET /{p} HTTP/1.1" 200'),
        ('apache:%h [%{%d/%b/%Y:%H:%M:%S %z}t] "%r" %>s',
         '203.0.113.9 [1０/Oct/2000:13:55:36 -0700] "GET /{p} HTTP/1.1" 200'),
    ],
)  # fmt: skip
def test_numbers_of_unicode_digits_are_refused(fmt: str, line: str) -> None:
    r"""\d matches any Unicode digit and int()/strptime read them: a status "２００"
    was 200, a strftime day "1０" the 10th. Numbers are ASCII, as the JSON parser
    reads them; a line with other digits matches no format."""
    parse = build_parser(fmt)
    for path in ("", "\\"):  # the fast path, and the escape-aware one
        with pytest.raises(RejectedLine) as caught:
            parse(line.format(T=T, p=path))
        assert caught.value.reason == "parse.no_match"
        assert parse(_ascii_digits(line).format(T=T, p=path)).time == 971211336


def _ascii_digits(text: str) -> str:
    """``text`` with every decimal digit written in ASCII (the line as it should be)."""
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)


@pytest.mark.parametrize(
    ("fmt", "epoch"),
    [
        ("apache:%h %{sec}t %>s", "９７１２１１３３６"),
        ("apache:%h %{sec}t %>s", "971_211_336"),
        ("apache:%h %{sec}t %>s", "+971211336"),
        ("apache:%h %{msec}t %>s", "９７１２１１３３６１２３"),
        ("apache:%h %{usec}t %>s", "971_211_336_123_456"),
        ("nginx:$remote_addr $msec $status", "９７１２１１３３６.１２３"),
        ("nginx:$remote_addr $msec $status", "971211336.1_23"),
        ("nginx:$remote_addr $msec $status", "9.71211336e8"),
        # From 1e10 seconds (2286-11-20): no request's time, as in JSON logs.
        ("apache:%h %{sec}t %>s", "10000000000"),
        ("apache:%h %{msec}t %>s", "10000000000000"),
        ("apache:%h %{usec}t %>s", "10000000000000000"),
        ("nginx:$remote_addr $msec $status", "10000000000.000"),
        ("nginx:$remote_addr $msec $status", "99999999999.999"),
    ],
)
def test_epochs_are_ascii_and_before_2286(fmt: str, epoch: str) -> None:
    with pytest.raises(RejectedLine) as caught:
        build_parser(fmt)(f"203.0.113.9 {epoch} 200")
    assert caught.value.reason == "parse.bad_time"


@pytest.mark.parametrize(
    ("fmt", "epoch", "seconds"),
    [
        ("apache:%h %{sec}t %>s", "9999999999", 9_999_999_999),
        ("apache:%h %{msec}t %>s", "9999999999999", 9_999_999_999),
        ("apache:%h %{usec}t %>s", "9999999999999999", 9_999_999_999),
        ("nginx:$remote_addr $msec $status", "9999999999.999", 9_999_999_999),
        ("nginx:$remote_addr $msec $status", "971211336.123", 971211336),
    ],
)
def test_epochs_up_to_2286_are_read(fmt: str, epoch: str, seconds: int) -> None:
    assert build_parser(fmt)(f"203.0.113.9 {epoch} 200").time == seconds
