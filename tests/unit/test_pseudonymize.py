"""pseudonymize: keyed, per epoch, per site, unlinkable; gone when the key is gone."""

from __future__ import annotations

import collections
import gc
import hashlib
import hmac
import secrets
import types
from typing import Any

import pytest

from streams.actions.base import BuildContext
from streams.actions.pseudonymize import SPEC, validate
from streams.keys import DerivedKeyRing, EphemeralKeyRing
from streams.keyshare import MasterKeys, RecordCodec, SharedKeyRing, record_key

DAY = 86400


def build(
    ring: object,
    scope: str = "site",
    algorithm: str = "blake2b",
    length: int = 16,
    counters: collections.Counter[str] | None = None,
) -> Any:
    destination = "_aggregate" if scope == "client" else "ops"  # client: internal only
    return SPEC.build({"scope": scope, "algorithm": algorithm, "length": length},
                      BuildContext(destination=destination, site="www.example.org",
                                   keyring=ring, counters=counters))  # fmt: skip


def test_client_scope_is_refused_outside_the_internal_aggregation_input() -> None:
    # The config refuses it in published destinations; build() too, for pipelines
    # compiled without validation (a review).
    with pytest.raises(ValueError, match="only for the internal aggregation input"):
        SPEC.build(
            {"scope": "client", "algorithm": "blake2b", "length": 16},
            BuildContext(destination="product", keyring=DerivedKeyRing(b"a" * 32, DAY)),
        )


def test_stable_within_epoch_and_site() -> None:
    f = build(DerivedKeyRing(b"a" * 32, DAY))
    assert f((10, None, "203.0.113.9", "UA")) == f((DAY - 1, None, "203.0.113.9", "UA"))


def test_unlinkable_across_epochs_sites_and_keys() -> None:
    f = build(DerivedKeyRing(b"a" * 32, DAY))
    g = build(DerivedKeyRing(b"b" * 32, DAY))
    base = f((10, None, "203.0.113.9", "UA"))
    assert base != f((DAY + 10, None, "203.0.113.9", "UA"))
    assert base != f((10, "other.example", "203.0.113.9", "UA"))
    assert base != g((10, None, "203.0.113.9", "UA"))
    # Every value counts: the client address (two clients, one User-Agent) and the agent.
    assert base != f((10, None, "198.51.100.7", "UA"))
    assert base != f((10, None, "203.0.113.9", "Other UA"))


@pytest.mark.parametrize("scope", ["site", "client"])
def test_hmac_sha256_is_the_hmac_of_site_and_values_under_the_epoch_key(scope: str) -> None:
    """Keyed (a plain SHA-256 of an IPv4 is reversible by trying 2^32 values; only
    blake2b was ever built with two keys) and exactly HMAC-SHA256 of the text."""
    ring_a, ring_b = DerivedKeyRing(b"a" * 32, DAY), DerivedKeyRing(b"b" * 32, DAY)
    value = (10, None, "203.0.113.9", "UA")
    a = build(ring_a, scope, "hmac-sha256")(value)
    assert a != build(ring_b, scope, "hmac-sha256")(value)
    site = "www.example.org" if scope == "site" else "\x1dclient"
    data = f"{site}\x1e203.0.113.9\x1fUA".encode()
    key = ring_a.key_for(0)
    assert key is not None and a == hmac.new(key, data, hashlib.sha256).hexdigest()[:16]


