"""pseudonymize: keyed, per epoch, per site, unlinkable; gone when the key is gone."""

from __future__ import annotations

from streams.actions.base import BuildContext
from streams.actions.pseudonymize import SPEC
from streams.keys import DerivedKeyRing, EphemeralKeyRing

DAY = 86400


def build(
    ring: object, scope: str = "site", algorithm: str = "blake2b", length: int = 16
) -> object:
    return SPEC.build({"scope": scope, "algorithm": algorithm, "length": length},
                      BuildContext(site="www.example.org", keyring=ring))  # fmt: skip


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


def test_global_scope_links_sites_on_purpose() -> None:
    f = build(DerivedKeyRing(b"a" * 32, DAY), scope="global")
    assert f((10, "a.example", "x")) == f((10, "b.example", "x"))  # type: ignore[operator]


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
