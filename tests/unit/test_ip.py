"""Client address normalization: ports, brackets, zones, mapping, XFF chains."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from streams.parse.ip import ClientResolver, canonical_ip, ipv6_text, parse_ipv6


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("203.0.113.9:8080", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("[::ffff:198.51.100.7]:80", "198.51.100.7"),
        ("fe80::1%eth0", "fe80::1"),
        (" 203.0.113.9 ", "203.0.113.9"),
    ],
)
def test_canonical_forms(text: str, expected: str) -> None:
    assert canonical_ip(text) == expected


@pytest.mark.parametrize("text", ["-", "", "example.org", "999.1.1.1", "1.2.3", "[::1", "unknown"])
def test_not_an_address(text: str) -> None:
    assert canonical_ip(text) is None


def _by_ipaddress(text: str) -> str | None:
    """What canonical_ip gave before its shortcuts: ``ipaddress.ip_address`` on the
    text without port, brackets and zone, IPv4-mapped as the IPv4 it carries."""
    raw = text.strip()
    if raw.startswith("["):
        end = raw.find("]")
        raw = raw[1:end] if end > 0 else raw
    elif raw.count(":") == 1:
        raw = raw.split(":", 1)[0]
    zone = raw.find("%")
    if zone > 0:
        raw = raw[:zone]
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


_OCTETS = st.one_of(
    st.integers(0, 300).map(str), st.from_regex(r"0[0-9]{1,3}", fullmatch=True), st.just("")
)


@given(
    st.one_of(
        st.lists(_OCTETS, min_size=3, max_size=5).map(".".join),
        st.text(alphabet="0123456789.:abcdefABCDEF%[] \n\u0663", max_size=16),
        st.ip_addresses().map(str),
    )
)
def test_the_shortcuts_agree_with_ipaddress(text: str) -> None:
    # canonical_ip returns a canonical dotted quad as it is and parses text with a
    # colon as IPv6 only (without ip_address's IPv4 attempt): the same answers.
    assert canonical_ip(text) == _by_ipaddress(text)


# Groups of the special ranges and zero runs of every length, where the formatting rules
# (which run of zeros becomes "::", the dotted forms inet_ntop writes) differ.
_GROUPS = st.one_of(
    st.sampled_from([0, 0, 0, 1, 0xFFFF, 0x2001, 0x2002, 0x64, 0xFF9B]), st.integers(0, 0xFFFF)
)


@given(
    st.one_of(
        st.ip_addresses(v=6),
        st.lists(_GROUPS, min_size=8, max_size=8).map(
            lambda g: ipaddress.IPv6Address(b"".join(w.to_bytes(2, "big") for w in g))
        ),
    )
)
@example(ipaddress.IPv6Address("::ffff:c000:207"))
@example(ipaddress.IPv6Address("::c000:207"))
@example(ipaddress.IPv6Address("::ffff:0:1"))
@example(ipaddress.IPv6Address("::1"))
@example(ipaddress.IPv6Address("::"))
@example(ipaddress.IPv6Address("1::"))
@example(ipaddress.IPv6Address("1:0:0:1:0:0:1:0"))
@example(ipaddress.IPv6Address("0:0:1::"))
def test_ipv6_text_is_what_ipaddress_writes(address: ipaddress.IPv6Address) -> None:
    assert ipv6_text(address) == str(address)
    scoped = ipaddress.IPv6Address(f"{address}%eth0")
    assert ipv6_text(scoped) == str(scoped)


def _ipaddress_v6(text: str) -> ipaddress.IPv6Address | None:
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def _parsed_v6(text: str) -> ipaddress.IPv6Address | None:
    try:
        return parse_ipv6(text)
    except ValueError:
        return None


@example("1:2:3:4:5:6:7::")
@example("::1:2:3:4:5:6:7")
@example("1::2:3:4:5:6:7:8")
@example("1:2:3:4:5:6:7:8::")
@example(":1:2:3:4:5:6:7")
@example(":::")
@example("12345::")
@example("::ffff:1.2.3.4")
@example("fe80::1%eth0")
@given(
    st.one_of(
        st.text(alphabet="0123456789abcdefABCDEF:", max_size=41),
        st.lists(st.text(alphabet="0123456789abcdefABCDEF", max_size=5), max_size=10).map(":".join),
        st.ip_addresses(v=6).map(str),
        st.ip_addresses(v=6).map(lambda a: a.exploded),
    )
)
def test_parse_ipv6_takes_what_ipaddress_takes(text: str) -> None:
    assert _parsed_v6(text) == _ipaddress_v6(text)


def test_xff_ignored_without_trusted_proxies() -> None:
    assert ClientResolver().resolve("198.51.100.1", "203.0.113.9") == "198.51.100.1"


def test_xff_walks_trusted_hops_from_the_right() -> None:
    resolver = ClientResolver(["10.0.0.0/8", "2001:db8:ffff::/48"])
    chain = "192.0.2.1, 203.0.113.9, 10.0.0.7"
    # 10.0.0.7 is ours, 203.0.113.9 is the first hop we do not control: the client.
    assert resolver.resolve("10.1.1.1", chain) == "203.0.113.9"
    assert resolver.resolve("2001:db8:ffff::1", "[2001:db8::5]:1234") == "2001:db8::5"


def test_xff_all_trusted_gives_leftmost() -> None:
    resolver = ClientResolver(["10.0.0.0/8"])
    assert resolver.resolve("10.0.0.1", "10.0.0.2, 10.0.0.3") == "10.0.0.2"


def test_xff_garbage_hop_stops_at_last_trusted_address() -> None:
    resolver = ClientResolver(["10.0.0.0/8"])
    assert resolver.resolve("10.0.0.1", "unknown, 10.0.0.3") == "10.0.0.3"
    # The walk ends at the garbage: a hop no trusted proxy wrote (its standard append)
    # makes nothing left of it believable, or a client chose the address it is counted as.
    assert resolver.resolve("10.1.2.3", "203.0.113.9, unknown, 10.0.0.5") == "10.0.0.5"
    assert resolver.resolve("10.0.0.1", "-") == "10.0.0.1"


def test_a_mapped_trusted_proxy_network_is_trusted() -> None:
    """A dual-stack server logs IPv4 peers as ::ffff:a.b.c.d; peers are canonicalized
    to IPv4, but a trusted network "::ffff:10.0.0.0/104" stayed IPv6 and never
    contained them: XFF was ignored and every client got the proxy's address (an
    audit)."""
    resolver = ClientResolver(["::ffff:10.0.0.0/104"])
    assert resolver.resolve("::ffff:10.0.0.1", "203.0.113.9") == "203.0.113.9"
    assert resolver.resolve("10.0.0.1", "203.0.113.9, ::ffff:10.0.0.2") == "203.0.113.9"
    assert resolver.resolve("11.0.0.1", "203.0.113.9") == "11.0.0.1"
    mixed = ClientResolver(["::ffff:0:0/95"])  # not only mapped addresses: stays IPv6
    assert mixed.resolve("::fffe:0:1", "203.0.113.9") == "203.0.113.9"