@pytest.mark.parametrize(
    ("scope", "algorithm", "expected"),
    [("site", "blake2b", ("9d75a2c6f94b9792", "093bd52f79f37b3a")),
     ("site", "hmac-sha256", ("909889ac6c7a4c3d", "c6d449e5e92f31d1")),
     ("client", "blake2b", ("8e470e2f67b0e2e5", "5d5ec9d68905d25d")),
     ("global", "hmac-sha256", ("42155e554ca01e95", "537f899578314440"))],
)  # fmt: skip
def test_pseudonyms_of_ordinary_values_are_those_of_before_the_escaping(
    scope: str, algorithm: str, expected: tuple[str, str]
) -> None:
    """Escaping the separators changed nothing for values without them: the same key
    gives the pseudonyms it gave before (computed with the unescaped code)."""
    f = build(DerivedKeyRing(b"a" * 32, DAY), scope, algorithm)
    ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"
    assert (f((10, "shop.example.net", "203.0.113.9", ua)),
            f((10, None, "203.0.113.9", ua, "de"))) == expected  # fmt: skip


def test_client_scope_never_equals_a_site_pseudonym() -> None:
    """The client scope's text is domain-separated from every site's: with a plain
    "client", a request with Host "client" got, on a published stream, the pseudonym the
    internal stream gives that client on every site (linking sites, rule 5)."""
    ring = DerivedKeyRing(b"a" * 32, DAY)
    client, site = build(ring, scope="client"), build(ring, scope="site")
    for host in ("client", "\x1dclient", " \x1dclient"):
        assert client((10, None, "203.0.113.9", "UA")) != site((10, host, "203.0.113.9", "UA"))


def test_one_site_however_its_host_header_is_spelled() -> None:
    """The raw Host header was the site: "Example.org" and "example.org:443" gave one
    visitor two pseudonyms, and two visitors in the unique counts (an audit)."""
    f = build(DerivedKeyRing(b"a" * 32, DAY))
    spellings = ["www.example.org", "WWW.Example.ORG", "www.example.org:443", "www.example.org."]
    assert len({f((10, host, "203.0.113.9", "UA")) for host in spellings}) == 1
    # No Host at all is the configured site (www.example.org here).
    assert f((10, None, "203.0.113.9", "UA")) == f((10, "www.example.org", "203.0.113.9", "UA"))


def test_global_scope_links_sites_on_purpose() -> None:
    f = build(DerivedKeyRing(b"a" * 32, DAY), scope="global")
    assert f((10, "a.example", "x")) == f((10, "b.example", "x"))


def test_client_scope_is_one_pseudonym_across_sites_and_no_other_scopes() -> None:
    """The internal aggregation stream's scope: one client on k sites is one visitor."""
    ring = DerivedKeyRing(b"a" * 32, DAY)
    client, site, unscoped = (build(ring, scope=s) for s in ("client", "site", "global"))
    values = [(10, host, "203.0.113.9", "UA") for host in ("a.example", "b.example", None)]
    assert len({client(v) for v in values}) == 1
    assert client(values[0]) not in {site(values[0]), unscoped(values[0])}


