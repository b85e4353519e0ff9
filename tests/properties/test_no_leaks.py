"""Properties: nothing identifying gets out, and every line is accounted for.

Generated lines carry random client addresses in every textual form a log can hold
(plain, ip:port, [v6]:port, IPv4-mapped, 6to4, NAT64, via X-Forwarded-For), and random
emails, tokens, JWTs, UUIDs, session ids and cookie values in the path, query,
referrer, user agent, user and cookie fields. No such value may appear in any output
event, Kafka key or dead letter, in any destination; every line is published to every
destination or rejected, exactly once.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.enrich.geo import GeoLookup
from streams.keys import EphemeralKeyRing
from streams.pipeline import Pipeline, dead_letter

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=10)


@st.composite
def ipv4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    # Host part non-zero: an address ending in .0 is its own /24 network's name.
    return ipaddress.IPv4Address(draw(st.integers(0x01000000, 0xDFFFFFFF)) | 1)


@st.composite
def ipv6(draw: st.DrawFn) -> ipaddress.IPv6Address:
    high = draw(st.integers(0x2400, 0x2BFF)) << 112  # global unicast, not 2002::/16
    return ipaddress.IPv6Address(high | draw(st.integers(1, 2**112 - 1)) | 1)


@st.composite
def client(draw: st.DrawFn) -> tuple[str, list[str]]:
    """(text as logged, forms that must never appear in output)."""
    if draw(st.booleans()):
        v4 = draw(ipv4())
        forms = [str(v4)]
        text = draw(st.sampled_from([
            str(v4), f"{v4}:{draw(st.integers(1, 65535))}", f"::ffff:{v4}",
            str(ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80) | 1)),
            str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(v4))),
        ]))  # fmt: skip
        return text, forms
    v6 = draw(ipv6())
    forms = [str(v6), v6.exploded]
    text = draw(st.sampled_from([str(v6), f"[{v6}]:{draw(st.integers(1, 65535))}", v6.exploded]))
    return text, forms


@st.composite
def secret(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["email", "hex", "b64", "jwt", "uuid", "session"]))
    if kind == "email":
        return f"{draw(word)}.{draw(word)}@{draw(word)}.com"
    if kind == "hex":
        return draw(st.text(alphabet="0123456789abcdef", min_size=32, max_size=64))
    if kind == "b64":
        raw = draw(st.binary(min_size=24, max_size=48))
        return base64.urlsafe_b64encode(raw).decode().rstrip("=") + "A1"
    if kind == "jwt":
        part = lambda n: (
            base64.urlsafe_b64encode(draw(st.binary(min_size=n, max_size=n))).decode().rstrip("=")
        )
        return f"eyJ{part(18)}.eyJ{part(24)}.{part(32)}"
    if kind == "uuid":
        return str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    return "s" + draw(st.text(alphabet=ALNUM, min_size=24, max_size=40)) + "9"


def place(value: str, where: str, w: str) -> str:
    """Put a secret somewhere in a URL, percent-encoding @ sometimes."""
    return {
        "path": f"/{w}/{value}/x",
        "query": f"/{w}?{w}={value}&utm_source={w}",
        "utm": f"/{w}?utm_source={value}",
        "encoded": f"/{w}?e={value.replace('@', '%40')}",
        "fragment": f"/{w}#{value}",
    }[where]


@st.composite
def log_line(draw: st.DrawFn) -> tuple[str, list[str]]:
    text, forbidden = draw(client())
    secrets = [draw(secret()) for _ in range(4)]
    w = draw(word)
    target = place(
        secrets[0], draw(st.sampled_from(["path", "query", "utm", "encoded", "fragment"])), w
    )
    ref_host = draw(st.sampled_from(["www.example.com", f"{w}.example.net", "t.co"]))
    referrer = f"https://{ref_host}{place(secrets[1], draw(st.sampled_from(['path', 'query', 'encoded'])), w)}"
    agent = f"Mozilla/5.0 (X11; {secrets[2]}) Firefox/{draw(st.integers(1, 200))}.0"
    user = draw(st.sampled_from(["-", secrets[3]]))
    cookie = f"sid={secrets[3]}; theme=dark"
    line = (f'{text} - {user} [10/Oct/2000:13:55:36 -0700] "GET {target} HTTP/1.1" 200 '
            f'{draw(st.integers(0, 10**6))} "{referrer}" "{agent}" "{cookie}"')  # fmt: skip
    return line, [*forbidden, *secrets]


FORMAT = 'apache:%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i" "%{Cookie}i"'


def all_outputs(pipeline: Pipeline, lines: list[bytes]) -> tuple[list[bytes], Any]:
    """Every byte that would leave the process: values, keys, dead letters."""
    out = pipeline.test(lines)
    blobs = []
    for events in out.per_destination:
        for key, value, _ts in events:
            orjson.loads(value)  # every output is valid JSON
            blobs.append(value)
            if key is not None:
                blobs.append(key)
    blobs.extend(dead_letter(r) for r in out.rejections)
    return blobs, out


@pytest.fixture(scope="module")
def custom_pipeline(default_config: dict[str, Any], geo_dbs: dict[str, str]) -> Pipeline:
    return _pipeline(default_config, {"format": FORMAT})


@pytest.fixture(scope="module")
def json_pipeline(default_config: dict[str, Any], geo_dbs: dict[str, str]) -> Pipeline:
    return _pipeline(default_config, {"format": "json"})


def _pipeline(default_config: dict[str, Any], input_section: dict[str, Any]) -> Pipeline:
    config = copy.deepcopy(default_config)
    config["input"].update(input_section)
    return Pipeline.from_normalized(
        config, keyring=EphemeralKeyRing(86400), geo=GeoLookup.from_config(config["enrich"]["geo"])
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(log_line(), min_size=1, max_size=8), st.lists(st.binary(max_size=200), max_size=3))
def test_no_identifier_in_any_output_and_every_line_accounted(
    custom_pipeline: Pipeline, generated: list[tuple[str, list[str]]], junk: list[bytes]
) -> None:
    pipeline = custom_pipeline
    lines = [line.encode() for line, _ in generated] + junk
    blobs, out = all_outputs(pipeline, lines)
    text = b"\n".join(blobs).decode()
    lowered = text.lower()
    for _, forbidden in generated:
        for value in forbidden:
            assert value.lower() not in lowered, f"leaked a {len(value)}-char value"
            assert value.replace("@", "%40").lower() not in lowered
    published = [len(events) for events in out.per_destination]
    assert len(set(published)) == 1, "each accepted line reaches every destination"
    assert published[0] + len(out.rejections) == len(lines)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(log_line(), min_size=1, max_size=5))
def test_json_input_leaks_nothing(
    json_pipeline: Pipeline, generated: list[tuple[str, list[str]]]
) -> None:
    pipeline = json_pipeline
    lines = []
    for line, forbidden in generated:
        parts = line.split('"')
        lines.append(orjson.dumps({
            "remote_addr": line.split(" ")[0], "time_iso8601": "2000-10-10T20:55:36Z",
            "request": parts[1], "status": 200, "http_referer": parts[3],
            "http_user_agent": parts[5], "http_cookie": parts[7], "remote_user": forbidden[-1],
        }))  # fmt: skip
    blobs, out = all_outputs(pipeline, lines)
    text = b"\n".join(blobs).decode().lower()
    for _, forbidden in generated:
        for value in forbidden:
            assert value.lower() not in text
    assert len(out.per_destination[0]) + len(out.rejections) == len(lines)
