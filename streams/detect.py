"""Leak detectors swept over every output string (privacy rule 12).

:func:`find_leak` returns the name of the first detector that fires, or ``None``.
Detectors are tried in this fixed order, so a string that trips several reports the
most specific one: ``"jwt"``, ``"email"``, ``"card"``, ``"ipv6"``, ``"ipv4"``,
``"token"``.

Speed: almost every output string is clean, so the no-hit path is a short chain of
necessary conditions (``in`` / ``count`` tests and three small precompiled regexes,
see ``_maybe_leak``) that every detector's match must satisfy. Only when one holds do
the exact detectors run. A single combined alternation regex was measured slower
(CPython's ``re`` tries every branch at every position).

Decisions (each is pinned by a test in ``tests/unit/test_detect.py``):

* Percent-encoding: if the string holds ``%XX`` or ``%uXXXX`` sequences it is also
  checked after decoding, up to eight times (catches ``john%40x.com``, double-encoded
  ``%2540``, ``2001%3Adb8%3A%3A1``, ``john%u0040x.com``).
* Look-alikes and invisible characters: text that is not ASCII is checked after
  :func:`fold_lookalikes` (fullwidth ``＠``, ideographic ``。``, dots and colons of
  other scripts, every script's decimal digits as ASCII ones: ``٢٠٣.٠.١١٣.٧٧``, and
  no zero-width spaces, joiners, soft hyphens or no-break spaces:
  ``jane@gmail\u200b.com``), also each decoding of it.
* Punycode: a label ``xn--...`` is also checked decoded, once, as :func:`readable`
  (``xn------mphbhackf9ba.duckdns.org`` is ``२०३-०-११३-७७.duckdns.org``).
* email: ``local@domain.tld`` with a dot in the domain and a TLD of 2+ letters
  (or an ``xn--`` label); Unicode letters allowed. Obfuscated forms such as
  ``john (at) example (dot) com`` are *not* detected. Image names with a density
  suffix (``logo@2x.png``, ``icon@1.5x.webp``: the whole domain is the density and an
  image extension, which no TLD is) are not emails; ``jane@1x.com`` is one.
* ipv4: four dot-separated decimal parts 0-255 (leading zeros accepted, because some
  parsers read them as octal: fail closed), also inside a longer dotted-number run
  (``10.203.0.113.77``, ``app-1.203.0.113.77.nip.io``: host names put labels before
  an address). A version string of four or more parts all <= 255 (``1.0.0.1``,
  ``1.2.3.4.5``) is flagged: indistinguishable; ``1.2.3`` and
  ``120.0.6099.109`` are not. Two or three numbers as browsers and ``inet_aton`` read
  them (``203.0.29005``, ``203.29005``, ``0313.0.070515``: 203.0.113.77) where a host
  stands (the whole string, after ``//`` and any userinfo) when the last number is past 255
  or one before it is octal (``1.2.3``, ``2024.11.30``, ``19.99`` are not;
  ``3.14159`` alone is): see ``_has_short_ipv4``.
  Also four numbers 0-255 joined by ``-`` or ``_``, in any longer run of them
  (``ec2-203-0-113-7.compute-1.amazonaws.com``, ``log_198_51_100_77.txt``): host and
  file names spell addresses that way. Hex and octal forms: see ``whatwg_ipv4``.
* ipv6: every textual form ``ipaddress`` accepts: compressed, full, embedded IPv4
  (``::ffff:1.2.3.4``), with a zone (``fe80::1%eth0``), inside brackets. The
  unspecified ``::`` and loopback ``::1`` count too (they parse). MAC addresses and
  clock times (``07:00:00``) do not parse and are not flagged. Glued to letters or
  ``_`` (``ip_2a06:cff::1_log``), an address counts when it has three colons or an
  allocated global unicast first group (``2400::b``): ``Foo::Bar`` and ``a::before``
  do not.
* Truncated networks are allowed: a CIDR string whose host bits are all zero and
  whose prefix is <= 24 (IPv4) or <= 48 (IPv6), e.g. ``192.0.2.0/24``,
  ``2001:db8::/48``; that is what IP truncation produces. ``192.0.2.0`` without a
  prefix, ``192.0.2.7/24`` (host bits set) and ``2001:db8::/64`` (too long) leak.
* jwt: ``eyJ...`` header, payload, optional signature (``alg: none``), base64url.
* token: UUIDs; hex runs >= 32; base64/base64url runs >= 32 that look random
  (:func:`looks_random`: most of their alphanumeric characters sit in pieces that
  mix letters and digits, or have 16 letters or more that do not read like words:
  :mod:`streams.wordlike`). Long slugs such as ``how-to-cook-pasta-in-2024`` are
  not tokens; long camelCase words with digits can be (fail closed).
  16-hex pseudonyms (``9f86d081884c7d65``) are below every threshold; two
  pseudonyms glued together (33+ characters) are flagged.
* card: 13-19 digits, single spaces/dashes/``+`` allowed between digits, Luhn
  valid, first digit 2-6 (the payment networks: Visa, Mastercard, Amex, Diners,
  Discover, JCB, UnionPay, Maestro). Leading 1/7/8/9/0 are excluded so epoch
  milliseconds and snowflake ids do not trip it.

>>> find_leak("/products/{id}") is None
True
>>> find_leak("contact john.doe+news@example.com")
'email'
>>> find_leak("192.0.2.0/24") is None, find_leak("192.0.2.7")
(True, 'ipv4')
>>> find_leak("[2001:db8::1]:443")
'ipv6'
>>> find_leak("4111 1111 1111 1111")
'card'
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Final
from urllib.parse import unquote

from publicsuffixlist import PublicSuffixList

from streams.wordlike import reads_like_words

__all__ = [
    "DETECTORS",
    "PUBLIC_SUFFIXES",
    "dashed_ipv4",
    "find_leak",
    "is_card",
    "label_spells_address",
    "looks_random",
    "readable",
    "whatwg_ipv4",
]

# --- exact detector patterns -------------------------------------------------------

# The lookbehind makes a match start only at the beginning of a local-part run, so a
# long run without "@" costs O(n), not O(n^2).
_EMAIL_RE: Final = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])[\w.!#$%&'*+/=?^`{|}~-]+@((?:[^\W_](?:[\w-]*[^\W_])?\.)+(?:[^\W\d_]{2,}|xn--[\w-]+))"
)
# "logo@2x.png", "@1.5x.webp": retina image names, not addresses. Only a whole domain
# of a density and an image extension (none is a top-level domain): "jane@1x.com" and
# "jane@2x.example.org" are addresses.
IMAGE_DENSITY: Final = r"\d+(?:\.\d+)?x\.(?:png|jpe?g|gif|webp|avif|svg|ico|bmp)"
_DENSITY_RE: Final = re.compile(IMAGE_DENSITY + r"\Z", re.IGNORECASE)

_JWT_RE: Final = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")

# Every window of four numbers in a longer dotted run is tried (a lookahead: matches
# overlap): "app-1.203.0.113.77.nip.io" and "10.203.0.113.77" hold one (an audit found
# them kept when runs of five numbers or more were skipped as version strings).
_IPV4_RE: Final = re.compile(
    r"(?<![0-9])(?=([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})"
    r"(?:/([0-9]{1,3}))?(?![0-9]))"
)

# IPv4 in the other notations browsers and inet_aton read (an audit found
# "/debug/0xcb007109" kept): hex numbers ("0xcb007109", "0xcb.0.0x71.9") and four parts
# with octal ones ("0313.0.0161.011"). Dotted decimal is _IPV4_RE's; whatwg_ipv4 confirms.
#: One part of an IPv4 address as WHATWG URL parsing reads it (also urls.py's).
V4_NUMBER: Final = r"0[xX][0-9A-Fa-f]*|[0-9]+"
_NUMERIC_V4_RE: Final = re.compile(
    rf"(?<![0-9A-Za-z.])((?:{V4_NUMBER})(?:\.(?:{V4_NUMBER})){{0,3}})\.?(?![0-9A-Za-z]|\.[0-9])"
)
_V4_PART_RE: Final = re.compile(r"0[xX][0-9A-Fa-f]*|0[0-7]*|[1-9][0-9]*")
# The short forms, two or three numbers ("203.0.29005", "203.29005", "0313.0.070515" are
# all 203.0.113.77: an audit found them published in ops.host), where a host stands:
# the whole text, or after "//" and any userinfo, up to a port, path, query or fragment.
_SHORT_V4: Final = rf"((?:{V4_NUMBER})(?:\.(?:{V4_NUMBER})){{1,2}})\.?(?=\Z|[:/?#\\])"
_SHORT_V4_WHOLE_RE: Final = re.compile(_SHORT_V4)  # .match: the text starts with it
# After "//" and any userinfo only: "pkg@1.4.600" in a CDN path is a version (a review).
_SHORT_V4_AFTER_RE: Final = re.compile(f"//(?:[^/?#@\\s]*@)?{_SHORT_V4}")

# Candidate text for an IPv6 address: hex groups and colons with at least two colons,
# an optional dotted IPv4 tail, zone and prefix. ipaddress confirms; the regex only
# finds the span. Left/right boundaries keep "a::before" or "Foo::Bar" out.
_IPV6_RE: Final = re.compile(
    r"(?<![0-9A-Za-z_])"
    r"(?=[0-9A-Fa-f]*:[0-9A-Fa-f]*:)"
    r"([0-9A-Fa-f:]{2,45}(?:\.[0-9]{1,3}){0,3})"
    r"(?:%[0-9A-Za-z._~-]+)?"
    r"(?:/([0-9]{1,3}))?"
    r"(?![0-9A-Za-z_])"
)

# The same without the letter boundaries, for addresses glued to other text
# ("ip_2a06:...", "...::1_log"; an audit found them kept). Only hex digits and colons
# may not touch it, and a hit needs three colons or an allocated global unicast first
# group ("2400::b_log"; ALLOCATED_V6_GROUP), so "Foo::Bar", "a::before" and "Vec3::dot"
# stay out.
_IPV6_GLUED_RE: Final = re.compile(
    r"(?<![0-9A-Fa-f:])"
    r"(?=[0-9A-Fa-f]*:[0-9A-Fa-f]*:)"
    r"([0-9A-Fa-f:]{2,64}(?:\.[0-9]{1,3}){0,3})"
    r"(?:%[0-9A-Za-z._~-]+)?"
    r"(?:/([0-9]{1,3}))?"
    r"(?![0-9A-Fa-f:])"
)

# An IPv4 address written with dashes, as tunnels, dynamic DNS and cloud providers
# name hosts after it ("ec2-203-0-113-7.compute-1.amazonaws.com", an audit found it
# kept in paths and query values), or with underscores, as in file names. Every
# window of four numbers in a longer run is tried: "ec2-203-0-113-7" holds one.
_NUMBER_RUN_RE: Final = re.compile(r"(?<![0-9])[0-9]+(?:[-_][0-9]+){3,}(?![0-9])")
_RUN_SEPARATOR_RE: Final = re.compile(r"[-_]")

_UUID_RE: Final = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)
_HEX_RUN_RE: Final = re.compile(r"[0-9A-Fa-f]{32,}")
_B64_RUN_RE: Final = re.compile(r"[A-Za-z0-9+/_-]{32,}=*")
_PIECE_SPLIT_RE: Final = re.compile(r"[+/_=.~-]+")
# lower, Capitalized, camelCase (humps of 2+ letters), ALLCAPS (+ plural s)
_WORD_SHAPE_RE: Final = re.compile(r"[A-Za-z][a-z]*(?:[A-Z][a-z]+)*|[A-Z]+s?")

_CARD_RE: Final = re.compile(r"(?<![0-9])[2-6](?:[ +-]?[0-9]){12,18}(?![0-9])")

# --- prefilter ------------------------------------------------------------------------
# Cheap gates that every detector's match must pass, so clean strings never reach the
# exact detectors. Measured on CPython 3.11: one regex alternation of all triggers
# costs 0.5-6 us per clean string (sre tries every branch at every position); these
# gates cost 0.1-0.3 us on short strings. Each gate is a necessary condition:
#   email needs "@"; encoded payloads need "%"; jwt needs "eyJ"; hex ipv4 needs "0x";
#   octal ipv4, like dotted decimal, >= 3 dots and _V4_PRE;
#   ipv4 of 2-3 numbers a "." and the text starting with it or holding "//" (or "@")
#   and it after them (_SHORT_V4_WHOLE_RE, _SHORT_V4_AFTER_RE);
#   ipv6 needs "::" or >= 6 colons (8 groups: 7 colons; with IPv4 tail: 6);
#   ipv4 needs >= 3 dots and _V4_PRE, or >= 3 "-" or "_" and _DASHED_V4_PRE, or a
#   label of 8 hex digits or 8-10 or 12 digits before a dot (_ADDRESS_LABEL_PRE); ipv6
#   with other separators needs _SEPARATED_V6_PRE; a punycode label ("xn--") is
#   checked decoded;
#   card needs >= 13 chars and _CARD_PRE;
#   token needs >= 32 chars and _RUN_PRE (runs are found from their first char only).
_V4_PRE: Final = re.compile(r"[0-9]\.[0-9]{1,4}\.[0-9]{1,4}\.[0-9]")  # octal: "0377"
_DASHED_V4_PRE: Final = re.compile(r"[0-9][-_][0-9]{1,3}[-_][0-9]{1,3}[-_][0-9]")
_SEPARATED_V6_PRE: Final = re.compile(r"2[0-9A-Ca-c][0-9A-Fa-f]{2}[-_.][0-9A-Fa-f]{0,4}[-_.]")
_ADDRESS_LABEL_PRE: Final = re.compile(
    r"(?<![0-9A-Za-z-])(?:[0-9A-Fa-f]{8}|[0-9]{8,10}|[0-9]{12})\.[A-Za-z]"
)
_CARD_PRE: Final = re.compile(r"[2-6](?<![0-9][2-6])(?:[ +-]?[0-9]){12}")
_RUN_PRE: Final = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32}")


def _maybe_leak(text: str) -> bool:
    """Necessary conditions for any detector; False means certainly clean."""
    if "@" in text or "%" in text or "eyJ" in text or "0x" in text or "0X" in text:
        return True
    if ":" in text and ("::" in text or text.count(":") >= 6):
        return True
    if text.count(".") >= 3 and _V4_PRE.search(text) is not None:
        return True
    if "." in text and (
        (text[:1] in "0123456789" and _SHORT_V4_WHOLE_RE.match(text) is not None)
        or ("//" in text and _SHORT_V4_AFTER_RE.search(text) is not None)
    ):
        return True
    if text.count("-") + text.count("_") >= 3 and _DASHED_V4_PRE.search(text) is not None:
        return True
    if "2" in text and _SEPARATED_V6_PRE.search(text) is not None:
        return True
    if "." in text and _ADDRESS_LABEL_PRE.search(text) is not None:
        return True
    n = len(text)
    if n >= 13 and _CARD_PRE.search(text) is not None:
        return True
    return n >= 32 and _RUN_PRE.search(text) is not None


#: Letters in one piece from which a word-shaped piece must also read like words.
MIN_WORDLIKE_LETTERS: Final = 16


def looks_random(run: str, min_mixed: int = 16) -> bool:
    """Whether a base64-alphabet run looks like a random token rather than words.

    The run is cut into pieces at separators (``-_+/=.~``). A piece is *irregular* if
    it mixes letters and digits, if its letters do not have a word shape (lower,
    Capitalized, camelCase, ALLCAPS), or if it has a word shape and 16 letters or more
    but its letter pairs do not read like words
    (:func:`streams.wordlike.reads_like_words`: random lowercase or uppercase tokens,
    an audit found them kept). Random tokens are mostly irregular pieces; slugs are
    words and numbers. True when irregular pieces cover at least ``min_mixed``
    characters and at least half of the run's letters and digits.

    >>> looks_random("how-to-cook-pasta-in-2024-with-friends")
    False
    >>> looks_random("dGhpcyBpcyBhIHNlY3JldCB0b2tlbiAxMjM0")
    True
    >>> looks_random("qzkxvbnmwplrtjhgfdsazxcvbnmqwertyp")
    True
    >>> looks_random("internationalization-and-localization")
    False
    """
    mixed = 0
    total = 0
    for piece in _PIECE_SPLIT_RE.split(run):
        n = len(piece)
        total += n
        if n < 2 or piece.isdigit():
            continue
        if _WORD_SHAPE_RE.fullmatch(piece) is None or (
            n >= MIN_WORDLIKE_LETTERS and not reads_like_words(piece)
        ):
            mixed += n
    return mixed >= min_mixed and mixed * 2 >= total


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def is_card(text: str) -> bool:
    """Whether ``text`` holds a card-like number (see module docstring).

    >>> is_card("4111-1111-1111-1111"), is_card("4111-1111-1111-1112")
    (True, False)
    """
    for m in _CARD_RE.finditer(text):
        digits = re.sub(r"[ +-]", "", m.group())
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            return True
    return False


def _has_email(text: str) -> bool:
    if "@" not in text:
        return False
    return any(not _DENSITY_RE.match(m.group(1)) for m in _EMAIL_RE.finditer(text))


def _has_jwt(text: str) -> bool:
    return "eyJ" in text and _JWT_RE.search(text) is not None


def _has_ipv4(text: str) -> bool:
    return (
        _has_dotted_ipv4(text)
        or _has_other_ipv4(text)
        or _has_short_ipv4(text)
        or dashed_ipv4(text)
        or _has_address_label_host(text)
    )


# Host names in text, for the check below; lower case (PSL lookups are).
_HOST_RUN_RE: Final = re.compile(r"(?<![0-9a-z.-])(?:[0-9a-z-]+\.)+[a-z]{2,63}(?![0-9a-z-])")
#: The Public Suffix List, private section included (also urls.py's).
PUBLIC_SUFFIXES: Final = PublicSuffixList()
_HEX32_LABEL_RE: Final = re.compile(r"[0-9a-f]{8}")
_PADDED_V4_LABEL_RE: Final = re.compile(r"(?!000)([0-9]{3})([0-9]{3})([0-9]{3})([0-9]{3})")


def label_spells_address(label: str) -> bool:
    """Whether a host-name label spells a whole IPv4 or IPv6 address on its own:
    eight hex digits, a number a browser reads as one (:func:`whatwg_ipv4`), four
    zero-padded numbers of 0-255 (``203000113077``: dynamic DNS names), an IPv6
    address with dashes for colons (:func:`_separated_ipv6`); a punycode label also
    as a reader sees it (:func:`readable`: ``xn------mphbhackf9ba`` is
    ``२०३-०-११३-७७``, 203.0.113.77).

    >>> [label_spells_address(x) for x in ["cb00714d", "3405803885", "2600-3c01--f03c-93ff"]]
    [True, True, True]
    >>> [label_spells_address(x) for x in ["example", "web-2024", "decade", "20241130"]]
    [False, False, False, True]
    >>> label_spells_address("0xcb00714d"), label_spells_address("9999999999")  # > 2**32
    (True, False)
    >>> label_spells_address("203000113077"), label_spells_address("203000113256")
    (True, False)
    >>> label_spells_address("xn------mphbhackf9ba"), label_spells_address("xn--bcher-kva")
    (True, False)
    """
    if _HEX32_LABEL_RE.fullmatch(label) or (whatwg_ipv4(label) or 0) >= 1 << 24:
        return True
    padded = _PADDED_V4_LABEL_RE.fullmatch(label)
    if padded is not None and all(int(n) <= 255 for n in padded.groups()):
        return True
    if label[:4].lower() == "xn--":
        seen = readable(label)
        # One level: a decoded label that is punycode again is no host name (and
        # decoding it again and again made a nested label cost seconds; a review).
        if (
            seen != label
            and _PUNYCODE_PRE.search(seen) is None
            and (label_spells_address(seen) or _has_ipv4(seen) or _has_ipv6(seen))
        ):
            return True
    return _separated_ipv6(label)


def _has_address_label_host(text: str) -> bool:
    """Whether ``text`` holds a host name whose registrable domain starts with a label
    that spells an address: private suffixes name hosts that way
    (``b9acbeef.ip.linodeusercontent.com`` is 185.172.190.239; an audit found it kept
    in paths and query values). Only known suffixes of two labels or more count:
    ``main.3f2a9b1c.js`` and ``20241130.zip`` are file names.

    >>> _has_address_label_host("/go?u=b9acbeef.ip.linodeusercontent.com")
    True
    >>> _has_address_label_host("/static/main.3f2a9b1c.js")
    False
    >>> _has_address_label_host("a.3f2a9b1c.js.map"), _has_address_label_host("/b/20241130.zip")
    (False, False)
    """
    if "." not in text or _ADDRESS_LABEL_PRE.search(text) is None:
        return False  # no such label at all: the common case, without a PSL lookup
    for m in _HOST_RUN_RE.finditer(text.lower()):
        domain = PUBLIC_SUFFIXES.privatesuffix(m.group(), accept_unknown=False)
        if domain is None:
            continue
        label, _, suffix = domain.partition(".")
        # A suffix of one label is a top-level domain, and file extensions are some
        # (".zip", ".mov", ".md", ".io"): "20241130.zip" is a file name (a review).
        if "." in suffix and label_spells_address(label):
            return True
    return False


def dashed_ipv4(text: str) -> bool:
    """Whether ``text`` holds four numbers of 0-255 separated by "-" or "_" (leading
    zeros too, as in the dotted form: fail closed), not touching other digits.

    >>> dashed_ipv4("ec2-203-0-113-7.compute-1.amazonaws.com"), dashed_ipv4("2024-05-17")
    (True, False)
    >>> dashed_ipv4("home-198-051-100-077.example"), dashed_ipv4("999-203-0-113-70")
    (True, True)
    >>> dashed_ipv4("log_198_51_100_77.txt"), dashed_ipv4("size-10-12-14")
    (True, False)
    >>> dashed_ipv4("backup-2024-11-30-12-05-33.sql"), dashed_ipv4("backup-v2-2024-11-30-12-05")
    (False, False)
    >>> dashed_ipv4("/logs/2024-203-0-113-7"), dashed_ipv4("access_2024_198_51_100_7.log")
    (True, True)
    """
    if text.count("-") + text.count("_") < 3:
        return False
    for run in _NUMBER_RUN_RE.finditer(text):
        numbers = _RUN_SEPARATOR_RE.split(run.group())
        dated = _dated(numbers)
        for i in range(len(numbers) - 3):
            if dated.isdisjoint(range(i, i + 4)) and all(
                len(n) <= 3 and int(n) <= 255 for n in numbers[i : i + 4]
            ):
                return True
    return False


def _dated(numbers: list[str]) -> set[int]:
    """Indexes of a run's numbers that are a date and time: a year of 19xx or 20xx, a
    month and a day, then up to three more numbers of a clock ("2024-11-30-12-05-33").
    No address is read across them, one elsewhere in the run still is (a review).

    >>> sorted(_dated("2-2024-11-30-12-05".split("-"))), sorted(_dated("2024-203-0-113".split("-")))
    ([1, 2, 3, 4, 5], [])
    """
    out: set[int] = set()
    for i, n in enumerate(numbers[:-2]):
        if (
            len(n) == 4
            and n[:2] in ("19", "20")
            and int(numbers[i + 1]) <= 12
            and (int(numbers[i + 2]) <= 31)
        ):
            end = i + 3
            while end < len(numbers) and end < i + 6 and int(numbers[end]) <= 59:
                end += 1
            out.update(range(i, end))
    return out


def _has_dotted_ipv4(text: str) -> bool:
    if text.count(".") < 3:
        return False
    for m in _IPV4_RE.finditer(text):
        octets = m.group(1, 2, 3, 4)
        if any(int(o) > 255 for o in octets):
            continue
        prefix = m.group(5)
        if prefix is not None and _allowed_network(".".join(octets), int(prefix), 24):
            continue
        return True
    return False


def _has_other_ipv4(text: str) -> bool:
    hexed = "0x" in text or "0X" in text
    if not hexed and text.count(".") < 3:
        return False
    for m in _NUMERIC_V4_RE.finditer(text):
        span = m.group(1)
        other = "0x" in span or "0X" in span or (span.count(".") >= 3 and _has_octal_part(span))
        # Below 1.0.0.0 is "this network", never a client's address.
        if other and (whatwg_ipv4(span) or 0) >= 1 << 24:
            return True
    return False


def _has_short_ipv4(text: str) -> bool:
    """Whether ``text`` is, or has after "//" (and userinfo), a host of two or three numbers
    that a browser reads as an address (:func:`whatwg_ipv4`) and that is written as
    one: its last number past 255 (it fills two or three bytes) or an octal number
    before it. Versions, dates and most decimals are not: the last number of ``1.2.3``
    and ``2024.11.30`` fits one byte, and ``3.05`` is octal only in its last. Standing
    alone, a decimal whose last number is past 255 is flagged (``1.500``, ``3.14159``
    is 3.0.55.79), and so is a version such as ``124.0.6367``; after "@" without "//"
    a host is not looked for (``pkg@1.4.600`` in CDN paths is a version).

    >>> [_has_short_ipv4(x) for x in ["203.0.29005", "203.29005:443", "0313.0161.7"]]
    [True, True, True]
    >>> _has_short_ipv4("http://203.29005/"), _has_short_ipv4("//jane@203.29005")
    (True, True)
    >>> _has_short_ipv4("/npm/electron-to-chromium@1.4.600/dist/x.js")
    False
    >>> [_has_short_ipv4(x) for x in ["1.2.3", "2024.11.30", "19.99", "3.05", "0.29005"]]
    [False, False, False, False, False]
    >>> _has_short_ipv4("/v/203.29005"), _has_short_ipv4("Chrome/124.0.6367")  # no host
    (False, False)
    """
    found = [_SHORT_V4_WHOLE_RE.match(text)]
    if "//" in text:
        found.extend(_SHORT_V4_AFTER_RE.finditer(text))
    for m in found:
        if m is None:
            continue
        span = m.group(1)
        value = whatwg_ipv4(span)
        # Below 1.0.0.0 is "this network", never a client's address.
        if value is None or value < 1 << 24:
            continue
        *head, _ = span.split(".")
        last = value & (0xFFFFFF if len(head) == 1 else 0xFFFF)
        if last > 255 or any(len(p) > 1 and p[0] == "0" and p[1] in "01234567" for p in head):
            return True
    return False


def _has_octal_part(dotted: str) -> bool:
    # Four parts only: "v1.05" would read as 1.0.0.5.
    return any(len(p) > 1 and p[0] == "0" for p in dotted.split("."))


def whatwg_ipv4(text: str) -> int | None:
    """The address a browser or ``inet_aton`` reads in ``text`` (1-4 dotted parts,
    each decimal, ``0x`` hex or ``0`` octal), as an integer; ``None`` if it is none.

    >>> whatwg_ipv4("0xcb.0.0x71.9") == whatwg_ipv4("3405803785") == 0xCB007109
    True
    >>> whatwg_ipv4("0x1.2.3.4.5"), whatwg_ipv4("08.1"), whatwg_ipv4("1.0x1000000")
    (None, None, None)
    """
    parts = text.split(".")
    if len(parts) > 1 and not parts[-1]:
        parts.pop()  # a trailing dot
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        if _V4_PART_RE.fullmatch(part) is None:
            return None
        if part[:2] in ("0x", "0X"):
            numbers.append(int(part[2:] or "0", 16))
        else:
            numbers.append(int(part, 8 if part[0] == "0" else 10))
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n << (8 * (3 - i))
    return value


def _allowed_network(addr: str, prefix: int, max_prefix: int) -> bool:
    """A truncated network (host bits zero, prefix short enough) is not a leak."""
    if prefix > max_prefix:
        return False
    try:
        ipaddress.ip_network(f"{addr}/{prefix}", strict=True)
    except ValueError:
        return False
    return True


def _ipv6_candidates(span: str) -> list[str]:
    # The regex span can carry neighbouring groups ("key:2001:db8::1" style text or a
    # trailing ":"). Try the span, then every suffix that starts after a colon, each
    # also without trailing colons.
    out = [span]
    for i, ch in enumerate(span):
        if ch == ":" and i + 1 < len(span):
            out.append(span[i + 1 :])
            if span[i + 1] == ":":
                out.append(span[i:])
    trimmed = [c.rstrip(":") for c in out if c.endswith(":") and not c.endswith("::")]
    return out + trimmed


def _max_v6_prefix(address: str) -> int:
    """The longest IPv6 prefix that is a truncated network, not an address.

    A 6to4 network (2002::/16) holds an IPv4 address in its next 32 bits: a /48 is a
    whole address (an audit found ``2002:cb00:7109::/48`` passed), so the IPv4 floor
    (/24) applies to those bits. ``truncate_ip`` writes 6to4 clients as IPv4 anyway.
    """
    return 40 if address[:5].lower() == "2002:" else 48


def _has_ipv6(text: str) -> bool:
    if ":" not in text:
        return _separated_ipv6(text)
    return (
        _ipv6_in(_IPV6_RE.finditer(text), False)
        or _ipv6_in(_IPV6_GLUED_RE.finditer(text), True)
        or _separated_ipv6(text)
    )


# The first groups of the global unicast blocks the registries have allocated
# (2001::/16, 2002::/16 6to4, 2003::/16, 2400::/12 to 2c00::/12): not "2024", a year.
ALLOCATED_V6_GROUP: Final = r"(?:200[123]|2[4-9a-cA-C][0-9A-Fa-f]{2})"
_GLOBAL_UNICAST_GROUP: Final = re.compile(ALLOCATED_V6_GROUP + ":")


def _glued_candidates(span: str) -> list[str]:
    """:func:`_ipv6_candidates`, and for hex letters glued to either end ("::1face",
    an audit), each with its first or last group cut to its 1-4 digits nearest the
    address."""
    out = _ipv6_candidates(span)
    head, _, rest = span.partition(":")
    lead, _, tail = span.rpartition(":")
    for n in range(1, 5):
        if len(tail) > 4:
            out.append(f"{lead}:{tail[:n]}")
        if len(head) > 4:
            out.append(f"{head[-n:]}:{rest}")
    return out


def _ipv6_in(matches: Iterator[re.Match[str]], glued: bool) -> bool:
    """Whether a match holds an IPv6 address that is not a truncated network; glued
    to text (``_IPV6_GLUED_RE``), only one with three colons or a global unicast
    first group."""
    candidates = _glued_candidates if glued else _ipv6_candidates
    for m in matches:
        prefix = m.group(2)
        for cand in candidates(m.group(1)):
            if glued and cand.count(":") < 3 and _GLOBAL_UNICAST_GROUP.match(cand) is None:
                continue
            try:
                ipaddress.IPv6Address(cand)
            except ValueError:
                continue
            if (
                prefix is not None
                and cand == m.group(1)
                and _allowed_network(cand, int(prefix), _max_v6_prefix(cand))
            ):
                break
            return True
    return False


# An IPv6 address with "-", "_" or "." for its colons, as ipv6-literal.net and cloud
# providers name hosts ("2a01-4f8-c2c-abcd--1.ipv6-literal.net", an audit found it
# kept). Only from an allocated global unicast first group (the clients' addresses),
# so that dates ("2024-11-30--2024-12-01") are not read as one (a review).
_SEPARATED_V6_RE: Final = re.compile(
    r"(?<![0-9A-Fa-f])" + ALLOCATED_V6_GROUP + r"(?:[-_.][0-9A-Fa-f]{0,4}){2,7}"
)


def _separated_ipv6(text: str) -> bool:
    """Whether ``text`` holds an IPv6 address written with "-", "_" or "." for ":".

    >>> _separated_ipv6("2a01-4f8-c2c-abcd--1.ipv6-literal.net"), _separated_ipv6("2024-11-30")
    (True, False)
    >>> _separated_ipv6("/range/2024-11-30--2024-12-01")
    False
    >>> _separated_ipv6("2a01-0-c386-bbc4-cd61-3e30--.ipv6-literal.net")
    True
    """
    for m in _SEPARATED_V6_RE.finditer(text):
        span = m.group()
        # A trailing separator may end the address ("...-3e30--", "::" at its end) or
        # the host name label (".ipv6-literal.net"): try both.
        for cand in {span, span[:-1], span.rstrip("-_.")}:
            for sep in "-_.":
                cand = cand.replace(sep, ":")
            if cand.count(":") < 3:
                continue
            try:
                ipaddress.IPv6Address(cand)
            except ValueError:
                continue
            return True
    return False


def _has_token(text: str) -> bool:
    if _UUID_RE.search(text) or _HEX_RUN_RE.search(text):
        return True
    return any(looks_random(m.group()) for m in _B64_RUN_RE.finditer(text))


DETECTORS: Final[tuple[tuple[str, Callable[[str], bool]], ...]] = (
    ("jwt", _has_jwt),
    ("email", _has_email),
    ("card", is_card),
    ("ipv6", _has_ipv6),
    ("ipv4", _has_ipv4),
    ("token", _has_token),
)


def _detect(text: str) -> str | None:
    for name, check in DETECTORS:
        if check(text):
            return name
    return None


# Look-alikes of "@", "." and "-" that people and mail clients accept (audits found
# "name＠gmail。com", "gmail·com" and "ec2‑203‑0‑113‑7" kept): NFKC folds the fullwidth
# and small forms, not these.
_LOOKALIKES: Final = {
    **dict.fromkeys(
        (0x3002, 0xFF61, 0x00B7, 0x02D9, 0x0589, 0x06D4, 0x0701, 0x2027, 0x2219, 0x30FB, 0xFF65),
        ".",
    ),
    **dict.fromkeys((0x2010, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212, 0xFE58), "-"),
}
# The other look-alikes of "." and ":" (an audit found "gmail⋅com", "gmail%EA%93%B8com"
# and "2a01꞉4f8꞉c2c꞉abcd꞉꞉1" kept), generated from two sources rather than picked:
# every character of category Po, Sm, Sk, Lm or Mc whose Unicode name ends in FULL
# STOP, DOT or BULLET (read as ".") or COLON (":") and names one dot or colon (none of
# TWO...SIX, DOUBLE, TRIPLE, DOTS, WITH, WITHIN, WHITE, CIRCLED, SQUARED, BLACK,
# INVERSE, TRIANGULAR, HEART, SESAME, TAG, HYPHEN, EQUALS in it), and the single
# characters Unicode's confusables.txt maps to ".", "·" or ":", which win where the two
# disagree (MONGOLIAN FULL STOP looks like ":"). Left out: what NFKC already folds
# (fullwidth, small and vertical forms), _LOOKALIKES above, and the Arabic-Indic zeros
# U+0660 and U+06F0 (digits: see _ARABIC_ZERO_DOT_RE). Unicode 14 (Python 3.11);
# tests/unit/test_detect.py re-derives the name part from unicodedata.
_DOT_LOOKALIKES: Final = (
    0x0702, 0x0888, 0x0971, 0x1362, 0x1427, 0x166E, 0x16EB, 0x2022, 0x22C5, 0x2CF9,
    0x2CFE, 0x2E31, 0x2E33, 0x2E3C, 0xA4F8, 0xA4FF, 0xA60E, 0xA6F3, 0xA78F, 0x10101,
    0x10A50, 0x10AF4, 0x11049, 0x115C4, 0x16AF5, 0x16E98, 0x1BC9F, 0x1D16D, 0x1DA88,
)  # fmt: skip
_COLON_LOOKALIKES: Final = (
    0x02D0, 0x02F8, 0x05C3, 0x0703, 0x0704, 0x0705, 0x0903, 0x0A83, 0x1365, 0x1366,
    0x16EC, 0x1803, 0x1804, 0x1809, 0x205A, 0x2236, 0x2982, 0xA4FD, 0xA6F4, 0xA789,
    0x12471, 0x12472, 0x1DA8A,
)  # fmt: skip
# The zero of each run of ten decimal digits (category Nd) but ASCII's, from
# unicodedata (Unicode 14: 65 scripts' digits; the test re-derives them). NFKC folds
# only the fullwidth and mathematical ones: "٢٠٣.٠.١١٣.٧٧" and "२०३-०-११३-७७" are
# addresses a reader sees (an audit found them kept); the detectors match [0-9].
_DECIMAL_ZEROS: Final = (
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66,
    0x0CE6, 0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810,
    0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0,
    0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0,
    0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0,
    0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8,
    0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
)  # fmt: skip
_FOLD_TABLE: Final = {
    **{zero + i: chr(0x30 + i) for zero in _DECIMAL_ZEROS for i in range(10)},
    **dict.fromkeys(_DOT_LOOKALIKES, "."),
    **dict.fromkeys(_COLON_LOOKALIKES, ":"),
    **_LOOKALIKES,
}
# U+0660 and U+06F0, the Arabic-Indic zeros, look like "." (confusables.txt). Between
# two letters or digits of another script ("gmail٠com", "203٠0٠113٠77") one is read as
# a dot; next to a digit of its own script or to punctuation it is a zero
# ("٢٠٣.٠.١١٣.٧٧", "١٠").
_ARABIC_ZERO_DOT_RE: Final = re.compile(
    r"(?<=[^\W_\u0660-\u0669\u06f0-\u06f9])[\u0660\u06f0](?=[^\W_\u0660-\u0669\u06f0-\u06f9])"
)
# What a reader does not see, or sees as a space: Unicode's Default_Ignorable_Code_Point
# (zero-width spaces and joiners, soft hyphen, direction marks, variation selectors,
# tags...), which IDNA's mapping drops from host names too, and every space but the
# ASCII one. Audits found "jane.doe@gmail\u200b.com" and "gmail\u2009.com" kept: NFKC
# leaves the first kind in place and turns the second into spaces.
_INVISIBLE_RE: Final = re.compile(
    "[\u00a0\u00ad\u034f\u061c\u115f\u1160\u1680\u17b4\u17b5\u180b-\u180f"
    "\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0"
    "\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]+"
)


def fold_lookalikes(text: str) -> str:
    """``text`` as a reader sees it, for the detectors: compatibility forms folded
    (NFKC: fullwidth "＠", "．", digits), look-alikes of ".", ":", "@" and "-" read as
    them (ideographic full stops as IDNA reads them in host names, middle dots,
    bullets, Unicode hyphens, modifier colons: ``_DOT_LOOKALIKES``), the decimal
    digits of every script read as ASCII digits, invisible characters and spaces other
    than " " removed, and combining marks dropped (an audit found
    "jane@\u0301gmail.com" kept).

    >>> fold_lookalikes("jane＠example。com"), fold_lookalikes("plain")
    ('jane@example.com', 'plain')
    >>> fold_lookalikes("jane.doe@gmail\u200b.com"), fold_lookalikes("a\u00a0b\u2009c\u00add")
    ('jane.doe@gmail.com', 'abcd')
    >>> fold_lookalikes("jane@\u0301gmail·com"), fold_lookalikes("ec2‑203‑0‑113‑7")
    ('jane@gmail.com', 'ec2-203-0-113-7')
    >>> fold_lookalikes("٢٠٣.٠.١١٣.٧٧"), fold_lookalikes("jane@gmail٠com")
    ('203.0.113.77', 'jane@gmail.com')
    >>> fold_lookalikes("2a01꞉4f8꞉꞉1"), fold_lookalikes("jane@gmail⋅com")
    ('2a01:4f8::1', 'jane@gmail.com')
    """
    if text.isascii():
        return text
    # Invisible characters go before NFKC (it turns the spaces into " ") and after
    # it (it turns the Hangul fillers U+3164 and U+FFA0 into U+1160).
    text = unicodedata.normalize("NFKD", _INVISIBLE_RE.sub("", text))
    # By category: 800 marks have combining class 0 ("jane@\u0489gmail.com", a review).
    text = "".join([c for c in text if unicodedata.category(c) not in ("Mn", "Me")])
    text = _INVISIBLE_RE.sub("", unicodedata.normalize("NFKC", text))
    if "\u0660" in text or "\u06f0" in text:
        text = _ARABIC_ZERO_DOT_RE.sub(".", text)
    return text.translate(_FOLD_TABLE)


# A punycode label: IDNA's ASCII form of a label that is not ("xn--bcher-kva" is
# "bücher"), in which digits of other scripts hide (an audit found
# "xn------mphbhackf9ba.duckdns.org", "२०३-०-११३-७७", published as a referrer).
# At most a DNS label's 63 characters: longer ones are no host name, and decoding them
# cost time growing with their length's square (a review: nested "xn--xn--..." labels).
_PUNYCODE_LABEL_RE: Final = re.compile(
    r"(?<![0-9A-Za-z-])[xX][nN]--([0-9A-Za-z-]{1,59})(?![0-9A-Za-z-])"
)
_PUNYCODE_PRE: Final = re.compile(r"[xX][nN]--")


def _punycode_decoded(m: re.Match[str]) -> str:
    try:
        return m.group(1).encode("ascii").decode("punycode")
    except (UnicodeError, ValueError, OverflowError):  # not valid punycode: as it is
        return m.group()


def readable(text: str) -> str:
    """``text`` as a reader sees it: punycode labels decoded, then
    :func:`fold_lookalikes`.

    >>> readable("xn------mphbhackf9ba.duckdns.org"), readable("xn--bcher-kva.de")
    ('203-0-113-77.duckdns.org', 'bucher.de')
    """
    if "--" in text:
        text = _PUNYCODE_LABEL_RE.sub(_punycode_decoded, text)
    return text if text.isascii() else fold_lookalikes(text)


def find_leak(text: str, *, labels: bool = True) -> str | None:
    """Name of the first detector that fires on ``text``, or ``None`` if it is clean;
    with ``labels``, punycode labels are also checked decoded (once: no more levels)."""
    if not text.isascii():  # O(1) in CPython: the common ASCII case pays nothing
        text = fold_lookalikes(text)
    # _maybe_leak inlined: the clean path is the hot path and a call costs ~0.1 us.
    if not (
        "@" in text
        or "%" in text
        or "eyJ" in text
        or "0x" in text
        or "0X" in text
        or (":" in text and ("::" in text or text.count(":") >= 6))
        or (text.count(".") >= 3 and _V4_PRE.search(text) is not None)
        or (
            "." in text
            and (
                (text[:1] in "0123456789" and _SHORT_V4_WHOLE_RE.match(text) is not None)
                or ("//" in text and _SHORT_V4_AFTER_RE.search(text) is not None)
            )
        )
        or (text.count("-") + text.count("_") >= 3 and _DASHED_V4_PRE.search(text) is not None)
        # "in" scans first: most clean strings have neither (templated routes, words).
        or ("2" in text and _SEPARATED_V6_PRE.search(text) is not None)
        or ("." in text and _ADDRESS_LABEL_PRE.search(text) is not None)
        or (len(text) >= 13 and _CARD_PRE.search(text) is not None)
        or (len(text) >= 32 and _RUN_PRE.search(text) is not None)
        # punycode: "xn--", in any case ("--" alone is common: "block--modifier.css")
        or ("--" in text and _PUNYCODE_PRE.search(text) is not None)
    ):
        return None
    hit = _detect(text)
    if hit is not None:
        return hit
    # Percent-encoded payloads: check each decoding level (double encoding included).
    for decoded in percent_decodings(text):
        if not decoded.isascii():  # "gmail%E2%80%8B.com", "jane%EF%BC%A0example.com"
            decoded = fold_lookalikes(decoded)
        if _maybe_leak(decoded):
            hit = _detect(decoded)
            if hit is not None:
                return hit
        if labels and "--" in decoded and _PUNYCODE_PRE.search(decoded) is not None:
            # "https%3A%2F%2Fxn--..." (a review: only the raw text was decoded)
            seen = readable(decoded)
            if seen != decoded and (hit := find_leak(seen, labels=False)) is not None:
                return hit
    if labels and "--" in text and _PUNYCODE_PRE.search(text) is not None:
        seen = readable(text)
        if seen != text:
            return find_leak(seen, labels=False)
    return None


# IIS and old JavaScript escape() write "%u0040" for "@" (an audit found it kept).
_PERCENT_U_RE: Final = re.compile(r"%[uU]([0-9A-Fa-f]{4})")


def _percent_u(m: re.Match[str]) -> str:
    return chr(int(m.group(1), 16))


def percent_decodings(text: str, levels: int = 8) -> Iterator[str]:
    """Each successive percent-decoding of ``text`` (``%XX`` and ``%uXXXX``), until it
    stops changing.

    >>> list(percent_decodings("a%2540b")), list(percent_decodings("jane%u0040x.io"))
    (['a%40b', 'a@b'], ['jane@x.io'])
    """
    for _ in range(levels):
        if "%" not in text:
            return
        decoded = unquote(text)
        if "%u" in decoded or "%U" in decoded:
            decoded = _PERCENT_U_RE.sub(_percent_u, decoded)
        if decoded == text:
            return
        text = decoded
        yield text