def test_scopes_without_the_site_memoize_each_client_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The memo of ``client`` and ``global`` scope was keyed by the Host header too, which
    they do not hash: one client on many sites filled it with copies and hashed again for
    each."""
    import hashlib

    calls: list[bytes] = []
    real = hashlib.blake2b

    def counting(data: bytes, **kwargs: Any) -> Any:
        if b"203.0.113.9" in data:  # (the key ring derives its keys with BLAKE2b too)
            calls.append(data)
        return real(data, **kwargs)

    monkeypatch.setattr(hashlib, "blake2b", counting)
    ring = DerivedKeyRing(b"a" * 32, DAY)
    for scope, hashes in (("client", 1), ("global", 1), ("site", 3)):
        calls.clear()
        f = build(ring, scope=scope)
        for host in ("a.example", "b.example", "c.example:8080", "a.example"):
            f((10, host, "203.0.113.9", "UA"))
        assert len(calls) == hashes, scope


def test_field_boundaries_are_unambiguous() -> None:
    f = build(DerivedKeyRing(b"a" * 32, DAY))
    assert f((10, None, "ab", "c")) != f((10, None, "a", "bc"))
    # Site and values: host x.com1 with 0.0.0.1, host x.com with 10.0.0.1.
    assert f((10, "x.com1", "0.0.0.1", "UA")) != f((10, "x.com", "10.0.0.1", "UA"))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # Two client texts (a cookie and the User-Agent): the separator inside one of them
        # hashed the same text as the other split.
        ((None, "203.0.113.9", "a\x1fb", "c"), (None, "203.0.113.9", "a", "b\x1fc")),
        # The site's separator inside a Host header.
        (("s.example\x1ea", "b"), ("s.example", "a\x1eb")),
        (("s.example", "a\x1db"), ("s.example", "a\\db")),
        # The escape itself is escaped: a literal "\\f" is not an escaped separator.
        ((None, "203.0.113.9", "a\\f", "b"), (None, "203.0.113.9", "a\x1f", "b")),
        ((None, "203.0.113.9", "a\\", "\x1fb"), (None, "203.0.113.9", "a\\\x1f", "b")),
    ],
)
@pytest.mark.parametrize("scope", ["site", "client", "global"])
def test_separators_inside_values_are_escaped(
    a: tuple[Any, ...], b: tuple[Any, ...], scope: str
) -> None:
    """Values are joined with \\x1f after the site and \\x1e: unescaped, client text
    that holds them made two different tuples one text, so one pseudonym (an audit)."""
    f = build(DerivedKeyRing(b"a" * 32, DAY), scope)
    assert f((10, *a)) != f((10, *b))


def test_hmac_and_length() -> None:
    f = build(DerivedKeyRing(b"a" * 32, DAY), algorithm="hmac-sha256", length=32)
    out = f((10, None, "203.0.113.9"))
    assert len(out) == 32 and int(out, 16) >= 0


def test_length_is_an_even_number_of_hex_digits_from_8() -> None:
    """Whole bytes of hex; under 8 digits (32 bits) a busy site's visitors of one day
    collide and are miscounted."""
    check = next(o.check for o in SPEC.options if o.name == "length")
    assert check is not None
    assert check(8) is None and check(64) is None
    assert check(15) is not None and check(6) is not None and check(4) is not None


def test_scope_global_is_refused_by_the_action_itself() -> None:
    """Rule 5: ``global`` links one visitor across sites and needs ``unsafe: true``; the
    action's own validate says so (not only the config)."""
    options = {"scope": "global", "algorithm": "blake2b", "length": 16}
    assert validate(options, BuildContext()) != []
    assert validate({**options, "scope": "site"}, BuildContext()) == []


def test_destroyed_key_yields_none_not_a_fallback() -> None:
    ring = EphemeralKeyRing(DAY, grace_seconds=3600)
    f = build(ring)
    assert f((10, None, "203.0.113.9")) is not None
    assert f((2 * DAY, None, "203.0.113.9")) is not None  # time moves on
    assert ring.live_epochs == [2]
    assert f((10, None, "203.0.113.9")) is None  # epoch 0 is gone


# -- no memo outlives its key (rule 5) ---------------------------------------------------


def _dicts_reachable_from(*roots: object) -> list[dict[Any, Any]]:
    """Every dict reachable from ``roots`` (closures and function globals included;
    modules and classes are not followed, so this stays within what the roots own)."""
    seen: set[int] = set()
    stack = list(roots)
    found: list[dict[Any, Any]] = []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, str, bytes, int)):
            continue
        if isinstance(obj, types.FunctionType) and not obj.__module__.startswith("streams"):
            continue  # the library's own (typing's registries are reachable from Final)
        seen.add(id(obj))
        if isinstance(obj, dict):
            found.append(obj)
        stack.extend(gc.get_referents(obj))
    return found


def _maps_to(pseudonym: str, *roots: object) -> bool:
    return any(pseudonym in list(d.values()) for d in _dicts_reachable_from(*roots))


