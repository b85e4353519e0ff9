"""``pseudonymize``: a keyed hash of (site, values) under the epoch's key.

The key is the epoch key of the request time (``streams/keys.py``); there is no
static salt. ``scope: site`` mixes in the site (virtual host, else the configured
site name) so the same visitor on two sites gets unlinkable pseudonyms; two epochs
use two independent keys, so the same visitor on two days is unlinkable too. The site
and the values are joined with control-character separators, escaped inside them (see
``_escape``): two different tuples never hash the same text.
``scope: client`` leaves the site out: one pseudonym per client (address and user
agent) across every site of the log. Only the internal aggregation stream uses it
(the config refuses it anywhere else, ``unsafe`` or not): its aggregates are not broken
down by site, so a per-site pseudonym made one client on k sites k "visitors", a
group of k by itself. That stream never leaves the cluster and is as sensitive as
the raw topic; its pseudonyms are domain-separated from every other scope's. When
the epoch key is gone (destroyed after the grace period) or refused (a time too far in
the future) the field is ``None``, counted in ``counters["pseudonym.empty"]``.

The output is 16 hex digits (64 bits) by default: plenty to count distinct visitors,
short of what the leak detector treats as a token.

>>> from streams.keys import DerivedKeyRing
>>> ring = DerivedKeyRing(b"k" * 32, epoch_seconds=86400)
>>> f = SPEC.build({"scope": "site", "algorithm": "blake2b", "length": 16},
...                BuildContext(site="example.org", keyring=ring))
>>> a = f((100, None, "203.0.113.9", "Mozilla/5.0"))
>>> len(a), a == f((200, None, "203.0.113.9", "Mozilla/5.0"))
(16, True)
>>> a == f((86400 + 100, None, "203.0.113.9", "Mozilla/5.0"))  # next day: new key
False
>>> a == f((100, "shop.example.net", "203.0.113.9", "Mozilla/5.0"))  # other site
False
>>> c = SPEC.build({"scope": "client", "algorithm": "blake2b", "length": 16},
...                BuildContext(destination="_aggregate", site="example.org", keyring=ring))
>>> c((100, "shop.example.net", "203.0.113.9", "Mozilla/5.0")) == c((100, None, "203.0.113.9",
...     "Mozilla/5.0")) != a
True
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from streams.actions.base import (
    INTERNAL_DESTINATION,
    ActionSpec,
    BuildContext,
    Option,
    RuleToBuild,
    Transform,
)
from streams.memo import remember

#: Implicit sources prepended to ``from``: the epoch comes from the time, scope from host.
IMPLICIT_SOURCES = ("request.time", "request.host")


def _check_length(value: int) -> str | None:
    return None if 8 <= value <= 64 and value % 2 == 0 else "must be an even number from 8 to 64"


def build(options: Mapping[str, Any], context: BuildContext) -> Transform:
    return _build([(options, context)], single=True)


def build_group(
    rules: Sequence[RuleToBuild],
) -> Callable[[tuple[Any, ...]], tuple[str | None, ...]]:
    """One transform for several pseudonymize rules over the same sources (the
    product's visitor and the aggregation input's): their pseudonyms, in order, from
    one epoch key lookup and one memo lookup a line. The same values as each rule's
    own :func:`build` gives, empty (``None``) and counted alike.

    >>> from streams.keys import DerivedKeyRing
    >>> ring = DerivedKeyRing(b"k" * 32, epoch_seconds=86400)
    >>> site = ({"scope": "site", "algorithm": "blake2b", "length": 16},
    ...         BuildContext(site="example.org", keyring=ring))
    >>> client = ({"scope": "client", "algorithm": "hmac-sha256", "length": 32},
    ...           BuildContext(destination="_aggregate", keyring=ring))
    >>> values = (100, "shop.example.net", "203.0.113.9", "Mozilla/5.0")
    >>> build_group([site, client])(values) == (SPEC.build(*site)(values),
    ...                                         SPEC.build(*client)(values))
    True
    """
    return _build(rules, single=False)


def _build(rules: Sequence[RuleToBuild], *, single: bool) -> Any:
    """The transform of ``rules``: one pseudonym (``single``), or a tuple of them."""
    rings = {id(context.keyring) for _, context in rules}
    ring = rules[0][1].keyring
    if ring is None:
        raise ValueError("pseudonymize needs a key ring")
    if len(rings) != 1:
        raise ValueError("pseudonymize rules built together must share one key ring")
    epoch_seconds: int = ring.epoch_seconds
    key_for = ring.key_for
    hashers = [_hasher(options, context) for options, context in rules]
    # Memoized by the values the hashes read: the Host header only if a scope is per site.
    per_site = any(per_site for per_site, _ in hashers)
    computes = [compute for _, compute in hashers]
    size = rules[0][1].cache_size
    # Visitors repeat: memoize per epoch. The memo of an epoch maps raw values to its
    # pseudonyms, so it must not outlive the key: the ring tells ``memos`` (from its own
    # thread, for the shared ring) the moment it drops a key (rule 5).
    memos = _EpochMemos()
    ring.on_destroy(memos)
    memo_of = memos.get
    # One count per rule that counts (each is a published field; the internal stream's
    # are not counted), as if each rule were built alone.
    counted = [context.counters for _, context in rules if context.counters is not None]
    empty: Any = None if single else (None,) * len(rules)
    if single:
        compute: Callable[[bytes, tuple[Any, ...]], Any] = computes[0]
    else:

        def compute(key: bytes, values: tuple[Any, ...]) -> tuple[str, ...]:
            return tuple([one(key, values) for one in computes])

    def no_key() -> Any:
        for counters in counted:
            counters["pseudonym.empty"] += 1
        return empty

    def new_memo(epoch: int, when: int) -> dict[tuple[Any, ...], Any] | None:
        memo: dict[tuple[Any, ...], Any] = {}
        memos[epoch] = memo
        # The key may have been dropped between key_for and the line above (another
        # thread): asking again after the memo is in place closes that window.
        if key_for(epoch, when) is None:
            memos.pop(epoch, None)
            return None
        # Keys that are never destroyed (derived rings): bound the memos by count.
        for old in sorted(memos)[:-3]:
            memos.pop(old, None)
        return memo

    def pseudonymize(values: tuple[Any, ...]) -> Any:
        when = values[0]
        epoch = when // epoch_seconds
        key = key_for(epoch, when)
        if key is None:
            memos.pop(epoch, None)
            return no_key()
        memo = memo_of(epoch)
        if memo is None:
            memo = new_memo(epoch, when)
            if memo is None:
                return no_key()
        ident = values[1:] if per_site else values[2:]
        out = memo.get(ident)
        if out is None:
            out = remember(memo, ident, compute(key, values), size)
        return out

    return pseudonymize


def _hasher(
    options: Mapping[str, Any], context: BuildContext
) -> tuple[bool, Callable[[bytes, tuple[Any, ...]], str]]:
    """Whether the rule's scope is per site, and its hash of ``(time, host, *values)``
    under an epoch key."""
    scope = options["scope"]
    if scope == "client" and context.destination != INTERNAL_DESTINATION:
        # The config refuses it too; this holds for pipelines built without validation.
        raise ValueError("scope: client is only for the internal aggregation input")
    per_site = scope == "site"
    # In place of the site, a string no Host header yields (site_name strips leading
    # whitespace, and str.strip counts \x1d as whitespace), nor global's "": a client
    # pseudonym never equals a site or global one of the same client.
    unscoped = _CLIENT_DOMAIN if scope == "client" else ""
    domain_marks = unscoped.count("\x1d")  # in the text of a site and values without any
    default_site = context.site
    digest_size = options["length"] // 2
    use_hmac = options["algorithm"] == "hmac-sha256"
    blake2b = hashlib.blake2b
    hmac_new = hmac.new
    sha256 = hashlib.sha256

    def compute(key: bytes, values: tuple[Any, ...]) -> str:
        site = (site_name(values[1]) or default_site) if per_site else unscoped
        texts = ["" if v is None else str(v) for v in values[2:]]
        text = f"{site}\x1e" + "\x1f".join(texts)
        # Escaped (see _escape) only if the site or a value holds what is escaped: a few
        # scans of the joined text, not a call per value (this runs on each memo miss).
        if (
            "\\" in text
            or text.count("\x1d") != domain_marks
            or text.count("\x1e") != 1
            or text.count("\x1f") != len(texts) - 1
        ):
            if per_site:
                site = _escape(site)
            text = f"{site}\x1e" + "\x1f".join([_escape(t) for t in texts])
        data = text.encode()
        if use_hmac:
            return hmac_new(key, data, sha256).hexdigest()[: digest_size * 2]
        return blake2b(data, key=key, digest_size=digest_size).hexdigest()

    return per_site, compute


def site_name(host: Any) -> str:
    """The site a Host header names: lower case, without port or trailing dot, so that
    ``Example.org`` and ``example.org:443`` do not give one visitor two pseudonyms.

    >>> site_name("Example.ORG:443"), site_name("example.org."), site_name("[2001:db8::1]:80")
    ('example.org', 'example.org', '[2001:db8::1]')
    >>> site_name(None), site_name("-")
    ('', '')
    """
    if not host or host == "-":
        return ""
    name = str(host).strip().lower()
    if name.startswith("["):
        return name.partition("]")[0] + "]"
    return name.partition(":")[0].rstrip(".")


#: What ``scope: client`` hashes in place of the site (see ``compute`` in :func:`build`).
_CLIENT_DOMAIN = "\x1dclient"

#: The hashed text is ``site \x1e value \x1f value ...``. In the site and in each value
#: ``\`` and the separators are escaped, so that one text is one tuple: unescaped, the
#: values ("a\x1fb", "c") and ("a", "b\x1fc") of two clients hashed the same text (a
#: rule of two client texts, such as a cookie and the User-Agent, gave them one pseudonym).
_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\x1d": "\\d", "\x1e": "\\e", "\x1f": "\\f"})
_NEEDS_ESCAPE: Final = re.compile(r"[\\\x1d-\x1f]").search


def _escape(text: str) -> str:
    r"""``text`` with ``\`` and the separators escaped; text without them as it is (so
    ordinary values hash exactly as they did before the escaping).

    >>> _escape("Mozilla/5.0"), _escape("a\x1fb\\")
    ('Mozilla/5.0', 'a\\fb\\\\')
    """
    return text.translate(_ESCAPES) if _NEEDS_ESCAPE(text) else text


class _EpochMemos(dict[int, dict[tuple[Any, ...], str]]):
    """Per-epoch memos that a key ring can empty (a ``streams.keys.EpochListener``)."""

    def forget(self, epoch: int) -> None:
        self.pop(epoch, None)


def validate(options: Mapping[str, Any], context: BuildContext) -> list[str]:
    """``scope: global`` links one visitor across sites: rule 5 wants them unlinkable."""
    if options["scope"] == "global":
        return [
            "scope: global gives a visitor the same pseudonym on every site, linking them "
            "across sites (rule 5); use scope: site (or set unsafe: true to override)"
        ]
    return []


SPEC = ActionSpec(
    name="pseudonymize",
    doc="Keyed hash (BLAKE2b or HMAC-SHA256) of site + values under the epoch key.",
    options=(
        Option(
            "scope",
            str,
            "site",
            "'site' (per-site pseudonyms) or 'global'; 'client' (one per client across "
            "sites) only in the internal aggregation stream",
            choices=("site", "global", "client"),
            json={"enum": ["site", "global"]},  # client: logfog's own rules only
        ),
        Option(
            "algorithm",
            str,
            "blake2b",
            "keyed BLAKE2b or HMAC-SHA256",
            choices=("blake2b", "hmac-sha256"),
        ),
        Option(
            "length",
            int,
            16,
            "hex digits in the output: an even number from 8 to 64",
            check=_check_length,
            json={"minimum": 8, "maximum": 64, "multipleOf": 2},
        ),
    ),
    build=build,
    build_group=build_group,
    validate=validate,
    multi=True,
    implicit_sources=IMPLICIT_SOURCES,
)
