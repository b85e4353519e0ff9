"""truncate_ip: prefixes, embedded IPv4 forms, privacy floors."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.actions.base import BuildContext
from streams.actions.truncate_ip import SPEC, embedded_ipv4

OPS = BuildContext(destination_kind="operations")


def build(v4: int = 24, v6: int = 48, fmt: str = "cidr") -> object:
    return SPEC.build({"ipv4_prefix": v4, "ipv6_prefix": v6, "format": fmt}, OPS)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:abcd:1234:5678::1", "2001:db8:abcd::/48"),
        ("2002:cb00:714d::1", "203.0.113.0/24"),  # 6to4 of 203.0.113.77
        ("64:ff9b::203.0.113.77", "203.0.113.0/24"),  # NAT64 well-known prefix
        ("64:ff9b::1:cb00:7109", "64:ff9b::/48"),  # not NAT64 (only 64:ff9b::/96 is)
        ("2001:0:4136:e378:8000:63bf:34ff:8eb2", "203.0.113.0/24"),  # Teredo, client 203.0.113.77
        ("::ffff:203.0.113.77", "203.0.113.0/24"),  # mapped (parsers already unwrap it)
    ],
)
def test_default_prefixes(ip: str, expected: str) -> None:
    assert build()(ip) == expected  # type: ignore[operator]


def test_analytics_prefixes_and_address_format() -> None:
    f = build(16, 32, "address")
    assert f("203.0.113.77") == "203.0.0.0"  # type: ignore[operator]
    assert f("2001:db8:abcd::1") == "2001:db8::"  # type: ignore[operator]


def test_none_and_garbage() -> None:
    assert build()(None) is None  # type: ignore[operator]
    assert build()("not-an-ip") is None  # type: ignore[operator]


@pytest.mark.parametrize("text", ["256.1.2.3", "259.0.113.7", "203.0.113.7:8080", "203.0.113.77x"])
def test_only_a_whole_valid_address_is_truncated(text: str) -> None:
    """No guess: an octet over 255 masked away by the fast path published an invented
    network (0.1.2.0/24), and text after the address is not the parser's address."""
    assert build()(text) is None  # type: ignore[operator]


def test_prefix_options_stop_at_the_address_size() -> None:
    """/33 or /129 is refused by the option check, before build's mask would shift by a
    negative count at startup."""
    checks = {o.name: o.check for o in SPEC.options if o.check}
    assert checks["ipv4_prefix"](32) is None and checks["ipv4_prefix"](33) is not None
    assert checks["ipv6_prefix"](128) is None and checks["ipv6_prefix"](129) is not None


def test_a_destination_of_unknown_kind_gets_the_operations_floors() -> None:
    """Fail closed: a context of neither kind (a pipeline built without the config's
    normalization) is held to /24 and /48 like operations."""
    assert SPEC.validate is not None
    options = {"ipv4_prefix": 32, "ipv6_prefix": 128, "format": "cidr"}
    assert len(SPEC.validate(options, BuildContext(destination_kind="internal"))) == 2


@pytest.mark.parametrize(
    ("kind", "v4", "v6", "fragment"),
    [("operations", 25, 48, "ipv4_prefix 25"), ("operations", 24, 56, "ipv6_prefix 56"),
     ("analytics", 24, 32, "ipv4_prefix 24"), ("analytics", 16, 48, "ipv6_prefix 48")],
)  # fmt: skip
def test_floors_refuse_more_bits_unless_unsafe(kind: str, v4: int, v6: int, fragment: str) -> None:
    options = {"ipv4_prefix": v4, "ipv6_prefix": v6, "format": "cidr"}
    assert SPEC.validate is not None
    errors = SPEC.validate(options, BuildContext(destination_kind=kind))
    assert len(errors) == 1 and fragment in errors[0]
    assert SPEC.validate(options, BuildContext(destination_kind=kind, unsafe=True)) == []


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_no_ipv4_host_bits_survive(value: int) -> None:
    ip = str(ipaddress.IPv4Address(value))
    out = build()(ip)  # type: ignore[operator]
    assert out == f"{ipaddress.IPv4Address(value & 0xFFFFFF00)}/24"


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_embedded_ipv4_never_survives_a_48(value: int) -> None:
    v4 = ipaddress.IPv4Address(value)
    for carrier in (
        ipaddress.IPv6Address((0x2002 << 112) | (value << 80) | 1),  # 6to4
        ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | value),  # NAT64
    ):
        out = build()(str(carrier))  # type: ignore[operator]
        assert out == f"{ipaddress.IPv4Address(int(v4) & 0xFFFFFF00)}/24"


@given(
    st.one_of(st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
              st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)),
    st.integers(0, 32), st.integers(0, 128), st.sampled_from(["cidr", "address"]),
)  # fmt: skip
def test_same_as_the_standard_library_network(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, v4: int, v6: int, fmt: str
) -> None:
    f = SPEC.build({"ipv4_prefix": v4, "ipv6_prefix": v6, "format": fmt}, BuildContext())
    text = str(address)
    if address.version == 6:
        carried = embedded_ipv4(address)
        if carried is not None:
            address = carried
    bits = v4 if address.version == 4 else v6
    network = ipaddress.ip_network((address, bits), strict=False)
    assert f(text) == (str(network) if fmt == "cidr" else str(network.network_address))


@given(
    st.one_of(
        st.text(alphabet="0123456789.", max_size=17),
        st.from_regex(r"\A[0-9]{1,4}(\.[0-9]{1,4}){3}\Z"),  # dotted quads, in range or not
        st.from_regex(r"\A0[0-9]{1,2}(\.[0-9]{1,3}){3}\Z"),  # leading zeros
        st.text(alphabet="0123456789.\u0663\uff11 \n:abcdef", max_size=20),  # look-alikes
    )
)
def test_dotted_quad_shortcut_accepts_exactly_what_ipaddress_accepts(text: str) -> None:
    # IPv4 text skips ipaddress: it must agree with it on every string, junk included.
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        expected = None
    else:
        if address.version == 6 and embedded_ipv4(address) is not None:
            address = embedded_ipv4(address)  # type: ignore[assignment]
        bits = 24 if address.version == 4 else 48
        expected = str(ipaddress.ip_network((address, bits), strict=False))
    assert build()(text) == expected  # type: ignore[operator]