def test_ephemeral_memo_of_an_epoch_goes_with_its_key() -> None:
    """The audit's case: epoch 1's memo exists before key 0 dies, and no event of
    epoch 0 comes afterwards: the memo of epoch 0 must still be gone."""
    ring = EphemeralKeyRing(DAY, grace_seconds=3600)
    f = build(ring)
    p0 = f((100, None, "203.0.113.9", "UA"))
    assert isinstance(p0, str) and _maps_to(p0, f, ring)  # the probe can see a memo
    f((DAY + 5, None, "198.51.100.1", "UA"))  # epoch 0 in grace
    assert _maps_to(p0, f, ring)  # still live: memoized, as it should be
    f((DAY + 7200, None, "198.51.100.2", "UA"))  # key 0 destroyed
    assert ring.key_for(0, DAY + 7200) is None
    assert not _maps_to(p0, f, ring)


def test_shared_memo_goes_with_its_key_on_tombstone_and_by_clock() -> None:
    clock = [10.0]
    masters = MasterKeys(secrets.token_bytes(32))
    ring = SharedKeyRing("127.0.0.1:1", masters, epoch_seconds=DAY, grace_seconds=3600,
                         clock=lambda: clock[0])  # fmt: skip
    codec = RecordCodec(masters, ring.topic, DAY)
    ring._apply(0, record_key(0), codec.seal(0, secrets.token_bytes(32)), clock[0])
    ring._apply(1, record_key(1), codec.seal(1, secrets.token_bytes(32)), clock[0])
    f, g = build(ring), build(ring)  # two rules, two memos: both must be told
    p0, q0 = f((100, None, "203.0.113.9", "UA")), g((100, None, "192.0.2.1", "UA"))
    clock[0] = DAY + 5.0
    p1 = f((DAY + 5, None, "203.0.113.9", "UA"))
    assert isinstance(p0, str) and isinstance(q0, str) and p1 is not None
    assert _maps_to(p0, f) and _maps_to(q0, g)
    ring._apply(2, record_key(0), None, clock[0])  # another worker destroyed epoch 0
    assert not _maps_to(p0, f) and not _maps_to(q0, g) and _maps_to(p1, f)
    # By the clock alone (no tombstone read yet): the ring's own refresh tells the memos.
    clock[0] = 2 * DAY + 3600.0
    ring._refresh_live(clock[0])
    assert not _maps_to(p1, f)


def test_memos_of_derived_keys_stay_bounded() -> None:
    f = build(DerivedKeyRing(b"a" * 32, DAY))
    for day in range(10):
        f((day * DAY, None, "203.0.113.9"))
    memos = [
        d for d in _dicts_reachable_from(f) if d and all(isinstance(v, dict) for v in d.values())
    ]
    assert memos and all(len(m) <= 4 for m in memos)


class _FlakyRing:
    """A ring answering ``key_for`` from a list (then None), never telling its listener
    (a key refused or expired, seen first by ``key_for``); it keeps that listener."""

    epoch_seconds = DAY

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.listeners: list[Any] = []

    def on_destroy(self, listener: Any) -> None:
        self.listeners.append(listener)

    def key_for(self, epoch: int, now: float | None = None) -> bytes | None:
        return self.answers.pop(0) if self.answers else None


def test_no_memo_is_left_when_the_key_goes_while_it_is_made() -> None:
    """The key destroyed (by another thread) between the lookup and the new memo: the
    value gets no pseudonym and no memo of that epoch remains (rule 5)."""
    counters: collections.Counter[str] = collections.Counter()
    ring = _FlakyRing([b"k" * 32, None])
    f = build(ring, counters=counters)
    assert f((10, None, "203.0.113.9", "UA")) is None
    assert counters["pseudonym.empty"] == 1
    assert 0 not in ring.listeners[0]


