"""Client addresses as logged: bare, ``ip:port``, ``[v6]:port``, X-Forwarded-For chains.

Everything returns the canonical text of one address (``ipaddress`` does the parsing),
or ``None`` when the text is not an address. IPv4-mapped IPv6 (``::ffff:a.b.c.d``) is
normalized to the IPv4 it carries: it *is* that client. Other embedded forms (6to4,
NAT64, Teredo) stay IPv6 here; ``truncate_ip`` truncates them as their IPv4.

>>> canonical_ip("203.0.113.9:51234")
'203.0.113.9'
>>> canonical_ip("[2001:DB8::1]:443")
'2001:db8::1'
>>> canonical_ip("::ffff:198.51.100.7")
'198.51.100.7'
>>> canonical_ip("fe80::1%eth0")
'fe80::1'
>>> canonical_ip("example.org") is None
True
>>> str(embedded_ipv4(ipaddress.IPv6Address("2002:c000:207::1")))  # 6to4
'192.0.2.7'
>>> r = ClientResolver(["10.0.0.0/8"])
>>> r.resolve("10.1.2.3", "203.0.113.9, 10.0.0.5")
'203.0.113.9'
>>> r.resolve("198.51.100.1", "203.0.113.9")  # remote is not a trusted proxy
'198.51.100.1'
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64_HIGH = int(ipaddress.IPv6Address("64:ff9b::")) >> 32  # 64:ff9b::/96


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition address carries (6to4, Teredo, NAT64,
    IPv4-mapped), if any. Where the client really is, and what its IPv6 form must not
    be allowed to publish in full. (The four ranges are disjoint: order is free.)"""
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    value = int(address)
    if value >> 32 == _NAT64_HIGH:  # an integer test, not a network containment
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return address.ipv4_mapped


def _strip_port(text: str) -> str:
    if text.startswith("["):  # [v6] or [v6]:port
        end = text.find("]")
        return text[1:end] if end > 0 else text
    if text.count(":") == 1:  # v4:port (a bare v6 has at least two colons)
        return text.split(":", 1)[0]
    return text


def canonical_ip(text: str) -> str | None:
    """Canonical text of the address in ``text``, or ``None``. Cached: clients repeat."""
    try:
        return canonical_ip_or_raise(text)
    except ValueError:
        return None


@lru_cache(maxsize=65536)
def canonical_ip_or_raise(text: str) -> str:
    """:func:`canonical_ip` that raises ``ValueError`` (without the text) for no address.

    The cache keeps results only: junk, of any length, is never a key (a cached None
    per distinct 60 KB client field would fill gigabytes).

    A dotted quad already in canonical form is returned as it is, without
    ``ipaddress`` (pure Python, about half of a new client's parsing cost): most
    clients are such IPv4 addresses, and ``str(IPv4Address(text))`` is ``text`` itself.

    >>> canonical_ip_or_raise("203.0.113.9")
    '203.0.113.9'
    >>> canonical_ip_or_raise("203.0.113.009")  # leading zeros: ipaddress refuses them too
    Traceback (most recent call last):
    ...
    ValueError: not an IP address
    """
    if _canonical_v4(text) is not None:
        return text
    address = parse_ip(text)
    if address is None:
        raise ValueError("not an IP address")
    return ipv6_text(address) if address.version == 6 else str(address)


def ipv6_text(address: ipaddress.IPv6Address) -> str:
    """``str(address)``, written by the C library's ``inet_ntop``: ``ipaddress``'s own
    formatting is pure Python (about 40k instructions an address, paid once per new
    IPv6 client here and again in ``truncate_ip``).

    Both write lower-case hex without leading zeros and replace the first longest run
    of two or more zero groups with "::" (RFC 5952). ``inet_ntop`` writes a dotted quad
    at the end of IPv4-compatible and -mapped forms: addresses whose first 80 bits are
    zero are left to ``str``, as are addresses with a scope id.

    >>> [ipv6_text(ipaddress.IPv6Address(a)) for a in ("2001:DB8:0:0:1:0:0:1", "::c000:207")]
    ['2001:db8::1:0:0:1', '::c000:207']
    """
    packed = address.packed
    if packed[:10] == _ZERO_80 or address.scope_id:
        return str(address)
    return _inet_ntop(socket.AF_INET6, packed)


