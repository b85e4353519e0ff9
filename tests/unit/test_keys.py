"""Key sources: never from config, at least 256 bits, clear errors without key material."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from streams.keys import (
    DerivedKeyRing,
    EphemeralKeyRing,
    KeyError_,
    generate_key,
    keyring_from_config,
    load_secret,
)

DAY = 86400


def test_env_hex_and_base64(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LF_KEY", generate_key())
    assert len(load_secret("env:LF_KEY")) == 32
    monkeypatch.setenv("LF_KEY", base64.b64encode(os.urandom(48)).decode())
    assert len(load_secret("env:LF_KEY")) == 48


def test_short_or_missing_keys_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LF_KEY", "00" * 16)
    with pytest.raises(KeyError_, match="at least 256 bits") as caught:
        load_secret("env:LF_KEY")
    assert "00" * 16 not in str(caught.value)
    monkeypatch.delenv("LF_KEY")
    with pytest.raises(KeyError_, match="LF_KEY is not set"):
        load_secret("env:LF_KEY")
    with pytest.raises(KeyError_, match="key file"):
        load_secret(f"file:{tmp_path / 'missing'}")
    with pytest.raises(KeyError_, match="not 'env:NAME'"):
        load_secret("inline:abc")


def test_key_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(generate_key() + "\n")
    assert len(load_secret(f"file:{path}")) == 32


def test_derived_keys_differ_per_epoch() -> None:
    ring = DerivedKeyRing(b"m" * 32, 86400)
    assert ring.key_for(1) != ring.key_for(2)
    assert ring.key_for(1) == DerivedKeyRing(b"m" * 32, 86400).key_for(1)


def test_a_raw_key_file_longer_than_blake2bs_key_works(tmp_path: Path) -> None:
    """A 4 KB raw key file is accepted; BLAKE2b keys stop at 64 bytes, so every line
    was a rules.error (an audit). A long secret is hashed down; one of 64 bytes or
    fewer is used as it is, as before."""
    path = tmp_path / "key"
    path.write_bytes(os.urandom(4096))
    ring = DerivedKeyRing(load_secret(f"file:{path}"), DAY)
    assert len(ring.key_for(1) or b"") == 32 and ring.key_for(1) != ring.key_for(2)
    longer = DerivedKeyRing(load_secret(f"file:{path}") + b"x", DAY)
    assert longer.key_for(1) != ring.key_for(1)
    epoch_one = (1).to_bytes(8, "big", signed=True)
    assert (
        DerivedKeyRing(b"m" * 64, DAY).key_for(1)
        == (hashlib.blake2b(epoch_one, key=b"m" * 64, person=b"logfog-epoch").digest()[:32])
    )


def test_ephemeral_keys_are_random_and_expire() -> None:
    a, b = EphemeralKeyRing(60, 10), EphemeralKeyRing(60, 10)
    assert a.key_for(0, now=1) != b.key_for(0, now=1)
    assert a.key_for(0, now=69) is not None  # within grace
    assert a.key_for(1, now=70) is not None
    assert a.key_for(0, now=70) is None and a.live_epochs == [1]
    # a destroyed epoch is never re-created, even if asked again later
    assert a.key_for(0, now=70) is None


def test_key_for_without_a_time_means_the_end_of_that_epoch() -> None:
    """``key_for(epoch)`` (the shared ring's lookups) ages the ring as of the epoch's
    last second: asking for epoch 1 destroys epoch 0's key past its grace, as an
    explicit time would."""
    ring = EphemeralKeyRing(DAY, 3600, clock=lambda: 100 * DAY)
    ring.key_for(0)
    ring.key_for(1)
    assert ring.live_epochs == [1]


def test_keys_source_auto_gives_batch_jobs_ephemeral_keys() -> None:
    """The default ``auto`` is random, destroyed keys for ``logfog anonymize``, not a
    secret source."""
    assert isinstance(keyring_from_config("auto", DAY, 3600), EphemeralKeyRing)


class _RacingLock:
    """The ring's lock, where another thread's ``key_for`` runs first the first time it
    is taken: the interleaving a shared ring meets, made deterministic."""

    def __init__(self, other: Callable[[], Any]) -> None:
        self.inner = threading.Lock()
        self.other: Callable[[], Any] | None = other

    def __enter__(self) -> bool:
        other, self.other = self.other, None
        if other is not None:
            other()
        return self.inner.__enter__()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.inner.__exit__(*exc)  # type: ignore[arg-type]

    def locked(self) -> bool:
        return self.inner.locked()


def test_an_older_time_never_moves_now_back_over_a_newer_one() -> None:
    """Thread A sees time 50, thread B time 2d + 10 and destroys epoch 0's key: A must
    not then write "now" back to 50, which made epoch 0 live again, with a new key."""
    ring = EphemeralKeyRing(DAY, 3600, clock=lambda: 100 * DAY)
    ring._lock = _RacingLock(lambda: ring.key_for(2, now=2 * DAY + 10))  # type: ignore[assignment]
    assert ring.key_for(0, now=50) is None
    assert ring.live_epochs == [2]


def test_no_key_is_made_for_an_epoch_another_thread_just_ended() -> None:
    """Between the check that an epoch is live and the insert of its new key, another
    thread may move "now" past the epoch's grace: the insert must not happen."""
    ring = EphemeralKeyRing(DAY, 3600, clock=lambda: 100 * DAY)
    assert ring.key_for(1, now=DAY + 10) is not None
    ring._lock = _RacingLock(lambda: ring.key_for(2, now=2 * DAY + 3600))  # type: ignore[assignment]
    assert ring.key_for(0, now=DAY + 5) is None
    assert ring.live_epochs == [2]


def test_keys_are_only_destroyed_under_the_rings_lock() -> None:
    """Expiry iterates and deletes the keys that ``key_for`` inserts under its lock: it
    takes the lock too (a shared ring: "dictionary changed size during iteration")."""
    ring = EphemeralKeyRing(DAY, 3600, clock=lambda: 100 * DAY)
    lock = ring._lock

    class Keys(dict[int, bytes]):
        def __iter__(self) -> Any:
            assert lock.locked()
            return super().__iter__()

        def __delitem__(self, epoch: int) -> None:
            assert lock.locked()
            super().__delitem__(epoch)

    ring._keys = Keys()
    ring.key_for(0, now=10)
    ring.key_for(3, now=3 * DAY + 10)
    assert ring.live_epochs == [3]


def test_a_line_from_the_future_neither_gets_a_key_nor_destroys_others() -> None:
    """One line dated 2099 used to become "now": every earlier epoch's key destroyed."""
    wall = 1_800_000_000.0
    ring = EphemeralKeyRing(86400, 3600, clock=lambda: wall)
    today = int(wall // 86400)
    # A present time does not make a future epoch's key: it would exist before its epoch.
    assert ring.key_for(today + 10, now=wall) is None and ring.live_epochs == []
    key = ring.key_for(today, now=wall)
    assert key is not None
    year_2099 = 4_070_908_800
    assert ring.key_for(year_2099 // 86400, now=year_2099) is None
    assert ring.key_for(today, now=wall + 1) == key and ring.live_epochs == [today]
    # Within the tolerance (clock skew), a time just ahead of the wall clock is believed.
    assert ring.key_for(today, now=wall + 299) == key
    assert ring.key_for(today + 1, now=(today + 1) * 86400.0) is None  # hours ahead: no


@pytest.mark.parametrize(
    "value",
    [
        "ab" * 22,  # 44 hex digits, 176 bits: it used to be read again as base64 (33 bytes)
        "0123456789abcdef" * 3,  # 48 hex digits, 192 bits
        "password" * 6,  # letters only: valid base64 of 36 bytes, but nothing random
        "correct horse battery staple and then some more word",  # spaces were dropped
        bytes(range(100, 131)).hex(),  # 31 random-looking bytes: 248 bits
        bytes(i % 12 for i in range(32)).hex(),  # 12 distinct byte values: typed or padded
        bytes(range(100, 132)).hex() + "a",  # 65 hex digits: damaged, never truncated
    ],
)
def test_a_secret_under_256_random_bits_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An audit found these accepted, by load_secret and by the worker's start check."""
    from streams.keyshare import MasterKeys

    monkeypatch.setenv("LOGFOG_MASTER_KEY", value)
    monkeypatch.delenv("LOGFOG_MASTER_KEY_ACCEPTED", raising=False)
    with pytest.raises(KeyError_):
        load_secret("env:LOGFOG_MASTER_KEY")
    with pytest.raises(KeyError_):
        MasterKeys.from_sources()


def test_keygens_keys_and_random_base64_ones_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    import secrets

    for value in (
        generate_key(),
        base64.b64encode(secrets.token_bytes(32)).decode(),
        bytes(range(100, 132)).hex(),  # exactly 256 bits
        bytes(i % 16 for i in range(32)).hex(),  # 16 distinct byte values: the minimum
    ):
        monkeypatch.setenv("K", value)
        assert len(load_secret("env:K")) == 32


@pytest.mark.parametrize("first", ["0", "f"])
def test_a_key_pasted_after_env_is_refused_without_echoing_it(
    first: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keys.source "env:<the key>" used to pass check-config (any name was accepted), and
    load_secret then printed the key as the variable's name. A hex key starting with a
    letter ("f") is a well-formed variable name: refused for looking like a key."""
    from streams.config import validate

    key = first + generate_key()[1:]
    monkeypatch.delenv(key, raising=False)
    with pytest.raises(KeyError_, match="environment variable name") as caught:
        load_secret(f"env:{key}")
    assert key[:16] not in str(caught.value)
    with pytest.raises(KeyError_) as caught:
        load_secret(key)  # no "env:" at all: the whole key used to be quoted as the kind
    assert key[:16] not in str(caught.value)
    errors = validate({"keys": {"source": f"env:{key}"}, "destinations": {"ops": {
        "topic": "logs.ops", "fields": {"s": {"from": "response.status", "action": "keep"}}}}})  # fmt: skip
    assert [e.split(":")[0] for e in errors] == ["keys.source"]
    assert not any(key[:16] in e for e in errors), errors