def test_an_epochs_memo_goes_when_its_key_is_gone_untold() -> None:
    """A ring may stop answering for an epoch without calling ``forget``: the memo, raw
    values to that epoch's pseudonyms, must not outlive the key (rule 5)."""
    ring = _FlakyRing([b"k" * 32, b"k" * 32, None])
    f = build(ring)
    assert f((10, None, "203.0.113.9", "UA")) is not None
    assert 0 in ring.listeners[0]
    assert f((11, None, "203.0.113.9", "UA")) is None
    assert 0 not in ring.listeners[0]


# -- rules built together (build_group) ----------------------------------------------------


def _group(ring: object, counters: collections.Counter[str]) -> Any:
    """The product's visitor (site, counted) and the aggregation input's (client, not)."""
    assert SPEC.build_group is not None
    return SPEC.build_group([
        ({"scope": "site", "algorithm": "blake2b", "length": 16},
         BuildContext(destination="product", site="www.example.org", keyring=ring,
                      counters=counters)),
        ({"scope": "client", "algorithm": "hmac-sha256", "length": 16},
         BuildContext(destination="_aggregate", site="www.example.org", keyring=ring)),
    ])  # fmt: skip


def test_rules_built_together_give_each_rules_own_pseudonyms_and_counts() -> None:
    """One key and memo lookup a line for both visitor pseudonyms (session 12): the same
    values as each rule built alone, in order, under every host, client, epoch and a
    destroyed key; and the same null counts (the site rule's only)."""
    alone_ring, group_ring = EphemeralKeyRing(DAY, 3600), EphemeralKeyRing(DAY, 3600)
    alone_counts: collections.Counter[str] = collections.Counter()
    group_counts: collections.Counter[str] = collections.Counter()
    site = build(alone_ring, "site", counters=alone_counts)
    client = build(alone_ring, "client", algorithm="hmac-sha256")
    both = _group(group_ring, group_counts)
    # Equal keys in both rings: the same random key for each epoch.
    for ring in (alone_ring, group_ring):
        ring._keys.update({e: bytes([e + 1]) * 32 for e in range(4)})
    lines = [
        (t, host, ip, ua)
        for t in (100, 5000, DAY + 100, 3 * DAY + 7200, 100)  # the last: epoch 0 is gone
        for host in (None, "shop.example.net", "www.example.org:443")
        for ip in ("203.0.113.9", "2001:db8::1")
        for ua in ("Mozilla/5.0", None)
    ]
    got = [both(values) for values in lines]
    assert got == [(site(values), client(values)) for values in lines]
    assert (None, None) in got and got.count((None, None)) == 12  # the stale epoch
    # Epochs 0, 1 and 3; two sites (no Host header is the configured one); two
    # addresses; two agents.
    assert len({pair for pair in got if pair[0]}) == 3 * 2 * 2 * 2
    assert group_counts == alone_counts == {"pseudonym.empty": 12}


def test_rules_built_together_forget_an_epoch_with_its_key() -> None:
    ring = EphemeralKeyRing(DAY, grace_seconds=3600)
    both = _group(ring, collections.Counter())
    pair = both((100, "www.example.org", "203.0.113.9", "UA"))
    reachable = _dicts_reachable_from(both, ring)
    assert any(pair in d.values() for d in reachable)  # memoized while the key lives
    both((DAY + 7200, None, "198.51.100.2", "UA"))  # key 0 destroyed
    assert not any(pair in d.values() for d in _dicts_reachable_from(both, ring))
    assert not any(p in list(d.values()) for p in pair for d in _dicts_reachable_from(both, ring))


def test_rules_built_together_must_share_one_key_ring() -> None:
    assert SPEC.build_group is not None
    options = {"scope": "site", "algorithm": "blake2b", "length": 16}
    with pytest.raises(ValueError, match="one key ring"):
        SPEC.build_group([
            (options, BuildContext(keyring=DerivedKeyRing(b"a" * 32, DAY))),
            (options, BuildContext(keyring=DerivedKeyRing(b"a" * 32, DAY))),
        ])  # fmt: skip
