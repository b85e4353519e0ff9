"""JSON-lines input with configurable field mapping."""

from __future__ import annotations

import orjson
import pytest

from streams.parse import build_parser
from streams.records import RejectedLine


def line(**fields: object) -> str:
    base: dict[str, object] = {"remote_addr": "203.0.113.9", "time_iso8601": "2000-10-10T20:55:36+00:00",
                               "request": "GET /x?y=1 HTTP/1.1", "status": 200}  # fmt: skip
    base.update(fields)
    return orjson.dumps(base).decode()


def test_nginx_names_by_default() -> None:
    r = build_parser("json")(
        line(http_accept_language="de-CH", host="a.example", body_bytes_sent="7")
    )
    assert (r.ip, r.time, r.target, r.status, r.language, r.host, r.bytes_sent) == (
        "203.0.113.9", 971211336, "/x?y=1", 200, "de-CH", "a.example", 7,
    )  # fmt: skip


def test_custom_mapping_with_nested_keys() -> None:
    parse = build_parser("json", json_fields={"client": "client.ip", "time": "ts",
                                              "path": "req.path", "method": "req.method"})  # fmt: skip
    text = orjson.dumps({"client": {"ip": "[2001:db8::1]:443"}, "ts": 971211336,
                         "req": {"path": "/a", "method": "GET"}}).decode()  # fmt: skip
    r = parse(text)
    assert (r.ip, r.time, r.target, r.method) == ("2001:db8::1", 971211336, "/a", "GET")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "parse.bad_json"),
        ('{"a": 1} x', "parse.bad_json"),
        ("[1, 2]", "parse.no_match"),  # no object: another format's reason may stand
        ("garbage", "parse.no_match"),
        (line(remote_addr="nope"), "parse.bad_ip"),
        (line(time_iso8601="later"), "parse.bad_time"),
        (line(remote_addr={"ip": "203.0.113.9"}), "parse.bad_ip"),
        (line(remote_addr=True), "parse.bad_ip"),
        (line(time_iso8601=True), "parse.bad_time"),
    ],
)
def test_bad_records(text: str, reason: str) -> None:
    with pytest.raises(RejectedLine) as caught:
        build_parser("json")(text)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        # No key, null, or what nginx writes for an unset variable ("-", "").
        ({"time_iso8601": None}, "parse.missing_time"),
        ({"time_iso8601": ""}, "parse.missing_time"),
        ({"time_iso8601": "-"}, "parse.missing_time"),
        ({"remote_addr": None}, "parse.missing_client"),
        ({"remote_addr": ""}, "parse.missing_client"),
        ({"remote_addr": "-"}, "parse.missing_client"),
        ({"remote_addr": None, "time_iso8601": None}, "parse.missing_client"),
    ],
)
def test_a_missing_client_or_time_has_its_own_reason(
    fields: dict[str, object], reason: str
) -> None:
    """A line without a time was parse.bad_time and {} parse.bad_ip, as if the log
    held a broken value rather than none: a mapping to the wrong key (or a logger that
    leaves the field out) looked like bad data (an audit)."""
    with pytest.raises(RejectedLine) as caught:
        build_parser("json")(line(**fields))
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [("{}", "parse.missing_client"), ('{"time_iso8601": 971211336}', "parse.missing_client"),
     ('{"remote_addr": "203.0.113.9"}', "parse.missing_time")],
)  # fmt: skip
def test_a_line_without_the_keys_is_missing_them(text: str, reason: str) -> None:
    with pytest.raises(RejectedLine) as caught:
        build_parser("json")(text)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "fields",
    [
        {"status": True},  # was None
        {"status": False},
        {"status": "abc"},
        {"status": "200.5"},
        {"status": 200.5},  # was 200
        {"status": "+200"},
        {"status": " 200"},
        {"status": [200]},
        {"status": {"code": 200}},
        {"body_bytes_sent": [1]},
        {"body_bytes_sent": "x"},
        {"body_bytes_sent": 1.5},
        {"body_bytes_sent": True},
        {"body_bytes_sent": "9" * 5000},  # int() refuses more than 4300 digits
        {"request_time": "x"},
        {"request_time": True},
        {"request_time": [0.5]},
        {"request_time": "nan"},
    ],
)
def test_a_number_field_that_is_no_number_is_a_bad_number(fields: dict[str, object]) -> None:
    """A status true or "abc" was no status, 200.5 was 200, while 99999 and a size -5
    were parse.bad_number (an audit): a value where a number is mapped is a number, or
    the line is parse.bad_number, as the text formats refuse such a line."""
    with pytest.raises(RejectedLine) as caught:
        build_parser("json")(line(**fields))
    assert caught.value.reason == "parse.bad_number"


