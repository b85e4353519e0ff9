"""URL helpers shared by ``url_policy`` and ``referrer_policy`` (privacy rules 10, 11).

Decisions:

* Segments are classified on their percent-decoded form (decoded up to three times,
  so ``%2540`` is seen as ``@``) but a kept segment is output exactly as it came in.
* A segment that matches anything identifying is replaced *as a whole* by one
  placeholder, so no residue of a partly matched secret survives
  (``user-john@x.com`` -> ``{email}``, ``main.3f2a9b1c4d5e6f70.js`` -> ``{token}``).
  Order: email -> ``{email}``; JWT -> ``{token}``; all digits -> ``{id}``; UUID
  (dashed or not) -> ``{uuid}``; hex run >= 16 -> ``{token}``; digit-heavy (a run of
  >= 5 digits, or >= 4 digits making up at least half the letters+digits:
  ``ORD-123456``, ``2024-05-17``, card numbers, ``1200x800``) -> ``{id}``;
  base64-ish run >= 20 that looks random (:func:`streams.detect.looks_random`)
  -> ``{token}``; anything else
  :func:`streams.detect.find_leak` flags (IP addresses, ...) -> ``{token}``
  (``{id}`` for card numbers).
* Kept: words and slugs (``how-to-cook-pasta``, ``v2``, ``report-2024``), short hex
  fingerprints below 16 (``app.3f2a.css``), empty segments (``//``, trailing ``/``).
* Matrix parameters (``;jsessionid=...``) are dropped from every segment: like query
  keys they are default-deny.
* Query keys match the allowlist case-insensitively (``UTM_Source`` is
  ``utm_source``) and are output lower-cased; values are templated like segments,
  except short numbers (<= 4 digits, ``page=2``) which are kept. Repeated allowed
  keys are all kept, in order. A key without a value is output as ``key=``.
* :func:`registrable_domain` returns the ASCII (IDNA 2008, ``xn--``) form, so a referrer
  written in Unicode and one written in punycode compare equal, and only host-name
  characters. It uses the full
  Public Suffix List, private section included (``alice.github.io`` is its own site,
  as browsers see it). Any host that is or could be read as an IP address (IPv6
  literal, dotted or single-number IPv4, numeric last label as in WHATWG URL
  parsing) gives ``None``.
* :func:`cross_site_domain` is what a cross-site referrer publishes of that domain:
  the part a registry holds (the list's ICANN section: ``alice.github.io`` and
  ``jane-nas.duckdns.org`` give ``github.io`` and ``duckdns.org``), and nothing for a
  name under no registry's suffix (``jane-macbook.local``, ``nas.lan``,
  ``pc.home.arpa``). Below a private suffix, and in a local network's names, a name is
  often one person's or one household's: a device's, a home's dynamic DNS name (an
  audit found them published as referrers).

>>> template_path("/users/12345/orders/550e8400-e29b-41d4-a716-446655440000")
'/users/{id}/orders/{uuid}'
>>> template_path("/u/john.doe%40example.com/")
'/u/{email}/'
>>> filter_query("utm_source=news&token=abc&UTM_Medium=a%40b.io", compile_allow(["utm_*"]))
'utm_source=news&utm_medium={email}'
>>> registrable_domain("User:pw@WWW.Google.co.uk:443")
'google.co.uk'
>>> registrable_domain("[2001:db8::1]:8080") is None
True
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, unquote

import idna
from publicsuffixlist import PublicSuffixList

from streams import detect
from streams.memo import MAX_KEY_CHARS, remember

__all__ = [
    "QueryAllow",
    "compile_allow",
    "cross_site_domain",
    "filter_query",
    "registrable_domain",
    "template_path",
    "template_segment",
    "template_value",
]

PH_ID: Final = "{id}"
PH_UUID: Final = "{uuid}"
PH_TOKEN: Final = "{token}"
PH_EMAIL: Final = "{email}"

# Short segments of letters and simple punctuation only: nothing to template (emails
# need "@", the id rules a digit; a token of letters only is 20 or more long: those
# are checked). The common case, so checked first.
_PLAIN_RE: Final = re.compile(r"[A-Za-z._~-]{0,19}")
# What may follow a ``prefix*`` pattern in a kept query key (see QueryAllow).
_KEY_REST_RE: Final = re.compile(r"[a-z_.~-]{0,19}")
_NON_DIGITS_RE: Final = re.compile(r"[^0-9]+")
_DIGIT_RUN5_RE: Final = re.compile(r"[0-9]{5}")
_HEX16_RE: Final = re.compile(r"[0-9A-Fa-f]{16,}")
_B64_RUN_RE: Final = re.compile(r"[A-Za-z0-9+/_=-]{20,}")
_EMAIL_RE: Final = re.compile(  # lookbehind: start only at a run's first char (O(n))
    # Local part: anything but separators, control characters included ("%00@x.io").
    # It may be empty: "@gmail.com" after a separator (a decoded "j%09%40gmail.com")
    # still names a mailbox's domain next to what is left of its local part.
    r"(?<![^\s@/\\,;:<>()\[\]\"])[^\s@/\\,;:<>()\[\]\"]*@"
    r"(?:[^\W_](?:[\w-]*[^\W_])?\.)+(?:[^\W\d_]{2,}|xn--[\w-]+)"
)
# A retina image name ("logo@2x.png"), not a mailbox: see detect.IMAGE_DENSITY.
_DENSITY_RE: Final = re.compile("@" + detect.IMAGE_DENSITY + r"\Z", re.IGNORECASE)
_JWT_RE: Final = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{2,}")
_UUID_RE: Final = re.compile(
    r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}"
)

_MAX_DECODE: Final = 3
_MISS: Final[Any] = object()  # memo sentinel: None is a memoized verdict


def _decode(text: str) -> str:
    """Percent-decode until stable (at most three levels: catches %2540)."""
    levels = list(detect.percent_decodings(text, _MAX_DECODE))
    return levels[-1] if levels else text


def _has_email(text: str) -> bool:
    if not text.isascii():
        text = detect.fold_lookalikes(text)  # "＠" and "。" (see there)
    if "@" not in text:
        return False
    return any(not _DENSITY_RE.search(m.group()) for m in _EMAIL_RE.finditer(text))


def _classify(text: str) -> str | None:
    """Placeholder for a decoded segment or value, ``None`` if it may be kept."""
    if _has_email(text):
        return PH_EMAIL
    return _classify_not_email(text)


def _template_raw(text: str) -> str | None:
    """Placeholder for a raw (percent-encoded) segment or value, ``None`` to keep it.

    Checks the raw form for an email too: a local part may itself be percent-encoded
    ("%00@a.ac").
    """
    if _has_email(text):
        return PH_EMAIL
    if "%" not in text:
        # Nothing to decode (_decode would return text itself) and the email check
        # just ran on the same text: skip both (most segments and values get here).
        return _classify_not_email(text)
    return _classify(_decode(text))


def _classify_not_email(text: str) -> str | None:
    """:func:`_classify` after its email check."""
    if "eyJ" in text and _JWT_RE.search(text):
        return PH_TOKEN
    if text.isdigit():  # before UUID: 32+ digits also match the dashless UUID form
        return PH_ID
    # Length guards skip regex scans that cannot match (most segments are short).
    size = len(text)
    if size >= 32 and _UUID_RE.search(text):
        return PH_UUID
    if size >= 16 and _HEX16_RE.search(text):
        return PH_TOKEN
    # For ASCII text str.isdigit() is [0-9]: one regex pass instead of a call per char.
    digits = len(_NON_DIGITS_RE.sub("", text)) if text.isascii() else sum(map(str.isdigit, text))
    if digits >= 4:
        alnum = sum(map(str.isalnum, text))
        if digits * 2 >= alnum or _DIGIT_RUN5_RE.search(text):
            return PH_ID
    if size >= 20:
        for m in _B64_RUN_RE.finditer(text):
            if detect.looks_random(m.group(), min_mixed=12):
                return PH_TOKEN
    leak = detect.find_leak(text)
    if leak is not None:
        return PH_ID if leak == "card" else PH_EMAIL if leak == "email" else PH_TOKEN
    return None


def template_segment(segment: str) -> str:
    """Template one raw (still percent-encoded) path segment.

    >>> [template_segment(s) for s in ["how-to-cook", "v2", "a1B2c3D4e5F6g7H8i9J0kL", "42"]]
    ['how-to-cook', 'v2', '{token}', '{id}']
    """
    if _PLAIN_RE.fullmatch(segment):
        return segment
    segment = segment.partition(";")[0]
    placeholder = _template_raw(segment)
    return segment if placeholder is None else placeholder


# Segments and whole paths repeat across requests and across destinations (ops and
# product template the same path): one bounded memo each, shared by every policy.
_segment_memo: dict[str, str] = {}
_path_memo: dict[str, str] = {}
_PATH_MEMO_SIZE: Final = 65536
# Whole segments that hold anything a placeholder could be for: a digit, "@", "%",
# ";" (matrix parameters), a non-ASCII letter, or a run of 20 letters and "_-" (a
# token of letters only: an audit found them kept). Everything else is kept at C speed.
_CANDIDATE_SEGMENT_RE: Final = re.compile(
    r"(?<![^/])(?!\{(?:id|uuid)\}(?:/|$))[^/]*?(?:[0-9@%;\x80-\U0010ffff]|[A-Za-z_-]{20})[^/]*"
)


def _replace_segment(m: re.Match[str]) -> str:
    segment = m.group()
    out = _segment_memo.get(segment)
    if out is None:
        out = remember(_segment_memo, segment, template_segment(segment), _PATH_MEMO_SIZE)
    return out


# The two commonest identifiers, whole segments, replaced without a Python callback.
# Each match takes the "/" before its segment: a pattern that starts with a literal
# lets the regex engine skip ahead to the next "/" instead of trying a lookbehind at
# every character (a path that does not start with "/" gets one for the call).
_DIGITS_SEGMENT_RE: Final = re.compile(r"/[0-9]+(?![^/])")
_UUID_SEGMENT_RE: Final = re.compile(
    r"/[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![^/])"
)
_SLASH_ID: Final = "/" + PH_ID
_SLASH_UUID: Final = "/" + PH_UUID


def _shape(path: str) -> str:
    """``path`` with its all-digit segments as ``{id}`` and its UUID segments as ``{uuid}``.

    >>> _shape("/p/123/o/550e8400-e29b-41d4-a716-446655440000/1a"), _shape("42/x")
    ('/p/{id}/o/{uuid}/1a', '{id}/x')
    """
    if path[:1] != "/":
        return _shape("/" + path)[1:]
    shape = _DIGITS_SEGMENT_RE.sub(_SLASH_ID, path)
    return _UUID_SEGMENT_RE.sub(_SLASH_UUID, shape) if "-" in shape else shape


# Paths that differ only in their id and UUID segments ("/products/123",
# "/products/456") share the rest of the work: a memo keyed by the path after those
# two substitutions ("/products/{id}").
_shape_memo: dict[str, str] = {}


def template_path(path: str) -> str:
    """Replace identifying path segments with placeholders; see the module docstring."""
    out = _path_memo.get(path)
    if out is None:
        shape = _shape(path)
        out = _shape_memo.get(shape)
        if out is None:
            out = _CANDIDATE_SEGMENT_RE.sub(_replace_segment, shape)
            remember(_shape_memo, shape, out, _PATH_MEMO_SIZE)
        remember(_path_memo, path, out, _PATH_MEMO_SIZE)
    return out


def template_value(value: str) -> str:
    """Template one decoded query value; short numbers (``page=2``) are kept.

    >>> template_value("2"), template_value("123456"), template_value("a+b@c.de")
    ('2', '{id}', '{email}')
    """
    if len(value) <= 4 and value.isdigit():
        return value
    if _PLAIN_RE.fullmatch(value):
        return value
    placeholder = _template_raw(value)
    return value if placeholder is None else placeholder


# Bounds of filter_query's memos, per allowlist. Raw keys repeat heavily (utm_source,
# fbclid, code, ...); allowed pairs too (utm values are campaign names), while the
# pairs that are dropped carry the unique values (click ids, tokens) and are never stored.
_KEY_MEMO_SIZE: Final = 4096
_PAIR_MEMO_SIZE: Final = 16384


@dataclass(frozen=True, slots=True)
class QueryAllow:
    """Compiled query-key allowlist: exact keys and ``prefix*`` patterns, lower-cased."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]
    # Everything may_match looks for, as one tuple: a plain loop over it costs a
    # fraction of two any() generators (it runs on every query that reaches a miss).
    _needles: tuple[str, ...] = field(init=False, repr=False, compare=False)
    # filter_query's memos (see there), bounded by the sizes above; not part of the
    # value: two allowlists with the same keys are equal.
    _keys: dict[str, str | None] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _pairs: tuple[dict[str, str], dict[str, str]] = field(
        init=False, repr=False, compare=False, default_factory=lambda: ({}, {})
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_needles", (*self.exact, *self.prefixes))

    @property
    def empty(self) -> bool:
        return not self.exact and not self.prefixes

    def may_match(self, query: str) -> bool:
        """Cheap prefilter: could any allowed key occur in ``query`` at all?"""
        lowered = query.lower()
        for needle in self._needles:  # noqa: SIM110 (any() + a generator: 3x slower)
            if needle in lowered:
                return True
        return False

    def __call__(self, key: str) -> str | None:
        """``key`` as published (lower case), ``None`` if it may not pass.

        Past a ``prefix*`` pattern the key is client text: only a short run of letters
        and ``_.~-`` may follow (an audit found ``utm_<client IP as a number>=1`` and
        ``utm_<token>`` published as keys; values are templated, keys are not).

        >>> allow = compile_allow(["utm_*", "page"])
        >>> allow("UTM_Source"), allow("Page"), allow("utm_3405803785"), allow("q")
        ('utm_source', 'page', None, None)
        """
        key = key.lower()
        if key in self.exact:
            return key
        for prefix in self.prefixes:
            if key.startswith(prefix) and _KEY_REST_RE.fullmatch(key, len(prefix)):
                return key
        return None


def check_patterns(patterns: Iterable[str]) -> str | None:
    """Startup check for allowlist patterns: error message or ``None``.

    A bare ``*`` (allow everything) or a ``*`` anywhere but at the end is refused.
    """
    for p in patterns:
        if not isinstance(p, str) or not p or p.strip() != p:
            return "allow_query entries must be non-empty strings without spaces"
        if "*" in p[:-1] or p == "*":
            return "allow_query: '*' is only allowed at the end of a key prefix"
        if any(c in p for c in "&=#?"):
            return "allow_query entries must be plain keys"
    return None


def compile_allow(patterns: Iterable[str]) -> QueryAllow:
    """Compile patterns like ``["utm_*", "page"]`` once, at build time."""
    exact: set[str] = set()
    prefixes: list[str] = []
    for p in patterns:
        p = p.lower()
        if p.endswith("*"):
            prefixes.append(p[:-1])
        else:
            exact.add(p)
    return QueryAllow(frozenset(exact), tuple(prefixes))


# Characters left unencoded when re-serializing a kept value: RFC 3986 unreserved plus
# the braces of placeholders.
_VALUE_SAFE: Final = "-._~{}"
# Strings made only of characters quote() leaves alone (its always-safe set plus
# _VALUE_SAFE): quote would return them unchanged, so the call is skipped. ASCII
# classes on purpose: quote encodes every non-ASCII letter.
_QUOTE_SAFE_RE: Final = re.compile(r"[A-Za-z0-9_.~{}-]*")


def _quote(text: str) -> str:
    """``quote(text, safe=_VALUE_SAFE)``, without its cost for already safe text.

    >>> _quote("spring sale"), _quote("{email}"), _quote("café")
    ('spring%20sale', '{email}', 'caf%C3%A9')
    """
    if _QUOTE_SAFE_RE.fullmatch(text):
        return text
    return quote(text, safe=_VALUE_SAFE)


def filter_query(query: str, allow: QueryAllow, template: bool = True) -> str:
    """Keep only allowlisted ``key=value`` pairs, in order; values templated.

    Returns the query without the leading ``?`` (empty string if nothing is kept).

    >>> filter_query("q=secret&page=2&utm_campaign=spring%20sale", compile_allow(["utm_*", "page"]))
    'page=2&utm_campaign=spring%20sale'
    """
    if not query or not allow.may_match(query):
        return ""
    out = []
    # Two memos, per allowlist, because queries are mostly unique (click ids, tokens)
    # while their pairs are not: raw key -> its output form (None: not allowed), and
    # raw allowed pair -> its output fragment (one memo per template flag). Both are
    # pure functions of their key, so the output is the same as without them.
    keys = allow._keys
    pairs = allow._pairs[template]
    # parse_qsl(query, keep_blank_values=True), except that values are decoded only
    # for allowed keys: the others (tokens, signatures) are never looked at.
    for pair in query.split("&"):
        if not pair:
            continue
        fragment = pairs.get(pair)
        if fragment is None:
            raw_key, _, value = pair.partition("=")
            key = keys.get(raw_key, _MISS)
            if key is _MISS:
                decoded = _form_decode(raw_key)
                allowed = allow(decoded)
                key = None if allowed is None else _quote(allowed)
                remember(keys, raw_key, key, _KEY_MEMO_SIZE)
            if key is None:
                continue
            value = _form_decode(value)
            if template:
                value = template_value(value)
            fragment = remember(pairs, pair, f"{key}={_quote(value)}", _PAIR_MEMO_SIZE)
        out.append(fragment)
    return "&".join(out)


def _form_decode(text: str) -> str:
    """``application/x-www-form-urlencoded`` decoding, as ``parse_qsl`` does it.

    >>> _form_decode("spring+sale%21"), _form_decode("plain")
    ('spring sale!', 'plain')
    """
    if "%" in text or "+" in text:
        return unquote(text.replace("+", " "))
    return text


_PSL: Final = detect.PUBLIC_SUFFIXES
_ICANN_PSL: Final = PublicSuffixList(only_icann=True)
_HOST_NAME_RE: Final = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_NUMERIC_LABEL_RE: Final = re.compile(detect.V4_NUMBER)


# An IPv4 address inside a host name, dotted or dashed: tunnels and dynamic DNS
# ("1a2b-203-0-113-7.ngrok.io", "home-203-0-113-7.duckdns.org", "203.0.113.7.nip.io")
# and cloud host names ("ec2-203-0-113-7.compute-1.amazonaws.com") carry one, often a
# home connection's. Their registrable domain (PSL private section) is the whole name.
# Zero-padded parts and "_" too ("198-051-100-077.ip.linodeusercontent.com",
# "x_203_0_113_7.duckdns.org": an audit and a review). Unlike the sweep's
# detect.dashed_ipv4, no date is spared: a host name is no file name.
_EMBEDDED_V4_RE: Final = re.compile(
    r"(?<![0-9])(?=([0-9]{1,3})[-._]([0-9]{1,3})[-._]([0-9]{1,3})[-._]([0-9]{1,3})(?![0-9]))"
)


def _is_ip_like(host: str) -> bool:
    """True for anything a browser or resolver could read as an IP address, and for
    host names that carry one, also as a reader sees them (:func:`detect.readable`:
    punycode labels decoded, other scripts' digits and look-alike dots folded; an
    audit found "२०३-०-११३-७७.duckdns.org" published as its punycode form).

    >>> _is_ip_like("203-0-113-7.example.net"), _is_ip_like("web-2024.example.net")
    (True, False)
    >>> _is_ip_like("xn------mphbhackf9ba.duckdns.org"), _is_ip_like("٢٠٣.٠.١١٣.٧٧")
    (True, True)
    """
    if not host.isascii() or "xn--" in host:
        seen = detect.readable(host)
        if seen != host and _is_ip_like_as_written(seen):
            return True
    return _is_ip_like_as_written(host)


def _is_ip_like_as_written(host: str) -> bool:
    if ":" in host:  # only IPv6 literals have colons once the port is gone
        return True
    for m in _EMBEDDED_V4_RE.finditer(host):
        if all(int(n) <= 255 for n in m.groups()):
            return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    # WHATWG URL: a host whose last label is a number is parsed as IPv4
    # ("127.1", "3232235777", "0x7f.0.0.1").
    last = host.rstrip(".").rpartition(".")[2]
    return bool(_NUMERIC_LABEL_RE.fullmatch(last))


def _strip_host(host: str) -> str | None:
    """Drop userinfo, port and brackets; ``None`` if the host is an IP literal."""
    host = host.rpartition("@")[2].strip()
    if host.startswith("["):
        return None  # bracketed: always an IPv6 (or IPvFuture) literal
    host = host.partition(":")[0]
    return host


@functools.lru_cache(maxsize=4096)
def cross_site_domain(domain: str) -> str | None:
    """What a cross-site referrer publishes of its registrable ``domain`` (as
    :func:`registrable_domain` gives it): the domain under a registry's suffix (the
    Public Suffix List's ICANN section), None when no registry's suffix holds it
    (unknown top-level names such as ``.local``, ``.lan``, ``.internal``) or it is
    under ``.arpa`` (``home.arpa`` names home networks, ``in-addr.arpa`` addresses).

    >>> [cross_site_domain(d) for d in ("google.co.uk", "alice.github.io", "jane-nas.duckdns.org")]
    ['google.co.uk', 'github.io', 'duckdns.org']
    >>> [cross_site_domain(d) for d in ("jane-macbook.local", "nas.home.arpa", "pc.lan")]
    [None, None, None]
    """
    if domain == "arpa" or domain.endswith(".arpa"):
        return None
    result = _ICANN_PSL.privatesuffix(domain, accept_unknown=False)
    return None if result is None else str(result)


def registrable_domain(host: str) -> str | None:
    """Registrable domain (eTLD+1) of ``host``, lower-case ASCII; ``None`` if unusable.

    ``host`` may carry userinfo and a port. IP-literal hosts give ``None``: an IP must
    never be published. Cached: referrer hosts repeat far more than referrer URLs (not
    a long one: see :data:`streams.memo.MAX_KEY_CHARS`).
    """
    if len(host) > MAX_KEY_CHARS:
        return _registrable_domain.__wrapped__(host)
    return _registrable_domain(host)


@functools.lru_cache(maxsize=16384)
def _registrable_domain(host: str) -> str | None:
    stripped = _strip_host(host)
    if not stripped:
        return None
    name = _decode(stripped).lower().rstrip(".")
    if not name or _is_ip_like(name):
        return None
    if name.isascii():
        ascii_name = name
    else:
        # UTS 46 non-transitional (IDNA 2008), as browsers encode host names: Python's
        # "idna" codec is IDNA 2003 and maps straße.de to strasse.de, another domain.
        try:
            ascii_name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
        except UnicodeError:  # idna.IDNAError included
            return None
        if _is_ip_like(ascii_name):
            return None
    # Only host-name characters may be published (an audit found "google.com jane doe"
    # from "www.google.com%20jane%20doe"); "_" occurs in real DNS names.
    if _HOST_NAME_RE.fullmatch(ascii_name) is None:
        return None
    result = _PSL.privatesuffix(ascii_name)
    # A label that spells a whole address another way, kept by the private suffixes
    # that name hosts after them (an audit: "cb00714d.ip.linodeusercontent.com" is
    # 203.0.113.77).
    if not result or any(map(detect.label_spells_address, result.split("."))):
        return None
    return result.lower()
