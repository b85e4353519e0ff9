"""IPv4 addresses in the forms browsers and ``inet_aton`` read besides dotted decimal:
hexadecimal (one number or dotted parts) must be templated and swept like the dotted
form (an audit found ``/debug/ip/0xacd9abce`` published), and a 6to4 /48, which holds a
whole IPv4 address, is not a truncated network."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import detect
from streams.actions.base import BuildContext
from streams.actions.url_policy import SPEC as URL_POLICY

T = "[10/Oct/2000:13:55:36 -0700]"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
# 172.217.171.206: its hex form has few decimal digits, so the id rules keep it.
HEX_INT = "0xacd9abce"
HEX_DOTTED = "0xac.0xd9.0xab.0xce"


@pytest.mark.parametrize("form", [HEX_INT, HEX_DOTTED, "0xac.217.0xab.206", "0XACD9ABCE"])
def test_url_policy_templates_hex_ipv4_in_path_and_query(form: str) -> None:
    policy = URL_POLICY.build({"allow_query": ["utm_*"]}, BuildContext())
    assert form not in policy(f"/debug/ip/{form}")
    assert form not in policy(f"/x?utm_source={form}")


@pytest.mark.parametrize("text", [f"/debug/ip/{HEX_DOTTED}", f"ip={HEX_INT}", "0xac.0xd9.43982"])
def test_sweep_flags_hex_ipv4(text: str) -> None:
    assert detect.find_leak(text) == "ipv4"


# Five parts are no address (a part past 255 keeps the run free of dotted windows: any
# four numbers <= 255 in a row are one, see test_detect).
@pytest.mark.parametrize("text", ["color 0xff", "0x0", "mask 0x00ffffff", "0x1.2.3.400.5", "0xg1"])
def test_sweep_keeps_small_or_invalid_hex(text: str) -> None:
    # Below 1.0.0.0 ("this network") no client has the address; not a number at all.
    assert detect.find_leak(text) is None


def test_default_config_publishes_no_hex_client_address(make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    lines = [
        f'172.217.171.206 - - {T} "GET /debug/ip/{form} HTTP/1.1" 200 5 "-" "{UA}"'
        for form in (HEX_INT, HEX_DOTTED)
    ]
    out = pipeline.test(lines)
    assert not out.rejections
    text = b"\n".join(e[1] for events in out.per_destination for e in events).decode()
    assert "acd9abce" not in text and "0xac" not in text


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.lists(st.sampled_from("xod"), min_size=4))
def test_whatwg_ipv4_reads_what_inet_aton_reads(value: int, parts: int, bases: list[str]) -> None:
    # Build the address as `parts` numbers, each in a chosen base, and compare with the C
    # library's reading of the same text.
    octets = ipaddress.IPv4Address(value).packed
    numbers = [*octets[: parts - 1], int.from_bytes(octets[parts - 1 :], "big")]
    text = ".".join(
        {"x": hex(n), "o": "0" + oct(n)[2:], "d": str(n)}[b]
        for n, b in zip(numbers, bases, strict=False)
    )
    assert detect.whatwg_ipv4(text) == int.from_bytes(socket.inet_aton(text), "big") == value


@pytest.mark.parametrize(
    "text", ["", ".", "1.2.3.4.5", "256.1.1.1", "1.2.0x10000", "08", "1_0", "+1", " 1", "٣"]
)
def test_whatwg_ipv4_refuses_what_is_no_address(text: str) -> None:
    assert detect.whatwg_ipv4(text) is None


def test_sweep_flags_a_6to4_network_that_holds_a_whole_ipv4() -> None:
    # 2002:cb00:7109::/48 is 6to4 for 203.0.113.9; truncate_ip writes 6to4 clients as
    # IPv4, so such text can only be a client's address.
    assert detect.find_leak("2002:cb00:7109::/48") is not None
    assert detect.find_leak("2002:cb00:7100::/40") is None  # the /24 network
    assert detect.find_leak("2001:db8:85a3::/48") is None  # any other /48


@pytest.mark.parametrize(
    "text",
    ["/debug/0xcb007109.html", "0xcb.0.0x71.9.json", "/ip/0313.0.0161.011", "0313.0.0161.011/x"],
)
def test_sweep_flags_other_notations_before_a_dot_or_as_octal(text: str) -> None:
    # 203.0.113.9 in hex before an extension, and in octal parts (a review).
    assert detect.find_leak(text) == "ipv4"


@pytest.mark.parametrize("text", ["v1.05", "release 2.010.3", "0x1f"])
def test_sweep_keeps_version_numbers_with_leading_zeros(text: str) -> None:
    # Octal parts count only in four parts, and below 1.0.0.0 nothing is an address.
    assert detect.find_leak(text) is None