@pytest.mark.parametrize(
    ("value", "status"), [(200, 200), ("200", 200), (200.0, 200), ("-", None), ("", None),
                          (None, None)],
)  # fmt: skip
def test_a_status_is_an_integer_or_absent(value: object, status: int | None) -> None:
    """A JSON number of integral value is that integer (JavaScript writes no other);
    "-" and "" are nginx's unset variable."""
    r = build_parser("json")(line(status=value, body_bytes_sent=value, request_time=value))
    assert (r.status, r.bytes_sent) == (status, status)
    assert r.duration_ms == (None if status is None else status * 1000.0)


@pytest.mark.parametrize(
    "fields",
    [
        {"body_bytes_sent": 2**63 - 1},
        {"body_bytes_sent": "9" * 26},  # orjson could not serialize it: was a rules.error
        {"body_bytes_sent": -1},
        {"body_bytes_sent": 1e300},
        {"status": 42},
        {"status": 1000},
        {"request_time": 1e300},  # milliseconds: inf
        {"request_time": -0.5},
    ],
)
def test_numbers_out_of_bounds_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(RejectedLine) as caught:
        build_parser("json")(line(**fields))
    assert caught.value.reason == "parse.bad_number"


def test_an_unregistered_method_is_other() -> None:
    parse = build_parser("json", json_fields={"method": "m", "path": "p"})
    r = parse(line(request=None, m="JOHNDOESECRET", p="/x"))
    assert r.method == "OTHER"
    assert parse(line(request="FROBNICATE /x HTTP/1.1")).method == "OTHER"
    assert parse(line(request=None, m="DELETE", p="/x")).method == "DELETE"


def test_an_object_where_text_is_mapped_is_not_turned_into_text() -> None:
    """A nested object in a text field became its Python text form, so everything in it
    (mapped or not, a cookie included) could reach a rule: now the field is absent.
    An array is a header's values (Caddy) only when it holds text alone."""
    parse = build_parser("json", json_fields={"path": "p", "user_agent": "ua"})
    r = parse(line(request=None, p={"session": "s3cr3t", "to": "/x"}, ua=["Mozilla", {"x": 1}]))
    assert r.target is None and r.user_agent is None


@pytest.mark.parametrize("status", ["000", "009", 0, 9])
def test_nginx_status_000_and_009_are_no_status(status: object) -> None:
    """nginx's escape=json logs "000" (no response) and "009" (HTTP/0.9): they were
    parse.bad_number (an audit)."""
    assert build_parser("json")(line(status=status)).status is None


def test_a_text_line_keeps_its_reason_when_json_is_also_listed() -> None:
    """parse_any lets the last specific reason win, and json rejected every text line
    as parse.bad_json: ["nginx_main", "json"] reported a bad time or IP as bad_json
    (an audit)."""
    parse = build_parser(["nginx_main", "json"])
    t = "[10/Oct/2000:13:55:36 -0700]"
    for text, reason in [
        ('203.0.113.9 - - [10/Foo/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-" "-" "-"',
         "parse.bad_time"),
        (f'nope - - {t} "GET / HTTP/1.1" 200 5 "-" "-" "-"', "parse.bad_ip"),
        ("garbage", "parse.no_match"),
        ('{"remote_addr": "203.0.113.9"', "parse.bad_json"),
        (' {"remote_addr": "nope"}', "parse.bad_ip"),
    ]:  # fmt: skip
        with pytest.raises(RejectedLine) as caught:
            parse(text)
        assert caught.value.reason == reason


# --- Caddy: headers as arrays (audit formats, FMT-8) -------------------------------

CADDY = {
    "level": "info", "ts": 971211336.25, "logger": "http.log.access",
    "msg": "handled request",
    "request": {
        "remote_ip": "203.0.113.9", "remote_port": "51234", "client_ip": "203.0.113.9",
        "proto": "HTTP/2.0", "method": "GET", "host": "www.example.com", "uri": "/a?b=1",
        "headers": {"User-Agent": ["curl/8.4.0"], "Referer": ["https://x.example/"],
                    "Accept-Language": ["de-CH,de;q=0.9"]},
    },
    "bytes_read": 0, "user_id": "", "duration": 0.0012, "size": 5, "status": 200,
}  # fmt: skip
CADDY_FIELDS = {
    "client": "request.remote_ip", "time": "ts", "method": "request.method",
    "path": "request.uri", "protocol": "request.proto", "host": "request.host",
    "user_agent": "request.headers.User-Agent", "referrer": "request.headers.Referer",
    "language": "request.headers.Accept-Language", "status": "status", "bytes": "size",
    "duration_s": "duration", "forwarded_for": "request.headers.X-Forwarded-For",
    "cookie": "request.headers.Cookie",
}  # fmt: skip


