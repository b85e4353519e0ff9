"""pseudonymize: keyed, per epoch, per site, unlinkable; gone when the key is gone."""

from __future__ import annotations

import gc
import secrets
import types
from typing import Any

import pytest

from streams.actions.base import BuildContext
from streams.actions.pseudonymize import SPEC
from streams.keys import DerivedKeyRing, EphemeralKeyRing
from streams.keyshare import MasterKeys, RecordCodec, SharedKeyRing, record_key

DAY = 86400


def build(
    ring: object, scope: str = "site", algorithm: str = "blake2b", length: int = 16
) -> object:
    destination = "_aggregate" if scope == "client" else "ops"  # client: internal only
    return SPEC.build({"scope": scope, "algorithm": algorithm, "length": length},
                      BuildContext(destination=destination, site="www.example.org",
                                   keyring=ring))  # fmt: skip


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
    assert f((10, None, "203.0.113.9", "UA")) == f((DAY - 1, None, "203.0.113.9", "UA"))  # type: ignore[operator]


def test_unlinkable_across_epochs_sites_and_keys() -> None:
    f = build(DerivedKeyRing(b"a" * 32, DAY))
    g = build(DerivedKeyRing(b"b" * 32, DAY))
    base = f((10, None, "203.0.113.9", "UA"))  # type: ignore[operator]
    assert base != f((DAY + 10, None, "203.0.113.9", "UA"))  # type: ignore[operator]
    assert base != f((10, "other.example", "203.0.113.9", "UA"))  # type: ignore[operator]
    assert base != g((10, None, "203.0.113.9", "UA"))  # type: ignore[operator]


def test_one_site_however_its_host_header_is_spelled() -> None:
    """The raw Host header was the site: "Example.org" and "example.org:443" gave one
    visitor two pseudonyms, and two visitors in the unique counts (an audit)."""
    f = build(DerivedKeyRing(b"a" * 32, DAY))
    spellings = ["www.example.org", "WWW.Example.ORG", "www.example.org:443", "www.example.org."]
    assert len({f((10, host, "203.0.113.9", "UA")) for host in spellings}) == 1  # type: ignore[operator]
    # No Host at all is the configured site (www.example.org here).
    assert f((10, None, "203.0.113.9", "UA")) == f((10, "www.example.org", "203.0.113.9", "UA"))  # type: ignore[operator]


def test_global_scope_links_sites_on_purpose() -> None:
    f = build(DerivedKeyRing(b"a" * 32, DAY), scope="global")
    assert f((10, "a.example", "x")) == f((10, "b.example", "x"))  # type: ignore[operator]


def test_client_scope_is_one_pseudonym_across_sites_and_no_other_scopes() -> None:
    """The internal aggregation stream's scope: one client on k sites is one visitor."""
    ring = DerivedKeyRing(b"a" * 32, DAY)
    client, site, unscoped = (build(ring, scope=s) for s in ("client", "site", "global"))
    values = [(10, host, "203.0.113.9", "UA") for host in ("a.example", "b.example", None)]
    assert len({client(v) for v in values}) == 1  # type: ignore[operator]
    assert client(values[0]) not in {site(values[0]), unscoped(values[0])}  # type: ignore[operator]


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
            f((10, host, "203.0.113.9", "UA"))  # type: ignore[operator]
        assert len(calls) == hashes, scope


def test_field_boundaries_are_unambiguous() -> None:
    f = build(DerivedKeyRing(b"a" * 32, DAY))
    assert f((10, None, "ab", "c")) != f((10, None, "a", "bc"))  # type: ignore[operator]


def test_hmac_and_length() -> None:
    f = build(DerivedKeyRing(b"a" * 32, DAY), algorithm="hmac-sha256", length=32)
    out = f((10, None, "203.0.113.9"))  # type: ignore[operator]
    assert len(out) == 32 and int(out, 16) >= 0


def test_destroyed_key_yields_none_not_a_fallback() -> None:
    ring = EphemeralKeyRing(DAY, grace_seconds=3600)
    f = build(ring)
    assert f((10, None, "203.0.113.9")) is not None  # type: ignore[operator]
    assert f((2 * DAY, None, "203.0.113.9")) is not None  # type: ignore[operator] # time moves on
    assert ring.live_epochs == [2]
    assert f((10, None, "203.0.113.9")) is None  # type: ignore[operator] # epoch 0 is gone


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
    p0 = f((100, None, "203.0.113.9", "UA"))  # type: ignore[operator]
    assert isinstance(p0, str) and _maps_to(p0, f, ring)  # the probe can see a memo
    f((DAY + 5, None, "198.51.100.1", "UA"))  # type: ignore[operator] # epoch 0 in grace
    assert _maps_to(p0, f, ring)  # still live: memoized, as it should be
    f((DAY + 7200, None, "198.51.100.2", "UA"))  # type: ignore[operator] # key 0 destroyed
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
    p0, q0 = f((100, None, "203.0.113.9", "UA")), g((100, None, "192.0.2.1", "UA"))  # type: ignore[operator]
    clock[0] = DAY + 5.0
    p1 = f((DAY + 5, None, "203.0.113.9", "UA"))  # type: ignore[operator]
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
        f((day * DAY, None, "203.0.113.9"))  # type: ignore[operator]
    memos = [
        d for d in _dicts_reachable_from(f) if d and all(isinstance(v, dict) for v in d.values())
    ]
    assert memos and all(len(m) <= 4 for m in memos)
