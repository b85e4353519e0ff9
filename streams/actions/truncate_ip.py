"""``truncate_ip``: keep the network part of the client address, drop the host part.

IPv4 and IPv6 have separate prefixes. An IPv6 address that carries an IPv4 address in
the bits a /48 cut keeps (6to4 ``2002:AABB:CCDD::/48``, NAT64 ``64:ff9b::/96``, Teredo
``2001:0::/32``; IPv4-mapped is already IPv4 after parsing) is truncated as the IPv4 it
carries: otherwise a "/48" would publish a whole IPv4 address.

Privacy floors (``docs/privacy-requirements.md`` rule 3): operations keep at most
/24 and /48, analytics at most /16 and /32. More bits need ``unsafe: true``.

>>> f = SPEC.build({"ipv4_prefix": 24, "ipv6_prefix": 48, "format": "cidr"}, BuildContext())
>>> f("203.0.113.77")
'203.0.113.0/24'
>>> f("2001:db8:1234:5678::1")
'2001:db8:1234::/48'
>>> f("2002:cb00:7101::1")  # 6to4 carrying 203.0.113.1
'203.0.113.0/24'
>>> f("64:ff9b::cb00:7101")  # NAT64
'203.0.113.0/24'
>>> f("2001:0:4136:e378:8000:63bf:34ff:8efe")  # Teredo, client 203.0.113.1
'203.0.113.0/24'
>>> f(None) is None
True
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from streams.actions.base import ActionSpec, BuildContext, Option, Transform
from streams.parse.ip import embedded_ipv4, ipv6_text, parse_ipv6

__all__ = ["SPEC", "embedded_ipv4"]

# Dotted-quad IPv4 exactly as ipaddress accepts it (ASCII digits, 0-255, no leading
# zeros): such addresses skip building an IPv4Address (under half the cost).
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_DOTTED_QUAD = re.compile(r"\.".join([_OCTET] * 4))
FLOORS = {"operations": (24, 48), "analytics": (16, 32)}


def _check_prefix(bits: int) -> Any:
    def check(value: int) -> str | None:
        return None if 0 <= value <= bits else f"must be between 0 and {bits}"

    return check


def build(options: Mapping[str, Any], context: BuildContext) -> Transform:
    v4_bits: int = options["ipv4_prefix"]
    v6_bits: int = options["ipv6_prefix"]
    as_cidr = options["format"] == "cidr"
    # Masking the integer: a third of the cost of building an ip_network.
    v4_mask = ((1 << v4_bits) - 1) << (32 - v4_bits)
    v6_mask = ((1 << v6_bits) - 1) << (128 - v6_bits)
    v4_suffix, v6_suffix = f"/{v4_bits}", f"/{v6_bits}"
    ip_address, v4, v6 = ipaddress.ip_address, ipaddress.IPv4Address, ipaddress.IPv6Address
    dotted_quad = _DOTTED_QUAD.fullmatch

    def truncate(ip: str | None) -> str | None:
        if ip is None:
            return None
        if type(ip) is str:
            m = dotted_quad(ip)
            if m is not None:
                a, b, c, d = m.groups()
                n = ((int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)) & v4_mask
                text = f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
                return text + v4_suffix if as_cidr else text
            # With a colon only IPv6 can parse: skip ip_address's failing IPv4 attempt.
            parse = parse_ipv6 if ":" in ip else ip_address
        else:
            parse = ip_address
        try:
            address = parse(ip)
        except ValueError:
            return None
        if address.version == 6:
            carried = embedded_ipv4(address)
            if carried is None:
                text = ipv6_text(v6(int(address) & v6_mask))
                return text + v6_suffix if as_cidr else text
            address = carried
        text = str(v4(int(address) & v4_mask))
        return text + v4_suffix if as_cidr else text

    return truncate


def validate(options: Mapping[str, Any], context: BuildContext) -> list[str]:
    v4_floor, v6_floor = FLOORS.get(context.destination_kind, FLOORS["operations"])
    errors = []
    if options["ipv4_prefix"] > v4_floor and not context.unsafe:
        errors.append(
            f"ipv4_prefix {options['ipv4_prefix']} keeps more than /{v4_floor}, the limit for "
            f"{context.destination_kind} output (set unsafe: true to override)"
        )
    if options["ipv6_prefix"] > v6_floor and not context.unsafe:
        errors.append(
            f"ipv6_prefix {options['ipv6_prefix']} keeps more than /{v6_floor}, the limit for "
            f"{context.destination_kind} output (set unsafe: true to override)"
        )
    return errors


SPEC = ActionSpec(
    name="truncate_ip",
    doc="Keep the network part of an address; embedded IPv4 forms truncated as IPv4.",
    options=(
        Option(
            "ipv4_prefix",
            int,
            24,
            "IPv4 bits kept",
            check=_check_prefix(32),
            json={"minimum": 0, "maximum": 32},
        ),
        Option(
            "ipv6_prefix",
            int,
            48,
            "IPv6 bits kept",
            check=_check_prefix(128),
            json={"minimum": 0, "maximum": 128},
        ),
        Option(
            "format",
            str,
            "cidr",
            "'cidr' (203.0.113.0/24) or 'address' (203.0.113.0)",
            choices=("cidr", "address"),
        ),
    ),
    build=build,
    accepts=frozenset({"client.ip"}),
    validate=validate,
)