def caddy(**headers: object) -> str:
    doc = orjson.loads(orjson.dumps(CADDY))
    doc["request"]["headers"].update(headers)
    return orjson.dumps(doc).decode()


def test_caddy_header_arrays_are_read() -> None:
    """Caddy (and any Go http.Header dump) logs every request header as an array of
    its values; arrays were taken as absent, so the user agent, referrer and language
    of every Caddy line were silently None (no browser, no bot, pseudonyms of
    (ip, None)). An audit (formats, FMT-8)."""
    r = build_parser("json", json_fields=CADDY_FIELDS)(caddy())
    assert (r.ip, r.time, r.target, r.status, r.protocol, r.host) == (
        "203.0.113.9", 971211336, "/a?b=1", 200, "HTTP/2.0", "www.example.com",
    )  # fmt: skip
    assert r.user_agent == "curl/8.4.0"
    assert r.referrer == "https://x.example/"
    assert r.language == "de-CH,de;q=0.9"


def test_repeated_headers_are_read_as_http_combines_them() -> None:
    """A header sent twice is an array of two: a list header (Accept-Language,
    X-Forwarded-For) is its values joined by ", " (RFC 9110 5.3), Cookie by "; "
    (RFC 9113 8.2.3); a header of one value (User-Agent, Referer) is its first."""
    parse = build_parser("json", json_fields=CADDY_FIELDS, trusted_proxies=["10.0.0.0/8"])
    headers = {
        "User-Agent": ["curl/8.4.0", "evil/1"], "Referer": ["https://x.example/", "y"],
        "Accept-Language": ["de-CH", "fr;q=0.5"], "Cookie": ["a=1", "b=2"],
        "X-Forwarded-For": ["198.51.100.7", "10.0.0.2"],
    }  # fmt: skip
    r = parse(caddy(**headers))
    assert (r.user_agent, r.referrer) == ("curl/8.4.0", "https://x.example/")
    assert (r.language, r.cookie) == ("de-CH, fr;q=0.5", "a=1; b=2")
    # 203.0.113.9 is no trusted proxy: the forwarded chain is not believed.
    assert r.ip == "203.0.113.9"
    doc = orjson.loads(caddy(**{"X-Forwarded-For": ["198.51.100.7", "10.0.0.2"]}))
    doc["request"]["remote_ip"] = "10.0.0.1"
    assert parse(orjson.dumps(doc).decode()).ip == "198.51.100.7"


@pytest.mark.parametrize(
    "value", [[], [""], ["-"], [{"a": "b"}], ["x", {"a": "b"}], [["x"]], [1], [None]]
)
def test_a_header_array_that_holds_no_text_is_absent(value: object) -> None:
    r = build_parser("json", json_fields=CADDY_FIELDS)(
        caddy(**{"User-Agent": value, "Accept-Language": value, "Cookie": value})
    )
    assert (r.user_agent, r.language, r.cookie) == (None, None, None)


def test_an_array_is_no_text_outside_the_headers() -> None:
    """Only header roles read arrays: a request target or method is one value."""
    parse = build_parser("json", json_fields={"method": "m", "path": "p", "host": "h"})
    r = parse(line(request=None, m=["GET"], p=["/x", "/y"], h=["a.example"]))
    assert (r.method, r.target) == (None, None)
    assert r.host == "a.example"  # Host is a header (of one value)


# --- values of the wrong kind (audit formats, suspicions) --------------------------


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_no_text(value: bool) -> None:
    """A boolean where text is mapped became the text "True" (a referrer "True")."""
    r = build_parser("json")(line(http_referer=value, http_user_agent=value, host=value))
    assert (r.referrer, r.user_agent, r.host) == (None, None, None)


# --- keys holding a dot (audit formats, FMT-9) -------------------------------------


def test_a_json_key_with_a_literal_dot_can_be_mapped() -> None:
    """A dotted key nests, so the flat dotted keys of OpenTelemetry and flattened ECS
    ("client.address", "source.ip") could not be mapped: every line was parse.bad_ip.
    A list of keys names one key per level, each taken as it is. An audit (formats,
    FMT-9)."""
    text = orjson.dumps(
        {"source.ip": "203.0.113.9", "@timestamp": "2000-10-10T20:55:36Z",
         "http.request.method": "GET", "url.path": "/a", "user_agent.original": "curl/8"}
    ).decode()  # fmt: skip
    fields = {"client": ["source.ip"], "time": "@timestamp", "method": ["http.request.method"],
              "path": ["url.path"], "user_agent": ["user_agent.original"]}  # fmt: skip
    r = build_parser("json", json_fields=fields)(text)
    assert (r.ip, r.time, r.method, r.target, r.user_agent) == (
        "203.0.113.9", 971211336, "GET", "/a", "curl/8",
    )  # fmt: skip