def parse_ipv6(text: str) -> ipaddress.IPv6Address:
    """``IPv6Address(text)`` (``ValueError`` if it is none), read by the C library's
    ``inet_pton`` when ``text`` is hex groups and colons only: ``ipaddress`` parses in
    pure Python (about 50k instructions an address). For such text both take the same
    addresses (groups of 1 to 4 hex digits, at most one "::", eight groups or fewer
    with it): a Hypothesis test compares them. A dotted quad, a zone or longer text
    is left to ``ipaddress``.

    >>> parse_ipv6("2001:DB8::1") == ipaddress.IPv6Address("2001:db8::1")
    True
    >>> parse_ipv6("1:2:3:4:5:6:7:8:9")
    Traceback (most recent call last):
    ...
    ValueError: not an IPv6 address
    """
    if _plain_v6(text) is None:
        return ipaddress.IPv6Address(text)
    try:
        return ipaddress.IPv6Address(_inet_pton(socket.AF_INET6, text))
    except OSError:
        raise ValueError("not an IPv6 address") from None


_plain_v6 = re.compile(r"[0-9A-Fa-f:]{2,39}").fullmatch
_inet_pton = socket.inet_pton
_ZERO_80 = bytes(10)
_inet_ntop = socket.inet_ntop


def parse_ip(text: str) -> IPAddress | None:
    """The address in ``text`` (port, brackets, zone id and mapping removed), or None."""
    raw = _strip_port(text.strip())
    zone = raw.find("%")
    if zone > 0:
        raw = raw[:zone]
    try:
        # What ip_address does, without its IPv4 attempt (and exception) for IPv6 text:
        # a colon parses as IPv6 only, text without one as IPv4 only.
        address = parse_ipv6(raw) if ":" in raw else ipaddress.IPv4Address(raw)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


#: A dotted quad as ``str(IPv4Address)`` writes it: four decimal octets up to 255 in
#: ASCII digits, without leading zeros (which ``ipaddress`` refuses).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_canonical_v4 = re.compile(r"\.".join([_OCTET] * 4)).fullmatch


def _unmapped(network: IPNetwork) -> IPNetwork:
    """An IPv4-mapped network as the IPv4 network it maps: addresses are compared in
    canonical form, where a mapped peer is IPv4, so ``::ffff:10.0.0.0/104`` never held
    one (a dual-stack server's proxies were not trusted; an audit).

    >>> _unmapped(ipaddress.ip_network("::ffff:10.0.0.0/104"))
    IPv4Network('10.0.0.0/8')
    """
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        return ipaddress.IPv4Network(
            (int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96)
        )
    return network


class ClientResolver:
    """Picks the client address from the peer address and an X-Forwarded-For chain.

    Only hops appended by trusted proxies are believed: walk the chain from the right
    (nearest hop first) while the hop is a trusted proxy; the first untrusted hop is
    the client. Without trusted proxies the XFF header is ignored entirely, since any
    client can write it.
    """

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self._networks = tuple(
            _unmapped(ipaddress.ip_network(n, strict=False)) for n in trusted_proxies
        )
        self._trusted = lru_cache(maxsize=4096)(self._is_trusted_uncached)

    @property
    def uses_forwarded_for(self) -> bool:
        return bool(self._networks)

    def _is_trusted_uncached(self, address: str) -> bool:
        parsed = ipaddress.ip_address(address)
        return any(parsed in network for network in self._networks)

    def resolve(self, remote: str, forwarded_for: str | None) -> str | None:
        client = canonical_ip(remote)
        if client is None or not self._networks or not forwarded_for:
            return client
        if forwarded_for == "-" or not self._trusted(client):
            return client
        for hop in reversed(forwarded_for.split(",")):
            address = canonical_ip(hop)
            if address is None:
                return client  # an unparseable hop: stop at the last address we trust
            client = address
            if not self._trusted(address):
                return address
        return client

    def resolve_forwarded(self, forwarded_for: str) -> str | None:
        """The client of a line that logs the X-Forwarded-For header in place of the
        peer address (Apache's ``%{X-Forwarded-For}i`` for ``%h`` behind a load
        balancer). Its last hop is the address the nearest proxy saw connect, which the
        proxy wrote itself: from there the walk is :meth:`resolve`'s, leftwards while
        the hop is a trusted proxy. None for no header ("-") or an unparseable last hop.

        >>> ClientResolver().resolve_forwarded("198.51.100.7, 203.0.113.9")
        '203.0.113.9'
        >>> ClientResolver(["203.0.113.0/24"]).resolve_forwarded("198.51.100.7, 203.0.113.9")
        '198.51.100.7'
        >>> ClientResolver().resolve_forwarded("-") is None
        True
        """
        earlier, _, last = forwarded_for.rpartition(",")
        peer = canonical_ip(last)
        if peer is None:
            return None
        return self.resolve(peer, earlier or None)