def test_a_list_of_keys_reaches_a_dotted_key_inside_an_object() -> None:
    """OpenTelemetry's JSON nests its dotted attribute names in "attributes"."""
    text = orjson.dumps(
        {"attributes": {"client.address": "203.0.113.9", "url.path": "/a"}, "ts": 971211336,
         "client": {"address": "198.51.100.7"}}
    ).decode()  # fmt: skip
    fields = {"client": ["attributes", "client.address"], "time": "ts",
              "path": ["attributes", "url.path"]}  # fmt: skip
    r = build_parser("json", json_fields=fields)(text)
    assert (r.ip, r.target) == ("203.0.113.9", "/a")
    # The same keys as one dotted text still nest (the meaning configs have).
    fields["client"] = "client.address"
    assert build_parser("json", json_fields=fields)(text).ip == "198.51.100.7"


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "２００"},  # fullwidth digits
        {"status": "٢٠٠"},  # Arabic-Indic digits
        {"status": "2_00"},
        {"body_bytes_sent": "１２"},
        {"request_time": "０.５"},
        {"request_time": "0_5"},
    ],
)
def test_numbers_are_ascii_digits(fields: dict[str, object]) -> None:
    """int() and float() read any Unicode digit and "_" between digits: a status of
    "２００" was 200, where the text formats' [0-9] refuse the line. Like other text
    that is no number, such a field makes the line parse.bad_number."""
    with pytest.raises(RejectedLine) as caught:
        build_parser("json")(line(**fields))
    assert caught.value.reason == "parse.bad_number"


@pytest.mark.parametrize(
    "value",
    ["９７１２１１３３６", "٩٧١٢١١٣٣٦", "971_211_336", "９７１２１１３３６.5",
     "10/Oct/２０００:13:55:36 +0000", "[10/Oct/2000:13:55:36 +０７００]"],
)  # fmt: skip
def test_a_time_is_ascii(value: str) -> None:
    """An epoch text of Unicode digits was read like ASCII ones (clf_time refuses
    them): parse.bad_time."""
    with pytest.raises(RejectedLine) as caught:
        build_parser("json")(line(time_iso8601=value))
    assert caught.value.reason == "parse.bad_time"


@pytest.mark.parametrize(
    "value",
    [99_999_999_999, 99_999_999_999.9, "99999999999", 10_000_000_000, "1e10",
     20_000_000_000_000, "20000000000000"],
)  # fmt: skip
def test_an_epoch_from_the_year_2286_is_a_bad_time(value: object) -> None:
    """An epoch under 1e11 is seconds, from 1e11 milliseconds: 99,999,999,999 was read
    as the year 5138 and accepted, and a time in milliseconds from 1e13 as well. Read
    either way, an epoch from 1e10 seconds (2286-11-20) is no request's time."""
    with pytest.raises(RejectedLine) as caught:
        build_parser("json")(line(time_iso8601=value))
    assert caught.value.reason == "parse.bad_time"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(9_999_999_999, 9_999_999_999), (100_000_000_000, 100_000_000),
     (1_700_000_000_123, 1_700_000_000), ("1700000000.5", 1_700_000_000),
     ("9999-12-31T23:59:59Z", 253402300799), ("[31/Dec/9999:23:59:59 +0000]", 253402300799)],
)  # fmt: skip
def test_epochs_up_to_2286_and_written_times_up_to_9999_are_read(
    value: object, seconds: int
) -> None:
    assert build_parser("json")(line(time_iso8601=value)).time == seconds


def test_a_mapped_duration_ms_is_read_over_the_default_duration_s() -> None:
    """``duration_s`` is mapped by default (nginx's ``request_time``), so a document
    holding both keys took the seconds even where the user had mapped ``duration_ms``
    on purpose, a finer value (a review, session 15). As %D over %T in a LogFormat,
    the milliseconds win; the seconds stay the fallback."""
    parse = build_parser("json", json_fields={"duration_ms": "upstream_ms"})
    line = {"remote_addr": "203.0.113.9", "time_iso8601": "2024-11-30T12:00:00+00:00",
            "request": "GET / HTTP/1.1", "status": 200, "request_time": "0.5"}  # fmt: skip
    assert parse(orjson.dumps({**line, "upstream_ms": 123.4}).decode()).duration_ms == 123.4
    assert parse(orjson.dumps(line).decode()).duration_ms == 500.0
